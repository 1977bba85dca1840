"""Fetching a user-supplied URL (``bg_image_url``, an upload's ``url``): guarded,
time-boxed, size-capped.

Two clocks, as the upload API documents them: the response headers must arrive within
``header_timeout_s`` (8 s by default), and the **whole** exchange — connect, headers,
body — must end within ``deadline_s``. The deadline is ``asyncio.timeout`` around it
all (as the webhook sender does), so a server that trickles a byte a second cannot
stretch a fetch: httpx's own timeouts apply per read and never fire on a trickle.
"""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlsplit, urlunsplit

import httpx

from worker.core.egress import EgressPolicy, EgressRefused, check
from worker.core.errors import ErrorCode, PermanentError


def display_url(url: str) -> str:
    """``url`` without its query and fragment: presigned URLs carry credentials there,
    and error messages travel into records, job documents and webhooks."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    hidden = "?…" if parts.query else ""
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", "")) + hidden


async def _get(url: str, target_url: str, host: str, host_header: str,
               header_timeout_s: float, max_bytes: int, deadline: float) -> bytes:
    shown = display_url(url)
    timeout = httpx.Timeout(header_timeout_s)
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False,
                                 trust_env=False) as client:
        req = client.build_request("GET", target_url, headers={"Host": host_header},
                                   extensions={"sni_hostname": host})
        async with asyncio.timeout(header_timeout_s):  # headers, however they trickle
            resp = await client.send(req, stream=True)
        try:
            if resp.status_code != 200:
                raise PermanentError(f"cannot fetch {shown}: HTTP {resp.status_code}"
                                     + (" (redirects are not followed)"
                                        if 300 <= resp.status_code < 400 else ""),
                                     code=ErrorCode.URL_UNREACHABLE)
            declared = int(resp.headers.get("content-length") or 0)
            if declared > max_bytes:
                raise PermanentError(
                    f"cannot fetch {shown}: {declared} bytes is above the {max_bytes}-byte "
                    "limit", code=ErrorCode.URL_TOO_LARGE)
            chunks, total = [], 0
            async with asyncio.timeout_at(deadline):
                async for chunk in resp.aiter_bytes():
                    total += len(chunk)
                    if total > max_bytes:
                        raise PermanentError(
                            f"cannot fetch {shown}: body above the {max_bytes}-byte limit",
                            code=ErrorCode.URL_TOO_LARGE)
                    chunks.append(chunk)
            return b"".join(chunks)
        finally:
            await resp.aclose()


def fetch(url: str, policy: EgressPolicy, timeout_s: float, max_bytes: int,
          deadline_s: float | None = None) -> bytes:
    """GET ``url`` through the egress guard; ``PermanentError`` with the reason on failure.

    Headers must arrive within ``timeout_s``; everything must end within ``deadline_s``
    (default: twice ``timeout_s``); the body may not exceed ``max_bytes``; redirects are
    not followed. The error names the URL without its query string.
    """
    shown = display_url(url)
    try:
        target = check(url, policy)
    except EgressRefused as e:
        raise PermanentError(f"cannot fetch {shown}: {e}", code=ErrorCode.URL_REFUSED) from None
    limit = deadline_s if deadline_s is not None else 2 * timeout_s

    async def run() -> bytes:
        deadline = asyncio.get_running_loop().time() + limit
        async with asyncio.timeout_at(deadline):
            return await _get(url, target.connect_url, target.host, target.host_header,
                              min(timeout_s, limit), max_bytes, deadline)

    started = time.monotonic()
    try:
        return asyncio.run(run())
    except TimeoutError:
        waited = time.monotonic() - started
        raise PermanentError(
            f"cannot fetch {shown}: no complete response within {min(waited, limit):.0f} s "
            f"(headers within {timeout_s:g} s, everything within {limit:g} s)",
            code=ErrorCode.URL_UNREACHABLE) from None
    except httpx.HTTPError as e:
        raise PermanentError(
            f"cannot fetch {shown}: {type(e).__name__}" + (f": {e}" if str(e) else ""),
            code=ErrorCode.URL_UNREACHABLE) from None
