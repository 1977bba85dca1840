"""The pod's HTTP port (``EXTWORKER_HTTP_PORT``, default 9191): ``/metrics``,
``/healthz`` and ``/readyz``.

It runs as a dramatiq *fork* — one process per pod beside the worker
processes — so a busy worker never delays a probe.

* ``/metrics`` — every worker process's samples (prometheus multiprocess
  mode) plus gauges read from Redis at scrape time: queue depths (ready,
  delayed, dead-letter) and the webhook backlog.
* ``/healthz`` — 200 when the process is up and Redis answers, else 503.
* ``/readyz`` — 200 when Redis answers and the models for this pod's queues
  are loadable (present in ``MODELS_DIR``: the remove-bg model for the
  ``extensions`` queue, and every ``EXTWORKER_PRELOAD`` entry) and, with shared
  models, every inference process accepts a connection; else 503 with the reasons.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import redis
from dramatiq.middleware import Middleware

from worker.core.settings import Settings
from worker.models.ref import ModelKind, ModelRef

QUEUES_ENV = "EXTWORKER_SERVE_QUEUES"  # set by `extworker serve` for this fork


def _queues(settings: Settings) -> list[str]:
    raw = os.environ.get(QUEUES_ENV, "")
    return raw.split(",") if raw else [settings.queue_default, settings.queue_extensions,
                                        settings.queue_webhooks]


def check_health(client: redis.Redis) -> tuple[bool, list[str]]:
    try:
        client.ping()
        return True, []
    except redis.RedisError as e:
        return False, [f"redis: {e}"]


def check_ready(client: redis.Redis, settings: Settings) -> tuple[bool, list[str]]:
    ok, problems = check_health(client)
    from worker.models.catalog import require
    from worker.store.backends.redis_kv import persistence_problem

    if ok and settings.require_persistent_redis:
        lost = persistence_problem(client)
        if lost:
            ok = False
            problems.append(lost)

    wanted = [ModelRef(ModelKind.REMOVE_BG, settings.remove_bg_model)] \
        if settings.queue_extensions in _queues(settings) else []
    preloaded: list[ModelRef] = []
    for entry in settings.preload:
        try:
            preloaded.append(ModelRef.parse(entry))
        except ValueError as e:
            ok = False
            problems.append(f"preload entry {entry!r}: {e}")
    for ref in wanted + preloaded:
        try:
            require(ref.name, settings.models_dir)
        except Exception as e:
            ok = False
            problems.append(f"{ref}: {e}")
    if settings.inference_address:  # shared models: the node's inference processes answer
        from worker.models.remote import InferenceClient

        down = InferenceClient(settings.inference_address,
                               bytes.fromhex(settings.inference_key or "")).unreachable()
        ok = ok and not down
        problems += down
    # Preloaded models must be loaded, not only present: a pod that serves the
    # synchronous attempt is ready once its worker processes report them.
    if preloaded and ok:
        here = loaded_in_pod(client, settings)
        for ref in preloaded:
            if ref.name not in here:
                ok = False
                problems.append(f"{ref}: not loaded yet by this pod's workers")
    return ok, problems


def loaded_in_pod(client: redis.Redis, settings: Settings) -> set[str]:
    """Models the worker processes of this host (pod) report loaded."""
    import socket


    names: set[str] = set()
    for key in client.scan_iter(settings.keys.models_loaded(f"{socket.gethostname()}-*")):
        raw = client.get(key)
        names.update(json.loads(raw) if raw else [])
    return names


class RedisCollector:
    """Gauges read from Redis at scrape time (fleet-wide values)."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        # The queues are in the broker's Redis (EXTWORKER_BROKER_URL), when it has its own.
        self.broker = (redis.Redis.from_url(settings.broker_url, socket_connect_timeout=2,
                                            socket_timeout=2)
                       if settings.broker_url else client)

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        up = GaugeMetricFamily("extworker_up", "1 when this pod can reach Redis.")
        depth = GaugeMetricFamily("extworker_queue_messages", "Messages in a dramatiq queue.",
                                  labels=["queue", "state"])
        due = GaugeMetricFamily("extworker_webhook_attempts_due", "Webhook attempts due now.")
        age = GaugeMetricFamily("extworker_webhook_oldest_due_age_seconds",
                                "Age of the oldest due webhook attempt.")
        s = self.settings
        try:
            pipe = self.broker.pipeline(transaction=False)
            queues = [s.queue_default, s.queue_extensions, s.queue_webhooks]
            for q in queues:
                ready, delayed, dead = s.keys.broker_queue(q)
                pipe.llen(ready)
                pipe.llen(delayed)
                pipe.zcard(dead)
            counts = pipe.execute()
            for i, q in enumerate(queues):
                for j, state in enumerate(("ready", "delayed", "dead")):
                    depth.add_metric([q, state], counts[3 * i + j])
            now_ms = int(time.time() * 1000)
            n_due = self.client.zcount(s.keys.webhook_due(), "-inf", now_ms)
            oldest = self.client.zrange(s.keys.webhook_due(), 0, 0, withscores=True)
            due.add_metric([], n_due)
            age.add_metric([], max(0.0, (now_ms - oldest[0][1]) / 1000)
                           if oldest and oldest[0][1] <= now_ms else 0.0)
            # Stuck work: deliveries and intake entries live (cheap), extensions as the
            # last `extworker doctor` found them (finding them scans the job documents).
            from worker.broker.doctor import idle_intake, unclaimed_deliveries

            stuck = GaugeMetricFamily(
                "extworker_stuck", "Work found stuck: extensions and handoffs (at the last "
                "`extworker doctor`), deliveries and intake entries (now).", labels=["kind"])
            last = json.loads(self.client.get(s.keys.doctor_report()) or b"{}")
            stuck.add_metric(["extensions"], last.get("extensions", 0))
            stuck.add_metric(["handoffs"], last.get("handoffs", 0))
            stuck.add_metric(["blobs"], last.get("blobs", 0))
            stuck.add_metric(["deliveries"], unclaimed_deliveries(self.client, s, now_ms))
            stuck.add_metric(["intake"], idle_intake(self.client, s))
            up.add_metric([], 1)
        except redis.RedisError:
            up.add_metric([], 0)
            yield up
            return
        yield from (up, depth, due, age, stuck)


