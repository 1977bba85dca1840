"""One signing secret per account (``whsec_…``), created on first use, rotatable.

Stored in Redis at ``<ns>:wh:secret:<account>``; encrypted with Fernet when
``EXTWORKER_SECRET_KEY`` is set. That setting is a comma-separated list of keys,
newest first (``MultiFernet``: the first encrypts, all decrypt; a secret read with an
older key is re-encrypted with the first, so a key can be retired once every
account has been read). Each entry is a real Fernet key (``Fernet.generate_key()``)
or a passphrase, stretched with scrypt and a random salt kept in Redis
(``<ns>:wh:kdf-salt``; earlier versions kept it at ``<ns>:wh:secret:kdf-salt``, the key of
account ``kdf-salt``'s secrets — a salt found there is moved, once, atomically). Secrets
written by earlier versions (an unsalted SHA-256 of the passphrase) still open, and are
re-encrypted on read.

After a rotation the previous secret stays valid for
``EXTWORKER_WEBHOOK_SECRET_GRACE_S``: deliveries carry both signatures. Rotation
is a WATCH/MULTI transaction: two rotations at once never lose a secret.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Callable

import redis
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from worker.core.keys import Keys

# KEYS: salt, where earlier versions kept it; ARGV: a fresh salt. The salt — moved from the
# old key when one is there (24 base64 characters of 16 bytes; an account's secrets document
# there is JSON or a token, and stays) — else the fresh one; never replaced once set.
_SALT = """
local cur = redis.call('GET', KEYS[1])
if cur then return cur end
local old = redis.call('GET', KEYS[2])
local salt = ARGV[1]
if old and string.len(old) == 24 and string.sub(old, -2) == '==' then
  salt = old
  redis.call('DEL', KEYS[2])
end
redis.call('SET', KEYS[1], salt)
return salt
"""


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def _is_fernet_key(value: str) -> bool:
    try:
        return len(base64.urlsafe_b64decode(value.encode())) == 32 and len(value) == 44
    except ValueError:
        return False


class SecretStore:
    def __init__(self, client: redis.Redis, keys: Keys, secret_key: str | None,
                 grace_s: int) -> None:
        self.client = client
        self.redis_keys = keys
        self.keys = [k.strip() for k in (secret_key or "").split(",") if k.strip()]
        self.grace_s = grace_s
        self._fernet: MultiFernet | None = None
        self._primary: Fernet | None = None

    @property
    def fernet(self) -> MultiFernet | None:
        """Built on first use (scrypt costs ~50 ms and the salt is read from Redis)."""
        if self._fernet is None and self.keys:
            salt = self._salt()
            fernets = [Fernet(k.encode()) if _is_fernet_key(k) else Fernet(
                base64.urlsafe_b64encode(Scrypt(salt=salt, length=32, n=2 ** 14, r=8,
                                                p=1).derive(k.encode())))
                for k in self.keys]
            # Decrypt-only: what versions before the salted KDF wrote.
            fernets += [Fernet(base64.urlsafe_b64encode(hashlib.sha256(k.encode()).digest()))
                        for k in self.keys if not _is_fernet_key(k)]
            self._primary, self._fernet = fernets[0], MultiFernet(fernets)
        return self._fernet

    def _salt(self) -> bytes:
        k = self.redis_keys
        raw = self.client.eval(_SALT, 2, k.webhook_kdf_salt(), k.webhook_kdf_salt_before(),
                               base64.b64encode(os.urandom(16)))
        return base64.b64decode(raw)

    def _key(self, account: str) -> str:
        return self.redis_keys.webhook_secret(account)

    def _seal(self, secret: str) -> str:
        return self.fernet.encrypt(secret.encode()).decode() if self.fernet else secret

    def _open(self, stored: str) -> str:
        if stored.startswith("whsec_"):
            return stored  # written without a SECRET_KEY
        return self._decrypt(stored, "webhook secrets are", "secrets")

    def _decrypt(self, stored: str, encrypted: str, what: str) -> str:
        fernet = self.fernet
        if fernet is None:
            raise RuntimeError(f"{encrypted} encrypted: set EXTWORKER_SECRET_KEY")
        try:
            return fernet.decrypt(stored.encode()).decode()
        except InvalidToken:
            raise RuntimeError(f"EXTWORKER_SECRET_KEY does not decrypt the stored {what}") from None

    def seal(self, text: str) -> str:
        """``text`` as stored at rest: Fernet-encrypted with the first key, or — without
        ``EXTWORKER_SECRET_KEY`` — marked plain (what other secrets here do then)."""
        return self.fernet.encrypt(text.encode()).decode() if self.fernet else "plain:" + text

    def unseal(self, stored: str) -> str:
        """What ``seal`` stored; ``RuntimeError`` if no key given here opens it."""
        if stored.startswith("plain:"):
            return stored[len("plain:"):]
        return self._decrypt(stored, "this value is", "value")

    def _stale(self, stored: str | None) -> bool:
        """Whether ``stored`` was encrypted with another key than the first."""
        if not stored or stored.startswith("whsec_") or self.fernet is None:
            return False
        assert self._primary is not None
        try:
            self._primary.decrypt(stored.encode())
            return False
        except InvalidToken:
            return True

    def _load(self, account: str) -> dict | None:
        raw = self.client.get(self._key(account))
        return None if raw is None else json.loads(raw)

    def _doc(self, account: str) -> dict:
        """The account's secret document, created on first use (race-safe: SET NX)."""
        doc = self._load(account)
        if doc is None:
            fresh = {"current": self._seal(new_secret()), "previous": None, "rotatedAt": None}
            self.client.set(self._key(account), json.dumps(fresh), nx=True)
            doc = self._load(account)
            assert doc is not None
        return doc

    def current(self, account: str) -> str:
        """The account's secret, created on first use."""
        doc = self._doc(account)
        if self._stale(doc["current"]) or self._stale(doc.get("previous")):
            self._reseal(account)
        return self._open(doc["current"])

    def _reseal(self, account: str) -> None:
        """Re-encrypt the account's secrets with the first key (after a key rotation)."""
        self._update(account, lambda doc: {**doc, "current": self._seal(
            self._open(doc["current"])), "previous": self._seal(self._open(doc["previous"]))
            if doc.get("previous") else None})

    def rotate(self, account: str, now: float | None = None) -> str:
        """A new current secret; the one it replaces stays valid for the grace period."""
        when = now if now is not None else time.time()
        fresh: list[str] = []

        def change(doc: dict) -> dict:
            fresh[:] = [new_secret()]
            return {"current": self._seal(fresh[0]), "previous": doc["current"],
                    "rotatedAt": when}

        self._update(account, change)
        return fresh[0]

    def _update(self, account: str, change: Callable[[dict], dict]) -> None:
        """Read-modify-write of the account's document under WATCH (retried on a race)."""
        key = self._key(account)
        self._doc(account)
        with self.client.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    assert raw is not None
                    doc = change(json.loads(raw))
                    pipe.multi()
                    pipe.set(key, json.dumps(doc))
                    pipe.execute()
                    return
                except redis.WatchError:
                    continue

    def signing_secrets(self, account: str, now: float | None = None) -> list[str]:
        """The secrets to sign with: the current one, plus the previous during its grace."""
        doc = self._doc(account)
        current = self._open(doc["current"])
        now = now if now is not None else time.time()
        if doc.get("previous") and doc.get("rotatedAt") and now - doc["rotatedAt"] < self.grace_s:
            return [current, self._open(doc["previous"])]
        return [current]
