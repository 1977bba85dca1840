"""Deliveries in Redis: documents, the due set, leases, the dead-letter set, the log.

* ``<p>:delivery:<id>`` — the delivery document: URL, body, status, and every
  attempt (time, status code, duration, error, first 1 KiB of the response).
* ``<p>:due`` — sorted set of pending delivery ids by due time (ms).
  ``claim`` atomically takes due ids and pushes their score to *now + lease*:
  a worker that dies mid-attempt loses nothing — when the lease runs out the
  id is due again and another worker attempts it (at least once, same id).
  ``finish`` only applies if the caller still holds the lease.
* ``<p>:dead`` — exhausted deliveries (by time); ``<p>:stats`` — counters.
* ``<p>:index`` — every delivery by creation time, capped at ``log_max``;
  final documents expire ``log_ttl_s`` after their last attempt.
"""

from __future__ import annotations

import json
from typing import Any

import redis

_CLAIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], ARGV[2], id) end
return ids
"""

# KEYS: due, doc, dead, stats; ARGV: id, lease, doc json, next due ('' = final),
# ttl ('' = none), exhausted ('1'/'0'), now
_FINISH = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if (not score) or (tonumber(score) ~= tonumber(ARGV[2])) then return 0 end
redis.call('SET', KEYS[2], ARGV[3])
if ARGV[4] ~= '' then
  redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
else
  redis.call('ZREM', KEYS[1], ARGV[1])
end
if ARGV[5] ~= '' then redis.call('EXPIRE', KEYS[2], tonumber(ARGV[5])) end
if ARGV[6] == '1' then
  redis.call('ZADD', KEYS[3], ARGV[7], ARGV[1])
  redis.call('HINCRBY', KEYS[4], 'exhausted', 1)
end
return 1
"""


class DeliveryStore:
    def __init__(self, client: redis.Redis, prefix: str, log_max: int = 10_000,
                 log_ttl_s: int = 30 * 24 * 3600) -> None:
        self.client = client
        self.prefix = prefix
        self.due = f"{prefix}:due"
        self.dead = f"{prefix}:dead"
        self.stats = f"{prefix}:stats"
        self.index = f"{prefix}:index"
        self.log_max = log_max
        self.log_ttl_s = log_ttl_s
        self._claim = client.register_script(_CLAIM)
        self._finish = client.register_script(_FINISH)

    def doc_key(self, delivery_id: str) -> str:
        return f"{self.prefix}:delivery:{delivery_id}"

    def create(self, doc: dict[str, Any], due_ms: int) -> bool:
        """Store a new delivery and make it due; ``False`` if that id already exists."""
        key = self.doc_key(doc["id"])
        if not self.client.set(key, json.dumps(doc), nx=True):
            return False
        pipe = self.client.pipeline()
        pipe.zadd(self.due, {doc["id"]: due_ms})
        pipe.zadd(self.index, {doc["id"]: doc["createdAt"]})
        pipe.execute()
        self._trim()
        return True

    def _trim(self) -> None:
        excess = self.client.zcard(self.index) - self.log_max
        if excess > 0:
            for raw in self.client.zrange(self.index, 0, excess - 1):
                did = raw.decode()
                if self.client.zscore(self.due, did) is None:  # never drop a pending one
                    self.client.delete(self.doc_key(did))
                    self.client.zrem(self.index, did)

    def get(self, delivery_id: str) -> dict[str, Any] | None:
        raw = self.client.get(self.doc_key(delivery_id))
        return None if raw is None else json.loads(raw)

    def get_many(self, ids: list[str]) -> list[dict[str, Any] | None]:
        raws = self.client.mget([self.doc_key(i) for i in ids]) if ids else []
        return [None if r is None else json.loads(r) for r in raws]

    def claim(self, now_ms: int, lease_ms: int, limit: int) -> tuple[int, list[str]]:
        lease = now_ms + lease_ms
        ids = self._claim(keys=[self.due], args=[now_ms, lease, limit])
        return lease, [i.decode() for i in ids]

    def finish(self, doc: dict[str, Any], lease: int, next_due_ms: int | None,
               exhausted: bool, now_ms: int) -> bool:
        """Write the attempt's outcome if we still hold the lease."""
        return self.finish_many([(doc, lease, next_due_ms, exhausted, now_ms)])[0]

    def finish_many(
        self, outcomes: list[tuple[dict[str, Any], int, int | None, bool, int]]
    ) -> list[bool]:
        """``finish`` for a whole batch in one round trip (each one still atomic)."""
        pipe = self.client.pipeline(transaction=False)
        for doc, lease, next_due_ms, exhausted, now_ms in outcomes:
            final = next_due_ms is None
            self._finish(
                keys=[self.due, self.doc_key(doc["id"]), self.dead, self.stats],
                args=[doc["id"], lease, json.dumps(doc), "" if final else next_due_ms,
                      self.log_ttl_s if final else "", "1" if exhausted else "0", now_ms],
                client=pipe,
            )
        return [bool(r) for r in pipe.execute()]

    def restart(self, delivery_id: str, now_ms: int) -> dict[str, Any]:
        """A new attempt series for a final delivery (same id); the old log is kept."""
        key = self.doc_key(delivery_id)
        with self.client.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    raw = pipe.get(key)
                    if raw is None:
                        raise KeyError(delivery_id)
                    doc = json.loads(raw)
                    if doc["status"] == "pending":
                        raise ValueError(f"delivery {delivery_id} is still pending")
                    doc.update(status="pending", series=doc["series"] + 1, attempt=0,
                               nextAt=now_ms)
                    pipe.multi()
                    pipe.set(key, json.dumps(doc))
                    pipe.zadd(self.due, {delivery_id: now_ms})
                    pipe.zrem(self.dead, delivery_id)
                    pipe.execute()
                    return doc
                except redis.WatchError:
                    continue

    def due_now(self, now_ms: int) -> tuple[int, int | None]:
        """How many deliveries are due, and the due time of the oldest (for metrics)."""
        count = self.client.zcount(self.due, "-inf", now_ms)
        oldest = self.client.zrange(self.due, 0, 0, withscores=True)
        return count, (int(oldest[0][1]) if oldest and oldest[0][1] <= now_ms else None)

    def list(self, *, file_id: str | None = None, job_id: str | None = None,
             status: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        ids = [i.decode() for i in self.client.zrevrange(self.index, 0, -1)]
        for start in range(0, len(ids), 200):
            chunk = ids[start:start + 200]
            for raw in self.client.mget([self.doc_key(i) for i in chunk]):
                if raw is None:
                    continue
                doc = json.loads(raw)
                if ((file_id and doc["fileId"] != file_id) or (job_id and doc["jobId"] != job_id)
                        or (status and doc["status"] != status)):
                    continue
                out.append(doc)
                if len(out) >= limit:
                    return out
        return out
