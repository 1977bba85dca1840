"""API keys: the private keys the HTTP API authenticates, one account each.

A key is ``private_<43 random url-safe characters>`` (256 bits), shown once when created.
Looked up by its SHA-256 (a key is random, so a fast hash is enough: there is nothing to
guess a dictionary from), at ``keys.api_key(digest)``, and listed in the account's document
(``<ns>:apikeys:<account>``). Revoking deletes both.

Each key comes with its public key (``public_…``, what client-side uploads send) and, with a
``Sealer`` (the runtime's: Fernet under ``EXTWORKER_SECRET_KEY``), a sealed copy of the
private key: the SDKs sign URLs (``ik-s``) and client-side upload tokens with the private key
itself (HMAC), so checking a signature needs it. Keys created without a sealer (or before
this version) authenticate but cannot check signatures: ``signing_keys`` skips them.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any, Protocol

from worker.core.errors import ErrorCode, NotFound, PermanentError
from worker.core.records import now_iso
from worker.store.kv import DELETE, AccountDocs, Txn

PREFIX = "private_"
PUBLIC_PREFIX = "public_"
# An account's files are served at /<account>/…: these would shadow the API's own paths.
RESERVED_ACCOUNTS = frozenset({"api", "v1", "v2", "metrics", "healthz", "readyz", "docs",
                               "redoc", "openapi.json", "console", "static"})
_HIDDEN = ("digest", "publicDigest", "sealed")


class Sealer(Protocol):
    def seal(self, text: str) -> str: ...

    def unseal(self, stored: str) -> str: ...


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeys(AccountDocs):
    prefix = "apikeys"

    def __init__(self, kv: Any, settings: Any, sealer: Sealer | None = None) -> None:
        super().__init__(kv, settings)
        self.sealer = sealer

    def create(self, account: str) -> dict[str, Any]:
        """A new key for ``account``: ``{"id", "key", "publicKey", "accountId",
        "createdAt"}`` (the only time the private key is shown)."""
        if account in RESERVED_ACCOUNTS:
            raise PermanentError(f"account: {account!r} is a path of the API (its files would "
                                 f"be served at /{account}/…): choose another id",
                                 code=ErrorCode.INVALID_REQUEST)
        key = PREFIX + secrets.token_urlsafe(32)
        public = PUBLIC_PREFIX + secrets.token_urlsafe(18)
        item = {"id": "key_" + digest(key)[:16], "accountId": account, "createdAt": now_iso(),
                "hint": key[:len(PREFIX) + 4] + "…", "publicKey": public}
        stored = {**item, "digest": digest(key), "publicDigest": digest(public)}
        if self.sealer is not None:
            stored["sealed"] = self.sealer.seal(key)
        keys = self.settings.keys
        index, record = self._key(account), keys.api_key(digest(key))
        public_record = keys.api_key(digest(public))
        self.kv.transact([index, record, public_record], lambda cur: Txn(writes={
            index: {**(cur[index] or {}), item["id"]: stored},
            record: item, public_record: {**item, "kind": "public"}}))
        return {**item, "key": key}

    def list(self, account: str) -> list[dict[str, Any]]:
        return sorted(({k: v for k, v in item.items() if k not in _HIDDEN}
                       for item in self._doc(account).values()), key=lambda i: i["createdAt"])

    def signing_keys(self, account: str) -> list[str]:
        """The account's private keys that signatures can be checked with."""
        if self.sealer is None:
            return []
        return [self.sealer.unseal(item["sealed"]) for item in self._doc(account).values()
                if item.get("sealed")]

    def by_public(self, public_key: str) -> tuple[str, str | None] | None:
        """``(account, its private key or None if not sealed)`` of a public key."""
        if not public_key.startswith(PUBLIC_PREFIX) or len(public_key) > 200:
            return None
        item = self.kv.get(self.settings.keys.api_key(digest(public_key)))
        if not isinstance(item, dict) or item.get("kind") != "public":
            return None
        stored = self._doc(item["accountId"]).get(item["id"]) or {}
        sealed = stored.get("sealed")
        return item["accountId"], (self.sealer.unseal(sealed)
                                   if sealed and self.sealer is not None else None)

    def revoke(self, account: str, key_id: str) -> None:
        index = self._key(account)
        item = self._doc(account).get(key_id)
        if item is None:
            raise NotFound(f"key not found: {key_id}")
        records = [self.settings.keys.api_key(item[k]) for k in ("digest", "publicDigest")
                   if item.get(k)]

        def txn(cur: dict[str, Any]) -> Txn[None]:
            doc = {k: v for k, v in (cur[index] or {}).items() if k != key_id}
            return Txn(writes={index: doc, **{r: DELETE for r in records}})

        self.kv.transact([index, *records], txn)

    def account_of(self, key: str) -> str | None:
        """The account a presented key belongs to (``None``: unknown or revoked)."""
        if not key.startswith(PREFIX) or len(key) > 200:
            return None
        item = self.kv.get(self.settings.keys.api_key(digest(key)))
        if not isinstance(item, dict) or item.get("kind") == "public":
            return None
        return item["accountId"]
