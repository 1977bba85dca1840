"""Fetching a user-supplied URL (``bg_image_url``): guarded, time-boxed, size-capped."""

from __future__ import annotations

import httpx

from webhooks.urlguard import EgressPolicy, EgressRefused, check

from .errors import PermanentError


def fetch(url: str, policy: EgressPolicy, timeout_s: float, max_bytes: int) -> bytes:
    """GET ``url`` through the egress guard; ``PermanentError`` with the reason on failure.

    Headers must arrive within ``timeout_s``; the body may not exceed
    ``max_bytes``; redirects are not followed.
    """
    try:
        target = check(url, policy)
    except EgressRefused as e:
        raise PermanentError(f"cannot fetch {url}: {e}", code="url_refused") from None
    timeout = httpx.Timeout(timeout_s, read=timeout_s)
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
            req = client.build_request(
                "GET", target.connect_url, headers={"Host": target.host_header},
                extensions={"sni_hostname": target.host},
            )
            resp = client.send(req, stream=True)
            try:
                if resp.status_code != 200:
                    raise PermanentError(
                        f"cannot fetch {url}: HTTP {resp.status_code}", code="url_unreachable"
                    )
                declared = int(resp.headers.get("content-length") or 0)
                if declared > max_bytes:
                    raise PermanentError(
                        f"cannot fetch {url}: {declared} bytes is above the {max_bytes} limit",
                        code="url_too_large",
                    )
                chunks, total = [], 0
                for chunk in resp.iter_bytes():
                    total += len(chunk)
                    if total > max_bytes:
                        raise PermanentError(
                            f"cannot fetch {url}: body above the {max_bytes}-byte limit",
                            code="url_too_large",
                        )
                    chunks.append(chunk)
                return b"".join(chunks)
            finally:
                resp.close()
    except httpx.HTTPError as e:
        raise PermanentError(
            f"cannot fetch {url}: {type(e).__name__}: {e}", code="url_unreachable"
        ) from None
