"""A small transactional document store, with a Redis and an embedded backend.

Everything stateful (file records, unit counters, job documents) is a JSON
document under a key, and every change is one ``transact`` call: read the
keys, compute the writes in Python, commit them all-or-nothing. Domain logic
is written once against this interface; the backends only differ in how they
make a read-compute-write atomic:

* ``RedisKV`` — optimistic: ``WATCH`` the keys, read, ``MULTI``/``EXEC`` the
  writes; a concurrent change aborts the ``EXEC`` and the function runs again
  on fresh values. Writes to several keys land together or not at all.
* ``LocalKV`` — SQLite (``sqlite3``, WAL): one ``BEGIN IMMEDIATE`` transaction per
  patch, for the Redis-less ``extworker apply``.
"""

from __future__ import annotations

import json
import random
import re
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import redis

from worker.core.errors import RetryableError

T = TypeVar("T")
DELETE = object()  # a write value meaning "remove the key"
_INDEX = "__index__:"  # the earlier file-per-key LocalKV kept an index under this key


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


def persistence_problem(client: redis.Redis) -> str | None:
    """Why this Redis would lose what it holds on a restart — file records, jobs, units and
    webhook deliveries live there — or None when it persists (AOF on, or at least one RDB
    save point). Where ``CONFIG`` is disabled (managed Redis), AOF is read from ``INFO``;
    snapshots cannot be seen there, so nothing is claimed."""
    try:
        conf = {**client.config_get("appendonly"), **client.config_get("save")}
        aof, save = _text(conf.get("appendonly")) == "yes", _text(conf.get("save")).strip()
    except redis.ResponseError:
        return None
    if aof or save:
        return None
    return ("redis: no persistence (appendonly no, no save points): a restart loses every "
            "file record, job, unit count and webhook delivery; turn on AOF (appendonly yes)")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


OUTAGE_ERRORS = (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)


def through_outage(op: Callable[[], T], wait_s: float,
                   errors: tuple[type[BaseException], ...] = OUTAGE_ERRORS) -> T:
    """Run ``op``; while Redis is unreachable (or loading its data after a restart), wait
    and try again for up to ``wait_s`` before giving up (``RetryableError``). A worker thus
    rides out a restart with its result in hand, instead of failing over to a retry that
    cannot be enqueued while Redis is down either."""
    deadline = time.monotonic() + wait_s
    pause = 0.05
    while True:
        try:
            return op()
        except errors as e:
            if time.monotonic() + pause > deadline:
                raise RetryableError(f"redis unavailable: {e}") from e
            time.sleep(pause)
            pause = min(pause * 2, 1.0)


