"""The language-neutral intake: jobs published to a Redis Stream.

Any Redis client can publish a job::

    XADD extworker:intake MAXLEN ~ 100000 * job '{"fileId": "...", "extensions": [...]}'

Workers that consume the ``default`` queue run ``IntakeMiddleware``: a
thread per process reads the stream through the consumer group
``dispatchers`` and turns each entry into a ``dispatch`` message. An entry is
acknowledged (and deleted) only after the message is enqueued, and entries
left pending by a dead consumer are claimed after ``CLAIM_IDLE_MS``, so a
worker dying mid-read loses nothing. Duplicates are harmless: dispatch is
idempotent per ``jobId``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
from typing import Any

import dramatiq
import redis
from dramatiq.middleware import Middleware

from .settings import Settings

log = logging.getLogger(__name__)
GROUP = "dispatchers"
CLAIM_IDLE_MS = 60_000


def stream_key(settings: Settings) -> str:
    return settings.key(settings.intake_stream)


def publish(client: redis.Redis, settings: Settings, job: dict[str, Any]) -> str:
    """Append a job to the intake stream; returns the stream entry id."""
    entry = client.xadd(
        stream_key(settings), {"job": json.dumps(job)},
        maxlen=settings.intake_maxlen, approximate=True,
    )
    return entry.decode() if isinstance(entry, bytes) else str(entry)


class IntakeConsumer:
    """Reads the intake stream and hands each job to ``send``."""

    def __init__(self, client: redis.Redis, settings: Settings, send: Any) -> None:
        self.client = client
        self.stream = stream_key(settings)
        self.send = send
        self.consumer = f"{socket.gethostname()}-{os.getpid()}-{threading.get_ident()}"
        self.stopping = threading.Event()
        self._ensure_group()

    def _ensure_group(self) -> None:
        try:
            self.client.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except redis.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise

    def handle(self, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        raw = fields.get(b"job")
        try:
            job = json.loads(raw) if raw is not None else None
            if not isinstance(job, dict):
                raise ValueError("the entry's `job` field must be a JSON object")
        except ValueError as e:
            log.error("intake entry %s dropped: %s", entry_id, e)
        else:
            # A job without a jobId gets one derived from its stream entry, so every
            # redelivery of it (entry claimed again, dispatch retried) is the same job.
            eid = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            job.setdefault("jobId", f"intake-{eid}")
            self.send(job)  # raises if the broker is down: the entry stays pending
        pipe = self.client.pipeline()
        pipe.xack(self.stream, GROUP, entry_id)
        pipe.xdel(self.stream, entry_id)
        pipe.execute()

    def poll_once(self, block_ms: int = 1000) -> int:
        handled = 0
        claimed = self.client.xautoclaim(
            self.stream, GROUP, self.consumer, min_idle_time=CLAIM_IDLE_MS, count=50
        )
        batches = [claimed[1]]
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
        try:
            self.client.xgroup_delconsumer(self.stream, GROUP, self.consumer)
        except redis.RedisError:
            pass


class IntakeMiddleware(Middleware):
    """Runs an ``IntakeConsumer`` thread in worker processes that consume dispatch."""

    def __init__(self, settings: Settings, dispatch: dramatiq.Actor[Any, Any]) -> None:
        self.settings = settings
        self.dispatch = dispatch
        self.consumer: IntakeConsumer | None = None
        self.thread: threading.Thread | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        queues = getattr(worker, "consumer_whitelist", None)
        if queues and self.settings.queue_default not in queues:
            return
        client = redis.Redis.from_url(self.settings.redis_url)
        self.consumer = IntakeConsumer(client, self.settings, self.dispatch.send)
        self.thread = threading.Thread(target=self.consumer.run, name="intake", daemon=True)
        self.thread.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if self.consumer is not None and self.thread is not None:
            self.consumer.stopping.set()
            self.thread.join(timeout=5)
