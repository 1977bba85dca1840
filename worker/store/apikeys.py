"""API keys: the private keys the HTTP API authenticates, one account each.

A key is ``private_<43 random url-safe characters>`` (256 bits), shown once when created.
Stored is only its SHA-256 (a key is random, so a fast hash is enough: there is nothing to
guess a dictionary from), at ``keys.api_key(digest)``, and the account's list of key ids
(``<ns>:apikeys:<account>``). Revoking deletes both.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from worker.core.errors import PermanentError
from worker.core.records import now_iso
from worker.store.kv import DELETE, AccountDocs, Txn

PREFIX = "private_"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class ApiKeys(AccountDocs):
    prefix = "apikeys"

    def create(self, account: str) -> dict[str, Any]:
        """A new key for ``account``: ``{"id", "key", "accountId", "createdAt"}`` (the only
        time the key is shown)."""
        key = PREFIX + secrets.token_urlsafe(32)
        item = {"id": "key_" + digest(key)[:16], "accountId": account, "createdAt": now_iso(),
                "hint": key[:len(PREFIX) + 4] + "…"}
        index, record = self._key(account), self.settings.keys.api_key(digest(key))
        self.kv.transact([index, record], lambda cur: Txn(writes={
            index: {**(cur[index] or {}), item["id"]: {**item, "digest": digest(key)}},
            record: item}))
        return {**item, "key": key}

    def list(self, account: str) -> list[dict[str, Any]]:
        return sorted(({k: v for k, v in item.items() if k != "digest"}
                       for item in self._doc(account).values()), key=lambda i: i["createdAt"])

    def revoke(self, account: str, key_id: str) -> None:
        index = self._key(account)
        item = self._doc(account).get(key_id)
        if item is None:
            raise PermanentError(f"key not found: {key_id}", code="not_found")
        record = self.settings.keys.api_key(item["digest"])

        def txn(cur: dict[str, Any]) -> Txn[None]:
            doc = {k: v for k, v in (cur[index] or {}).items() if k != key_id}
            return Txn(writes={index: doc, record: DELETE})

        self.kv.transact([index, record], txn)

    def account_of(self, key: str) -> str | None:
        """The account a presented key belongs to (``None``: unknown or revoked)."""
        if not key.startswith(PREFIX) or len(key) > 200:
            return None
        item = self.kv.get(self.settings.keys.api_key(digest(key)))
        return item["accountId"] if isinstance(item, dict) else None
