"""Saved extensions, per account: reusable configurations referenced by id.

``{id: "ext_…", name, description, config, createdAt, updatedAt}``; ``config``
is any base extension except ``saved-extension``, validated with the same
models as a job's extensions. At most 100 per account. A job's
``{"name": "saved-extension", "id": …}`` is resolved at dispatch and the
resolved config is stored with the job, so edits apply to future jobs only.

All of an account's saved extensions are one document
(``<ns>:saved:<account>``), so the limit is enforced atomically.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

from worker.core.contract import Contract
from worker.core.errors import ErrorCode, NotFound, PermanentError
from worker.core.records import now_iso
from worker.core.settings import Settings
from worker.store.kv import KV, AccountDocs, Txn

MAX_SAVED = 100
_ID = re.compile(r"^ext_[A-Za-z0-9_]{1,64}$")


def validate_config(config: Any, contract: Contract) -> dict[str, Any]:
    """The config as stored, or ``PermanentError`` naming the field."""
    if isinstance(config, dict) and config.get("name") == "saved-extension":
        raise PermanentError("config.name: a saved extension cannot reference another one")
    try:
        model = contract.parse_extension(config, "config")
    except ValueError as e:
        raise PermanentError(str(e)) from None
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


class SavedStore(AccountDocs):
    prefix = "saved"

    def __init__(self, kv: KV, settings: Settings, contract: Contract) -> None:
        """``contract`` validates each config as a job's extension would be."""
        super().__init__(kv, settings)
        self.contract = contract

    def list(self, account: str) -> list[dict[str, Any]]:
        return sorted(self._doc(account).values(), key=lambda d: d["createdAt"])

    def get(self, account: str, ext_id: str) -> dict[str, Any] | None:
        return self._doc(account).get(ext_id)

    def create(self, account: str, name: str, description: str, config: Any,
               ext_id: str | None = None) -> dict[str, Any]:
        """A new saved extension. ``ext_id``: keep an id it has elsewhere (moving saved
        extensions from another deployment, so that the jobs naming them keep working)."""
        if not name.strip():
            raise PermanentError("name: must not be empty")
        if ext_id is not None and not _ID.match(ext_id):
            raise PermanentError("id: must be ext_ followed by 1-64 letters, digits or _")
        stored = validate_config(config, self.contract)
        now = now_iso()
        item = {"id": ext_id or "ext_" + uuid.uuid4().hex[:20], "name": name,
                "description": description, "config": stored, "createdAt": now, "updatedAt": now}
        key = self._key(account)

        def txn(cur: dict[str, Any]) -> Txn[None]:
            doc = cur[key] or {}
            if item["id"] in doc:
                raise PermanentError(f"id: a saved extension {item['id']} exists already",
                                     code=ErrorCode.EXISTS)
            if len(doc) >= MAX_SAVED:
                raise PermanentError(
                    f"account {account!r} already has {MAX_SAVED} saved extensions (the maximum)",
                    code=ErrorCode.LIMIT_REACHED)
            return Txn(writes={key: {**doc, item["id"]: item}})

        self.kv.transact([key], txn)
        return item

    def update(self, account: str, ext_id: str, *, name: str | None = None,
               description: str | None = None, config: Any = None) -> dict[str, Any]:
        stored = validate_config(config, self.contract) if config is not None else None
        key = self._key(account)

        def txn(cur: dict[str, Any]) -> Txn[dict[str, Any]]:
            doc = cur[key] or {}
            if ext_id not in doc:
                raise NotFound(f"saved extension not found: {ext_id}")
            item = dict(doc[ext_id])
            if name is not None:
                item["name"] = name
            if description is not None:
                item["description"] = description
            if stored is not None:
                item["config"] = stored
            item["updatedAt"] = now_iso()
            return Txn(writes={key: {**doc, ext_id: item}}, result=item)

        result = self.kv.transact([key], txn)
        assert result is not None
        return result

