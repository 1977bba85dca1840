"""Messages by actor name: what the pipeline, the webhooks and the CLI ask the broker for.

Sending by name (not through ``Actor`` objects) means a sender needs only a broker: the
composition root builds an ``Outbox`` before any actor exists, and the CLI sends the same
messages from a process that declares no actors at all.
"""

from __future__ import annotations

from typing import Any

import dramatiq
import dramatiq.errors
from dramatiq import Message

from worker.core.settings import Settings
from worker.store.backends.redis_kv import OUTAGE_ERRORS, through_outage

DISPATCH = "dispatch"
EXHAUSTED = "extension_exhausted"
DELIVER_DUE = "deliver_due"
BULK = "bulk_job"
BULK_EXHAUSTED = "bulk_job_exhausted"
# dramatiq 2 renamed ConnectionError (the old name warns on use, and goes in 3.0).
BROKER_DOWN: type[Exception] = (getattr(dramatiq.errors, "BrokerConnectionError", None)
                                or dramatiq.errors.ConnectionError)


def execute_actor_name(queue: str) -> str:
    """The execute actor of a queue (one per queue, so GPU nodes consume only theirs)."""
    return f"execute_{queue}"


class Outbox:
    def __init__(self, broker: dramatiq.Broker, settings: Settings) -> None:
        self.broker = broker
        self.settings = settings

    def _send(self, queue: str, actor: str, *args: Any) -> None:
        # Through a Redis restart: a job the store has accepted must reach its queue, or it
        # stays `accepted` with nobody to send it (the API has no broker retry behind it).
        message = Message(queue_name=queue, actor_name=actor, args=args, kwargs={}, options={})
        through_outage(lambda: self.broker.enqueue(message),
                       self.settings.redis_outage_wait_s,
                       (*OUTAGE_ERRORS, BROKER_DOWN))

    def dispatch(self, job: dict[str, Any]) -> None:
        """A job to accept (the intake stream's hand-over)."""
        self._send(self.settings.queue_default, DISPATCH, job)

    def execute(self, queue: str, job_id: str, slot: str) -> None:
        """One pending extension of a job, to the queue of its resource class."""
        self._send(queue, execute_actor_name(queue), job_id, slot)

    def bulk(self, job_id: str) -> None:
        """A folder copy/move/rename job (``worker.store.bulkjobs``) for a dispatch worker."""
        self._send(self.settings.queue_default, BULK, job_id)

    def wake_webhooks(self) -> None:
        """A wake-up call for the webhooks queue: deliveries are due."""
        self._send(self.settings.queue_webhooks, DELIVER_DUE)