class RedisKV:
    """Documents as JSON strings in Redis; ``transact`` is WATCH/MULTI/EXEC."""

    max_attempts = 500

    def __init__(self, client: redis.Redis, outage_wait_s: float = 0.0) -> None:
        self.client = client
        self.outage_wait_s = outage_wait_s

    def _through_outage(self, op: Callable[[], T]) -> T:
        return through_outage(op, self.outage_wait_s)

    def get(self, key: str) -> Any | None:
        def op() -> Any | None:
            try:
                raw = self.client.get(key)
            except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                raise
            except redis.RedisError as e:
                raise RetryableError(f"redis unavailable: {e}") from e
            return None if raw is None else json.loads(raw)

        return self._through_outage(op)

    def get_many(self, keys: list[str]) -> list[Any | None]:
        def op() -> list[Any | None]:
            try:
                raws = self.client.mget(keys) if keys else []
            except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                raise
            except redis.RedisError as e:
                raise RetryableError(f"redis unavailable: {e}") from e
            return [None if raw is None else json.loads(raw) for raw in raws]

        return self._through_outage(op)

    def transact(self, keys: list[str], fn: Callable[[dict[str, Any]], Txn[T]]) -> T | None:
        """Atomic read-compute-write. After a broken connection it runs again from the read
        (``fn`` sees whatever did commit), so ``fn`` must decide from what it reads."""
        return self._through_outage(lambda: self._transact(keys, fn))

    def _transact(self, keys: list[str], fn: Callable[[dict[str, Any]], Txn[T]]) -> T | None:
        for attempt in range(self.max_attempts):
            try:
                with self.client.pipeline(transaction=True) as pipe:
                    if keys:
                        pipe.watch(*keys)
                    raws = pipe.mget(keys) if keys else []
                    current = {
                        k: None if v is None else json.loads(v)
                        for k, v in zip(keys, raws, strict=True)
                    }
                    txn = fn(current)
                    if not (txn.writes or txn.index_add or txn.index_remove):
                        pipe.unwatch()
                        return txn.result
                    pipe.multi()
                    for k, v in txn.writes.items():
                        if v is DELETE:
                            pipe.delete(k)
                        else:
                            pipe.set(k, json.dumps(v, separators=(",", ":")), ex=txn.ttl.get(k))
                    for k, members in txn.index_remove.items():
                        if members:
                            pipe.zrem(k, *members)
                    for k, members in txn.index_add.items():
                        if members:
                            pipe.zadd(k, dict.fromkeys(members, 0))
                    pipe.execute()
                    return txn.result
            except redis.WatchError:
                # Someone else committed first: back off a little, recompute.
                time.sleep(random.uniform(0, min(0.05, 0.001 * (attempt + 1))))
            except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                raise  # _through_outage decides
            except redis.RedisError as e:
                raise RetryableError(f"redis unavailable: {e}") from e
        raise RetryableError(f"too much contention on {keys}")

    def index_range(self, key: str, prefix: str, offset: int, count: int) -> list[str]:
        # One score for all: ZRANGEBYLEX orders members by their bytes.
        low = "[" + prefix if prefix else "-"
        high = "[" + prefix + "\U0010ffff" if prefix else "+"
        try:
            raw = self.client.zrangebylex(key, low, high, start=offset, num=count)
        except redis.RedisError as e:
            raise RetryableError(f"redis unavailable: {e}") from e
        return [m.decode() if isinstance(m, bytes) else str(m) for m in raw]

    def documents(self, prefix: str, batch: int = 500) -> Iterator[tuple[str, Any]]:
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", prefix) + "*"
        keys: list[bytes] = []
        for key in self.client.scan_iter(match=pattern, count=1000):
            keys.append(key)
            if len(keys) >= batch:
                yield from self._pairs(keys)
                keys = []
        if keys:
            yield from self._pairs(keys)

    def _pairs(self, keys: list[bytes]) -> Iterator[tuple[str, Any]]:
        for key, raw in zip(keys, self.client.mget(keys), strict=True):
            if raw is not None:
                try:
                    yield key.decode(), json.loads(raw)
                except ValueError:  # not a document of ours: skipped
                    continue

    def export(self, cursor: str, count: int, match: str = "*",
               select: Callable[[str], bool] = lambda k: True) -> tuple[str | None, list[Entry]]:
        """One ``SCAN`` step over keys matching ``match`` that ``select`` keeps: documents
        (JSON strings) and indexes (sorted sets); the next cursor (``None``: done). A SCAN
        cursor survives between calls, so a copy resumes where it stopped."""
        nxt, raw = self.client.scan(cursor=int(cursor or 0), match=match, count=count)
        keys = [k.decode() for k in raw if select(k.decode())]
        pipe = self.client.pipeline(transaction=False)
        for k in keys:
            pipe.type(k)
            pipe.ttl(k)
        meta = pipe.execute()
        pipe = self.client.pipeline(transaction=False)
        kinds = []
        for i, k in enumerate(keys):
            kind = meta[2 * i].decode()
            kinds.append((k, kind, meta[2 * i + 1]))
            if kind == "string":
                pipe.get(k)
            elif kind == "zset":
                pipe.zrange(k, 0, -1)
        values = iter(pipe.execute())
        out: list[Entry] = []
        for k, kind, ttl in kinds:
            if kind == "string":
                raw_value = next(values)
                if raw_value is not None:
                    out.append(Entry(k, json.loads(raw_value), ttl if ttl > 0 else None))
            elif kind == "zset":
                out.append(Entry(k, None, None, [m.decode() for m in next(values)]))
        return (None if int(nxt) == 0 else str(nxt)), out

    def import_(self, entries: list[Entry]) -> None:
        pipe = self.client.pipeline(transaction=True)
        for e in entries:
            if e.members is not None:
                if e.members:
                    pipe.zadd(e.key, dict.fromkeys(e.members, 0))
            else:
                pipe.set(e.key, json.dumps(e.value, separators=(",", ":")), ex=e.ttl)
        pipe.execute()


