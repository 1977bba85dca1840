"""One HTTP attempt: POST the body to a checked address, within one deadline.

Success is any 2xx within ``timeout_s`` for the **whole** exchange —
connect, headers and body — enforced with ``asyncio.timeout`` around it all,
so a receiver that trickles bytes cannot stretch it. Redirects are never
followed (3xx is a failure). At most 64 KiB of the response is read; the
first 1 KiB is kept for the delivery log.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx

from worker.core.egress import Target

MAX_READ = 64 * 1024
LOG_BYTES = 1024


@dataclass
class Attempt:
    status: int | None
    duration_ms: int
    error: str | None
    response: str
    retry_after_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


async def post(client: httpx.AsyncClient, target: Target, headers: dict[str, str],
               body: bytes, timeout_s: float) -> Attempt:
    t0 = time.monotonic()
    status: int | None = None
    got = bytearray()
    error: str | None = None
    retry_after = None
    try:
        async with asyncio.timeout(timeout_s):
            req = client.build_request(
                "POST", target.connect_url, content=body,
                headers={**headers, "Host": target.host_header,
                         "Content-Type": "application/json",
                         "User-Agent": "extworker-webhooks/0.1"},
                extensions={"sni_hostname": target.host},
            )
            resp = await client.send(req, stream=True, follow_redirects=False)
            try:
                status = resp.status_code
                if status in (429, 503):
                    retry_after = _retry_after(resp.headers.get("retry-after"))
                async for chunk in resp.aiter_raw():
                    got += chunk
                    if len(got) >= MAX_READ:
                        break
            finally:
                await resp.aclose()
    except TimeoutError:
        error = f"no complete response within {timeout_s:g} s"
        status = None
    except httpx.HTTPError as e:
        error = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        status = None
    if error is None and status is not None and not 200 <= status < 300:
        error = f"HTTP {status}" + (" (redirects are not followed)" if 300 <= status < 400 else "")
    return Attempt(
        status=status, duration_ms=int((time.monotonic() - t0) * 1000), error=error,
        response=bytes(got[:LOG_BYTES]).decode("utf-8", "replace"), retry_after_s=retry_after,
    )
