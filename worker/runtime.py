"""What one process owns: settings, stores, the extension registry, loaded models.

Built once at the entry point (``worker.app`` for dramatiq processes, the
CLI otherwise) and passed down — no module-level state elsewhere.
"""

from __future__ import annotations

import redis

from extensions.registry import Registry
from webhooks.deliverer import Webhooks
from worker.core.settings import Settings
from worker.models.catalog import ModelCache
from worker.pipeline.pipeline import Enqueue, Notify, Pipeline
from worker.store.blobs import BlobStore
from worker.store.kv import KV, LocalKV, RedisKV


class Runtime:
    def __init__(
        self,
        settings: Settings,
        *,
        embedded: bool = False,
        enqueue: Enqueue | None = None,
        notify: Notify | None = None,
    ) -> None:
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
        self.models = ModelCache(idle_ttl_s=settings.model_idle_ttl_s)
        self.pipeline = Pipeline(
            settings, kv, self.blobs, self.registry, self.models, enqueue=enqueue, notify=notify
        )
        # Webhooks need Redis; the embedded mode (`apply`) delivers none.
        self.webhooks = Webhooks(self.redis, settings) if self.redis is not None else None
