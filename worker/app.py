"""The module dramatiq worker processes import (``extworker serve`` points it here).

This is the one entry point that reads settings from the environment; models
are not loaded here — they load on first use, after the process has booted.
"""

from __future__ import annotations

import dramatiq
from dramatiq.middleware import CurrentMessage

from webhooks.pump import DeliveryPump
from worker.broker.actors import build_broker, declare_actors
from worker.broker.intake import IntakeMiddleware
from worker.broker.modelkeeper import ModelKeeper
from worker.core.settings import Settings
from worker.runtime import Runtime
from worker.telemetry.logs import configure as configure_logging
from worker.telemetry.metrics import MODELS_LOADED
from worker.telemetry.observe import MessageMetrics, on_extension, on_webhook_attempt
from worker.telemetry.ops import Ops

settings = Settings()
configure_logging(settings)
broker = build_broker(settings)
broker.add_middleware(CurrentMessage())
broker.add_middleware(MessageMetrics())
if settings.http_port:
    broker.add_middleware(Ops())
dramatiq.set_broker(broker)
runtime = Runtime(settings)
actors = declare_actors(broker, runtime)
broker.add_middleware(IntakeMiddleware(settings, actors.dispatch))
assert runtime.redis is not None
broker.add_middleware(ModelKeeper(settings, runtime.models, runtime.redis))
assert runtime.webhooks is not None and actors.deliver_due is not None
runtime.pipeline.observe = on_extension
runtime.models.on_change = MODELS_LOADED.set
runtime.webhooks.on_attempt = on_webhook_attempt
broker.add_middleware(DeliveryPump(runtime.webhooks, actors.deliver_due, settings.queue_webhooks))
