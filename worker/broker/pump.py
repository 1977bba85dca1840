"""Wakes webhook workers up when deliveries fall due.

Runs as dramatiq middleware in processes that consume the ``webhooks``
queue: every ``EXTWORKER_WEBHOOK_POLL_S`` it looks at the due set and, when
something is due, sends one ``deliver_due`` message — at most one per second
fleet-wide (a ``SET NX PX`` token), so a thousand pods do not stampede. The
state itself is in Redis; these messages are only wake-up calls, so nothing
long-delayed ever sits in a worker's memory.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import dramatiq
from dramatiq.middleware import Middleware

from webhooks.deliverer import Webhooks

log = logging.getLogger(__name__)


class DeliveryPump(Middleware):
    def __init__(self, webhooks: Webhooks, wake: Callable[[], None], queue: str) -> None:
        """``wake`` sends one ``deliver_due`` message (``Outbox.wake_webhooks``)."""
        self.webhooks = webhooks
        self.wake = wake
        self.queue = queue
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def kick(self) -> bool:
        """Send one ``deliver_due`` if anything is due and nobody kicked this second."""
        count, _ = self.webhooks.store.due_now(self.webhooks.now_ms())
        token = self.webhooks.settings.keys.webhook_kick()
        if count and self.webhooks.store.client.set(token, 1, nx=True, px=1000):
            self.wake()
            return True
        return False

    def _run(self) -> None:
        while not self.stopping.wait(self.webhooks.settings.webhook_poll_s):
            try:
                self.kick()
            except Exception:
                log.exception("webhook pump: error; retrying")

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        queues = getattr(worker, "consumer_whitelist", None)
        if queues and self.queue not in queues:
            return
        self.thread = threading.Thread(target=self._run, name="webhook-pump", daemon=True)
        self.thread.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=5)
