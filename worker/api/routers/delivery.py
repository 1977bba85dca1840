"""``GET|HEAD /<account>/[tr:<chain>/]<filePath>``: files as a browser, CDN or app fetches
them (``worker.delivery``), streamed from the blob store.

Every answer carries ``ETag`` (the version, and the derivative), ``Last-Modified``,
``Cache-Control`` (immutable for a versioned URL, ``private`` for a signed one), ``Accept-
Ranges`` and one ``Range`` honoured (206; 416 beyond the end), ``X-Content-Type-Options:
nosniff`` and a sandboxing ``Content-Security-Policy``: an SVG (or HTML) someone uploaded
never runs script in the API's origin; active types are also attachments.
"""

from __future__ import annotations

import re
from datetime import datetime
from email.utils import format_datetime, parsedate_to_datetime

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from worker.api.deps import DeliveryDep
from worker.core.errors import BlobNotFound, NotFound, RangeNotSatisfiable, RetryableError
from worker.delivery.service import rel_after_account

router = APIRouter()
YEAR = 365 * 24 * 3600
SANDBOX = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; sandbox"
ACTIVE = re.compile(r"^(image/svg\+xml|text/html|application/xhtml\+xml|text/xml|"
                    r"application/xml|text/javascript|application/javascript)")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(first, last)`` of one satisfiable ``Range``; ``None``: serve it whole (no header,
    another unit, several ranges); ``RangeNotSatisfiable`` (416) past the end."""
    if not header:
        return None
    m = _RANGE.match(header.strip())
    if m is None or (not m.group(1) and not m.group(2)):
        return None
    if not m.group(1):  # the last N bytes
        n = int(m.group(2))
        if n == 0:
            raise RangeNotSatisfiable("Range: nothing to send",
                                      headers={"Content-Range": f"bytes */{size}"})
        return max(0, size - n), size - 1
    first = int(m.group(1))
    last = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
    if first >= size or last < first:
        raise RangeNotSatisfiable(f"Range: starts beyond the {size} bytes",
                                  headers={"Content-Range": f"bytes */{size}"})
    return first, last


def _not_modified(request: Request, etag: str, modified: datetime) -> bool:
    inm = request.headers.get("if-none-match")
    if inm is not None:
        return etag in [t.strip().removeprefix("W/") for t in inm.split(",")] or inm == "*"
    ims = request.headers.get("if-modified-since")
    if ims:
        try:
            return modified.replace(microsecond=0) <= parsedate_to_datetime(ims)
        except (TypeError, ValueError):
            return False
    return False


@router.api_route("/{account}/{path:path}", methods=["GET", "HEAD"], include_in_schema=False)
async def deliver(request: Request, delivery: DeliveryDep, account: str, path: str) -> Response:
    settings = delivery.settings
    raw_path = (request.scope.get("raw_path") or request.url.path.encode()).decode("latin-1")
    raw_query = request.scope.get("query_string", b"").decode("latin-1")
    rel = rel_after_account(raw_path.split("?", 1)[0], request.scope.get("root_path", ""))
    target = await run_in_threadpool(delivery.locate, account, path,
                                     dict(request.query_params), rel, raw_query)
    version = target.version
    modified = datetime.fromisoformat(version.createdAt.replace("Z", "+00:00"))
    headers = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": SANDBOX,
               "Cross-Origin-Resource-Policy": "cross-origin", "Accept-Ranges": "bytes",
               "Last-Modified": format_datetime(modified, usegmt=True)}
    if target.expires is not None:
        left = max(0, int(target.expires - delivery.clock()))
        headers["Cache-Control"] = f"private, max-age={min(left, settings.delivery_max_age_s)}"
    elif target.immutable:
        headers["Cache-Control"] = f"public, max-age={YEAR}, immutable"
    else:
        headers["Cache-Control"] = f"public, max-age={settings.delivery_max_age_s}"
    data: bytes | None = None
    if target.chain:
        fmt = delivery.output(target, request.headers.get("accept", ""))
        if target.chain.format == "auto":
            headers["Vary"] = "Accept"
        derived = await delivery.derive(target, fmt)
        key, size, mime, etag, data = (derived.key, derived.size, derived.mime,
                                       f'"{derived.etag}"', derived.data)
        headers["X-Extworker-Derivative"] = "computed" if derived.computed else "stored"
    else:
        key, size, mime, etag = version.blobKey, version.size, version.mime, f'"{version.id}"'
    headers["ETag"] = etag
    if ACTIVE.match(mime):
        headers["Content-Disposition"] = "attachment"
    if _not_modified(request, etag, modified):
        return Response(status_code=304, headers=headers)
    span = byte_range(request.headers.get("range"), size)
    status = 200
    first, last = 0, size - 1
    if span is not None:
        first, last = span
        status = 206
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    headers["Content-Length"] = str(last - first + 1)
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers, media_type=mime)
    if data is not None:
        return Response(data[first:last + 1], status_code=status, headers=headers,
                        media_type=mime)
    try:
        chunks = await run_in_threadpool(delivery.blobs.open_range, key, first, last)
    except BlobNotFound:
        raise NotFound(f"The requested file does not exist: /{path}") from None
    except RetryableError:
        raise RetryableError("blob storage is unavailable",
                             headers={"Retry-After": "5"}) from None
    return StreamingResponse(chunks, status_code=status, headers=headers, media_type=mime)

