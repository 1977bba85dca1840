"""Where the worker's numbers go: the pipeline and the deliverer report to hooks
set here, which update the Prometheus metrics and write structured log lines.

Kept apart from the pipeline so data still flows one way: the pipeline only
calls ``on_extension(...)``; it knows nothing about Prometheus.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware

from worker.core.jobs import Slot
from worker.telemetry import metrics

log = logging.getLogger("worker.telemetry.observe")


def on_batch(model: str, size: int) -> None:
    """Called for every micro-batch a model runs (worker or inference process)."""
    metrics.BATCH_SIZE.labels(model).observe(size)


def on_recovered(queue: str, count: int) -> None:
    """Called when a sweep puts ``count`` messages of dead workers back in ``queue``."""
    metrics.MESSAGES_RECOVERED.labels(queue).inc(count)


def on_extension(slot_name: str, slot: Slot, seconds: float,
                 run_seconds: float | None) -> None:
    """Called once per extension reaching a final state."""
    ext = slot.extension
    metrics.EXTENSION_JOBS.labels(ext, slot.status).inc()
    metrics.EXTENSION_SECONDS.labels(ext).observe(seconds)
    if slot.status == "success" and run_seconds is not None:
        metrics.INFERENCE_SECONDS.labels(slot.model or ext,
                                         slot.device or "cpu").observe(run_seconds)
    if slot.units:
        metrics.UNITS.labels(ext).inc(slot.units)


def on_webhook_attempt(doc: dict[str, Any], attempt: Any) -> None:
    outcome = {"pending": "retry"}.get(doc["status"], doc["status"])
    metrics.WEBHOOK_ATTEMPTS.labels(outcome, metrics.status_class(attempt.status)).inc()
    if doc["status"] == "delivered":
        finished = doc.get("createdAt") or 0
        metrics.WEBHOOK_LATENCY.observe(max(0.0, time.time() - finished / 1000))
    elif doc["status"] == "exhausted":
        metrics.WEBHOOK_EXHAUSTED.inc()


class MessageMetrics(Middleware):
    """dramatiq's message metrics (count, errors, retries, in progress, duration)."""

    def __init__(self) -> None:
        self.started: dict[str, float] = {}

    def after_process_stop(self, broker: dramatiq.Broker) -> None:
        """This process's live gauges (in progress, models loaded) stop counting."""
        import os

        from prometheus_client import multiprocess

        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            multiprocess.mark_process_dead(os.getpid())

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        import structlog

        structlog.contextvars.clear_contextvars()  # no context leaks between messages
        self.started[message.message_id] = time.perf_counter()
        metrics.MESSAGES_IN_PROGRESS.labels(message.queue_name, message.actor_name).inc()

    def after_process_message(self, broker: dramatiq.Broker, message: Any, *,
                              result: Any = None, exception: BaseException | None = None) -> None:
        labels = (message.queue_name, message.actor_name)
        t0 = self.started.pop(message.message_id, None)
        if t0 is not None:
            metrics.MESSAGE_SECONDS.labels(*labels).observe(time.perf_counter() - t0)
        metrics.MESSAGES_IN_PROGRESS.labels(*labels).dec()
        metrics.MESSAGES.labels(*labels).inc()
        if exception is not None:
            metrics.MESSAGE_ERRORS.labels(*labels).inc()

    after_skip_message = after_process_message

    def after_nack(self, broker: dramatiq.Broker, message: Any) -> None:
        pass

    def after_enqueue(self, broker: dramatiq.Broker, message: Any, delay: int | None) -> None:
        if message.options.get("retries"):
            metrics.MESSAGE_RETRIES.labels(message.queue_name, message.actor_name).inc()
