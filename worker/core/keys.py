"""Every Redis key extworker uses, built in this one module and named after what it holds.

The namespace (``EXTWORKER_NAMESPACE``, default ``extworker``) is applied here, once.
dramatiq's own queue keys (``dramatiq:<queue>``) are the broker's, outside the namespace.
"""

from __future__ import annotations


class Keys:
    def __init__(self, namespace: str, intake_stream: str = "intake") -> None:
        self.namespace = namespace
        self.intake_stream = intake_stream

    def _k(self, *parts: str) -> str:
        return ":".join((self.namespace, *parts))

    # --- jobs and files -------------------------------------------------------
    def job(self, job_id: str) -> str:
        """The job document (JSON): state and one slot per extension."""
        return self._k("job", job_id)

    def job_pattern(self) -> str:
        """SCAN pattern of every job document."""
        return self._k("job", "*")

    def file(self, file_id: str) -> str:
        """A file record (JSON)."""
        return self._k("file", file_id)

    def path(self, account: str, file_path: str) -> str:
        """``{"fileId": …}`` of the file at ``file_path`` in ``account``."""
        return self._k("path", account, file_path)

    def file_index(self, account: str) -> str:
        """Sorted set of an account's file paths (listing)."""
        return self._k("files", account)

    def units(self, account: str, month: str) -> str:
        """An account's extension units of one month (``YYYY-MM``)."""
        return self._k("units", account, month)

    def claim(self, job_id: str, extension: str) -> str:
        """Who reports a finished extension: a waiting client or the webhook."""
        return self._k("claim", job_id, extension)

    def account_docs(self, kind: str, account: str) -> str:
        """One document per account of ``kind`` (``saved``: saved extensions, ``fields``:
        custom metadata fields)."""
        return self._k(kind, account)

    def api_key(self, digest: str) -> str:
        """An API key's record, by the SHA-256 of the key (the key itself is never stored)."""
        return self._k("apikey", digest)

    # --- intake, models, operations -----------------------------------------------
    def intake(self) -> str:
        """The intake stream publishers XADD jobs to."""
        return self._k(self.intake_stream)

    def models_loaded(self, worker: str = "*") -> str:
        """What one worker process reports as loaded (``*``: the SCAN pattern)."""
        return self._k("models", "loaded", worker)

    def doctor_report(self) -> str:
        """Counts of the last ``extworker doctor`` run."""
        return self._k("doctor")

    # --- webhooks ----------------------------------------------------------------
    def webhook_delivery(self, delivery_id: str) -> str:
        """One delivery document (``""``: the prefix, for the Lua scripts)."""
        return self._k("wh", "delivery", delivery_id)

    def webhook_due(self) -> str:
        """Sorted set: delivery id → when it is next due (ms)."""
        return self._k("wh", "due")

    def webhook_dead(self) -> str:
        """Sorted set of exhausted deliveries (dead letters), trimmed."""
        return self._k("wh", "dead")

    def webhook_stats(self) -> str:
        """Hash of delivery counters by outcome."""
        return self._k("wh", "stats")

    def webhook_index(self) -> str:
        """Sorted set of every delivery id by creation (the log), trimmed."""
        return self._k("wh", "index")

    def webhook_kick(self) -> str:
        """The once-a-second token of the pump (one wake-up call fleet-wide)."""
        return self._k("wh", "kick")

    def webhook_secret(self, account: str) -> str:
        """An account's encrypted signing secrets."""
        return self._k("wh", "secret", account)

    def webhook_kdf_salt(self) -> str:
        """The salt of the passphrase KDF that derives the secrets' encryption key."""
        return self._k("wh", "secret", "kdf-salt")

    @staticmethod
    def broker_queue(queue: str) -> tuple[str, str, str]:
        """dramatiq's keys of ``queue``: ready list, delayed list, dead-letter set."""
        return f"dramatiq:{queue}", f"dramatiq:{queue}.DQ", f"dramatiq:{queue}.XQ"
