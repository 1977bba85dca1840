"""One exception tree for the whole service, and every error code in one enum.

``PermanentError`` is bad input: the extension ends ``failed`` with the message, and the
message is never retried. ``RetryableError`` is infrastructure: dramatiq retries the message
with backoff. Third-party errors are translated at the boundary where they happen
(``raise X(...) from e``).

Each class carries the HTTP status it is answered with (``status``) and its ``ErrorCode``:
the API's one exception handler reads both from the error, never from its text. A code
stored in a job document maps back to its class with ``error_class``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar


class ErrorCode(StrEnum):
    """Every code a job document, webhook or API answer carries (the values are the wire
    form: job documents and webhooks keep them as they were)."""

    INTERNAL_ERROR = "internal_error"
    INVALID_INPUT = "invalid_input"
    INVALID_JOB = "invalid_job"
    INVALID_REQUEST = "invalid_request"
    INVALID = "invalid"
    INVALID_PARAMS = "invalid_params"
    INVALID_QUERY = "invalid_query"
    INVALID_UPLOAD = "invalid_upload"
    INVALID_METADATA = "invalid_metadata"
    INVALID_IMAGE = "invalid_image"
    INVALID_TRANSFORMATION = "invalid_transformation"
    INVALID_BODY = "invalid_body"
    UNKNOWN_FIELD = "unknown_field"
    MISCONFIGURED = "misconfigured"
    EMPTY_OUTPUT = "empty_output"
    NOT_AVAILABLE = "not_available"
    NOT_FOUND = "not_found"
    FILE_NOT_FOUND = "file_not_found"
    VERSION_NOT_FOUND = "version_not_found"
    BLOB_NOT_FOUND = "blob_not_found"
    SAVED_EXTENSION_NOT_FOUND = "saved_extension_not_found"
    FILE_EXISTS = "file_exists"
    EXISTS = "exists"
    CONFLICT = "conflict"
    LIMIT_REACHED = "limit_reached"
    VERSION_LIMIT = "version_limit"
    QUOTA_EXCEEDED = "quota_exceeded"
    UPLOAD_TOO_LARGE = "upload_too_large"
    IMAGE_TOO_LARGE = "image_too_large"
    BODY_TOO_LARGE = "body_too_large"
    RANGE_NOT_SATISFIABLE = "range_not_satisfiable"
    URL_UNREACHABLE = "url_unreachable"
    URL_TOO_LARGE = "url_too_large"
    URL_REFUSED = "url_refused"
    MODEL_MISSING = "model_missing"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    SIGN_IN = "sign_in"
    TEMPORARILY_UNAVAILABLE = "temporarily_unavailable"
    BUSY = "busy"
    INTAKE_FULL = "intake_full"
    PATH_TAKEN = "path_taken"


class ExtworkerError(Exception):
    """Base of every error this package raises on purpose: a message, a code, the HTTP
    status it is answered with and the headers that go with it (``Retry-After``, …)."""

    code: ErrorCode = ErrorCode.INTERNAL_ERROR
    status: ClassVar[int] = 500
    headers: dict[str, str] | None = None
    _by_code: ClassVar[dict[ErrorCode, type[ExtworkerError]]] = {}

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" not in cls.__dict__:  # built from a message alone
            ExtworkerError._by_code.setdefault(cls.code, cls)

    def __init__(self, message: str = "", code: ErrorCode | str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        if code:
            self.code = ErrorCode(code)
        if headers:
            self.headers = headers

    @property
    def message(self) -> str:
        return str(self)


def error_class(code: str | None) -> type[ExtworkerError]:
    """The class whose code is ``code`` (a stored job error's): ``PermanentError`` for a
    code no class owns."""
    try:
        return ExtworkerError._by_code.get(ErrorCode(code or ""), PermanentError)
    except ValueError:
        return PermanentError


class PermanentError(ExtworkerError):
    """The input can never succeed as given; the message says what to change."""

    code = ErrorCode.INVALID_INPUT
    status = 400


class RetryableError(ExtworkerError):
    """A dependency failed (Redis, storage, a remote host); trying again may work."""

    code = ErrorCode.TEMPORARILY_UNAVAILABLE
    status = 503


class Busy(RetryableError):
    """Too much in flight right now (delivery's derivative slots): try again in a second."""

    code = ErrorCode.BUSY
    headers = {"Retry-After": "1"}


class IntakeFull(RetryableError):
    """The intake stream holds ``intake_maxlen`` unread jobs."""

    code = ErrorCode.INTAKE_FULL


class NotFound(PermanentError):
    """What was named does not exist (or belongs to another account): 404."""

    code = ErrorCode.NOT_FOUND
    status = 404


class FileNotFound(NotFound):
    code = ErrorCode.FILE_NOT_FOUND


class VersionNotFound(NotFound):
    code = ErrorCode.VERSION_NOT_FOUND


class SavedExtensionNotFound(NotFound):
    code = ErrorCode.SAVED_EXTENSION_NOT_FOUND


class NotAvailable(PermanentError):
    """An extension this deployment does not run (not installed, or turned off)."""

    code = ErrorCode.NOT_AVAILABLE


class Conflict(PermanentError):
    """The request collides with what is stored (a path taken, a name in use): 409."""

    code = ErrorCode.CONFLICT
    status = 409


class FileExists(Conflict):
    code = ErrorCode.FILE_EXISTS


class PathTaken(ExtworkerError):
    """A path moved under a transaction: the caller picks another or retries."""

    code = ErrorCode.PATH_TAKEN
    status = 409


class Unauthorized(PermanentError):
    """No key, a wrong key, a bad or reused signature: 401."""

    code = ErrorCode.UNAUTHORIZED
    status = 401


class Forbidden(PermanentError):
    code = ErrorCode.FORBIDDEN
    status = 403


class SignInRequired(Unauthorized):
    """The console without a session: its pages redirect to the sign-in form."""

    code = ErrorCode.SIGN_IN
    status = 303


class TooLarge(PermanentError):
    """A body or file over its limit: 413."""

    code = ErrorCode.BODY_TOO_LARGE
    status = 413


class RangeNotSatisfiable(PermanentError):
    code = ErrorCode.RANGE_NOT_SATISFIABLE
    status = 416


class EgressRefused(PermanentError):
    """A URL the egress policy refuses (a private address, a scheme, credentials)."""

    code = ErrorCode.URL_REFUSED


class BlobNotFound(PermanentError, FileNotFoundError):
    """Nothing is stored at a blob key: permanent (the bytes will not appear by retrying),
    and named by its key — never by a server's path. Also a ``FileNotFoundError``, for code
    that reads blobs like files. A 400 where a request names a blob (an upload's
    ``blobKey``); delivery answers a missing version's bytes as a 404 itself."""

    code = ErrorCode.BLOB_NOT_FOUND

    def __init__(self, key: str) -> None:
        PermanentError.__init__(self, f"blob not found: {key}")
        self.key = key

    def __str__(self) -> str:
        return f"blob not found: {self.key}"


class QuotaExceeded(PermanentError):
    code = ErrorCode.QUOTA_EXCEEDED

    def __init__(self) -> None:
        super().__init__("extension unit quota exceeded")


class ModelMissing(PermanentError):
    """A model is not in ``MODELS_DIR``; nothing downloads at run time."""

    code = ErrorCode.MODEL_MISSING

    def __init__(self, name: str) -> None:
        super().__init__(
            f"model {name!r} is not installed in MODELS_DIR; run `extworker models pull {name}`"
        )
