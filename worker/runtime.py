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

from extensions.registry import Registry
from webhooks.deliverer import Webhooks
from webhooks.sender import Attempt
from worker.broker.actors import Actors, declare_actors
from worker.broker.outbox import Outbox
from worker.core.egress import EgressPolicy
from worker.core.settings import Settings
from worker.models.cache import ModelCache
from worker.pipeline.pipeline import Enqueue, Notify, Observe, Pipeline
from worker.store.blobs import BlobStore
from worker.store.fields import FieldStore
from worker.store.files import FileStore
from worker.store.kv import KV, LocalKV, RedisKV
from worker.store.metadata import ExifTool
from worker.store.saved import SavedStore


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
            kv = RedisKV(self.redis, settings.redis_outage_wait_s)
        self.kv = kv
        self.blobs = BlobStore(settings.blob_root, settings.public_url_base)
        self.registry = Registry.discover(settings.extra_extensions)
        self.models = ModelCache(idle_ttl_s=settings.model_idle_ttl_s, on_change=on_models_change)
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
        self.saved = SavedStore(kv, settings, self.registry.contract)
        self.exiftool = ExifTool(settings.exiftool)
        self.files = FileStore(kv, self.blobs, settings, self.fields, self.exiftool)
        egress = EgressPolicy.parse(settings.egress_allowlist, settings.egress_https_only)
        self.pipeline = Pipeline(settings, kv, self.blobs, self.registry, self.models,
                                 self.files, self.fields, self.saved, self.exiftool, egress,
                                 enqueue=enqueue, notify=notify, observe=observe)
        self.actors: Actors | None = None
        if broker is not None and self.outbox is not None:
            queues = {self.pipeline.queue_name(h.queue) for h in self.registry.handlers.values()}
            self.actors = declare_actors(broker, settings, self.pipeline, self.webhooks, queues,
                                         self.outbox)
