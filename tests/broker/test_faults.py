"""Redis restarted mid-run, on a private ``redis-server`` (AOF on) this test starts on its
own port: the work in flight is not lost.

Given an extension whose model has run, when Redis shuts down and comes back before the
commit, then the worker rides out the restart (``EXTWORKER_REDIS_OUTAGE_WAIT_S``): the
extension ends ``success``, its version is written once and its units charged once.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
import redis

from tests.support import PrivateRedis, jpeg, report_duplicates, wait_until
from worker.runtime import Runtime

pytestmark = pytest.mark.slow


@pytest.fixture
def private_redis_dir(tmp_path):
    (tmp_path / "redis").mkdir()
    return tmp_path


def test_a_redis_restart_between_model_and_commit_loses_nothing(settings, private_redis_dir,
                                                                astronaut):
    srv = PrivateRedis(private_redis_dir / "redis")
    restarter: list[threading.Thread] = []
    try:
        settings.redis_url = srv.url
        settings.redis_outage_wait_s = 20
        notified: list[tuple[str, str]] = []
        rt = Runtime(settings, enqueue=lambda q, j, s: None,
                     notify=lambda doc, slot, fo: notified.append(
                         (slot, doc.extensions[slot].status)))
        rec = rt.pipeline.add_file(jpeg(astronaut), "a.jpg")
        rt.pipeline.accept({"jobId": "through-restart", "fileId": rec.fileId,
                            "extensions": [{"name": "remove-bg"}]})
        handler = rt.registry.get("remove-bg")
        real_run = handler.run

        def run_then_restart(ctx, params):
            result = real_run(ctx, params)
            # The model has run; Redis goes away now and is back in 1.5 s.
            t = threading.Thread(target=srv.restart, args=(1.5,))
            t.start()
            restarter.append(t)
            time.sleep(0.2)
            return result

        handler.run = run_then_restart
        t0 = time.monotonic()
        slot = rt.pipeline.execute("through-restart", "remove-bg").to_json()
        waited = time.monotonic() - t0
        restarter[0].join(10)
        assert slot["status"] == "success", slot
        assert waited > 1.0  # it really went through the outage
        after = rt.pipeline.get_file(rec.fileId)
        assert after.versionInfo.name == "Version 2" and len(after.versions) == 2
        assert rt.pipeline.usage("default")["extensions"] == {"remove-bg": 130}
        assert notified == [("remove-bg", "success")]
        # And a redelivery of the same message changes nothing.
        handler.run = real_run
        rt.pipeline.execute("through-restart", "remove-bg")
        assert rt.pipeline.usage("default")["total"] == 130
        assert len(rt.pipeline.get_file(rec.fileId).versions) == 2
    finally:
        for t in restarter:  # never leave a server behind, pass or fail
            t.join(10)
        srv.stop()


def test_an_outage_longer_than_the_wait_is_handed_to_retries(settings, private_redis_dir):
    from worker.core.errors import RetryableError
    from worker.store.backends.redis_kv import RedisKV

    srv = PrivateRedis(private_redis_dir / "redis")
    try:
        kv = RedisKV(redis.Redis.from_url(srv.url), outage_wait_s=0.5)
        srv.stop()
        t0 = time.monotonic()
        with pytest.raises(RetryableError, match="redis unavailable"):
            kv.get("k")
        assert 0.3 < time.monotonic() - t0 < 3
    finally:
        srv.stop()


def _final(client: redis.Redis, settings, job_ids: list[str]) -> list[dict] | None:
    docs = [json.loads(raw) if (raw := client.get(settings.keys.job(j))) else None
            for j in job_ids]
    done = all(d and d["state"] in ("dispatched", "rejected")
               and all(s["status"] != "pending" for s in d["extensions"].values())
               for d in docs)
    return docs if done else None


def _publish_uploads(client: redis.Redis, settings, prefix: str, count: int, image,
                     webhook_url: str) -> list[str]:
    """``count`` upload jobs of ``image`` (base64) with remove-bg and a webhook; their ids."""
    import base64

    from worker.broker.intake import publish

    data = base64.b64encode(jpeg(image)).decode()
    jobs = [f"{prefix}-{i}" for i in range(count)]
    for i, job_id in enumerate(jobs):
        publish(client, settings, {"jobId": job_id, "webhookUrl": webhook_url,
                                   "upload": {"base64": data, "fileName": f"{i}.jpg"},
                                   "extensions": [{"name": "remove-bg"}]})
    return jobs


_wait = wait_until


@pytest.mark.parametrize("outage_wait, kill", [("30", False), ("0.2", True)],
                         ids=["store-rides-it-out", "retries-carry-it"])
def test_serve_through_a_redis_restart_loses_no_job(settings, private_redis_dir, astronaut,
                                                    tmp_path, outage_wait, kill):
    """12 uploads with remove-bg and a webhook through a real ``serve``; Redis (AOF) shut
    down (or killed) for 1.5 s while they run: every job final, one cut-out each, units
    exactly 12 × 130, every webhook-id delivered (duplicates counted and reported).

    With a store wait of 0.2 s the commits fail while Redis is down and the retries carry
    the work (``DurableRetries``); with 30 s the store rides the outage out."""

    from tests.support import Server
    from tests.support.receiver import Receiver
    from worker.store.metering import month_of

    srv = PrivateRedis(private_redis_dir / "redis")
    settings.redis_url = srv.url
    recv = Receiver()
    server = Server(settings, tmp_path / "worker.log",
                    env={"EXTWORKER_REDIS_OUTAGE_WAIT_S": outage_wait,
                         "EXTWORKER_RETRY_MIN_BACKOFF_S": "0.2",
                         "EXTWORKER_RETRY_MAX_BACKOFF_S": "2"})
    try:
        client = redis.Redis.from_url(srv.url)
        jobs = _publish_uploads(client, settings, "restart", 12, astronaut.resize((160, 160)),
                                recv.url)
        time.sleep(1.0)  # some done, some running, some queued
        srv.restart(1.5, kill=kill)
        client = redis.Redis.from_url(srv.url)
        docs = _wait(lambda: _final(client, settings, jobs), 150,
                     "jobs final\n" + (tmp_path / "worker.log").read_text()[-3000:])
        assert [d["extensions"]["remove-bg"]["status"] for d in docs] == ["success"] * 12
        for d in docs:
            rec = json.loads(client.get(settings.keys.file(d["fileId"])))
            assert [v["name"] for v in rec["versions"]] == ["Version 1", "Version 2"]
        usage = json.loads(client.get(settings.keys.units("default", month_of())))
        assert usage["total"] == 12 * 130
        _wait(lambda: len({r.headers["webhook-id"] for r in recv.requests}) == 12, 60,
              "every webhook delivered")
        duplicates = len(recv.requests) - 12
        report_duplicates(f"Redis {'killed' if kill else 'shut down'} under serve "
                          f"({outage_wait} s store wait)", 12, duplicates)
        assert duplicates <= 12  # at least once, same id; counted, and the exception
    finally:
        recv.close()
        server.stop()
        srv.stop()


def test_a_worker_killed_between_model_and_commit_commits_once(settings, rclient, tmp_path):
    """kill -9 of the worker process after the extension ran, before the commit: the
    message comes back (dramatiq's heartbeat), runs again, commits once."""
    from dramatiq import Message

    from tests.support import Server
    from worker.broker.actors import build_broker, execute_actor_name

    settings.extra_extensions = ["tests.support.slow_extension:DieOnce"]
    env = {"EXTWORKER_EXTRA_EXTENSIONS": '["tests.support.slow_extension:DieOnce"]',
           "EXTWORKER_BROKER_HEARTBEAT_TIMEOUT_S": "3",
           "EXTWORKER_BROKER_MAINTENANCE_CHANCE": "1000000"}
    rt = Runtime(settings)
    rec = rt.pipeline.add_file(b"x" * 10, "x.bin")
    marker = tmp_path / "died"
    first = Server(settings, tmp_path / "w1.log", env=env)
    try:
        # Dispatched in-process; the worker gets the execute message from the broker.
        rt.pipeline.accept({"jobId": "killed", "fileId": rec.fileId,
                            "extensions": [{"name": "die-once", "marker": str(marker)}]})
        build_broker(settings).enqueue(Message(
            queue_name="extensions", actor_name=execute_actor_name("extensions"),
            args=("killed", "die-once"), kwargs={}, options={}))
        _wait(marker.exists, 60, "the worker ran the extension")
        time.sleep(0.5)
        assert rt.pipeline.get_job("killed").extensions["die-once"].status == "pending"
    finally:
        first.stop()
    second = Server(settings, tmp_path / "w2.log", env=env)
    try:
        slot = _wait(lambda: (s := rt.pipeline.get_job("killed").extensions["die-once"].to_json())
                     ["status"] != "pending" and s, 90,
                     "redelivered\n" + (tmp_path / "w2.log").read_text()[-2000:])
        assert slot["status"] == "success" and slot["output"] == {"survived": True}
        after = rt.pipeline.get_file(rec.fileId)
        assert [v.name for v in after.versions] == ["Version 1", "Version 2"]
        assert rt.pipeline.usage("default")["extensions"] == {"die-once": 1}
    finally:
        second.stop()


def test_a_dispatch_worker_killed_after_dispatch_loses_nothing(settings, rclient, tmp_path,
                                                               astronaut):
    """kill -9 of a worker right after it dispatched (the execute messages are queued, the
    intake entry acknowledged): another worker runs them, each once, webhook once."""

    from tests.support import Server
    from tests.support.receiver import Receiver

    recv = Receiver()
    try:
        dispatcher = Server(settings, tmp_path / "d.log", "--queues", "default")
        jobs = _publish_uploads(rclient, settings, "after-dispatch", 4,
                                astronaut.resize((96, 96)), recv.url)
        _wait(lambda: all((raw := rclient.get(settings.keys.job(j))) and
                          json.loads(raw)["state"] == "dispatched" for j in jobs),
              60, "dispatched")
        dispatcher.kill(9)  # the whole process group, at once
        assert rclient.llen("dramatiq:extensions") == 4  # queued, not lost
        runner = Server(settings, tmp_path / "r.log")
        try:
            docs = _wait(lambda: _final(rclient, settings, jobs), 90, "executed")
            assert {d["extensions"]["remove-bg"]["status"] for d in docs} == {"success"}
            _wait(lambda: len(recv.requests) >= 4, 60, "webhooks")
            time.sleep(1.0)
            ids = {r.headers["webhook-id"] for r in recv.requests}
            report_duplicates("dispatch worker killed after dispatch", len(ids),
                              len(recv.requests) - len(ids))
            assert sorted(r.headers["webhook-id"] for r in recv.requests) == sorted(ids)
            assert len(recv.requests) == 4
        finally:
            runner.stop()
    finally:
        recv.close()


def test_a_retry_is_recorded_before_its_message_is_acknowledged(settings, private_redis_dir,
                                                                astronaut):
    """Given a commit that meets a Redis outage longer than the store's wait (so the
    extension raises ``RetryableError`` while Redis is down), when the real broker's worker
    handles it, then the retry is written once Redis is back and the extension ends
    ``success`` — on dramatiq's plain ``Retries`` the enqueue failed, was swallowed, the
    message was acknowledged after the outage and the extension stayed ``pending`` for good.
    """
    from dramatiq import Worker

    from worker.broker.actors import build_broker

    srv = PrivateRedis(private_redis_dir / "redis")
    settings.redis_url = srv.url
    settings.redis_outage_wait_s = 0.3  # the store gives up long before Redis is back
    settings.extra_extensions = ["tests.support.slow_extension:Sleep"]
    settings.retry_min_backoff_s, settings.retry_max_backoff_s = 0.05, 0.2
    broker = build_broker(settings)
    rt = Runtime(settings, broker=broker)  # declares the actors on it
    rec = rt.pipeline.add_file(jpeg(astronaut.resize((32, 32))), "a.jpg")
    worker = Worker(broker, worker_timeout=100, worker_threads=1)
    restarter = threading.Thread(target=lambda: (time.sleep(0.6), srv.restart(3.0)))
    try:
        worker.start()
        rt.pipeline.accept({"jobId": "retry-through-outage", "fileId": rec.fileId,
                            "extensions": [{"name": "sleep", "seconds": 1.0}]})
        restarter.start()  # Redis goes down mid-run and stays down 3 s
        restarter.join(20)
        def final_slot():
            doc = rt.pipeline.get_job("retry-through-outage")
            slot = doc.extensions.get("sleep") if doc else None
            return slot if slot is not None and slot.status != "pending" else None

        slot = _wait(final_slot, 30, "the extension final after the outage")
        assert slot.status == "success", slot
        assert rt.pipeline.get_file(rec.fileId).tags == ["slept"]
    finally:
        worker.stop()
        broker.close()
        srv.stop()


def test_a_trickling_then_failing_receiver_under_serve_gets_each_webhook_once_it_answers(
        settings, rclient, astronaut, tmp_path):
    """Through a real ``serve``: each webhook's first attempt meets a receiver that trickles
    one byte a second (cut at the 1.5 s exchange limit), the second a 500, the third a 200.
    Every delivery ends ``delivered`` after exactly three attempts under one webhook-id, and
    the receiver saw exactly three sends per id: no attempt repeated, none lost."""
    from collections import Counter

    from tests.support import Server
    from tests.support.receiver import Receiver, Reply
    from webhooks.deliverer import Webhooks

    seen: Counter[str] = Counter()

    def script(n: int) -> Reply:
        wid = recv.requests[n].headers["webhook-id"]
        seen[wid] += 1
        return {1: Reply(200, trickle_s=1.0), 2: Reply(500)}.get(seen[wid], Reply(200))

    recv = Receiver(script)
    server = Server(settings, tmp_path / "worker.log",
                    env={"EXTWORKER_WEBHOOK_DELAYS_S": "[0, 1, 1, 1]",
                         "EXTWORKER_WEBHOOK_TIMEOUT_S": "1.5",
                         "EXTWORKER_WEBHOOK_LEASE_S": "6", "EXTWORKER_WEBHOOK_POLL_S": "0.3"})
    try:
        jobs = _publish_uploads(rclient, settings, "trickle", 6, astronaut.resize((64, 64)),
                                recv.url)
        docs = _wait(lambda: _final(rclient, settings, jobs), 90,
                     "jobs final\n" + (tmp_path / "worker.log").read_text()[-3000:])
        assert {d["extensions"]["remove-bg"]["status"] for d in docs} == {"success"}
        hooks = Webhooks(rclient, settings)
        _wait(lambda: len(seen) == 6 and all(c >= 3 for c in seen.values()), 60,
              f"three attempts each: {dict(seen)}")
        _wait(lambda: all((d := hooks.store.get(wid)) and d["status"] == "delivered"
                          for wid in seen), 10, "recorded delivered")
        deliveries = [hooks.store.get(wid) for wid in seen]
        first = [d["attempts"][0] for d in deliveries]
        assert all(a["error"] == "no complete response within 1.5 s" for a in first), first
        assert all([a["status"] for a in d["attempts"][1:]] == [500, 200] for d in deliveries)
        time.sleep(1.5)  # nothing more comes
        sends = Counter(r.headers["webhook-id"] for r in recv.requests)
        report_duplicates("receiver trickles, then 500, then 200 (serve)", len(sends),
                          sum(sends.values()) - 3 * len(sends))
        assert set(sends.values()) == {3}, sends
    finally:
        recv.close()
        server.stop()


def test_two_serves_and_a_slow_receiver_send_each_webhook_id_once(settings, rclient, runtime,
                                                                  tmp_path):
    """Issue 28's case: two ``serve`` processes, a receiver that takes 1 s per POST, a
    delivery lease of 3 s and an HTTP timeout of 2 s (the tightest pair the settings
    accept), 48 failing jobs: 48 POSTs for 48 webhook-ids (it was 52)."""
    from collections import Counter

    from tests.support import Server
    from tests.support.receiver import Receiver, Reply
    from worker.broker.intake import publish

    recv = Receiver(lambda n: Reply(200, delay_s=1.0))
    env = {"EXTWORKER_WEBHOOK_TIMEOUT_S": "2", "EXTWORKER_WEBHOOK_LEASE_S": "3",
           "EXTWORKER_WEBHOOK_POLL_S": "0.3"}
    servers = [Server(settings, tmp_path / f"worker{i}.log", "--threads", "4", env=env)
               for i in range(2)]
    try:
        rec = runtime.pipeline.add_file(b"not an image", "f.txt")
        jobs = [f"slow-{i}" for i in range(48)]
        for job_id in jobs:  # remove-bg on a text file: each ends `failed`, one FAILURE hook
            publish(rclient, settings, {"jobId": job_id, "fileId": rec.fileId,
                                        "webhookUrl": recv.url,
                                        "extensions": [{"name": "remove-bg"}]})
        docs = wait_until(lambda: _final(rclient, settings, jobs), 90, "jobs final")
        assert {d["extensions"]["remove-bg"]["status"] for d in docs} == {"failed"}
        wait_until(lambda: len({r.headers["webhook-id"] for r in recv.requests}) == 48, 60,
                   "every webhook-id sent")
        time.sleep(4)  # past a lease: a re-claim would have sent again by now
        sends = Counter(r.headers["webhook-id"] for r in recv.requests)
        report_duplicates("two serves, 1 s receiver, lease 3 s / timeout 2 s", len(sends),
                          sum(sends.values()) - len(sends))
        assert sum(sends.values()) == 48, {k: v for k, v in sends.items() if v > 1}
    finally:
        for s in servers:
            s.stop()
        recv.close()


def test_a_message_sent_while_redis_restarts_reaches_its_queue(settings, private_redis_dir):
    """The API accepts a job into the store, then sends its extensions' messages: with Redis
    down for 1.5 s at that moment, the send waits it out (``EXTWORKER_REDIS_OUTAGE_WAIT_S``)
    instead of failing the request and leaving the job `accepted` with nothing queued — what
    the soak found (two uploads at its Redis restart: never run, never final)."""
    from worker.broker.actors import build_broker
    from worker.broker.outbox import Outbox

    private = PrivateRedis(private_redis_dir / "redis")
    try:
        settings.redis_url = private.url
        broker = build_broker(settings)
        broker.declare_queue(settings.queue_extensions)
        outbox = Outbox(broker, settings)
        private.proc.kill()
        private.proc.wait(10)
        restart = threading.Timer(1.5, private.start)
        restart.daemon = True
        restart.start()
        outbox.execute(settings.queue_extensions, "job-1", "remove-bg")
        queued = redis.Redis.from_url(private.url).lrange(
            f"dramatiq:{settings.queue_extensions}", 0, -1)
        assert len(queued) == 1
        broker.close()
    finally:
        private.stop()
