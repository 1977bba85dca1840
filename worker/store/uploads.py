"""The upload side: where an upload's bytes come from, and what its path is.

An upload names its bytes in one of three ways:

* ``url`` — fetched by the worker through the egress guard (``fetch``: headers within
  ``EXTWORKER_FETCH_TIMEOUT_S``, everything within ``EXTWORKER_FETCH_DEADLINE_S``,
  ``EXTWORKER_UPLOAD_MAX_BYTES``, no redirects);
* ``blobKey`` — a relative key the upload service already wrote into the shared blob
  storage (``EXTWORKER_BLOB_URL``); keys that would leave the storage root are refused;
* ``base64`` — the bytes inside the job itself, for small files only: a job travels
  through Redis (stream entry, dispatch message, both held in memory and copied to
  replicas), so a 25 MB file there costs 33 MB of Redis memory per copy and stalls
  every other client while it is written. Capped by ``EXTWORKER_UPLOAD_BASE64_MAX_BYTES``.

Every failure is a ``PermanentError`` whose message names the field (``upload.url``…):
the job is rejected and nothing is written.
"""

from __future__ import annotations

import base64
import binascii
import posixpath
import re
import secrets
import string
from collections.abc import Callable

from worker.core.contract import Upload
from worker.core.errors import ErrorCode, PermanentError
from worker.store.blobs import BlobStore

_SUFFIX_ALPHABET = string.ascii_letters + string.digits
SUFFIX_LENGTH = 9  # the media API's unique suffixes look like `photo_Xk3j9aB2q.jpg`


def sanitize_file_name(name: str) -> str:
    """The upload API's rule: letters, digits, ``.`` and ``-`` stay; anything else is ``_``."""
    clean = "".join(ch if ch.isalnum() or ch in ".-" else "_" for ch in name)
    if clean.strip(".") == "":
        raise PermanentError(f"upload.fileName: {name[:60]!r} is not a usable file name",
                             code=ErrorCode.INVALID_UPLOAD)
    return clean


def normalise_folder(folder: str) -> str:
    """``"a//b c/"`` → ``"/a/b_c/"``: letters, digits, ``_`` and ``-`` in each level."""
    levels = [
        "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in level)
        for level in folder.split("/") if level
    ]
    return "/" + "".join(f"{level}/" for level in levels)


def unique_name(name: str, token: Callable[[], str] | None = None) -> str:
    """``photo.jpg`` → ``photo_Xk3j9aB2q.jpg`` (the suffix before the extension)."""
    suffix = token() if token else "".join(
        secrets.choice(_SUFFIX_ALPHABET) for _ in range(SUFFIX_LENGTH))
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        return f"{name}_{suffix}"
    return f"{stem}_{suffix}.{ext}"


def check_blob_key(key: str) -> str:
    """A relative key inside the storage root, or ``PermanentError``."""
    normal = posixpath.normpath(key)
    if (key.startswith("/") or "\\" in key or "\x00" in key or normal.startswith("..")
            or ".." in key.split("/") or re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", key)):
        raise PermanentError(
            f"upload.blobKey: {key[:100]!r} is outside the blob storage (use a relative key "
            "such as incoming/photo.jpg)", code=ErrorCode.INVALID_UPLOAD)
    return key


def decode_base64(text: str, max_bytes: int) -> bytes:
    """Plain base64 or a ``data:…;base64,`` URI, at most ``max_bytes`` once decoded."""
    if text.startswith("data:"):
        _, _, text = text.partition(",")
    if len(text) * 3 // 4 > max_bytes + 3:
        raise PermanentError(
            f"upload.base64: above the {max_bytes}-byte limit for inline files; put large "
            "files in blob storage (blobKey) or behind a URL", code=ErrorCode.UPLOAD_TOO_LARGE)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise PermanentError("upload.base64: not valid base64",
                             code=ErrorCode.INVALID_UPLOAD) from None


def read_source(upload: Upload, *, blobs: BlobStore, fetch: Callable[[str, int], bytes],
                max_bytes: int, base64_max_bytes: int) -> bytes:
    """The upload's bytes, from whichever source it names; ``PermanentError`` naming it."""
    if upload.base64 is not None:
        data = decode_base64(upload.base64, min(base64_max_bytes, max_bytes))
    elif upload.blobKey is not None:
        key = check_blob_key(upload.blobKey)
        try:
            size = blobs.size(key)
            if size > max_bytes:  # refused before a byte is read
                raise PermanentError(f"upload.blobKey: the file is {size} bytes, above the "
                                     f"{max_bytes}-byte limit", code=ErrorCode.UPLOAD_TOO_LARGE)
            data = blobs.get(key)
        except FileNotFoundError:
            raise PermanentError(f"upload.blobKey: no object at {key!r} in blob storage",
                                 code=ErrorCode.BLOB_NOT_FOUND) from None
        except ValueError as e:
            raise PermanentError(f"upload.blobKey: {e}", code=ErrorCode.INVALID_UPLOAD) from None
    else:
        try:
            data = fetch(str(upload.url), max_bytes)
        except PermanentError as e:
            raise PermanentError(f"upload.url: {e}", code=e.code) from None
    if len(data) > max_bytes:
        raise PermanentError(f"upload: the file is {len(data)} bytes, above the {max_bytes}-"
                             "byte limit", code=ErrorCode.UPLOAD_TOO_LARGE)
    if not data:
        raise PermanentError("upload: the file is empty (0 bytes)", code=ErrorCode.INVALID_UPLOAD)
    return data
