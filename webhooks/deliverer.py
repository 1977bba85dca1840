"""Turning finished extensions into deliveries, and attempting the due ones.

``Webhooks.enqueue`` is the only thing the worker calls: it gets a finished
event (one extension of one job reached its final state) and stores a
delivery — body serialised once, id stable per (job, extension) — due now.
``Webhooks.run_due`` (the ``deliver_due`` actor on the ``webhooks`` queue)
claims due deliveries under a lease (kept renewed while they run:
``webhooks.lease``), checks each URL with the egress guard,
signs and POSTs them concurrently, logs every attempt and schedules the next
one or ends the delivery: ``delivered`` (2xx), ``gone`` (410: never
retried), ``refused`` (the guard said no: never contacted), ``exhausted``
(the schedule ran out: dead-letter set, redeliver with
``extworker deliveries redeliver ID``).

The clock is injected, so tests walk a 24-hour schedule without waiting.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx
import redis

from webhooks import schedule, signing
from webhooks.events import body_for, webhook_id
from webhooks.lease import HeldClaim
from webhooks.secrets import SecretStore
from webhooks.sender import Attempt, post
from webhooks.store import DeliveryStore
from worker.core.egress import EgressPolicy, EgressRefused, Target, check
from worker.core.jobs import JobDoc
from worker.core.settings import Settings
from worker.store import claims
from worker.store.backends.redis_kv import through_outage

log = logging.getLogger(__name__)
MAX_LOGGED_ATTEMPTS = 100
PER_RECEIVER = 8  # attempts in flight per receiver, per worker
GATE = 64  # attempts in flight per worker, all receivers together


class Webhooks:
    def __init__(self, client: redis.Redis, settings: Settings,
                 clock: Callable[[], float] = time.time, *,
                 wake: Callable[[], None] | None = None,
                 on_attempt: Callable[[dict[str, Any], Attempt | None], None] | None = None,
                 ) -> None:
        """``wake`` sends a wake-up call to the webhooks queue (a delivery is due now);
        ``on_attempt`` hears of every attempt (metrics)."""
        self.settings = settings
        self.clock = clock
        self.store = DeliveryStore(client, settings.keys, settings.webhook_log_max,
                                   settings.webhook_log_ttl_s)
        self.secrets = SecretStore(client, settings.keys, settings.secret_key,
                                   settings.webhook_secret_grace_s)
        self.policy = EgressPolicy.parse(settings.egress_allowlist, settings.egress_https_only)
        self.delays = tuple(settings.webhook_delays_s)
        self.wake = wake
        self.on_attempt = on_attempt

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # --- intake ---------------------------------------------------------------

    def enqueue(self, *, account: str, url: str, job_id: str, file_id: str | None, service: str,
                status: str, file_object: dict[str, Any] | None,
                error: dict[str, str] | None,
                sync_until: float | None = None) -> dict[str, Any] | None:
        """Store the delivery of one finished extension; ``None`` if it already exists.

        With ``sync_until`` (a caller is waiting) the first attempt is not due
        before then, and it first claims the report (``worker.store.claims``).
        """
        now = self.now_ms()
        due = max(now, int(sync_until * 1000)) if sync_until else now
        doc = {
            "id": webhook_id(job_id, service), "accountId": account, "url": url,
            "jobId": job_id, "fileId": file_id, "service": service,
            "event": "SUCCESS" if status == "success" else "FAILURE",
            "body": body_for(service, status, file_id, file_object, error),
            "status": "pending", "series": 1, "attempt": 0, "createdAt": now, "nextAt": due,
            "lastError": None, "attempts": [], "syncUntil": sync_until,
        }
        # Through a Redis restart (the outage wait of the store and the outbox): the
        # extension is final in the store already; its webhook must not be lost.
        created = through_outage(lambda: self.store.create(doc, due),
                                 self.settings.redis_outage_wait_s)
        return doc if created else None

    def hand_off(self, job: JobDoc, slot: str,
                 file_object: dict[str, Any] | None) -> dict[str, Any] | None:
        """The delivery of one final extension of a job document (``None``: no webhookUrl,
        or it exists already). A delivery due now wakes the webhooks queue; later ones (a
        caller is waiting) are found by the pump."""
        if not job.webhookUrl:
            return None
        ext = job.extensions[slot]
        created = self.enqueue(
            account=job.accountId, url=job.webhookUrl, job_id=job.jobId,
            file_id=job.fileId, service=slot, status=ext.status, file_object=file_object,
            error=ext.error.model_dump() if ext.error else None,
            sync_until=job.syncUntil if ext.sync else None)
        if created is not None and self.wake is not None and created["nextAt"] <= self.now_ms():
            self.wake()
        return created

    def redeliver(self, delivery_id: str) -> dict[str, Any]:
        return self.store.restart(delivery_id, self.now_ms())

    # --- attempts -------------------------------------------------------------

    def run_due(self, limit: int | None = None) -> int:
        """Attempt due deliveries (up to ``limit``, and what fits in a lease); returns how
        many were attempted (claims given back are due again at once)."""
        limit = limit or self.settings.webhook_batch
        lease_ms = int(self.settings.webhook_lease_s * 1000)
        lease, ids = self.store.claim(self.now_ms(), lease_ms, limit)
        if not ids:
            return 0
        with HeldClaim(self.store, ids, lease, lease_ms, self.now_ms) as held:
            return asyncio.run(self._attempt_all(ids, held))

    async def _attempt_all(self, ids: list[str], held: HeldClaim) -> int:
        """Attempt a claimed batch. Redis is touched in bulk before (documents, secrets)
        and after (one pipelined finish); in between only HTTP runs, concurrently."""
        fetched = self.store.get_many(ids)
        for delivery_id, doc in zip(ids, fetched, strict=True):
            if doc is None:  # expired or deleted: it can never be sent, so never claim it again
                log.warning("webhook delivery %s has no document; dropped", delivery_id)
                self.store.drop_due(delivery_id)
        docs = [d for d in fetched if d is not None and d["status"] == "pending"]
        docs = self._claim_reports(docs, held)
        # Per account, isolated: a secret that no longer decrypts fails that account's
        # attempts (they move on toward `exhausted`), never the whole batch.
        secrets: dict[str, list[str] | str] = {}
        for account in {d["accountId"] for d in docs}:
            try:
                secrets[account] = self.secrets.signing_secrets(account, self.clock())
            except Exception as e:
                log.error("webhook secret of account %s unusable: %s", account, e)
                secrets[account] = f"cannot sign: {e}"
        urls = sorted({d["url"] for d in docs})
        checked = await asyncio.gather(*(asyncio.to_thread(self._check, u) for u in urls))
        targets = dict(zip(urls, checked, strict=True))
        docs = self._fit_lease(docs, targets, held)
        clients: dict[tuple[str, str, int, str], tuple[httpx.AsyncClient, asyncio.Semaphore]] = {}
        gate = asyncio.Semaphore(GATE)  # attempts in flight, all receivers together

        def client_for(t: Target) -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
            # One pool per (address, host): a TLS connection is never reused for
            # another hostname's SNI. Each pool gets at most PER_RECEIVER requests at
            # once — kind to receivers, and httpcore's pool scheduling is quadratic in
            # queued requests, so a small pool is also the fast one.
            key = (t.scheme, str(t.ip), t.port, t.host)
            if key not in clients:
                limits = httpx.Limits(max_connections=PER_RECEIVER,
                                      max_keepalive_connections=PER_RECEIVER)
                clients[key] = (httpx.AsyncClient(
                    trust_env=False, follow_redirects=False, limits=limits,
                    timeout=httpx.Timeout(self.settings.webhook_timeout_s + 5)),
                    asyncio.Semaphore(PER_RECEIVER))
            return clients[key]

        async def attempt_and_record(doc: dict[str, Any]) -> None:
            # Each attempt is recorded as soon as it ends (not after the whole batch):
            # what a batch did survives a time limit, and no result waits on a slow peer.
            outcome = await one(doc)
            if outcome is not None:
                await asyncio.to_thread(self._finish_all, [outcome], held)

        async def one(doc: dict[str, Any]) -> tuple[dict[str, Any], Attempt, str | None] | None:
            target = targets[doc["url"]]
            if isinstance(target, str):  # refused: never contacted
                return doc, Attempt(None, 0, f"URL refused: {target}", ""), "refused"
            secret = secrets[doc["accountId"]]
            if isinstance(secret, str):
                return doc, Attempt(None, 0, secret, ""), None
            ts = int(self.clock())
            headers = signing.headers(doc["id"], ts, doc["body"], secret,
                                      legacy=self.settings.webhook_legacy_signature)
            client, per_receiver = client_for(target)
            async with gate, per_receiver:
                if not held.holds(doc["id"]):  # lost, or renewals late: never sent blind
                    log.warning("webhook delivery %s: its lease is not held; not attempted",
                                doc["id"])
                    await asyncio.to_thread(held.release, [doc["id"]])  # if still ours
                    return None
                attempt = await post(client, target, headers, doc["body"].encode(),
                                     self.settings.webhook_timeout_s)
            final = "delivered" if attempt.ok else "gone" if attempt.status == 410 else None
            return doc, attempt, final

        try:
            results = await asyncio.gather(*(attempt_and_record(d) for d in docs),
                                           return_exceptions=True)
        finally:
            await asyncio.gather(*(c.aclose() for c, _ in clients.values()))
        for r in results:
            if isinstance(r, BaseException):
                # The lease runs out and another attempt happens: never lost.
                log.error("webhook attempt crashed: %r", r)
        return len(docs)

    def _fit_lease(self, docs: list[dict[str, Any]], targets: dict[str, Target | str],
                   held: HeldClaim) -> list[dict[str, Any]]:
        """Keep what can be attempted in about one lease; give the rest back.

        Attempts run PER_RECEIVER at a time per receiver (and GATE in all), each up to
        the timeout: in one lease fit ``lease // timeout`` rounds. The claim is renewed
        while it runs, so this is no safety limit; it keeps one worker from hoarding what
        others could send now."""
        rounds = max(1, int(self.settings.webhook_lease_s // self.settings.webhook_timeout_s))
        per_receiver, total = PER_RECEIVER * rounds, GATE * rounds
        counts: dict[Any, int] = {}
        kept, released = [], []
        for d in docs:
            t = targets[d["url"]]
            key = d["url"] if isinstance(t, str) else (t.scheme, str(t.ip), t.port, t.host)
            counts[key] = counts.get(key, 0) + 1
            (kept if counts[key] <= per_receiver and len(kept) < total else released).append(d)
        if released:
            held.release([d["id"] for d in released])
        return kept

    def _claim_reports(self, docs: list[dict[str, Any]], held: HeldClaim
                       ) -> list[dict[str, Any]]:
        """First attempts of jobs a caller waited on: claim the report, or stand down."""
        waiting = [d for d in docs if d.get("syncUntil") and d["series"] == 1 and d["attempt"] == 0]
        if not waiting:
            return docs
        client = self.store.client
        owners = {d["id"]: claims.claim(client, self.settings, d["jobId"], d["service"],
                                        claims.WEBHOOK) for d in waiting}
        suppressed = [d for d in waiting if owners[d["id"]] == claims.SYNC]
        if suppressed:
            now = self.now_ms()
            batch = []
            for d in suppressed:
                d.update(status="suppressed", nextAt=None,
                         lastError="reported to the waiting caller; no webhook")
                batch.append((d, None, False, now))
            held.finish_many(batch)
        gone = {d["id"] for d in suppressed}
        return [d for d in docs if d["id"] not in gone]

    def _check(self, url: str) -> Target | str:
        try:
            return check(url, self.policy)
        except EgressRefused as e:
            return str(e)

    def _finish_all(self, outcomes: list[tuple[dict[str, Any], Attempt, str | None]],
                    held: HeldClaim) -> None:
        now = self.now_ms()
        batch = []
        for doc, attempt, final_status in outcomes:
            doc["attempt"] += 1
            doc["attempts"].append({
                "series": doc["series"], "n": doc["attempt"], "at": now,
                "status": attempt.status, "durationMs": attempt.duration_ms,
                "error": attempt.error, "response": attempt.response,
            })
            doc["attempts"] = doc["attempts"][-MAX_LOGGED_ATTEMPTS:]
            doc["lastError"] = attempt.error
            next_due = None
            exhausted = False
            if final_status is None:
                delay = schedule.next_delay(self.delays, doc["attempt"], attempt.retry_after_s)
                if delay is None:
                    final_status, exhausted = "exhausted", True
                else:
                    next_due = now + int(delay * 1000)
            doc["status"] = final_status or "pending"
            doc["nextAt"] = next_due
            batch.append((doc, next_due, exhausted, now))
        applied = held.finish_many(batch) if batch else []
        for (doc, *_), ok, (_, attempt, _) in zip(batch, applied, outcomes, strict=True):
            if not ok:
                log.warning("webhook delivery %s: lease lost; another worker owns it", doc["id"])
                continue
            log.info("webhook attempt", extra={
                "delivery": doc["id"], "status": attempt.status, "outcome": doc["status"],
                "attempt": doc["attempt"]})
            if self.on_attempt is not None:
                self.on_attempt(doc, attempt)
