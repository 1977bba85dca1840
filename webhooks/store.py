"""Deliveries in Redis: documents, the due set, leases, the dead-letter set, the log.

* ``<p>:delivery:<id>`` — the delivery document: URL, body, status, and every
  attempt (time, status code, duration, error, first 1 KiB of the response).
* ``<p>:due`` — sorted set of pending delivery ids by due time (ms).
  ``claim`` atomically takes due ids and pushes their score to *now + lease*:
  a worker that dies mid-attempt loses nothing — when the lease runs out the
  id is due again and another worker attempts it (at least once, same id).
  ``finish`` only applies if the caller still holds the lease.
* ``<p>:dead`` — exhausted deliveries (by time), capped at ``log_max``;
  ``<p>:stats`` — counters.
* ``<p>:index`` — every delivery by creation time, capped at ``log_max`` (trimmed
  inside ``create``'s script); final documents expire ``log_ttl_s`` after their
  last attempt.
* ``<p>:account:<account>`` — one account's deliveries by creation time, capped at
  ``log_max`` in the same script; an id whose document is gone is dropped when read.
"""

from __future__ import annotations

import json
from typing import Any

import redis

from worker.core.keys import Keys

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


# KEYS: doc, due, index, dead, account index; ARGV: id, doc json, due ms, created ms,
# log max, doc prefix.
# Creation is one atomic step (a delivery is never stored without being due), and the log
# is trimmed in the same call: no extra round trips, at most TRIM_BATCH entries per create.
_CREATE = """
if not redis.call('SET', KEYS[1], ARGV[2], 'NX') then return 0 end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
local excess = redis.call('ZCARD', KEYS[3]) - tonumber(ARGV[5])
if excess > 0 then
  local ids = redis.call('ZRANGE', KEYS[3], 0, math.min(excess, 100) - 1)
  for _, id in ipairs(ids) do
    if not redis.call('ZSCORE', KEYS[2], id) then  -- never drop a pending one
      redis.call('DEL', ARGV[6] .. id)
      redis.call('ZREM', KEYS[3], id)
      redis.call('ZREM', KEYS[4], id)
    end
  end
end
local dead = redis.call('ZCARD', KEYS[4]) - tonumber(ARGV[5])
if dead > 0 then redis.call('ZREMRANGEBYRANK', KEYS[4], 0, dead - 1) end
redis.call('ZADD', KEYS[5], ARGV[4], ARGV[1])
local mine = redis.call('ZCARD', KEYS[5]) - tonumber(ARGV[5])
if mine > 0 then redis.call('ZREMRANGEBYRANK', KEYS[5], 0, mine - 1) end
return 1
"""


# KEYS: due; ARGV: lease, now, ids...: give back claimed ids we will not attempt (only
# those still under our lease), due at once for the next claim.
_RELEASE = """
local n = 0
for i = 3, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == tonumber(ARGV[1]) then
    redis.call('ZADD', KEYS[1], ARGV[2], ARGV[i])
    n = n + 1
  end
end
return n
"""


# KEYS: due; ARGV: lease, new lease, ids...: extend the claims still held under ``lease``;
# returns the ids renewed.
_RENEW = """
local kept = {}
for i = 3, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) == tonumber(ARGV[1]) then
    redis.call('ZADD', KEYS[1], ARGV[2], ARGV[i])
    table.insert(kept, ARGV[i])
  end
end
return kept
"""


class DeliveryStore:
    def __init__(self, client: redis.Redis, keys: Keys, log_max: int = 10_000,
                 log_ttl_s: int = 30 * 24 * 3600) -> None:
        self.client = client
        self.keys = keys
        self.due = keys.webhook_due()
        self.dead = keys.webhook_dead()
        self.stats = keys.webhook_stats()
        self.index = keys.webhook_index()
        self.log_max = log_max
        self.log_ttl_s = log_ttl_s
        self._claim = client.register_script(_CLAIM)
        self._finish = client.register_script(_FINISH)
        self._create = client.register_script(_CREATE)
        self._release = client.register_script(_RELEASE)
        self._renew = client.register_script(_RENEW)

    def doc_key(self, delivery_id: str) -> str:
        return self.keys.webhook_delivery(delivery_id)

    def create(self, doc: dict[str, Any], due_ms: int) -> bool:
        """Store a new delivery and make it due, atomically; ``False`` if that id exists.

        Also trims the log (``log_max``; pending deliveries are never dropped) and the
        dead-letter set, in the same call."""
        return bool(self._create(
            keys=[self.doc_key(doc["id"]), self.due, self.index, self.dead,
                  self.keys.webhook_account_index(str(doc.get("accountId") or "default"))],
            args=[doc["id"], json.dumps(doc), due_ms, doc["createdAt"], self.log_max,
                  self.doc_key("")]))

    def release(self, ids: list[str], lease: int, now_ms: int) -> int:
        """Give back claimed ids without attempting them: due now, for another claim."""
        return int(self._release(keys=[self.due], args=[lease, now_ms, *ids])) if ids else 0

    def renew_many(self, ids: list[str], lease: int, new_lease: int) -> list[str]:
        """Extend the claims still held under ``lease`` to ``new_lease``; the ids renewed
        (the others are no longer ours)."""
        if not ids:
            return []
        kept = self._renew(keys=[self.due], args=[lease, new_lease, *ids])
        return [i.decode() if isinstance(i, bytes) else str(i) for i in kept]

    def drop_due(self, delivery_id: str) -> None:
        """Take an id whose document is gone out of the due set (it can never be sent)."""
        self.client.zrem(self.due, delivery_id)

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
             status: str | None = None, account: str | None = None, limit: int = 100,
             max_scanned: int = 20_000) -> list[dict[str, Any]]:
        """Newest first, filtered; reads the index (``account``: that account's own) a page
        at a time (never all of it) and stops after ``max_scanned`` deliveries."""
        out: list[dict[str, Any]] = []
        index = self.index if account is None else self.keys.webhook_account_index(account)
        if account is not None and not self.client.exists(index):
            index = self.index  # deliveries made before accounts had a log of their own
        page, start = 200, 0
        while start < max_scanned:
            chunk = [i.decode() for i in self.client.zrevrange(index, start,
                                                                start + page - 1)]
            if not chunk:
                break
            docs = self.client.mget([self.doc_key(i) for i in chunk])
            gone = [i for i, raw in zip(chunk, docs, strict=True) if raw is None]
            if gone and index != self.index:  # expired: its account's log forgets it too
                self.client.zrem(index, *gone)
                start -= len(gone)
            start += len(chunk)
            for raw in docs:
                if raw is None:
                    continue
                doc = json.loads(raw)
                if ((file_id and doc["fileId"] != file_id) or (job_id and doc["jobId"] != job_id)
                        or (status and doc["status"] != status)
                        or (account is not None and doc.get("accountId") != account)):
                    continue
                out.append(doc)
                if len(out) >= limit:
                    return out
        return out
