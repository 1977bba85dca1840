"""The composition root: what one process owns, built once and passed down.

``Runtime`` builds every collaborator — stores, the extension registry, the model cache,
the webhooks, the pipeline and, given a broker, the actors — and passes each its
collaborators through its constructor; nothing is wired afterwards. ``worker.app`` (the
dramatiq processes) and the CLI build one; nothing else reads the environment.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import dramatiq
import redis

from extensions import loaders
from extensions.registry import Registry
from webhooks.deliverer import Webhooks
from webhooks.sender import Attempt
from worker.broker.actors import Actors, declare_actors
from worker.broker.outbox import Outbox
from worker.core.egress import EgressPolicy
from worker.core.settings import Settings
from worker.models.cache import ModelCache
from worker.models.remote import InferenceClient, InferenceServer
from worker.pipeline.pipeline import Enqueue, Notify, Observe, Pipeline
from worker.store.account_settings import AccountSettings
from worker.store.apikeys import ApiKeys
from worker.store.backends import open_store
from worker.store.backends.sqlite_kv import LocalKV
from worker.store.blobs import BlobStore
from worker.store.bulkjobs import BulkJobs
from worker.store.embeddings import Embeddings
from worker.store.fields import FieldStore
from worker.store.files import FileStore
from worker.store.kv import KV
from worker.store.library import Library
from worker.store.metadata import ExifTool
from worker.store.saved import SavedStore
from worker.telemetry.logs import configure as configure_logging
from worker.telemetry.observe import on_batch as observe_batch


class Runtime:
    def __init__(
        self,
        settings: Settings,
        *,
        embedded: bool = False,
        broker: dramatiq.Broker | None = None,
        enqueue: Enqueue | None = None,
        notify: Notify | None = None,
        observe: Observe | None = None,
        on_models_change: Callable[[int], None] | None = None,
        on_batch: Callable[[str, int], None] | None = None,
        on_webhook_attempt: Callable[[dict[str, Any], Attempt | None], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``embedded``: no Redis (``LocalKV``, no webhooks). With a ``broker`` the actors
        are declared on it, pending extensions are sent to their queues and final ones
        handed to the webhooks; without one, ``enqueue``/``notify`` (or nothing) do that —
        how tests and the Redis-less ``apply`` run the pipeline in-process."""
        self.settings = settings
        self.redis: redis.Redis | None = None
        kv: KV
        if embedded:
            kv = LocalKV(settings.data_dir / "embedded")
        else:
            self.redis = redis.Redis.from_url(settings.redis_url)
            kv = open_store(settings, self.redis)
        self.kv = kv
        self.blobs = BlobStore(settings.blob_root, settings.public_url_base)
        self.registry = Registry.discover(settings.extra_extensions)
        remote = (InferenceClient(settings.inference_address,
                                  bytes.fromhex(settings.inference_key or ""),
                                  settings.inference_timeout_s)
                  if settings.inference_address else None)
        self.models = ModelCache(idle_ttl_s=settings.model_idle_ttl_s, on_change=on_models_change,
                                 remote=remote, on_batch=on_batch)
        self.outbox = Outbox(broker, settings) if broker is not None else None
        # Webhooks need Redis; the embedded mode (`apply`) delivers none.
        self.webhooks = Webhooks(
            self.redis, settings, clock,
            wake=self.outbox.wake_webhooks if self.outbox is not None else None,
            on_attempt=on_webhook_attempt) if self.redis is not None else None
        if self.outbox is not None:
            enqueue = enqueue or self.outbox.execute
            if notify is None and self.webhooks is not None:
                notify = self.webhooks.hand_off
        self.fields = FieldStore(kv, settings)
        self.account_settings = AccountSettings(kv, settings)
        # API keys keep a sealed copy (signed URLs and client-side uploads are HMACs keyed
        # by the private key): sealed like webhook secrets, under EXTWORKER_SECRET_KEY.
        self.apikeys = ApiKeys(kv, settings, self.webhooks.secrets
                               if self.webhooks is not None else None)
        self.saved = SavedStore(kv, settings, self.registry.contract)
        self.exiftool = ExifTool(settings.exiftool)
        self.files = FileStore(kv, self.blobs, settings, self.fields, self.exiftool)
        self.library = Library(self.files)
        self.embeddings = Embeddings(kv, settings)
        self.bulk = BulkJobs(kv, settings, self.library,
                             self.outbox.bulk if self.outbox is not None else None)
        egress = EgressPolicy.parse(settings.egress_allowlist, settings.egress_https_only)
        self.pipeline = Pipeline(settings, kv, self.blobs, self.registry, self.models,
                                 self.files, self.fields, self.saved, self.exiftool, egress,
                                 enqueue=enqueue, notify=notify, observe=observe)
        self.actors: Actors | None = None
        if broker is not None and self.outbox is not None:
            queues = {self.pipeline.queue_name(h.queue) for h in self.registry.handlers.values()}
            self.actors = declare_actors(broker, settings, self.pipeline, self.webhooks, queues,
                                         self.outbox, self.bulk)


