"""A crashed worker's messages come back on time.

dramatiq's Redis broker puts a dead worker's unacked messages back only during queue
maintenance, which it runs on a random ``maintenance_chance`` per million commands: after
a crash a job waited of the order of a thousand seconds. ``worker.broker.sweeper`` runs
that same maintenance (dramatiq's own Lua) on a timer.

Given a worker that fetched a message and died, when its heartbeat is older than the
timeout and a sweep runs, then the message is back in its queue, counted once; a live
worker's message is never taken.
"""

from __future__ import annotations

import json
import signal
import time
from datetime import datetime

import pytest
from dramatiq.brokers.redis import RedisBroker
from dramatiq.message import Message

from tests.support import Server, cli, jpeg, wait_until
from worker.broker.sweeper import Sweeper
from worker.runtime import Runtime


def _broker(redis_url: str, heartbeat_ms: int) -> RedisBroker:
    broker = RedisBroker(url=redis_url, heartbeat_timeout=heartbeat_ms, maintenance_chance=0,
                         middleware=[])
    broker.declare_queue("work")
    return broker


def test_a_sweep_puts_a_dead_workers_message_back_once(redis_url, rclient):
    dead_one, survivor = _broker(redis_url, 300), _broker(redis_url, 300)
    dead_one.enqueue(Message(queue_name="work", actor_name="a", args=(), kwargs={},
                             options={}))
    consumer = dead_one.consume("work", prefetch=1, timeout=100)
    assert next(consumer) is not None  # fetched: unacked, held by dead_one
    recovered: list[tuple[str, int]] = []
    sweeper = Sweeper(survivor, ["work"], lambda q, n: recovered.append((q, n)))
    # Still alive (its heartbeat is fresh): nothing is taken from it.
    assert sweeper.sweep() == {}
    assert survivor.client.llen("dramatiq:work") == 0
    time.sleep(0.5)  # dead_one sends nothing more: its heartbeat ages past the timeout
    assert sweeper.sweep() == {"work": 1}
    assert recovered == [("work", 1)]
    assert survivor.client.llen("dramatiq:work") == 1
    # Maintenance is idempotent: the message is counted, and put back, once.
    assert sweeper.sweep() == {}
    assert survivor.client.llen("dramatiq:work") == 1
    again = survivor.consume("work", prefetch=1, timeout=100)
    message = next(again) or next(again)
    assert message is not None and message.actor_name == "a"


def test_without_a_sweep_dramatiqs_own_maintenance_may_never_run(redis_url, rclient):
    """The fault itself: maintenance at chance 0 (the default 1,000 per million is rarely
    better) never puts the message back, however long the worker has been dead."""
    dead_one, survivor = _broker(redis_url, 200), _broker(redis_url, 200)
    dead_one.enqueue(Message(queue_name="work", actor_name="a", args=(), kwargs={},
                             options={}))
    assert next(dead_one.consume("work", prefetch=1, timeout=100)) is not None
    time.sleep(0.4)
    consumer = survivor.consume("work", prefetch=1, timeout=50)
    assert all(next(consumer) is None for _ in range(20))


