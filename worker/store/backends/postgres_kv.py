"""The document store's contract (``worker.store.kv.KV``) on PostgreSQL — psycopg 3 with a
``psycopg_pool`` connection pool (the ``pg`` extra).

Two tables, made on first use (``migrate``; the schema version is kept in
``extworker_schema``): ``extworker_docs`` (``key`` text primary key, ``value`` JSONB,
``expires_at``; for file records also the columns ``worker.store.search`` queries, indexed —
schema 2) and ``extworker_index`` (``key``, ``member`` under the ``C`` collation — Redis's
byte order — primary key on both).

``transact`` is one transaction that first takes a transaction-scoped advisory lock per key
(sorted, so two transactions never wait on each other in a cycle): a key that has no row
yet is locked as well as one that has, so read-compute-write is all-or-nothing exactly as
Redis's WATCH/MULTI gives it, without retries. Expired rows read as absent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from worker.core.errors import RetryableError
from worker.store.kv import DELETE, Entry, Txn, entries_txn
from worker.store.search import COLUMNS, FileColumns

T = TypeVar("T")
SCHEMA_VERSION = 2
_COLUMN_TYPES = {
    "account": "text", "path": 'text COLLATE "C"', "folder": 'text COLLATE "C"',
    "name": 'text COLLATE "C"', "tags": "text[]", "ai_tags": "text[]", "custom": "jsonb",
    "type": "text", "file_type": "text", "mime": "text", "format": "text", "size": "bigint",
    "width": "int", "height": "int", "created_at": "timestamptz", "updated_at": "timestamptz",
    "private": "boolean", "published": "boolean", "alpha": "boolean",
}
_FILES = "WHERE account IS NOT NULL"  # the partial indexes cover file records only
_MIGRATIONS: dict[int, list[str]] = {
    1: [
        """CREATE TABLE IF NOT EXISTS extworker_docs (
             key text PRIMARY KEY, value jsonb NOT NULL, expires_at timestamptz)""",
        """CREATE TABLE IF NOT EXISTS extworker_index (
             key text NOT NULL, member text COLLATE "C" NOT NULL,
             PRIMARY KEY (key, member))""",
    ],
    # 2: file records' queried fields as real columns, indexed (search, listing by folder,
    # by tag), filled for the records already stored (``_backfill``).
    2: [
        *(f"ALTER TABLE extworker_docs ADD COLUMN IF NOT EXISTS {c} {t}"
          for c, t in _COLUMN_TYPES.items()),
        f"CREATE INDEX IF NOT EXISTS extworker_files_path ON extworker_docs (account, path) "
        f"{_FILES}",
        f"CREATE INDEX IF NOT EXISTS extworker_files_folder ON extworker_docs "
        f"(account, folder, path) {_FILES}",
        f"CREATE INDEX IF NOT EXISTS extworker_files_name ON extworker_docs (account, name) "
        f"{_FILES}",
        f"CREATE INDEX IF NOT EXISTS extworker_files_created ON extworker_docs "
        f"(account, created_at) {_FILES}",
        f"CREATE INDEX IF NOT EXISTS extworker_files_updated ON extworker_docs "
        f"(account, updated_at) {_FILES}",
        f"CREATE INDEX IF NOT EXISTS extworker_files_size ON extworker_docs (account, size) "
        f"{_FILES}",
        f"CREATE INDEX IF NOT EXISTS extworker_files_tags ON extworker_docs USING gin (tags) "
        f"{_FILES}",
        f"CREATE INDEX IF NOT EXISTS extworker_files_ai_tags ON extworker_docs USING gin "
        f"(ai_tags) {_FILES}",
        f"CREATE INDEX IF NOT EXISTS extworker_files_custom ON extworker_docs USING gin "
        f"(custom jsonb_path_ops) {_FILES}",
    ],
}
_LIVE = "(expires_at IS NULL OR expires_at > now())"


class PostgresKV:
    """``files`` says which documents are file records and what their columns hold."""

    def __init__(self, url: str, files: FileColumns, min_size: int = 1,
                 max_size: int = 10) -> None:
        try:
            from psycopg_pool import ConnectionPool
        except ImportError as e:
            raise ImportError(f"PostgreSQL store: {e} (pip install 'extworker[pg]')") from None
        self.files = files
        self.pool = ConnectionPool(url, min_size=min_size, max_size=max_size, open=True,
                                   kwargs={"autocommit": False})
        self.migrate()

    def migrate(self, target: int = SCHEMA_VERSION) -> int:
        """Bring the schema to ``target`` (each step once, under a lock); the version now."""
        with self._conn() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('extworker_schema'))")
            conn.execute("CREATE TABLE IF NOT EXISTS extworker_schema (version int NOT NULL)")
            row = conn.execute("SELECT max(version) FROM extworker_schema").fetchone()
            current = (row[0] if row else None) or 0
            for version in range(current + 1, target + 1):
                for statement in _MIGRATIONS[version]:
                    conn.execute(statement)
                if version == 2:
                    self._backfill(conn)
                conn.execute("INSERT INTO extworker_schema VALUES (%s)", (version,))
            return max(current, target)

    def _backfill(self, conn: Any) -> None:
        """Columns of the file records stored before they existed (schema 1), 1,000 at a
        time in key order (a document that is not a record keeps none)."""
        sets = ", ".join(f"{c} = %s" for c in COLUMNS)
        after = ""
        while True:
            batch = conn.execute(
                "SELECT key, value FROM extworker_docs WHERE starts_with(key, %s) AND "
                "account IS NULL AND key > %s ORDER BY key LIMIT 1000",
                (self.files.prefix, after)).fetchall()
            if not batch:
                return
            after = batch[-1][0]
            rows = [(k, c) for k, v in batch if (c := self.files.of(k, v)) is not None]
            if rows:
                with conn.cursor() as cur:
                    cur.executemany(f"UPDATE extworker_docs SET {sets} WHERE key = %s",
                                    [(*(c[n] for n in COLUMNS), k) for k, c in rows])

    def _conn(self) -> Any:
        return self.pool.connection()

    def _call(self, op: Callable[[Any], T]) -> T:
        import psycopg

        try:
            with self._conn() as conn:
                return op(conn)
        except psycopg.OperationalError as e:
            raise RetryableError(f"postgresql unavailable: {e}") from e

    def get(self, key: str) -> Any | None:
        return self.get_many([key])[0]

    def get_many(self, keys: list[str]) -> list[Any | None]:
        if not keys:
            return []

        def op(conn: Any) -> list[Any | None]:
            rows = conn.execute(f"SELECT key, value FROM extworker_docs WHERE key = ANY(%s) "
                                f"AND {_LIVE}", (keys,)).fetchall()
            conn.rollback()
            found = dict(rows)
            return [found.get(k) for k in keys]

        return self._call(op)

    def transact(self, keys: list[str], fn: Callable[[dict[str, Any]], Txn[T]]) -> T | None:
        def op(conn: Any) -> T | None:
            with conn.transaction():
                for key in sorted(set(keys)):
                    conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                                 (key,))
                rows = conn.execute(
                    f"SELECT key, value FROM extworker_docs WHERE key = ANY(%s) AND {_LIVE}",
                    (keys,)).fetchall() if keys else []
                found = dict(rows)
                txn = fn({k: found.get(k) for k in keys})
                self._write(conn, txn)
                return txn.result

        return self._call(op)

    def _write(self, conn: Any, txn: Txn[Any]) -> None:
        from psycopg.types.json import Jsonb

        gone = [k for k, v in txn.writes.items() if v is DELETE]
        if gone:
            conn.execute("DELETE FROM extworker_docs WHERE key = ANY(%s)", (gone,))
        rows = []
        for k, v in txn.writes.items():
            if v is not DELETE:
                ttl = txn.ttl.get(k)
                cols = self.files.of(k, v) or dict.fromkeys(COLUMNS)
                rows.append((k, Jsonb(v), ttl, ttl, *(cols[c] for c in COLUMNS)))
        if rows:
            with conn.cursor() as cur:
                cur.executemany(_UPSERT, rows)  # pipelined: one round trip for many
        for k, members in txn.index_remove.items():
            if members:
                conn.execute("DELETE FROM extworker_index WHERE key = %s AND "
                             "member = ANY(%s)", (k, list(members)))
        for k, members in txn.index_add.items():
            if members:
                conn.execute(
                    "INSERT INTO extworker_index (key, member) SELECT %s, m FROM "
                    "unnest(%s::text[]) AS m ON CONFLICT DO NOTHING",
                    (k, list(dict.fromkeys(members))))

    def index_range(self, key: str, prefix: str, offset: int, count: int) -> list[str]:
        def op(conn: Any) -> list[str]:
            rows = conn.execute(
                "SELECT member FROM extworker_index WHERE key = %s AND "
                "starts_with(member, %s) ORDER BY member LIMIT %s OFFSET %s",
                (key, prefix, count, offset)).fetchall()
            conn.rollback()
            return [m for (m,) in rows]

        return self._call(op)

    def documents(self, prefix: str, batch: int = 500) -> Iterator[tuple[str, Any]]:
        # Pages in the primary key's order (the database's collation), from the start: a
        # key with the prefix need not sort after the bare prefix in every collation.
        after = ""
        while True:
            def op(conn: Any, after: str = after) -> list[tuple[str, Any]]:
                rows = conn.execute(
                    f"SELECT key, value FROM extworker_docs WHERE key > %s AND "
                    f"starts_with(key, %s) AND {_LIVE} ORDER BY key LIMIT %s",
                    (after, prefix, batch)).fetchall()
                conn.rollback()
                return rows

            rows = self._call(op)
            if not rows:
                return
            yield from rows
            after = rows[-1][0]

    # --- search (``worker.store.search`` builds the condition) ----------------------------

    def select_files(self, account: str, where: str | None, params: list[Any], order: str,
                     skip: int, limit: int) -> list[dict[str, Any]]:
        """File records of ``account`` matching ``where`` (SQL over this table's columns,
        ``%s`` placeholders bound to ``params``) in ``order``."""
        cond = f" AND ({where})" if where else ""
        statement = (f"SELECT value FROM extworker_docs WHERE account = %s{cond} AND {_LIVE} "
                     f"ORDER BY {order} LIMIT %s OFFSET %s")

        def op(conn: Any) -> list[dict[str, Any]]:
            rows = conn.execute(statement, (account, *params, limit, skip)).fetchall()
            conn.rollback()
            return [v for (v,) in rows]

        return self._call(op)

    def explain(self, account: str, where: str | None, params: list[Any], order: str,
                limit: int = 100) -> str:
        """The plan PostgreSQL chooses for ``select_files`` (benchmarks, tests)."""
        cond = f" AND ({where})" if where else ""

        def op(conn: Any) -> str:
            rows = conn.execute(f"EXPLAIN SELECT value FROM extworker_docs WHERE account = %s"
                                f"{cond} AND {_LIVE} ORDER BY {order} LIMIT %s",
                                (account, *params, limit)).fetchall()
            conn.rollback()
            return "\n".join(r[0] for r in rows)

        return self._call(op)

    # --- moving a deployment (``extworker store copy``) ----------------------------------

    def export(self, cursor: str, count: int) -> tuple[str | None, list[Entry]]:
        """Up to ``count`` documents after key ``cursor`` (``""``: the start), then the
        index entries; the next cursor (``None``: done)."""
        def op(conn: Any) -> tuple[str | None, list[Entry]]:
            part, _, after = cursor.partition("|")
            if part in ("", "d"):
                rows = conn.execute(
                    "SELECT key, value, CASE WHEN expires_at IS NULL THEN NULL ELSE "
                    "greatest(1, ceil(extract(epoch FROM expires_at - now())))::int END "
                    f"FROM extworker_docs WHERE key > %s AND {_LIVE} ORDER BY key LIMIT %s",
                    (after, count)).fetchall()
                conn.rollback()
                if rows:
                    return "d|" + rows[-1][0], [Entry(k, v, ttl) for k, v, ttl in rows]
                part, after = "i", ""
            key, _, member = after.partition("\x00")
            rows = conn.execute(
                "SELECT key, member FROM extworker_index WHERE (key, member) > (%s, %s) "
                "ORDER BY key, member LIMIT %s", (key, member, count)).fetchall()
            conn.rollback()
            if not rows:
                return None, []
            k, m = rows[-1]
            return f"i|{k}\x00{m}", [Entry(k, None, None, [m]) for k, m in rows]

        return self._call(op)

    def import_(self, entries: list[Entry]) -> None:
        """Write exported entries (documents replace, index members add)."""
        txn = entries_txn(entries)

        def op(conn: Any) -> None:
            with conn.transaction():
                self._write(conn, txn)

        self._call(op)

    def count(self) -> int:
        """Documents + index members (what a copy moves)."""
        def op(conn: Any) -> int:
            docs = conn.execute(f"SELECT count(*) FROM extworker_docs WHERE {_LIVE}").fetchone()
            members = conn.execute("SELECT count(*) FROM extworker_index").fetchone()
            conn.rollback()
            return int(docs[0]) + int(members[0])

        return self._call(op)

    def close(self) -> None:
        self.pool.close()


_UPSERT = (
    "INSERT INTO extworker_docs (key, value, expires_at, " + ", ".join(COLUMNS) + ") VALUES "
    "(%s, %s, CASE WHEN %s::int IS NULL THEN NULL ELSE now() + make_interval(secs => %s::int) "
    "END, " + ", ".join(["%s"] * len(COLUMNS)) + ") ON CONFLICT (key) DO UPDATE SET "
    "value = EXCLUDED.value, expires_at = EXCLUDED.expires_at, "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in COLUMNS))
