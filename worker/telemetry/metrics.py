"""Prometheus metrics, correct under dramatiq's many processes.

``extworker serve`` points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory
before the worker processes start; each process writes its samples there and
the exposition server (``worker.telemetry.ops``) aggregates them. Queue depths and the
webhook backlog are read from Redis at scrape time. No label ever carries an
account, file or job id.

Every metric is listed in ``METRICS`` (name, type, labels, meaning): the
README table and the Grafana dashboard test are checked against it.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# name → (type, labels, meaning)
METRICS: dict[str, tuple[str, tuple[str, ...], str]] = {}


def _doc(name: str, kind: str, labels: tuple[str, ...], meaning: str) -> str:
    METRICS[name] = (kind, labels, meaning)
    return meaning


_SECONDS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)

# dramatiq messages (what dramatiq's own Prometheus middleware reports, here on our port)
MESSAGES = Counter("extworker_messages_total", _doc(
    "extworker_messages_total", "counter", ("queue", "actor"),
    "Messages processed by the worker."), ["queue", "actor"])
MESSAGE_ERRORS = Counter("extworker_message_errors_total", _doc(
    "extworker_message_errors_total", "counter", ("queue", "actor"),
    "Messages whose actor raised (they are retried or dead-lettered)."), ["queue", "actor"])
MESSAGE_RETRIES = Counter("extworker_message_retries_total", _doc(
    "extworker_message_retries_total", "counter", ("queue", "actor"),
    "Messages re-enqueued for a retry."), ["queue", "actor"])
MESSAGES_RECOVERED = Counter("extworker_messages_recovered_total", _doc(
    "extworker_messages_recovered_total", "counter", ("queue",),
    "Messages of dead workers (crashed, killed, lost) put back in their queue by the sweep."),
    ["queue"])
MESSAGES_IN_PROGRESS = Gauge("extworker_messages_in_progress", _doc(
    "extworker_messages_in_progress", "gauge", ("queue", "actor"),
    "Messages being processed right now."), ["queue", "actor"], multiprocess_mode="livesum")
MESSAGE_SECONDS = Histogram("extworker_message_duration_seconds", _doc(
    "extworker_message_duration_seconds", "histogram", ("queue", "actor"),
    "Time an actor spent on a message."), ["queue", "actor"], buckets=_SECONDS)

# extensions
EXTENSION_JOBS = Counter("extworker_extension_jobs_total", _doc(
    "extworker_extension_jobs_total", "counter", ("extension", "status"),
    "Extensions that reached a final state (status: success or failed)."),
    ["extension", "status"])
EXTENSION_SECONDS = Histogram("extworker_extension_duration_seconds", _doc(
    "extworker_extension_duration_seconds", "histogram", ("extension",),
    "Wall time of one extension run, from start to committed result."),
    ["extension"], buckets=_SECONDS)
INFERENCE_SECONDS = Histogram("extworker_inference_seconds", _doc(
    "extworker_inference_seconds", "histogram", ("model", "device"),
    "Time in the extension's model work (decode, inference, encode), by model and device."),
    ["model", "device"], buckets=_SECONDS)
BATCH_SIZE = Histogram("extworker_inference_batch_size", _doc(
    "extworker_inference_batch_size", "histogram", ("model",),
    "Images per forward pass (micro-batching across jobs), by model."),
    ["model"], buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
UNITS = Counter("extworker_units_charged_total", _doc(
    "extworker_units_charged_total", "counter", ("extension",),
    "Extension units charged (dry runs and failures charge none)."), ["extension"])
MODELS_LOADED = Gauge("extworker_models_loaded", _doc(
    "extworker_models_loaded", "gauge", (),
    "Models loaded, summed over the pod's worker processes."), multiprocess_mode="livesum")

# webhooks
WEBHOOK_ATTEMPTS = Counter("extworker_webhook_attempts_total", _doc(
    "extworker_webhook_attempts_total", "counter", ("outcome", "status_class"),
    "Delivery attempts. outcome: delivered, retry, gone, exhausted, refused; status_class: "
    "2xx…5xx, or none when no response came."), ["outcome", "status_class"])
WEBHOOK_LATENCY = Histogram("extworker_webhook_delivery_latency_seconds", _doc(
    "extworker_webhook_delivery_latency_seconds", "histogram", (),
    "End to end: from the extension's final state to the receiver's 2xx."),
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 7200, 86400))
WEBHOOK_EXHAUSTED = Counter("extworker_webhook_deliveries_exhausted_total", _doc(
    "extworker_webhook_deliveries_exhausted_total", "counter", (),
    "Deliveries whose whole retry schedule failed (now in the dead-letter set)."))

# the HTTP API (`extworker api`, one process: exposed on its own /metrics)
API_REQUESTS = Counter("extworker_api_requests_total", _doc(
    "extworker_api_requests_total", "counter", ("method", "route", "status"),
    "HTTP API requests, by route template (never a file id) and status code."),
    ["method", "route", "status"])
DERIVATIVES = Counter("extworker_derivatives_total", _doc(
    "extworker_derivatives_total", "counter", ("outcome",),
    "Derivatives (thumbnails, transformations) delivery needed: `computed` once per version "
    "and transformation, `stored` when found in the blob store."), ["outcome"])
API_SECONDS = Histogram("extworker_api_request_duration_seconds", _doc(
    "extworker_api_request_duration_seconds", "histogram", ("method", "route"),
    "HTTP API request latency, by route template."), ["method", "route"], buckets=_SECONDS)

# read from Redis at scrape time (fleet-wide: every pod reports the same value; use max)
_doc("extworker_queue_messages", "gauge", ("queue", "state"),
     "Messages in a dramatiq queue, read from Redis. state: ready, delayed, dead.")
_doc("extworker_webhook_attempts_due", "gauge", (),
     "Webhook attempts due now and not yet claimed (fleet-wide, from Redis).")
_doc("extworker_webhook_oldest_due_age_seconds", "gauge", (),
     "How long the oldest due webhook attempt has been waiting (0 when none).")
_doc("extworker_stuck", "gauge", ("kind",),
     "Work found stuck (see `extworker doctor`). kind: extensions (pending past their time "
     "limit), handoffs (final, webhook never handed on) and blobs (orphaned bytes past the "
     "grace period), at the last doctor run; "
     "deliveries (due a lease ago, unclaimed), intake (entries idle on a stopped consumer).")
_doc("extworker_up", "gauge", (), "1 when this pod's exposition server can reach Redis.")


def status_class(status: int | None) -> str:
    return f"{status // 100}xx" if status else "none"


def reap_dead_processes(metrics_dir: str) -> list[int]:
    """``mark_process_dead`` for every process that left live-gauge samples and is gone
    (killed, or crashed before its shutdown hook): its in-progress and models-loaded
    gauges stop counting. Returns the pids reaped."""
    import os
    import re
    from pathlib import Path

    from prometheus_client import multiprocess

    reaped = []
    pids = {int(m.group(1)) for f in Path(metrics_dir).glob("gauge_live*_*.db")
            if (m := re.search(r"_(\d+)\.db$", f.name))}
    for pid in sorted(pids):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid, metrics_dir)
            reaped.append(pid)
        except PermissionError:  # alive, another user's
            pass
    return reaped
