"""The document store's contract (``worker.store.kv.KV``) on PostgreSQL — psycopg 3 with a
``psycopg_pool`` connection pool (the ``pg`` extra).

Two tables, made on first use (``migrate``; the schema version is kept in
``extworker_schema``): ``extworker_docs`` (``key`` text primary key, ``value`` JSONB,
``expires_at``) and ``extworker_index`` (``key``, ``member`` under the ``C`` collation —
Redis's byte order — primary key on both).

``transact`` is one transaction that first takes a transaction-scoped advisory lock per key
(sorted, so two transactions never wait on each other in a cycle): a key that has no row
yet is locked as well as one that has, so read-compute-write is all-or-nothing exactly as
Redis's WATCH/MULTI gives it, without retries. Expired rows read as absent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from worker.core.errors import RetryableError
from worker.store.kv import DELETE, Txn

T = TypeVar("T")
SCHEMA_VERSION = 1
_MIGRATIONS = {
    1: [
        """CREATE TABLE IF NOT EXISTS extworker_docs (
             key text PRIMARY KEY, value jsonb NOT NULL, expires_at timestamptz)""",
        """CREATE TABLE IF NOT EXISTS extworker_index (
             key text NOT NULL, member text COLLATE "C" NOT NULL,
             PRIMARY KEY (key, member))""",
    ],
}
_LIVE = "(expires_at IS NULL OR expires_at > now())"


class PostgresKV:
    def __init__(self, url: str, min_size: int = 1, max_size: int = 10) -> None:
        try:
            from psycopg_pool import ConnectionPool
        except ImportError as e:
            raise ImportError(f"PostgreSQL store: {e} (pip install 'extworker[pg]')") from None
        self.pool = ConnectionPool(url, min_size=min_size, max_size=max_size, open=True,
                                   kwargs={"autocommit": False})
        self.migrate()

    def migrate(self) -> int:
        """Bring the schema to ``SCHEMA_VERSION`` (each step once, under a lock); the
        version now."""
        with self._conn() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('extworker_schema'))")
            conn.execute("CREATE TABLE IF NOT EXISTS extworker_schema (version int NOT NULL)")
            row = conn.execute("SELECT max(version) FROM extworker_schema").fetchone()
            current = (row[0] if row else None) or 0
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[version]:
                    conn.execute(statement)
                conn.execute("INSERT INTO extworker_schema VALUES (%s)", (version,))
            return max(current, SCHEMA_VERSION)

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
        from psycopg.types.json import Jsonb

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
                for k, v in txn.writes.items():
                    if v is DELETE:
                        conn.execute("DELETE FROM extworker_docs WHERE key = %s", (k,))
                        continue
                    ttl = txn.ttl.get(k)
                    conn.execute(
                        "INSERT INTO extworker_docs (key, value, expires_at) VALUES (%s, %s, "
                        "CASE WHEN %s::int IS NULL THEN NULL ELSE now() + make_interval("
                        "secs => %s::int) END) ON CONFLICT (key) DO UPDATE SET "
                        "value = EXCLUDED.value, expires_at = EXCLUDED.expires_at",
                        (k, Jsonb(v), ttl, ttl))
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
                return txn.result

        return self._call(op)

    def index_range(self, key: str, prefix: str, offset: int, count: int) -> list[str]:
        def op(conn: Any) -> list[str]:
            rows = conn.execute(
                "SELECT member FROM extworker_index WHERE key = %s AND "
                "starts_with(member, %s) ORDER BY member LIMIT %s OFFSET %s",
                (key, prefix, count, offset)).fetchall()
            conn.rollback()
            return [m for (m,) in rows]

        return self._call(op)

    def close(self) -> None:
        self.pool.close()

