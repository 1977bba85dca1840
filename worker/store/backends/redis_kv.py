"""The document store on Redis: ``transact`` is WATCH/MULTI/EXEC; riding out an outage."""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import redis

from worker.core.errors import RetryableError
from worker.store.kv import DELETE, Entry, Txn

T = TypeVar("T")


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

