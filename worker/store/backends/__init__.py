"""The document store's engines, one module each, behind the one contract
(``worker.store.kv.KV``): Redis (``redis_kv``), SQLite (``sqlite_kv``) and PostgreSQL
(``postgres_kv``). Which one a process uses: ``EXTWORKER_STORE_URL``, read once, here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis

from worker.core.settings import Settings
from worker.store.backends.redis_kv import RedisKV
from worker.store.backends.sqlite_kv import LocalKV
from worker.store.kv import KV

__all__ = ["KV", "LocalKV", "RedisKV", "open_store"]

_PG_STORES: dict[tuple[str, str], Any] = {}


def open_store(settings: Settings, client: redis.Redis | None) -> KV:
    """The document store ``EXTWORKER_STORE_URL`` names: ``postgresql://…``, ``sqlite:///<dir>``
    (one node only: a file), or Redis (``client``) when unset."""
    url = settings.store_url or ""
    if url.startswith(("postgresql://", "postgres://")):
        from worker.store.backends.postgres_kv import PostgresKV
        from worker.store.search import FileColumns

        # One pool per process and database: every Runtime a process builds shares it.
        prefix = settings.keys.file("")
        kv = _PG_STORES.get((url, prefix))
        if kv is None or kv.pool.closed:
            kv = _PG_STORES[(url, prefix)] = PostgresKV(url, FileColumns(prefix))
        return kv
    if url.startswith("sqlite://"):
        return LocalKV(Path(url.removeprefix("sqlite://")))
    if url and not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError(f"EXTWORKER_STORE_URL: {url!r} is not postgresql://…, sqlite:///… "
                         "or redis://…")
    if url:
        client = redis.Redis.from_url(url)
    if client is None:
        raise ValueError("the document store: no EXTWORKER_STORE_URL and no Redis")
    return RedisKV(client, settings.redis_outage_wait_s)
