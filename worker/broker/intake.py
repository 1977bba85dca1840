"""The language-neutral intake: jobs published to a Redis Stream.

Any Redis client can publish a job::

    XADD extworker:intake * job '{"fileId": "...", "extensions": [...]}'

Workers that consume the ``default`` queue run ``IntakeMiddleware``: a
thread per process reads the stream through the consumer group
``dispatchers`` and turns each entry into a ``dispatch`` message. An entry is
acknowledged (and deleted) only after the message is enqueued, and entries
left pending by a dead consumer are claimed after ``CLAIM_IDLE_MS``, so a
worker dying mid-read loses nothing. Duplicates are harmless: dispatch is
idempotent per ``jobId``.

Nothing is lost on the way: an entry that cannot be parsed (not JSON, nested
deeper than ``MAX_DEPTH``, too large, not an object) is recorded as a
``rejected`` job and acknowledged on its own, so it never holds back the entries read
with it. It is recorded where its publisher looks — under its own top-level ``jobId``
when that can be read (``worker.core.jsonlimits`` reads it however deep or large the rest
is), and never over an existing job document — else under ``intake-<entry id>``. The
stream is never trimmed (acknowledged entries are deleted, so its length is the backlog,
and ``publish`` refuses past ``EXTWORKER_INTAKE_MAXLEN``); a consumer that still owns
pending entries is never deleted at shutdown — another one claims them.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import threading
import uuid
from collections.abc import Callable
from typing import Any

import dramatiq
import redis
from dramatiq.middleware import Middleware

from worker.core.contract import ID_PATTERN
from worker.core.errors import IntakeFull  # noqa: F401  (raised here; imported from here too)
from worker.core.jobs import JobDoc
from worker.core.jsonlimits import MAX_DEPTH, loads, top_level_string
from worker.core.settings import Settings

log = logging.getLogger(__name__)
GROUP = "dispatchers"
CLAIM_IDLE_MS = 60_000
MAX_ENTRY_BYTES = 4 * 1024 * 1024




def publish(client: redis.Redis, settings: Settings, job: dict[str, Any]) -> str:
    """Append a job to the intake stream; returns the stream entry id.

    Raises ``IntakeFull`` when ``intake_maxlen`` jobs are waiting: the stream is never
    trimmed (trimming would drop jobs nobody has read)."""
    stream = settings.keys.intake()
    if client.xlen(stream) >= settings.intake_maxlen:
        raise IntakeFull(f"the intake backlog is full ({settings.intake_maxlen} unread jobs); "
                         "retry later or add dispatch workers")
    entry = client.xadd(stream, {"job": json.dumps(job)})
    return entry.decode() if isinstance(entry, bytes) else str(entry)


def parse_entry(raw: bytes | None) -> dict[str, Any]:
    """The job of one stream entry, or ``ValueError`` saying what is wrong with it."""
    if raw is None:
        raise ValueError("job: the entry has no `job` field")
    if len(raw) > MAX_ENTRY_BYTES:
        raise ValueError(f"job: {len(raw)} bytes, above the {MAX_ENTRY_BYTES}-byte limit "
                         "(put files in blob storage, not in the job)")
    job = loads(raw, "job", max_bytes=MAX_ENTRY_BYTES, max_depth=MAX_DEPTH)
    if not isinstance(job, dict):
        raise ValueError("job: must be a JSON object")
    return job


class IntakeConsumer:
    """Reads the intake stream and hands each job to ``send``."""

    def __init__(self, client: redis.Redis, settings: Settings, send: Any) -> None:
        self.client = client
        self.settings = settings
        self.stream = settings.keys.intake()
        self.send = send
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.stopping = threading.Event()
        self._claim_from = "0-0"  # XAUTOCLAIM's cursor: each call goes on where the last ended
        self._ensure_group()

    def _ensure_group(self) -> None:
        try:
            self.client.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except redis.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise

    def handle(self, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        # A job without a jobId gets one derived from its stream entry, so every
        # redelivery of it (entry claimed again, dispatch retried) is the same job.
        eid = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
        raw = fields.get(b"job")
        try:
            job = parse_entry(raw)
        except ValueError as e:
            # Where its publisher looks: its own jobId, when the top level has a valid one.
            own = top_level_string(raw, "jobId") if raw is not None else None
            job_id = own if own is not None and re.fullmatch(ID_PATTERN, own) else None
            log.error("intake entry %s (jobId %s) rejected: %s", eid, job_id, e)
            self._reject(job_id or f"intake-{eid}", str(e))
        else:
            job_id = job.setdefault("jobId", f"intake-{eid}")
            if not isinstance(job_id, str) or not re.fullmatch(ID_PATTERN, job_id):
                # Nowhere to record it under that id: under the entry's (XADD returned it).
                self._reject(f"intake-{eid}", f"jobId: must match {ID_PATTERN}")
            else:
                self.send(job)  # raises if the broker is down: the entry stays pending
        pipe = self.client.pipeline()
        pipe.xack(self.stream, GROUP, entry_id)
        pipe.xdel(self.stream, entry_id)
        pipe.execute()

    def _reject(self, job_id: str, message: str) -> None:
        """A job document for an entry that never became a job: the publisher sees why."""
        doc = JobDoc.rejected(job_id, f"invalid job: {message}")
        self.client.set(self.settings.keys.job(job_id), json.dumps(doc.to_json()), nx=True,
                        ex=self.settings.job_ttl_s)

    def poll_once(self, block_ms: int = 1000) -> int:
        handled = 0
        cursor, claimed, *_ = self.client.xautoclaim(
            self.stream, GROUP, self.consumer, min_idle_time=CLAIM_IDLE_MS,
            start_id=self._claim_from, count=50)
        self._claim_from = cursor.decode() if isinstance(cursor, bytes) else str(cursor)
        batches = [claimed]
        resp = self.client.xreadgroup(
            GROUP, self.consumer, {self.stream: ">"}, count=50, block=block_ms
        )
        batches += [entries for _, entries in resp or []]
        for entries in batches:
            for entry_id, fields in entries:
                if fields is None:  # deleted while pending
                    continue
                self.handle(entry_id, fields)
                handled += 1
        return handled

    def claim_idle(self, min_idle_ms: int) -> int:
        """Claim and handle every entry idle for ``min_idle_ms`` (``extworker doctor``)."""
        handled, cursor = 0, "0-0"
        while True:
            cursor_raw, claimed, *_ = self.client.xautoclaim(
                self.stream, GROUP, self.consumer, min_idle_time=min_idle_ms,
                start_id=cursor, count=100)
            for entry_id, fields in claimed:
                if fields is not None:
                    self.handle(entry_id, fields)
                    handled += 1
            cursor = cursor_raw.decode() if isinstance(cursor_raw, bytes) else str(cursor_raw)
            if cursor == "0-0":
                return handled

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.poll_once()
            except redis.RedisError as e:
                log.warning("intake: redis error %s; retrying", e)
                self.stopping.wait(1.0)
            except Exception:
                log.exception("intake: unexpected error; retrying")
                self.stopping.wait(1.0)
        self.leave()

    def leave(self) -> None:
        """Delete this consumer from the group — only if it owns no pending entry (deleting
        it would drop them from the group: nobody would ever read them again)."""
        try:
            pending = self.client.xpending_range(self.stream, GROUP, min="-", max="+",
                                                 count=1, consumername=self.consumer)
            if pending:
                log.info("intake: consumer %s keeps %s pending; another worker claims them",
                         self.consumer, "its entries")
                return
            self.client.xgroup_delconsumer(self.stream, GROUP, self.consumer)
        except redis.RedisError:
            pass


class IntakeMiddleware(Middleware):
    """Runs an ``IntakeConsumer`` thread in worker processes that consume dispatch."""

    def __init__(self, settings: Settings, dispatch: Callable[[dict[str, Any]], None]) -> None:
        """``dispatch`` sends a job to the dispatch actor (``Outbox.dispatch``)."""
        self.settings = settings
        self.dispatch = dispatch
        self.consumer: IntakeConsumer | None = None
        self.thread: threading.Thread | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        queues = getattr(worker, "consumer_whitelist", None)
        if queues and self.settings.queue_default not in queues:
            return
        client = redis.Redis.from_url(self.settings.redis_url)
        self.consumer = IntakeConsumer(client, self.settings, self.dispatch)
        self.thread = threading.Thread(target=self.consumer.run, name="intake", daemon=True)
        self.thread.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if self.consumer is not None and self.thread is not None:
            self.consumer.stopping.set()
            self.thread.join(timeout=5)