def make_handler(settings: Settings, client: redis.Redis) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                from prometheus_client import (
                    CONTENT_TYPE_LATEST,
                    CollectorRegistry,
                    generate_latest,
                )
                from prometheus_client import multiprocess as mp

                # Imported here, never at module level: `serve` imports this module
                # before it sets PROMETHEUS_MULTIPROC_DIR for the processes it forks.
                from worker.telemetry.metrics import reap_dead_processes

                registry = CollectorRegistry()
                if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
                    reap_dead_processes(os.environ["PROMETHEUS_MULTIPROC_DIR"])
                    mp.MultiProcessCollector(registry)
                registry.register(RedisCollector(client, settings))
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path in ("/healthz", "/readyz"):
                ok, problems = (check_health(client) if path == "/healthz"
                                else check_ready(client, settings))
                body = {"status": "ok" if ok else "unavailable", "problems": problems}
                self._send(200 if ok else 503, json.dumps(body).encode())
            else:
                self._send(404, b'{"error": "not found"}')

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


class Ops(Middleware):
    """Starts ``serve_http`` as a dramatiq fork (one per pod, beside the workers)."""

    @property
    def forks(self) -> list[Any]:
        return [serve_http]


def serve_http() -> int:
    """The dramatiq fork: serve the pod's port until terminated."""
    settings = Settings()
    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=2,
                                  socket_timeout=2)
    server = ThreadingHTTPServer((settings.http_host, settings.http_port),
                                 make_handler(settings, client))
    server.daemon_threads = True
    server.serve_forever()
    return 0
