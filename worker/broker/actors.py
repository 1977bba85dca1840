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

from webhooks.deliverer import Webhooks
from worker.broker.outbox import (
    BULK,
    BULK_EXHAUSTED,
    DELIVER_DUE,
    DISPATCH,
    EXHAUSTED,
    Outbox,
    execute_actor_name,
)
from worker.broker.retries import DurableRetries, replace_retries
from worker.core.errors import PermanentError
from worker.core.settings import Settings
from worker.pipeline.pipeline import Pipeline
from worker.store.bulkjobs import BulkJobs


def build_broker(settings: Settings) -> RedisBroker:
    """The Redis broker, with dramatiq's default middleware except ``Retries``, which is
    ``DurableRetries``: a retry is in Redis before its message is acknowledged."""
    middleware = replace_retries([m() for m in default_middleware], DurableRetries())
    return RedisBroker(
        url=settings.broker_url or settings.redis_url,
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
    bulk: dramatiq.Actor[Any, Any] | None = None


def declare_actors(broker: dramatiq.Broker, settings: Settings, pipeline: Pipeline,
                   webhooks: Webhooks | None, queues: set[str], outbox: Outbox,
                   bulk: BulkJobs) -> Actors:
    """Declare the actors on ``broker``: thin adapters that call the pipeline (and the
    webhooks, and the bulk jobs). ``queues``: every queue an extension runs on; ``outbox``
    sends follow-ups."""
    s = settings

    def dispatch(job: dict[str, Any]) -> None:
        _bind(str(job.get("jobId", "")) if isinstance(job, dict) else "")
        pipeline.accept(job)

    def make_execute() -> Callable[[str, str], None]:
        def execute(job_id: str, slot: str) -> None:
            _bind(job_id, slot)
            try:
                pipeline.execute(job_id, slot)
            except TimeLimitExceeded:
                # A time limit is the extension's outcome, not a reason to run it again.
                pipeline.fail(job_id, slot, f"{slot}: did not finish within the time limit "
                              f"of {s.extension_time_limit_s} s", "timeout")

        return execute

    def extension_exhausted(message: dict[str, Any], retries: dict[str, Any]) -> None:
        """Retries ran out (infrastructure trouble that never cleared): the extension ends
        ``failed`` with its webhook instead of staying ``pending``."""
        job_id, slot = message["args"][:2]
        _bind(job_id, slot)
        last = (message.get("options", {}).get("traceback") or "").strip().splitlines()
        pipeline.fail(
            job_id, slot, f"{slot}: gave up after {retries.get('retries', 0) + 1} attempts"
            + (f" ({last[-1][:300]})" if last else ""), "internal_error")

    dispatch_actor = dramatiq.actor(
        dispatch, broker=broker, actor_name=DISPATCH, queue_name=s.queue_default,
        max_retries=20, time_limit=60_000, throws=(PermanentError,),
    )
    execute: dict[str, dramatiq.Actor[Any, Any]] = {}
    dramatiq.actor(extension_exhausted, broker=broker, actor_name=EXHAUSTED,
                   queue_name=s.queue_default, max_retries=20, throws=(PermanentError,))
    for queue in sorted(queues | {s.queue_extensions, s.queue_default}):
        # Retries stay well inside the job document's lifetime (7 days): backoff capped at
        # EXTWORKER_RETRY_MAX_BACKOFF_S, then the extension is failed, never left pending.
        execute[queue] = dramatiq.actor(
            make_execute(), broker=broker, actor_name=execute_actor_name(queue),
            queue_name=queue, max_retries=s.extension_max_retries,
            min_backoff=int(s.retry_min_backoff_s * 1000),
            max_backoff=int(s.retry_max_backoff_s * 1000),
            time_limit=s.extension_time_limit_s * 1000,
            throws=(PermanentError,), on_retry_exhausted=EXHAUSTED,
        )

    deliver_due_actor = None
    if webhooks is not None:
        def deliver_due() -> None:
            webhooks.run_due()
            if webhooks.store.due_now(webhooks.now_ms())[0]:  # more waiting (or given back)
                outbox.wake_webhooks()

        deliver_due_actor = dramatiq.actor(
            deliver_due, broker=broker, actor_name=DELIVER_DUE, queue_name=s.queue_webhooks,
            # Above the lease: a batch sized to its lease is never cut short by the limit.
            max_retries=3, time_limit=int((s.webhook_lease_s + 60) * 1000),
        )
    def bulk_job(job_id: str) -> None:
        _bind(job_id)
        bulk.run(job_id)

    def bulk_job_exhausted(message: dict[str, Any], retries: dict[str, Any]) -> None:
        job_id = message["args"][0]
        _bind(job_id)
        last = (message.get("options", {}).get("traceback") or "").strip().splitlines()
        bulk.fail(job_id, f"gave up after {retries.get('retries', 0) + 1} attempts"
                  + (f" ({last[-1][:300]})" if last else ""))

    dramatiq.actor(bulk_job_exhausted, broker=broker, actor_name=BULK_EXHAUSTED,
                   queue_name=s.queue_default, max_retries=20, throws=(PermanentError,))
    # A folder of many files may take long: a run cut by its limit is retried and goes on
    # where it stopped (each file one step).
    bulk_actor = dramatiq.actor(
        bulk_job, broker=broker, actor_name=BULK, queue_name=s.queue_default,
        max_retries=s.extension_max_retries, min_backoff=int(s.retry_min_backoff_s * 1000),
        max_backoff=int(s.retry_max_backoff_s * 1000), time_limit=3600_000,
        throws=(PermanentError,), on_retry_exhausted=BULK_EXHAUSTED,
    )
    return Actors(dispatch_actor, execute, deliver_due_actor, bulk_actor)
