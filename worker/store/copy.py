"""``extworker store copy``: move a deployment's document store to another backend
(Redis → PostgreSQL, typically), resumable and verified.

The source is read in batches (``KV.export``: a SCAN cursor on Redis, key order on SQL)
and written to the destination (``KV.import_``: documents replace, index members add), so
copying an item twice changes nothing. After each batch the source's cursor is saved in
the state file: a copy that stops (a crash, Ctrl-C) starts again where it was. When the
source is exhausted both sides are summarised — per account the number of records and a
SHA-256 over them, plus the totals of documents and index members — and compared: the
copy is done only when they agree. Only the store's own keys leave Redis
(``Keys.is_store_key``); claims, sessions, queues and webhooks stay where they are. Writers
must be stopped during the copy (scale the API and workers to zero): a write to the
source after its batch was read is not copied, and the verification says so.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from worker.store.kv import Entry


class Exportable(Protocol):
    def export(self, cursor: str, count: int) -> tuple[str | None, list[Entry]]: ...

    def import_(self, entries: list[Entry]) -> None: ...


@dataclass
class Summary:
    """What a store holds, in a form two stores can be compared by."""

    documents: int = 0
    members: int = 0
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)  # files, checksum

    def differences(self, other: Summary) -> list[str]:
        out = []
        if (self.documents, self.members) != (other.documents, other.members):
            out.append(f"totals: {self.documents} documents, {self.members} index members "
                       f"vs {other.documents}, {other.members}")
        for account in sorted(set(self.accounts) | set(other.accounts)):
            a, b = self.accounts.get(account), other.accounts.get(account)
            if a != b:
                out.append(f"account {account}: {a} vs {b}")
        return out


def entries(kv: Exportable, batch: int, cursor: str = "") -> Iterator[tuple[str | None,
                                                                             list[Entry]]]:
    """Every batch of ``kv`` from ``cursor``, with the cursor after it."""
    while True:
        nxt, items = kv.export(cursor, batch)
        yield nxt, items
        if nxt is None:
            return
        cursor = nxt


def summarise(kv: Exportable, batch: int = 1000) -> Summary:
    """Per account (a document's ``accountId``): how many documents and a SHA-256 over
    their keys and canonical JSON in key order; the totals of documents and members."""
    out = Summary()
    per: dict[str, list[tuple[str, str]]] = {}
    for _, items in entries(kv, batch):
        for e in items:
            if e.members is not None:
                out.members += len(e.members)
                continue
            out.documents += 1
            account = e.value.get("accountId") if isinstance(e.value, dict) else None
            if isinstance(account, str):
                per.setdefault(account, []).append(
                    (e.key, json.dumps(e.value, sort_keys=True, separators=(",", ":"))))
    for account, docs in per.items():
        digest = hashlib.sha256()
        for key, text in sorted(docs):
            digest.update(key.encode() + b"\0" + text.encode() + b"\n")
        out.accounts[account] = {"documents": len(docs), "sha256": digest.hexdigest()}
    return out


@dataclass
class CopyReport:
    copied: int  # items written in this run (documents + index members)
    resumed: bool
    seconds: float
    source: Summary
    destination: Summary

    @property
    def differences(self) -> list[str]:
        return self.source.differences(self.destination)

    def to_json(self) -> dict[str, Any]:
        return {"copied": self.copied, "resumed": self.resumed,
                "seconds": round(self.seconds, 2), "verified": not self.differences,
                "differences": self.differences,
                "documents": self.source.documents, "indexMembers": self.source.members,
                "accounts": self.source.accounts}


def copy_id(source_url: str, destination_url: str) -> str:
    """What a state file belongs to: this source copied to this destination."""
    return hashlib.sha256(f"{source_url}\0{destination_url}".encode()).hexdigest()[:16]


def copy_store(source: Exportable, destination: Exportable, state: Path, source_id: str,
               batch: int = 500, progress: Callable[[int], None] | None = None,
               stop_after: int | None = None) -> CopyReport | None:
    """Copy ``source`` into ``destination``, resuming from ``state`` when it was written
    for the same ``source_id``; verified at the end. ``stop_after`` batches: stop early
    (returns ``None``; the state file says where) — how the tests cut a copy short."""
    t0 = time.monotonic()
    saved = json.loads(state.read_text()) if state.exists() else {}
    resumed = saved.get("source") == source_id and saved.get("cursor") is not None
    cursor = saved["cursor"] if resumed else ""
    copied, batches = 0, 0
    for nxt, items in entries(source, batch, cursor):
        if items:
            destination.import_(items)
        n = sum(len(e.members) if e.members is not None else 1 for e in items)
        copied += n
        if progress is not None:
            progress(n)
        _save(state, {"source": source_id, "cursor": nxt, "copied": saved.get("copied", 0)
                      * resumed + copied})
        batches += 1
        if stop_after is not None and batches >= stop_after and nxt is not None:
            return None
    report = CopyReport(copied, resumed, time.monotonic() - t0, summarise(source),
                        summarise(destination))
    if not report.differences:
        state.unlink(missing_ok=True)
    return report


def _save(state: Path, doc: dict[str, Any]) -> None:
    tmp = state.with_name(state.name + ".tmp")
    tmp.write_text(json.dumps(doc))
    tmp.replace(state)  # atomic: a crash leaves the old state or the new, never half


class RedisSource:
    """A Redis document store as a copy's source or destination: only the store's keys
    (``keys.is_store_key``) under the namespace."""

    def __init__(self, kv: Any, keys: Any) -> None:
        self.kv, self.keys = kv, keys

    def export(self, cursor: str, count: int) -> tuple[str | None, list[Entry]]:
        return self.kv.export(cursor, count, self.keys.pattern(), self.keys.is_store_key)

    def import_(self, entries: list[Entry]) -> None:
        self.kv.import_(entries)

    def count(self) -> int:
        """Documents + index members (a SCAN of the namespace, ZCARD of each index)."""
        client, total = self.kv.client, 0
        for batch in _chunks(k.decode() for k in client.scan_iter(self.keys.pattern(), 1000)):
            keys = [k for k in batch if self.keys.is_store_key(k)]
            pipe = client.pipeline(transaction=False)
            for k in keys:
                pipe.type(k)
            kinds = pipe.execute()
            pipe = client.pipeline(transaction=False)
            for k, kind in zip(keys, kinds, strict=True):
                if kind == b"zset":
                    pipe.zcard(k)
            total += sum(1 for kind in kinds if kind == b"string") + sum(pipe.execute())
        return total


def _chunks(it: Any, n: int = 1000) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for x in it:
        batch.append(x)
        if len(batch) >= n:
            yield batch
            batch = []
    if batch:
        yield batch