def run_inference_server(settings: Settings, address: str, authkey: bytes, parent: int) -> None:
    """The node's inference process (``worker.models.remote``): its own model cache (the
    preload list loaded first), a server thread per worker connection; it exits when its
    parent (``serve``'s main process) is gone, so it is never orphaned."""
    import os
    import threading
    import time

    configure_logging(settings)
    # The node's only inference process: its thread budget is every CPU (processes=1).
    local = settings.model_copy(update={"inference_address": None, "inference_key": None,
                                        "processes": 1})
    models = ModelCache(idle_ttl_s=settings.model_idle_ttl_s, on_batch=observe_batch)
    loaders.preload(models, local)
    server = InferenceServer(address, authkey, lambda ref: loaders.get_ref(models, ref, local))
    threading.Thread(target=server.serve_forever, daemon=True, name="inference").start()
    while os.getppid() == parent:
        time.sleep(0.5)
        models.sweep()


class InferenceProcess:
    """One of ``serve``'s inference processes (one per GPU, on ``settings.device``): started
    (spawned, never forked: CUDA cannot follow a fork) before the workers, restarted if it
    dies, stopped with ``serve``. ``env`` is what the worker processes need to reach it
    (``inference_env`` for several)."""

    def __init__(self, settings: Settings, authkey: bytes | None = None) -> None:
        import multiprocessing
        import os
        import secrets
        import tempfile
        import threading

        self.settings = settings
        folder = tempfile.mkdtemp(prefix="extworker-inference-")  # mode 0700: ours alone
        self.address = os.path.join(folder, "socket")
        self.authkey = authkey or secrets.token_bytes(32)
        self.env = inference_env([self])
        self._context = multiprocessing.get_context("spawn")
        self._stopping = threading.Event()
        self.restarts = 0
        self.process = self._start()
        self._wait_ready(settings.inference_timeout_s)
        self._supervisor = threading.Thread(target=self._supervise, daemon=True,
                                            name="inference-supervisor")
        self._supervisor.start()

    def _start(self) -> Any:
        import os

        if os.path.exists(self.address):
            os.unlink(self.address)
        process = self._context.Process(
            target=run_inference_server, name="extworker-inference", daemon=False,
            args=(self.settings, self.address, self.authkey, os.getpid()))
        process.start()
        return process

    def _wait_ready(self, timeout: float) -> None:
        """Block until the process listens (its preload list is loaded by then), so that no
        worker starts before it; an error if it dies or stays silent."""
        import time

        from worker.core.errors import ExtworkerError

        deadline = time.monotonic() + timeout
        probe = InferenceClient(self.address, self.authkey)
        while True:
            if not probe.unreachable():
                return
            if not self.process.is_alive() or time.monotonic() > deadline:
                self.process.kill()
                raise ExtworkerError(
                    f"the inference process did not start (exit code {self.process.exitcode})")
            time.sleep(0.1)

    def _supervise(self) -> None:
        import logging

        while not self._stopping.wait(0.5):
            if not self.process.is_alive():
                logging.getLogger(__name__).warning(
                    "inference process exited (code %s); restarting it", self.process.exitcode)
                self.restarts += 1
                self.process = self._start()

    def stop(self, timeout: float = 10) -> None:
        self._stopping.set()
        self._supervisor.join(2)
        self.process.terminate()
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()


def inference_env(processes: list[InferenceProcess]) -> dict[str, str]:
    """The workers' settings for reaching these inference processes (one key for all)."""
    return {"EXTWORKER_INFERENCE_ADDRESS": ",".join(p.address for p in processes),
            "EXTWORKER_INFERENCE_KEY": processes[0].authkey.hex()}


def inference_devices(settings: Settings) -> list[str]:
    """One inference process per device: the configured ``cuda:N`` or ``cpu``; for ``cuda`` /
    ``auto``, every visible GPU (counted without initialising CUDA in this process, which
    forks the workers next)."""
    from worker.models.devices import visible_gpu_count

    if settings.device == "cpu" or settings.device.startswith("cuda:"):
        return [settings.device]
    return [f"cuda:{i}" for i in range(visible_gpu_count())] or [settings.device]