class LocalKV:
    """Documents in one SQLite database under ``root`` (the standard library's
    ``sqlite3``), for the Redis-less ``extworker apply``.

    ``transact`` is one ``BEGIN IMMEDIATE`` transaction: it takes the database's write
    lock before it reads, so a read-compute-write is atomic across threads and processes
    (WAL mode: readers never wait for it). TTLs are kept and honoured on read. A
    directory written by the earlier file-per-key store is imported once, on first open.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = root / "kv.sqlite3"
        self._local = threading.local()
        with self._tx() as db:
            db.execute("CREATE TABLE IF NOT EXISTS docs (key TEXT PRIMARY KEY, value TEXT NOT "
                       "NULL, expires REAL)")
            db.execute("CREATE TABLE IF NOT EXISTS idx (key TEXT NOT NULL, member TEXT NOT NULL, "
                       "PRIMARY KEY (key, member)) WITHOUT ROWID")
            self._import_files(db)

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            # One connection per thread; autocommit mode, transactions are explicit.
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    @staticmethod
    def _read(db: sqlite3.Connection, keys: list[str]) -> list[Any | None]:
        now = time.time()
        found: dict[str, Any] = {}
        for i in range(0, len(keys), 500):  # SQLite's limit on bound parameters
            chunk = keys[i:i + 500]
            marks = ",".join("?" * len(chunk))
            for key, value, expires in db.execute(
                    f"SELECT key, value, expires FROM docs WHERE key IN ({marks})", chunk):
                if expires is None or expires > now:
                    found[key] = json.loads(value)
        return [found.get(k) for k in keys]

    def get(self, key: str) -> Any | None:
        return self._read(self._db(), [key])[0]

    def get_many(self, keys: list[str]) -> list[Any | None]:
        return self._read(self._db(), keys)

    def transact(self, keys: list[str], fn: Callable[[dict[str, Any]], Txn[T]]) -> T | None:
        with self._tx() as db:
            txn = fn(dict(zip(keys, self._read(db, keys), strict=True)))
            now = time.time()
            for k, v in txn.writes.items():
                if v is DELETE:
                    db.execute("DELETE FROM docs WHERE key = ?", (k,))
                    continue
                ttl = txn.ttl.get(k)
                db.execute("INSERT OR REPLACE INTO docs (key, value, expires) VALUES (?, ?, ?)",
                           (k, json.dumps(v, separators=(",", ":")),
                            now + ttl if ttl else None))
            for k, members in txn.index_remove.items():  # removals first, as in Redis
                db.executemany("DELETE FROM idx WHERE key = ? AND member = ?",
                               [(k, m) for m in members])
            for k, members in txn.index_add.items():
                db.executemany("INSERT OR IGNORE INTO idx (key, member) VALUES (?, ?)",
                               [(k, m) for m in members])
            return txn.result

    def index_range(self, key: str, prefix: str, offset: int, count: int) -> list[str]:
        # TEXT compares with memcmp over UTF-8 (the BINARY collation): Redis's byte order.
        rows = self._db().execute(
            "SELECT member FROM idx WHERE key = ? AND substr(member, 1, ?) = ? "
            "ORDER BY member LIMIT ? OFFSET ?", (key, len(prefix), prefix, count, offset))
        return [m for (m,) in rows]

    def documents(self, prefix: str, batch: int = 500) -> Iterator[tuple[str, Any]]:
        after = prefix
        while True:
            rows = self._db().execute(
                "SELECT key, value FROM docs WHERE key > ? AND substr(key, 1, ?) = ? AND "
                "(expires IS NULL OR expires > ?) ORDER BY key LIMIT ?",
                (after, len(prefix), prefix, time.time(), batch)).fetchall()
            if not rows:
                return
            for key, value in rows:
                yield key, json.loads(value)
            after = rows[-1][0]

    def export(self, cursor: str, count: int) -> tuple[str | None, list[Entry]]:
        """Documents in key order after ``cursor``, then index members; the next cursor."""
        db = self._db()
        part, _, after = cursor.partition("|")
        now = time.time()
        if part in ("", "d"):
            rows = db.execute("SELECT key, value, expires FROM docs WHERE key > ? AND "
                              "(expires IS NULL OR expires > ?) ORDER BY key LIMIT ?",
                              (after, now, count)).fetchall()
            if rows:
                return "d|" + rows[-1][0], [
                    Entry(k, json.loads(v), None if e is None else max(1, int(e - now + 1)))
                    for k, v, e in rows]
            after = ""
        key, _, member = after.partition("\x00")
        rows = db.execute("SELECT key, member FROM idx WHERE key > ? OR (key = ? AND member > ?)"
                          " ORDER BY key, member LIMIT ?", (key, key, member, count)).fetchall()
        if not rows:
            return None, []
        return (f"i|{rows[-1][0]}\x00{rows[-1][1]}",
                [Entry(k, None, None, [m]) for k, m in rows])

    def count(self) -> int:
        """Documents + index members (what a copy moves)."""
        db = self._db()
        docs = db.execute("SELECT count(*) FROM docs WHERE expires IS NULL OR expires > ?",
                          (time.time(),)).fetchone()[0]
        return int(docs) + int(db.execute("SELECT count(*) FROM idx").fetchone()[0])

    def import_(self, entries: list[Entry]) -> None:
        txn = entries_txn(entries)
        self.transact([], lambda _cur: txn)

    def _import_files(self, db: sqlite3.Connection) -> None:
        """Documents of the file-per-key store (``<quoted key>.json``, indexes under
        ``__index__:``) move into the database; the files are kept as ``*.json.imported``."""
        for path in sorted(self.root.glob("*.json")):
            key = urllib.parse.unquote(path.name[:-len(".json")])
            value = json.loads(path.read_text())
            if key.startswith(_INDEX):
                db.executemany("INSERT OR IGNORE INTO idx (key, member) VALUES (?, ?)",
                               [(key[len(_INDEX):], m) for m in value])
            else:
                db.execute("INSERT OR IGNORE INTO docs (key, value, expires) VALUES (?, ?, NULL)",
                           (key, json.dumps(value, separators=(",", ":"))))
            path.rename(path.with_name(path.name + ".imported"))


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
