"""The dramatiq side: a broker, the dispatch actor and one execute actor per queue.

``dispatch`` (queue ``default``) turns a job into pending extensions and
sends one ``execute_<queue>`` message per extension to the queue of its
resource class (``extensions`` for model work — what GPU nodes consume).
Actors are thin: all logic lives in ``Pipeline``, which is idempotent, so
dramatiq's at-least-once redelivery is safe.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import default_middleware
from dramatiq.middleware.time_limit import TimeLimitExceeded

from worker.broker.retries import DurableRetries, replace_retries
from worker.core.errors import PermanentError
from worker.core.settings import Settings
from worker.runtime import Runtime

DISPATCH = "dispatch"
EXHAUSTED = "extension_exhausted"


def execute_actor_name(queue: str) -> str:
    return f"execute_{queue}"


def build_broker(settings: Settings) -> RedisBroker:
    """The Redis broker, with dramatiq's default middleware except ``Retries``, which is
    ``DurableRetries``: a retry is in Redis before its message is acknowledged."""
    middleware = replace_retries([m() for m in default_middleware], DurableRetries())
    return RedisBroker(
        url=settings.redis_url,
        heartbeat_timeout=int(settings.broker_heartbeat_timeout_s * 1000),
        maintenance_chance=settings.broker_maintenance_chance,
        middleware=middleware,
    )


def _bind(job_id: str, slot: str | None = None) -> None:
    """Log context for everything this message logs: job, extension, attempt."""
    import structlog
    from dramatiq.middleware import CurrentMessage

    message = CurrentMessage.get_current_message()
    attempt = (message.options.get("retries", 0) + 1) if message is not None else 1
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(jobId=job_id, attempt=attempt,
                                           **({"extension": slot} if slot else {}))


@dataclass
class Actors:
    dispatch: dramatiq.Actor[Any, Any]
    execute: dict[str, dramatiq.Actor[Any, Any]] = field(default_factory=dict)
    deliver_due: dramatiq.Actor[Any, Any] | None = None

    def enqueue(self, queue: str, job_id: str, slot: str) -> None:
        self.execute[queue].send(job_id, slot)


def declare_actors(broker: dramatiq.Broker, runtime: Runtime) -> Actors:
    """Declare the actors on ``broker`` and wire the pipeline's enqueue to them."""
    s = runtime.settings

    def dispatch(job: dict[str, Any]) -> None:
        _bind(str(job.get("jobId", "")) if isinstance(job, dict) else "")
        runtime.pipeline.accept(job)

    def make_execute() -> Callable[[str, str], None]:
        def execute(job_id: str, slot: str) -> None:
            _bind(job_id, slot)
            try:
                runtime.pipeline.execute(job_id, slot)
            except TimeLimitExceeded:
                # A time limit is the extension's outcome, not a reason to run it again.
                runtime.pipeline.fail(
                    job_id, slot, f"{slot}: did not finish within the time limit of "
                    f"{s.extension_time_limit_s} s", "timeout")

        return execute

    def extension_exhausted(message: dict[str, Any], retries: dict[str, Any]) -> None:
        """Retries ran out (infrastructure trouble that never cleared): the extension ends
        ``failed`` with its webhook instead of staying ``pending``."""
        job_id, slot = message["args"][:2]
        _bind(job_id, slot)
        last = (message.get("options", {}).get("traceback") or "").strip().splitlines()
        runtime.pipeline.fail(
            job_id, slot, f"{slot}: gave up after {retries.get('retries', 0) + 1} attempts"
            + (f" ({last[-1][:300]})" if last else ""), "internal_error")

    actors = Actors(
        dispatch=dramatiq.actor(
            dispatch, broker=broker, actor_name=DISPATCH, queue_name=s.queue_default,
            max_retries=20, time_limit=60_000, throws=(PermanentError,),
        )
    )
    dramatiq.actor(extension_exhausted, broker=broker, actor_name=EXHAUSTED,
                   queue_name=s.queue_default, max_retries=20, throws=(PermanentError,))
    queues = {s.queue_extensions, s.queue_default}
    queues |= {runtime.pipeline.queue_name(h.queue) for h in runtime.registry.handlers.values()}
    for queue in sorted(queues):
        # Retries stay well inside the job document's lifetime (7 days): backoff capped at
        # EXTWORKER_RETRY_MAX_BACKOFF_S, then the extension is failed, never left pending.
        actors.execute[queue] = dramatiq.actor(
            make_execute(), broker=broker, actor_name=execute_actor_name(queue),
            queue_name=queue, max_retries=s.extension_max_retries,
            min_backoff=int(s.retry_min_backoff_s * 1000),
            max_backoff=int(s.retry_max_backoff_s * 1000),
            time_limit=s.extension_time_limit_s * 1000,
            throws=(PermanentError,), on_retry_exhausted=EXHAUSTED,
        )
    runtime.pipeline.enqueue = actors.enqueue

    if runtime.webhooks is not None:
        hooks = runtime.webhooks

        def deliver_due() -> None:
            hooks.run_due()
            if hooks.store.due_now(hooks.now_ms())[0]:  # more waiting (or given back)
                actors.deliver_due.send()  # type: ignore[union-attr]

        actors.deliver_due = dramatiq.actor(
            deliver_due, broker=broker, actor_name="deliver_due", queue_name=s.queue_webhooks,
            # Above the lease: a batch sized to its lease is never cut short by the limit.
            max_retries=3, time_limit=int((s.webhook_lease_s + 60) * 1000),
        )

        def notify(doc: dict[str, Any], slot: str, file_object: dict[str, Any] | None) -> None:
            created = hooks.hand_off(doc, slot, file_object)
            # Wake the webhooks queue for a delivery due now; later ones (a caller is
            # waiting, a repeated hand-off) are picked up by the pump.
            if created is not None and created["nextAt"] <= hooks.now_ms():
                actors.deliver_due.send()  # type: ignore[union-attr]

        runtime.pipeline.notify = notify
    return actors
