"""The document store's contract: a small transactional store of JSON documents.

Everything stateful (file records, unit counters, job documents) is a JSON
document under a key, and every change is one ``transact`` call: read the
keys, compute the writes in Python, commit them all-or-nothing. Domain logic
is written once against this interface (``KV``); each engine is one module of
``worker.store.backends`` and only differs in how it makes a read-compute-write
atomic:

* ``backends.redis_kv.RedisKV`` — optimistic: ``WATCH`` the keys, read,
  ``MULTI``/``EXEC`` the writes; a concurrent change aborts the ``EXEC`` and the
  function runs again on fresh values.
* ``backends.sqlite_kv.LocalKV`` — SQLite (``sqlite3``, WAL): one ``BEGIN
  IMMEDIATE`` transaction per patch, for one node (``extworker apply``).
* ``backends.postgres_kv.PostgresKV`` — PostgreSQL (psycopg 3), row locks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

T = TypeVar("T")
DELETE = object()  # a write value meaning "remove the key"


@dataclass
class Txn(Generic[T]):
    """What a transaction function returns: the writes to commit and a result."""

    writes: dict[str, Any] = field(default_factory=dict)
    result: T | None = None
    ttl: dict[str, int] = field(default_factory=dict)  # seconds, per written key
    # Sorted indexes (members in byte order): added and removed with the writes.
    index_add: dict[str, list[str]] = field(default_factory=dict)
    index_remove: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Entry:
    """One exported item (``extworker store copy``): a document with its TTL (seconds), or
    (``members`` given) members of the sorted index at ``key``."""

    key: str
    value: Any
    ttl: int | None = None
    members: list[str] | None = None


def entries_txn(entries: list[Entry]) -> Txn[None]:
    """Exported entries as one transaction's writes: documents replace, members add."""
    txn: Txn[None] = Txn()
    for e in entries:
        if e.members is not None:
            txn.index_add.setdefault(e.key, []).extend(e.members)
        else:
            txn.writes[e.key] = e.value
            if e.ttl:
                txn.ttl[e.key] = e.ttl
    return txn


class KV(Protocol):
    def get(self, key: str) -> Any | None: ...

    def transact(self, keys: list[str], fn: Callable[[dict[str, Any]], Txn[T]]) -> T | None: ...

    def get_many(self, keys: list[str]) -> list[Any | None]:
        """``get`` of several keys in one round trip."""
        ...

    def index_range(self, key: str, prefix: str, offset: int, count: int) -> list[str]:
        """Members of the index at ``key`` that start with ``prefix``, in byte order."""
        ...

    def documents(self, prefix: str, batch: int = 500) -> Iterator[tuple[str, Any]]:
        """Every live document whose key starts with ``prefix`` (a scan, in batches: for
        operators' commands — the doctor — not for requests)."""
        ...


class AccountDocs:
    """Base of the per-account stores (saved extensions, metadata fields): all of an
    account's items are one dict document at ``<ns>:<prefix>:<account>``, so limits and
    uniqueness are enforced in one transaction."""

    prefix: str

    def __init__(self, kv: KV, settings: Any) -> None:
        self.kv = kv
        self.settings = settings

    def _key(self, account: str) -> str:
        return str(self.settings.keys.account_docs(self.prefix, account))

    def _doc(self, account: str) -> dict[str, Any]:
        return self.kv.get(self._key(account)) or {}

    def delete(self, account: str, member: str) -> bool:
        """Remove one item; ``False`` if it was not there."""
        return remove_member(self.kv, self._key(account), member)


def remove_member(kv: KV, key: str, member: str) -> bool:
    """Drop ``member`` from the dict document at ``key``; ``False`` if it was not there."""

    def txn(cur: dict[str, Any]) -> Txn[bool]:
        doc = cur[key] or {}
        if member not in doc:
            return Txn(result=False)
        return Txn(writes={key: {k: v for k, v in doc.items() if k != member}}, result=True)

    return bool(kv.transact([key], txn))
