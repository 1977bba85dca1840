"""Console sessions: sign in with an account's private key, then a cookie that carries a
session id — never the key.

The cookie is ``<session id>.<HMAC-SHA256 of it>`` under a key kept in Redis (made once,
shared by every API pod); the session (``<ns>:console:session:<id>``: the account, when it
started) lives in Redis for ``TTL_S`` and is deleted on sign-out. ``HttpOnly``,
``SameSite=Lax``, and ``Secure`` when the request came over TLS (directly or as the ingress
says in ``X-Forwarded-Proto``). Unsafe methods must come from the console's own origin
(``Sec-Fetch-Site: same-origin``, or an ``Origin`` equal to the request's host).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from typing import Any

COOKIE = "extworker_console"
TTL_S = 12 * 3600
FLASH_TTL_S = 120  # an action's message waits this long for the page it redirects to


class Sessions:
    def __init__(self, redis: Any, keys: Any) -> None:
        self.redis = redis
        self.keys = keys
        self._key: bytes | None = None

    def _signing_key(self) -> bytes:
        if self._key is None:
            name = self.keys.console_cookie_key()
            self.redis.set(name, base64.b64encode(secrets.token_bytes(32)), nx=True)
            self._key = base64.b64decode(self.redis.get(name))
        return self._key

    def _sign(self, sid: str) -> str:
        return hmac.new(self._signing_key(), sid.encode(), hashlib.sha256).hexdigest()

    def start(self, account: str) -> str:
        """A new session of ``account``: the cookie's value."""
        sid = secrets.token_urlsafe(32)
        self.redis.set(self.keys.console_session(sid),
                       json.dumps({"account": account, "at": time.time()}), ex=TTL_S)
        return f"{sid}.{self._sign(sid)}"

    def _sid(self, cookie: str | None) -> str | None:
        if not cookie or "." not in cookie:
            return None
        sid, sig = cookie.rsplit(".", 1)
        return sid if hmac.compare_digest(self._sign(sid), sig) else None

    def account(self, cookie: str | None) -> str | None:
        sid = self._sid(cookie)
        if sid is None:
            return None
        raw = self.redis.get(self.keys.console_session(sid))
        return json.loads(raw)["account"] if raw else None

    def flash(self, cookie: str | None, text: str, kind: str = "ok") -> None:
        """Say ``text`` on the session's next page (``kind``: ``ok`` or ``error``). Only the
        server says anything there: a page never shows text from its URL."""
        sid = self._sid(cookie)
        if sid is None:
            return
        key = self.keys.console_flash(sid)
        pipe = self.redis.pipeline()
        pipe.rpush(key, json.dumps({"text": text, "kind": kind}))
        pipe.expire(key, FLASH_TTL_S)
        pipe.execute()

    def take_flashes(self, cookie: str | None) -> list[dict[str, str]]:
        """What was said for this session since its last page, once."""
        sid = self._sid(cookie)
        if sid is None:
            return []
        key = self.keys.console_flash(sid)
        pipe = self.redis.pipeline()
        pipe.lrange(key, 0, -1)
        pipe.delete(key)
        said, _ = pipe.execute()
        return [json.loads(x) for x in said]

    def end(self, cookie: str | None) -> None:
        sid = self._sid(cookie)
        if sid is not None:
            self.redis.delete(self.keys.console_session(sid))


def same_origin(headers: Any, host: str) -> bool:
    """Whether an unsafe request comes from the console's own pages."""
    site = headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = headers.get("origin")
    if origin is None:
        return False  # a form post from a page always sends one of the two
    return origin.split("://", 1)[-1] == host
