"""One signing secret per account (``whsec_…``), created on first use, rotatable.

Stored in Redis at ``<ns>:wh:secret:<account>``; encrypted with Fernet when
``EXTWORKER_SECRET_KEY`` is set (any passphrase: the Fernet key is derived
from it with SHA-256). After a rotation the previous secret stays valid for
``EXTWORKER_WEBHOOK_SECRET_GRACE_S``: deliveries carry both signatures.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time

import redis
from cryptography.fernet import Fernet, InvalidToken


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


class SecretStore:
    def __init__(self, client: redis.Redis, key_prefix: str, secret_key: str | None,
                 grace_s: int) -> None:
        self.client = client
        self.prefix = key_prefix
        self.fernet = (
            Fernet(base64.urlsafe_b64encode(hashlib.sha256(secret_key.encode()).digest()))
            if secret_key else None
        )
        self.grace_s = grace_s

    def _key(self, account: str) -> str:
        return f"{self.prefix}:{account}"

    def _seal(self, secret: str) -> str:
        return self.fernet.encrypt(secret.encode()).decode() if self.fernet else secret

    def _open(self, stored: str) -> str:
        if stored.startswith("whsec_"):
            return stored  # written without a SECRET_KEY
        if self.fernet is None:
            raise RuntimeError("webhook secrets are encrypted: set EXTWORKER_SECRET_KEY")
        try:
            return self.fernet.decrypt(stored.encode()).decode()
        except InvalidToken:
            raise RuntimeError("EXTWORKER_SECRET_KEY does not decrypt the stored secrets") from None

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
        return self._open(self._doc(account)["current"])

    def rotate(self, account: str, now: float | None = None) -> str:
        old = self.current(account)
        secret = new_secret()
        doc = {"current": self._seal(secret), "previous": self._seal(old),
               "rotatedAt": now if now is not None else time.time()}
        self.client.set(self._key(account), json.dumps(doc))
        return secret

    def signing_secrets(self, account: str, now: float | None = None) -> list[str]:
        """The secrets to sign with: the current one, plus the previous during its grace."""
        doc = self._doc(account)
        current = self._open(doc["current"])
        now = now if now is not None else time.time()
        if doc.get("previous") and doc.get("rotatedAt") and now - doc["rotatedAt"] < self.grace_s:
            return [current, self._open(doc["previous"])]
        return [current]
