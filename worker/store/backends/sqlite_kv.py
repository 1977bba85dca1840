"""The document store in one SQLite database (one node: ``extworker apply``, the embedded
default)."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from worker.store.kv import DELETE, Entry, Txn, entries_txn

T = TypeVar("T")

_INDEX = "__index__:"  # the earlier file-per-key LocalKV kept an index under this key


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

