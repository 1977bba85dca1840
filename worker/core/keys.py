"""Every Redis key extworker uses, built in this one module and named after what it holds.

The namespace (``EXTWORKER_NAMESPACE``, default ``extworker``) is applied here, once.
dramatiq's own queue keys (``dramatiq:<queue>``) are the broker's, outside the namespace.

No id can reach another key's meaning. Each key is fixed words, then the parts that come
from outside; every such part but the last goes through ``_id``, which escapes the
separator (``:`` → ``%3A``, ``%`` → ``%25``), so it is one segment whatever it holds, and
the last part is whatever follows. A key therefore reads one way only: its fixed words name
the builder (no two builders share them), the escaped parts end at the next ``:``, the rest
is the last part — so a global key (the KDF salt, the due set, the pump's token) is never one
an id can build. Only non-final parts are escaped so that stored keys keep their names: job
ids, file ids and paths (``/photo 12:30.jpg``) are last in their keys and never change; an
account with a ``:`` (ids never hold ``%``) moved in ``path:`` and ``units:`` keys, which
``extworker doctor --fix`` renames (``legacy_keys``). ``tests/system/test_architecture.py``
runs every builder with adversarial ids and checks that no two meanings share a key.
"""

from __future__ import annotations

ACCOUNT_DOC_KINDS = frozenset({"saved", "fields", "apikeys", "settings"})
# First words of keys; the intake stream's name may be none of them.
_WORDS = frozenset({"job", "file", "path", "files", "units", "claim", "apikey", "models",
                    "doctor", "wh", *ACCOUNT_DOC_KINDS})


# What the document store holds (``worker.store.kv``): on PostgreSQL none of it is in
# Redis; ``extworker store copy`` moves exactly these. Everything else under the namespace
# is Redis's own — claims, locks, sessions, the intake stream, webhook deliveries.
STORE_WORDS = frozenset({"job", "file", "path", "files", "units", "folders", "jobs",
                         "filejobs", "apikey", "embedding", "embeddings",
                         *ACCOUNT_DOC_KINDS,
                         "bulkjob"})  # bulk jobs of versions before they were jobs


def _id(part: str) -> str:
    """A part from outside, escaped so that it is one segment whatever it holds."""
    return part.replace("%", "%25").replace(":", "%3A")


class Keys:
    def __init__(self, namespace: str, intake_stream: str = "intake") -> None:
        if ":" in intake_stream or intake_stream in _WORDS:
            raise ValueError(f"intake stream {intake_stream!r}: must not contain ':' or be "
                             f"one of {sorted(_WORDS)}")
        self.namespace = namespace
        self.intake_stream = intake_stream

    def _k(self, *parts: str) -> str:
        return ":".join((self.namespace, *parts))

    def pattern(self) -> str:
        """SCAN pattern of every key in the namespace."""
        return self._k("*")

    def is_store_key(self, key: str) -> bool:
        """Whether ``key`` is the document store's (see ``STORE_WORDS``)."""
        lead = self.namespace + ":"
        return key.startswith(lead) and key[len(lead):].split(":", 1)[0] in STORE_WORDS

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

    def embedding(self, account: str, file_id: str) -> str:
        """A file's image embedding (``worker.store.embeddings``), by account."""
        return self._k("embedding", _id(account), file_id)

    def embedding_index(self, account: str) -> str:
        """Sorted index of the account's files that have an embedding."""
        return self._k("embeddings", _id(account))

    def file_pattern(self) -> str:
        """SCAN pattern of every file record."""
        return self._k("file", "*")

    def path(self, account: str, file_path: str) -> str:
        """``{"fileId": …}`` of the file at ``file_path`` in ``account``."""
        return self._k("path", _id(account), file_path)

    def file_index(self, account: str) -> str:
        """Sorted set of an account's file paths (listing)."""
        return self._k("files", account)

    def units(self, account: str, month: str) -> str:
        """An account's extension units of one month (``YYYY-MM``)."""
        return self._k("units", _id(account), month)

    def claim(self, job_id: str, extension: str) -> str:
        """Who reports a finished extension: a waiting client or the webhook."""
        return self._k("claim", _id(job_id), extension)

    def derive_lock(self, blob_key: str) -> str:
        """Held by the process computing a derivative (delivery's single flight)."""
        return self._k("lock", "derive", blob_key)

    def folder_index(self, account: str) -> str:
        """An account's folders (``/a/``, ``/a/b/``): every folder a file was ever put in,
        and the empty ones made with the folder API."""
        return self._k("folders", _id(account))

    def job_index(self, account: str) -> str:
        """An account's jobs, newest first (members ``<inverted ms>|<jobId>``)."""
        return self._k("jobs", _id(account))

    def file_jobs(self, file_id: str) -> str:
        """A file's jobs, newest first (members ``<inverted ms>|<jobId>``)."""
        return self._k("filejobs", _id(file_id))

    def console_session(self, session_id: str) -> str:
        """A signed-in console session (its account)."""
        return self._k("console", "session", session_id)

    def console_flash(self, session_id: str) -> str:
        """What the console says on a session's next page: set by an action, read once."""
        return self._k("console", "flash", session_id)

    def console_cookie_key(self) -> str:
        """What console session cookies are signed with (made once, shared by every pod)."""
        return self._k("console", "cookie-key")

    def upload_token(self, account: str, token: str) -> str:
        """A client-side upload token already used (each works once)."""
        return self._k("uptoken", _id(account), token)

    def account_docs(self, kind: str, account: str) -> str:
        """One document per account of ``kind`` (``saved``: saved extensions, ``fields``:
        custom metadata fields, ``apikeys``: the account's API keys, ``settings``: its own
        settings, such as its default webhook endpoint)."""
        if kind not in ACCOUNT_DOC_KINDS:
            raise ValueError(f"account documents: unknown kind {kind!r}")
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

    def webhook_account_index(self, account: str) -> str:
        """One account's deliveries by creation (its log: the console's webhooks page)."""
        return self._k("wh", "account", _id(account))

    def webhook_kick(self) -> str:
        """The once-a-second token of the pump (one wake-up call fleet-wide)."""
        return self._k("wh", "kick")

    def webhook_secret(self, account: str) -> str:
        """An account's encrypted signing secrets."""
        return self._k("wh", "secret", account)

    def webhook_kdf_salt(self) -> str:
        """The salt of the passphrase KDF that derives the secrets' encryption key."""
        return self._k("wh", "kdf-salt")

    def webhook_kdf_salt_before(self) -> str:
        """Where versions before the key-space fix kept the salt — the very key of account
        ``kdf-salt``'s secrets; ``webhooks.secrets`` moves a salt found there, once."""
        return self._k("wh", "secret", "kdf-salt")

    @staticmethod
    def broker_queue(queue: str) -> tuple[str, str, str]:
        """dramatiq's keys of ``queue``: ready list, delayed list, dead-letter set."""
        return f"dramatiq:{queue}", f"dramatiq:{queue}.DQ", f"dramatiq:{queue}.XQ"
