"""Keeps a worker process's models in shape: preload at boot, unload when idle,
and report what is loaded (``extworker models list`` reads the reports).

Runs as dramatiq middleware; the work happens on a background thread so boot
is never blocked by a slow model load.
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

from worker.core.settings import Settings
from worker.models.cache import ModelCache

log = logging.getLogger(__name__)
REPORT_EVERY_S = 30.0


def loaded_anywhere(client: redis.Redis, settings: Settings) -> dict[str, int]:
    """Model name → how many worker processes report it loaded (reports expire)."""
    counts: dict[str, int] = {}
    for key in client.scan_iter(settings.keys.models_loaded()):
        raw = client.get(key)
        for name in json.loads(raw) if raw else []:
            counts[name] = counts.get(name, 0) + 1
    return counts


class ModelKeeper(Middleware):
    def __init__(self, settings: Settings, models: ModelCache, client: redis.Redis) -> None:
        self.settings = settings
        self.models = models
        self.client = client
        self.worker = f"{socket.gethostname()}-{os.getpid()}"
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def _report(self) -> None:
        self.client.set(self.settings.keys.models_loaded(self.worker),
                        json.dumps(sorted(self.models.loaded_names())),
                        ex=int(REPORT_EVERY_S * 3))

    def _run(self) -> None:
        from extensions import loaders

        try:
            loaders.preload(self.models, self.settings)
        except Exception:  # a bad preload entry must not kill the worker (/readyz says why)
            log.exception("preload failed")
        while True:
            try:
                for key in self.models.sweep():
                    log.info("unloaded idle model %s", key)
                self._report()
            except Exception:
                log.exception("model keeper: error")
            if self.stopping.wait(REPORT_EVERY_S):
                break
        try:
            self.client.delete(self.settings.keys.models_loaded(self.worker))
        except redis.RedisError:
            pass

    def after_worker_boot(self, broker: dramatiq.Broker, worker: Any) -> None:
        self.thread = threading.Thread(target=self._run, name="model-keeper", daemon=True)
        self.thread.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: Any) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=5)
