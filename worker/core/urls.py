"""Where clients fetch files: the file object's ``url``, ``thumbnail`` and versioned URLs.

Each account has a URL endpoint (``EXTWORKER_URL_ENDPOINT``, ``{account}`` standing for its
id; default ``EXTWORKER_API_URL/{account}``) that ``extworker api`` serves; a file's ``url``
is that endpoint + its ``filePath`` (what the SDKs' ``build_url(src=filePath)`` builds), its
``thumbnail`` the same with the named transformation ``n-ik_ml_thumbnail`` in the path, as
the hosted media API writes it. With ``EXTWORKER_PUBLIC_URL_BASE`` (a CDN in front of the
blob store's root) a public, published file's ``url`` is that base + the current version's
blob key instead: immutable bytes under a name that never changes meaning.

A versioned URL carries ``?updatedAt=<the version's createdAt, epoch ms>``: it always names
the same bytes, so delivery marks it immutable.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote

THUMBNAIL = "n-ik_ml_thumbnail"
# What delivery transforms (decoded by libvips from the bytes); SVG is an image but no
# raster: it is served as it is, sandboxed.
RASTER = frozenset({"image/jpeg", "image/png", "image/webp", "image/gif", "image/tiff",
                    "image/bmp", "image/avif", "image/heif", "image/heic"})
# What the SDKs leave unescaped in a path (RFC 3986 pchar minus what would split it).
PATH_SAFE = "/:@!$&'()*+,;=-._~"


def epoch_ms(iso: str) -> int:
    """``2026-12-02T10:00:00.123Z`` → epoch milliseconds."""
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


class Urls:
    """URLs of a file record (``worker.core.records.FileRecord``, duck-typed here: records
    import this module)."""

    def __init__(self, api_url: str, url_endpoint: str | None = None,
                 public_url_base: str | None = None) -> None:
        self.api_url = api_url.rstrip("/")
        self.template = (url_endpoint or "{api}/{account}").rstrip("/")
        self.public_url_base = public_url_base.rstrip("/") if public_url_base else None

    def endpoint(self, account: str) -> str:
        """The account's URL endpoint (what an SDK client's ``url_endpoint`` is set to)."""
        return self.template.format(api=self.api_url, account=quote(account, safe=""))

    def path(self, account: str, file_path: str, transformation: str | None = None) -> str:
        tr = f"/tr:{transformation}" if transformation else ""
        return self.endpoint(account) + tr + quote(file_path, safe=PATH_SAFE)

    def file(self, record: Any) -> str:
        if self.public_url_base and not record.isPrivateFile and record.isPublished:
            return f"{self.public_url_base}/{quote(record.current.blobKey, safe=PATH_SAFE)}"
        return self.path(record.accountId, record.filePath)

    def thumbnail(self, record: Any) -> str | None:
        if record.mime not in RASTER and not record.mime.startswith("video/"):
            return None  # a video's thumbnail is its opening keyframe
        return self.path(record.accountId, record.filePath, THUMBNAIL)

    def version(self, record: Any, version: Any, transformation: str | None = None) -> str:
        """A URL that always names this version's bytes (``transformation``: a derivative
        of them): immutable, so a new version never hides behind a cached old one."""
        return (self.path(record.accountId, record.filePath, transformation)
                + f"?updatedAt={epoch_ms(version.createdAt)}")

    def current_thumbnail(self, record: Any) -> str | None:
        """The thumbnail of the current version, version-addressed (what a grid shows)."""
        if self.thumbnail(record) is None:
            return None
        return self.version(record, record.current, THUMBNAIL)
