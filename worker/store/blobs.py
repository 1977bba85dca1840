"""Blob storage behind a small interface, on fsspec.

The default root is a local directory (``DATA_DIR/blobs``); any fsspec URL
works (``s3://bucket/prefix`` with s3fs installed, ``memory://`` in tests).
Keys are relative paths such as ``<fileId>/<versionId>/<name>``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import fsspec

from worker.core.errors import BlobNotFound, RetryableError


def _mtime(info: dict[str, Any]) -> float:
    """Modification time of an fsspec listing entry, whatever the filesystem calls it."""
    for name in ("mtime", "LastModified", "last_modified", "created"):
        value = info.get(name)
        if value is None:
            continue
        if isinstance(value, datetime):
            return value.timestamp()
        return float(value)
    return 0.0


class BlobStore:
    def __init__(self, root_url: str, public_url_base: str | None = None) -> None:
        self.fs, root = fsspec.core.url_to_fs(root_url)
        self.root = root.rstrip("/")
        self.root_url = root_url.rstrip("/")
        self.public_url_base = public_url_base.rstrip("/") if public_url_base else None

    def _path(self, key: str) -> str:
        if key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"bad blob key {key!r}")
        return f"{self.root}/{key}"

    def put(self, key: str, data: bytes) -> None:
        """Write ``data`` at ``key`` (whole-object; a partial write is never visible)."""
        path = self._path(key)
        try:
            self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            # Unique per writer: two executions of one slot (a redelivery racing the
            # original) may write the same key at once; each renames its own whole file.
            tmp = f"{path}.{uuid.uuid4().hex}.partial"
            with self.fs.open(tmp, "wb") as fh:
                fh.write(data)
            self.fs.mv(tmp, path)
        except OSError as e:
            raise RetryableError(f"blob storage write failed for {key}: {e}") from e

    def get(self, key: str) -> bytes:
        """The bytes at ``key``; ``BlobNotFound`` (permanent, naming the key) if none."""
        try:
            with self.fs.open(self._path(key), "rb") as fh:
                return fh.read()
        except FileNotFoundError:
            raise BlobNotFound(key) from None
        except OSError as e:
            raise RetryableError(f"blob storage read failed for {key}: {e}") from e

    def delete(self, key: str) -> None:
        try:
            self.fs.rm(self._path(key))
        except FileNotFoundError:
            pass

    def size(self, key: str) -> int:
        """Bytes stored at ``key``; ``BlobNotFound`` if there is nothing."""
        try:
            return int(self.fs.size(self._path(key)))
        except FileNotFoundError:
            raise BlobNotFound(key) from None
        except OSError as e:
            raise RetryableError(f"blob storage read failed for {key}: {e}") from e

    def keys(self, prefix: str = "") -> Iterator[tuple[str, float]]:
        """``(key, modified at, epoch s)`` of every blob under ``prefix`` (a listing: for
        operators' commands and tests, not a hot path)."""
        base = self._path(prefix.rstrip("/")) if prefix.strip("/") else self.root
        try:
            found = self.fs.find(base, detail=True)
        except FileNotFoundError:
            return
        for path, info in sorted(found.items()):
            key = path[len(self.root) + 1:] if path.startswith(self.root + "/") else path
            yield key, _mtime(info)

    def exists(self, key: str) -> bool:
        return bool(self.fs.exists(self._path(key)))

    def url(self, key: str) -> str:
        """Where a client fetches the blob: the public base if set, else the storage URL."""
        if self.public_url_base:
            return f"{self.public_url_base}/{key}"
        return f"{self.root_url}/{key}"