@pytest.mark.slow
def test_a_job_of_a_killed_worker_finishes_once_within_heartbeat_plus_sweep(
        settings, rclient, tmp_path, astronaut):
    """The worker's process group SIGKILLed mid remove-bg on a 4 MP photo, a fresh serve
    started at once: the job ends success once — one new version, units once — within
    the new serve's boot + heartbeat timeout + sweep interval + the job's own time."""
    heartbeat_s, sweep_s = 3, 1
    env = {"EXTWORKER_BROKER_HEARTBEAT_TIMEOUT_S": str(heartbeat_s),
           "EXTWORKER_BROKER_SWEEP_S": str(sweep_s),
           "EXTWORKER_BROKER_MAINTENANCE_CHANCE": "0"}  # only the sweep recovers
    img = tmp_path / "big.jpg"
    img.write_bytes(jpeg(astronaut.resize((2048, 2048))))
    fid = json.loads(cli(settings, "files", "add", str(img)).stdout)["fileId"]
    a = Server(settings, tmp_path / "a.log", env=env)
    cli(settings, "submit", "--file-id", fid, "--job-id", "crashed", "--extensions",
        '[{"name": "remove-bg"}]')
    wait_until(lambda: '"extension started"' in (tmp_path / "a.log").read_text(), 60,
               "remove-bg started", every=0.05)
    time.sleep(0.3)  # inside the model's work
    a.kill(signal.SIGKILL)
    killed = time.monotonic()
    reader = Runtime(settings, enqueue=lambda q, j, s: None)
    assert reader.pipeline.get_job("crashed").extensions["remove-bg"].status == "pending"
    b = Server(settings, tmp_path / "b.log", env=env)
    booted = time.monotonic() - killed
    try:
        def done():
            doc = reader.pipeline.get_job("crashed")
            return doc if doc.extensions["remove-bg"].status != "pending" else None

        doc = wait_until(done, booted + heartbeat_s + sweep_s + 60, "the job to finish",
                         every=0.1)
        took = time.monotonic() - killed
    finally:
        b.stop()
    log = (tmp_path / "b.log").read_text()
    assert "recovered 1 message(s) of dead workers on queue extensions" in log
    lines = [json.loads(ln) for ln in log.splitlines() if ln.startswith("{")]
    started = [ln for ln in lines if ln["event"] == "extension started"]
    finished = [ln for ln in lines if ln["event"] == "extension finished"]
    assert len(started) == len(finished) == 1
    assert doc.extensions["remove-bg"].status == "success", doc
    after = reader.pipeline.get_file(fid)
    assert len(after.versions) == 2 and after.versionInfo.name == "Version 2"
    assert reader.pipeline.usage("default")["extensions"] == {"remove-bg": 130}
    job_s = (datetime.fromisoformat(finished[0]["timestamp"])
             - datetime.fromisoformat(started[0]["timestamp"])).total_seconds()
    assert took <= booted + heartbeat_s + sweep_s + job_s + 3, (took, booted, job_s)


def test_a_folder_move_survives_kill_9_of_its_worker(settings, rclient, tmp_path):
    """A bulk folder move is a job on the broker: its worker's process group SIGKILLed
    mid-move (some files moved, some not), a fresh ``serve`` started, and the job ends
    ``Completed`` — every file at its new path exactly once, none left behind, each still
    opening to its own bytes — and it is listed with the account's jobs."""
    from worker.broker.actors import build_broker

    heartbeat_s, sweep_s = 3, 1
    env = {"EXTWORKER_BROKER_HEARTBEAT_TIMEOUT_S": str(heartbeat_s),
           "EXTWORKER_BROKER_SWEEP_S": str(sweep_s),
           "EXTWORKER_BROKER_MAINTENANCE_CHANCE": "0"}
    api_side = Runtime(settings, broker=build_broker(settings))  # what `extworker api` holds
    count = 600
    made = [api_side.pipeline.add_file(f"file {i}".encode(), f"{i}.txt", f"/shop/{i % 7}",
                                       account="acme") for i in range(count)]
    before = {r.fileId: (r.filePath, f"file {i}".encode()) for i, r in enumerate(made)}
    library = api_side.library
    a = Server(settings, tmp_path / "a.log", env=env)
    job_id = api_side.bulk.submit("acme", "MOVE_FOLDER", {
        "source": "/shop", "destination": "/archive", "copy": False})
    wait_until(lambda: len(library.paths_under("acme", "/archive/")) >= 20, 60,
               "the move under way", every=0.02)
    a.kill(signal.SIGKILL)
    moved = len(library.paths_under("acme", "/archive/"))
    assert 0 < moved < count, moved  # killed mid-move
    assert api_side.bulk.status("acme", job_id)["status"] == "Pending"
    b = Server(settings, tmp_path / "b.log", env=env)
    try:
        wait_until(lambda: api_side.bulk.status("acme", job_id)["status"] == "Completed",
                   heartbeat_s + sweep_s + 60, "the move to finish", every=0.2)
    finally:
        b.stop()
    status = api_side.bulk.status("acme", job_id)
    assert "error" not in status, status
    assert "recovered 1 message(s) of dead workers on queue default" in (
        tmp_path / "b.log").read_text()
    assert library.paths_under("acme", "/shop/") == []
    paths = library.paths_under("acme", "/archive/")
    assert len(paths) == len(set(paths)) == count
    files = api_side.files
    for path in paths:
        record = files.by_path("acme", path)
        old_path, data = before.pop(record.fileId)
        assert path == "/archive" + old_path
        assert api_side.blobs.get(record.current.blobKey) == data
    assert before == {}
    listed = [j for j in api_side.pipeline.jobs("acme") if j.jobId == job_id]
    assert listed and listed[0].extensions["MOVE_FOLDER"].status == "success"
