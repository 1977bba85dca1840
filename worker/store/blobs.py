"""Blob storage behind a small interface, on fsspec.

The default root is a local directory (``DATA_DIR/blobs``); any fsspec URL works:
``s3://bucket/prefix`` (the ``s3`` extra: s3fs, configured the standard AWS way —
``AWS_ENDPOINT_URL``, the region, and botocore's credential chain: environment, web
identity / IRSA, instance profile), ``memory://`` in tests. Keys are relative paths such
as ``<fileId>/<versionId>/<name>``.

On a local directory a write goes to a temporary name and is renamed (a partial file is
never visible); on an object store it is one atomic PUT (s3fs: multipart above 100 MB),
never temp + rename, which there is a copy and a delete. A key that holds nothing is
``BlobNotFound`` (permanent, naming the key); any other failure of the store, once its
client's own retries are spent, is ``RetryableError``: the job waits for the store.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from worker.core.errors import BlobNotFound, RetryableError


@contextmanager
def _store_call(key: str, op: str) -> Iterator[None]:
    """Nothing at ``key`` → ``BlobNotFound``; a bad key's ``ValueError`` as it is; any
    other failure of the store → ``RetryableError``. Never swallows an error."""
    try:
        yield
    except FileNotFoundError:
        raise BlobNotFound(key) from None
    except (ValueError, BlobNotFound):
        raise
    except Exception as e:  # noqa: BLE001 - the store's failure, whatever its client raises
        raise RetryableError(f"blob storage {op} failed for {key}: "
                             f"{type(e).__name__}: {str(e)[:200]}") from e


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
        # S3: no listings cache — another node's new object must be seen at once.
        options = {"use_listings_cache": False} if root_url.startswith("s3://") else {}
        try:
            self.fs, root = fsspec.core.url_to_fs(root_url, **options)
        except ImportError as e:
            raise ImportError(f"blob storage {root_url.split('://')[0]}://: {e} "
                              "(pip install 'extworker[s3]')") from None
        self.root = root.rstrip("/")
        self.root_url = root_url.rstrip("/")
        self.public_url_base = public_url_base.rstrip("/") if public_url_base else None
        # Objects are written whole by one call; a directory needs temp + rename for that.
        self.renames = isinstance(self.fs, LocalFileSystem)

    def _path(self, key: str) -> str:
        if key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"bad blob key {key!r}")
        return f"{self.root}/{key}"

    def put(self, key: str, data: bytes) -> None:
        """Write ``data`` at ``key`` (whole-object; a partial write is never visible)."""
        path = self._path(key)
        with _store_call(key, "write"):
            if not self.renames:
                self.fs.pipe_file(path, data)
                return
            self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            # Unique per writer: two executions of one slot (a redelivery racing the
            # original) may write the same key at once; each renames its own whole file.
            tmp = f"{path}.{uuid.uuid4().hex}.partial"
            with self.fs.open(tmp, "wb") as fh:
                fh.write(data)
            self.fs.mv(tmp, path)

    def get(self, key: str) -> bytes:
        """The bytes at ``key``; ``BlobNotFound`` (permanent, naming the key) if none."""
        path = self._path(key)
        with _store_call(key, "read"), self.fs.open(path, "rb") as fh:
            return fh.read()

    def open_range(self, key: str, start: int = 0, end: int | None = None,
                   chunk: int = 256 * 1024) -> Iterator[bytes]:
        """The bytes ``start``..``end`` (inclusive; ``None``: to the end) at ``key``, as
        chunks: what delivery streams, never the whole object in memory (an object store's
        reads are ranged requests, at most ``chunk`` ahead). Opened here, so a missing key
        is ``BlobNotFound`` before the first chunk is asked for."""
        path = self._path(key)
        with _store_call(key, "read"):
            fh = self.fs.open(path, "rb") if self.renames else \
                self.fs.open(path, "rb", block_size=chunk)
            fh.seek(start)
        return self._chunks(fh, key, start, end, chunk)

    @staticmethod
    def _chunks(fh: Any, key: str, start: int, end: int | None, chunk: int
                ) -> Iterator[bytes]:
        with fh:
            left = None if end is None else end - start + 1
            while left is None or left > 0:
                with _store_call(key, "read"):
                    data = fh.read(chunk if left is None else min(chunk, left))
                if not data:
                    return
                if left is not None:
                    left -= len(data)
                yield data

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            with _store_call(key, "delete"):
                self.fs.rm(path)
        except BlobNotFound:
            pass  # deleting what is gone is no error

    def size(self, key: str) -> int:
        """Bytes stored at ``key``; ``BlobNotFound`` if there is nothing."""
        path = self._path(key)
        with _store_call(key, "read"):
            return int(self.fs.size(path))

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
        path = self._path(key)
        with _store_call(key, "read"):
            return bool(self.fs.exists(path))

    def url(self, key: str) -> str:
        """Where a client fetches the blob: the public base if set, else the storage URL."""
        if self.public_url_base:
            return f"{self.public_url_base}/{key}"
        return f"{self.root_url}/{key}"
