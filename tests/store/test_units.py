"""The fast layer: single pieces driven directly, no model, no worker process.

Given dramatiq's StubBroker (in-process) or plain objects, when one piece runs alone —
the durable retries, the outbox, the typed job document — then it does exactly its part.
"""

from __future__ import annotations

import time

import dramatiq
import pytest
import redis
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Retries

from tests.support import concurrently
from worker.broker.outbox import DELIVER_DUE, DISPATCH, Outbox, execute_actor_name
from worker.broker.retries import DurableRetries, replace_retries
from worker.core.jobs import JobDoc
from worker.core.settings import Settings


class _FlakyStub(StubBroker):
    """A StubBroker whose delayed enqueues (retries) fail ``failures`` times first."""

    def __init__(self, failures: int, **kw) -> None:
        super().__init__(**kw)
        self.failures, self.tries = failures, 0

    def enqueue(self, message, *, delay=None):
        if delay is not None:
            self.tries += 1
            if self.tries <= self.failures:
                raise redis.ConnectionError("Redis is down (simulated)")
        return super().enqueue(message, delay=delay)


def _broker(failures: int) -> tuple[_FlakyStub, DurableRetries]:
    durable = DurableRetries(wait_step_s=0.001, max_wait_step_s=0.002)
    broker = _FlakyStub(failures, middleware=replace_retries([Retries()], durable))

    @dramatiq.actor(broker=broker, actor_name="work", max_retries=5, min_backoff=10,
                    throws=(ValueError,))
    def work() -> None:  # pragma: no cover - never run, only its message is handled
        pass

    return broker, durable


def _failed_message(broker: StubBroker, exc: BaseException):
    from dramatiq.broker import MessageProxy

    message = MessageProxy(broker.get_actor("work").message())
    broker.emit_after("process_message", message, exception=exc)
    return message


def test_a_retry_that_meets_an_outage_is_written_once_redis_answers():
    broker, durable = _broker(failures=3)
    message = _failed_message(broker, RuntimeError("commit failed"))
    assert broker.tries == 4 and durable.waited == 3  # three outages, then written
    assert message.options["retries"] == 1  # counted once, not once per try
    assert not message.failed  # acknowledged only now, its retry in the delay queue
    assert len(broker.queues["default.DQ"].queue) == 1


def test_plain_retries_lose_the_retry_in_an_outage():
    """The behaviour DurableRetries replaces: the enqueue error escapes the hook, and
    dramatiq's broker logs it and goes on to acknowledge the message."""
    broker = _FlakyStub(1, middleware=[Retries()])
    dramatiq.actor(lambda: None, broker=broker, actor_name="work", max_retries=5)
    from dramatiq.broker import MessageProxy

    message = MessageProxy(broker.get_actor("work").message())
    with pytest.raises(redis.ConnectionError):
        broker.middleware[0].after_process_message(broker, message,
                                                   exception=RuntimeError("x"))
    assert "default.DQ" not in broker.queues or not broker.queues["default.DQ"].queue


def test_an_error_the_actor_throws_is_never_retried():
    broker, durable = _broker(failures=0)
    message = _failed_message(broker, ValueError("bad input"))
    assert message.failed and broker.tries == 0 and durable.waited == 0


def test_the_outbox_sends_each_message_by_actor_name():
    import json

    broker = StubBroker()
    for q in ("dq", "gpu", "wq"):
        broker.declare_queue(q)
    outbox = Outbox(broker, Settings(queue_default="dq", queue_webhooks="wq"))
    outbox.dispatch({"jobId": "j"})
    outbox.execute("gpu", "j", "remove-bg")
    outbox.wake_webhooks()

    def sent(q: str) -> list[tuple[str, list]]:
        return [(m["actor_name"], m["args"])
                for m in (json.loads(raw) for raw in broker.queues[q].queue)]

    assert sent("dq") == [(DISPATCH, [{"jobId": "j"}])]
    assert sent("gpu") == [(execute_actor_name("gpu"), ["j", "remove-bg"])]
    assert sent("wq") == [(DELIVER_DUE, [])]


