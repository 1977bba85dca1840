"""Retries that are never lost to a broker outage.

dramatiq's ``Retries`` enqueues a failed message's retry in ``after_process_message``;
when Redis is down that ``enqueue`` raises, the broker logs the error and swallows it,
and once Redis is back the worker acknowledges the original message — the retry was
never written, so the extension stays ``pending`` for good (issue 10, defect 12).

``DurableRetries`` keeps dramatiq's rules (backoff, ``max_retries``, ``throws``,
``on_retry_exhausted``) and changes one thing: it returns only once the retry (or the
retries-exhausted message) is in Redis. Until then the worker thread waits, as
dramatiq's own acknowledgement does, so the message is acknowledged only after its
retry is durably recorded. A worker stopped while it waits never acknowledges: the
broker's heartbeat maintenance hands the message to another worker.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import dramatiq
import redis
from dramatiq.errors import BrokerConnectionError
from dramatiq.middleware import Retries

log = logging.getLogger(__name__)
_OUTAGE = (BrokerConnectionError, redis.ConnectionError, redis.TimeoutError)


class DurableRetries(Retries):
    """``Retries`` whose retry survives a broker outage (see the module docstring)."""

    def __init__(self, *, wait_step_s: float = 0.5, max_wait_step_s: float = 5.0,
                 **options: Any) -> None:
        super().__init__(**options)
        self.wait_step_s = wait_step_s
        self.max_wait_step_s = max_wait_step_s
        self.waited = 0  # attempts that met an outage (tests and logs read it)

    def after_process_message(self, broker: dramatiq.Broker, message: Any, *,
                              result: Any = None, exception: BaseException | None = None,
                              ) -> None:
        if exception is None:
            return
        # Retries bumps the counter and stamps the traceback before it enqueues; a second
        # try after an outage must start from the same options, not count the retry twice.
        before = dict(message.options)
        step = self.wait_step_s
        while True:
            try:
                super().after_process_message(broker, message, result=result,
                                              exception=exception)
                return
            except _OUTAGE as e:
                self.waited += 1
                message.options.clear()
                message.options.update(before)
                log.warning("retry of message %s not recorded (%s); trying again in %.1f s — "
                            "the message stays unacknowledged until it is",
                            message.message_id, e, step)
                # No way out but success: returning would let the worker acknowledge the
                # message. A process killed while it waits never acknowledges it, and the
                # broker's heartbeat maintenance gives the message to another worker.
                time.sleep(step)
                step = min(step * 2, self.max_wait_step_s)


def replace_retries(middleware: list[Any], durable: DurableRetries) -> list[Any]:
    """``middleware`` with dramatiq's ``Retries`` swapped for ``durable`` in its place
    (the order of ``after_*`` hooks stays as dramatiq defines it)."""
    return [durable if type(m) is Retries else m for m in middleware]

