"""The actors in-process on dramatiq's StubBroker, with real Redis: every extension ends
``success`` or ``failed`` in bounded time — never ``pending`` for good.

Given an extension whose result cannot be recorded, one that outlives its time limit, and
one whose infrastructure errors never clear, when the real actors process them (real
retries, real time limits), then each is ``failed`` with a readable reason, charged nothing,
and its record says so. (On the previous code all four stayed ``pending``.)
"""

from __future__ import annotations

import time

import pytest
from dramatiq import Worker
from dramatiq.brokers.stub import StubBroker

from tests.support import jpeg
from worker.runtime import Runtime


@pytest.fixture
def stub(settings, rclient, astronaut):
    settings.extra_extensions = ["tests.support.slow_extension:Sleep",
                                 "tests.support.slow_extension:Misbehave"]
    settings.extension_max_retries = 2
    settings.retry_min_backoff_s, settings.retry_max_backoff_s = 0.01, 0.05
    settings.extension_time_limit_s = 1
    broker = StubBroker()
    broker.emit_after("process_boot")
    rt = Runtime(settings, broker=broker)  # declares the actors on it
    worker = Worker(broker, worker_timeout=20, worker_threads=2)
    worker.start()
    rec = rt.pipeline.add_file(jpeg(astronaut.resize((32, 32))), "a.jpg")
    yield rt, rec.fileId
    worker.stop()
    broker.close()


def run(rt: Runtime, file_id: str, extension: dict, timeout_s: float = 20) -> dict:
    """Dispatch in-process (the actors get the execute message); wait for a final slot."""
    doc = rt.pipeline.accept({"fileId": file_id, "extensions": [extension]})
    deadline = time.monotonic() + timeout_s
    slot = extension["name"]
    while time.monotonic() < deadline:
        current = rt.pipeline.get_job(doc.jobId).extensions[slot]
        if current.status != "pending":
            return current.to_json()
        time.sleep(0.05)
    raise AssertionError(f"{slot} still pending after {timeout_s} s")


@pytest.mark.parametrize("mode, says", [
    ("unserialisable-output", "its result could not be recorded: TypeError"),
    ("unpatchable", "its result could not be recorded: ValueError: field fileId cannot be"),
])
def test_a_result_that_cannot_be_recorded_fails_once(stub, mode, says):
    rt, file_id = stub
    slot = run(rt, file_id, {"name": "misbehave", "mode": mode})
    assert slot["status"] == "failed" and slot["error"]["code"] == "internal_error"
    assert says in slot["error"]["message"]
    rec = rt.pipeline.get_file(file_id)
    assert rec.extensionStatus["misbehave"] == "failed" and rec.fileId == file_id
    assert rt.pipeline.usage("default")["extensions"] == {}


def test_a_time_limit_is_a_failure_not_a_retry(stub):
    rt, file_id = stub
    t0 = time.monotonic()
    slot = run(rt, file_id, {"name": "sleep", "seconds": 4})
    assert time.monotonic() - t0 < 4  # cut at the 1 s limit, not run to its end
    assert slot["error"] == {"code": "timeout", "message":
                             "sleep: did not finish within the time limit of 1 s"}
    time.sleep(4)  # no retry comes to run it again and tag the file
    assert rt.pipeline.get_file(file_id).tags is None


def test_retries_that_run_out_fail_the_extension(stub):
    rt, file_id = stub
    slot = run(rt, file_id, {"name": "misbehave", "mode": "infrastructure"})
    assert slot["status"] == "failed" and slot["error"]["code"] == "internal_error"
    assert slot["error"]["message"].startswith("misbehave: gave up after 3 attempts")
    assert "storage unavailable (simulated)" in slot["error"]["message"]
    assert rt.pipeline.get_file(file_id).extensionErrors["misbehave"].code == "internal_error"
