"""One exception tree for the whole service.

``PermanentError`` is bad input: the extension ends ``failed`` with the
message, and the message is never retried. ``RetryableError`` is
infrastructure: dramatiq retries the message with backoff. Third-party errors
are translated at the boundary where they happen (``raise X(...) from e``).
"""

from __future__ import annotations


class ExtworkerError(Exception):
    """Base of every error this package raises on purpose."""

    code = "internal_error"


class PermanentError(ExtworkerError):
    """The input can never succeed as given; the message says what to change."""

    code = "invalid_input"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code:
            self.code = code


class RetryableError(ExtworkerError):
    """A dependency failed (Redis, storage, a remote host); trying again may work."""

    code = "temporarily_unavailable"


class BlobNotFound(PermanentError, FileNotFoundError):
    """Nothing is stored at a blob key: permanent (the bytes will not appear by retrying),
    and named by its key — never by a server's path. Also a ``FileNotFoundError``, for code
    that reads blobs like files."""

    code = "blob_not_found"

    def __init__(self, key: str) -> None:
        PermanentError.__init__(self, f"blob not found: {key}")
        self.key = key

    def __str__(self) -> str:
        return f"blob not found: {self.key}"


class QuotaExceeded(PermanentError):
    code = "quota_exceeded"

    def __init__(self) -> None:
        super().__init__("extension unit quota exceeded")


class ModelMissing(PermanentError):
    """A model is not in ``MODELS_DIR``; nothing downloads at run time."""

    code = "model_missing"

    def __init__(self, name: str) -> None:
        super().__init__(
            f"model {name!r} is not installed in MODELS_DIR; run `extworker models pull {name}`"
        )
