"""The module dramatiq worker processes import (``extworker serve`` points it here).

The composition root of a worker process: the one place that reads settings from the
environment and builds the broker, its middleware and the ``Runtime`` (which declares
the actors). Models are not loaded here — they load on first use, after boot.
"""

from __future__ import annotations

import dramatiq
from dramatiq.middleware import CurrentMessage

from worker.broker.actors import build_broker
from worker.broker.intake import IntakeMiddleware
from worker.broker.modelkeeper import ModelKeeper
from worker.broker.pump import DeliveryPump
from worker.broker.sweeper import QueueSweeper
from worker.core.settings import Settings
from worker.runtime import Runtime
from worker.telemetry.logs import configure as configure_logging
from worker.telemetry.metrics import MODELS_LOADED
from worker.telemetry.observe import (
    MessageMetrics,
    on_batch,
    on_extension,
    on_recovered,
    on_webhook_attempt,
)
from worker.telemetry.ops import Ops

settings = Settings()
configure_logging(settings)
broker = build_broker(settings)
broker.add_middleware(CurrentMessage())
broker.add_middleware(MessageMetrics())
broker.add_middleware(QueueSweeper(settings.broker_sweep_s, on_recovered))
if settings.http_port:
    broker.add_middleware(Ops())
dramatiq.set_broker(broker)
runtime = Runtime(settings, broker=broker, observe=on_extension,
                  on_models_change=MODELS_LOADED.set, on_webhook_attempt=on_webhook_attempt,
                  on_batch=on_batch)
assert runtime.outbox is not None and runtime.webhooks is not None and runtime.redis is not None
broker.add_middleware(IntakeMiddleware(settings, runtime.outbox.dispatch))
broker.add_middleware(ModelKeeper(settings, runtime.models, runtime.redis))
broker.add_middleware(DeliveryPump(runtime.webhooks, runtime.outbox.wake_webhooks,
                                   settings.queue_webhooks))