def test_the_job_document_round_trips_its_json_exactly():
    stored = {"jobId": "intake-1-0", "state": "rejected", "extensions": {},
              "error": {"message": "invalid job: job: must be a JSON object",
                        "code": "invalid_job"}, "createdAt": "2026-11-30T00:00:00.000Z",
              "fromANewerVersion": {"kept": True}}
    assert JobDoc.model_validate(stored).to_json() == stored  # no field added or lost
    running = {"jobId": "j", "accountId": "a", "fileId": "f", "webhookUrl": None,
               "dryRun": False, "origin": "upload", "removeAITags": None, "syncUntil": None,
               "state": "dispatched", "createdAt": "t", "extensions": {"remove-bg": {
                   "name": "remove-bg", "extension": "remove-bg", "status": "pending",
                   "config": {"name": "remove-bg"}, "queue": "extensions", "error": None,
                   "units": 0, "output": None}}}
    doc = JobDoc.model_validate(running)
    doc.extensions["remove-bg"].finish("success")
    out = doc.to_json()["extensions"]["remove-bg"]
    assert out["status"] == "success" and out["finishedAt"] and "model" not in out
    assert doc.finished
    with pytest.raises(ValueError):
        doc.extensions["remove-bg"].status = "done"  # type: ignore[assignment]


# --- micro-batching --------------------------------------------------------------------------


def test_concurrent_calls_share_batches_and_each_gets_its_own_result():
    from worker.models.batching import MicroBatcher

    batcher = MicroBatcher(lambda xs: [x * 10 for x in xs], max_batch=8, max_wait_s=0.05)
    out = concurrently(batcher.submit, list(range(16)))
    assert out == [x * 10 for x in range(16)]  # nobody gets another caller's result
    assert sum(batcher.batches) == 16 and max(batcher.batches) > 1
    assert max(batcher.batches) <= 8


def test_under_sustained_load_no_call_waits_more_than_a_few_batches():
    """12 threads calling in a loop for 2 s, batches of 4, a 20 ms forward pass: the leader
    returns once its own call is done (the next caller leads), so every call ends within a
    few batch times — before, the first leader kept draining the queue for the whole run —
    and the batches stay full."""
    from tests.support import sustained
    from worker.models.batching import MicroBatcher

    def forward(xs):
        time.sleep(0.02)
        return [2 * x for x in xs]

    batcher = MicroBatcher(forward, max_batch=4, max_wait_s=0.005)
    worst, wrong = sustained(batcher.submit, threads=12, seconds=2.0)
    assert not wrong
    # 12 callers, 4 a batch: 3 batches (60 ms) a cycle; a few batch times at most.
    assert max(worst) < 0.3, sorted(worst)[-3:]
    sizes = list(batcher.batches)
    assert sum(sizes) / len(sizes) >= 3.5, sizes[-20:]  # full batches, still


def test_one_bad_input_fails_only_its_own_caller():
    from worker.models.batching import MicroBatcher

    def run(xs):
        if any(x < 0 for x in xs):
            raise ValueError("negative")
        return [x + 1 for x in xs]

    batcher = MicroBatcher(run, max_batch=8, max_wait_s=0.05)
    out = concurrently(batcher.submit, [1, 2, -3, 4])
    assert out[:2] == [2, 3] and out[3] == 5
    assert isinstance(out[2], ValueError)


def test_an_interrupt_in_the_leader_hands_the_others_on():
    """A BaseException meant for the leading thread (a time limit) fails the leader only;
    the items it was running for others are run by the next leader."""
    import threading

    from worker.models.batching import MicroBatcher

    leader_ident: list[int] = []

    class TimeUp(BaseException):
        pass

    def run(xs):
        if not leader_ident:
            leader_ident.append(threading.get_ident())
            raise TimeUp()
        return [x * 2 for x in xs]

    batcher = MicroBatcher(run, max_batch=4, max_wait_s=0.05)
    out = []

    def call(x):
        try:
            return batcher.submit(x)
        except TimeUp:
            return "time up"

    out = concurrently(call, [1, 2, 3, 4])
    assert out.count("time up") == 1
    assert sorted(v for v in out if v != "time up") == sorted(
        x * 2 for x, v in zip([1, 2, 3, 4], out, strict=True) if v != "time up")
