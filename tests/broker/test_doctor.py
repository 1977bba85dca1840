"""``extworker doctor`` finds stuck work of each kind and ``--fix`` sets it moving.

Given a pending extension whose message was lost, a due delivery nobody claims, and an
intake entry left pending on a consumer that stopped, when the doctor runs, then it reports
one of each (and the metric says so); with the repair, the extension runs to ``success``,
the webhooks queue is woken, and the entry is dispatched.
"""

from __future__ import annotations

import json
import time

import pytest
import redis

from tests.support import STORE_BACKENDS, cli, jpeg
from worker.broker import doctor
from worker.broker.intake import GROUP, IntakeConsumer, publish


@pytest.mark.parametrize("store_url", STORE_BACKENDS, indirect=True)
def test_doctor_reports_and_repairs_each_kind(settings, runtime, rclient, astronaut):
    """On each store: the job documents the doctor scans are where the store keeps them."""
    settings.extension_time_limit_s = 1
    p = runtime.pipeline
    rec = p.add_file(jpeg(astronaut.resize((64, 64))), "a.jpg")
    p.accept({"jobId": "lost", "fileId": rec.fileId, "extensions": [{"name": "remove-bg"}]})
    runtime.queued.clear()  # the execute message is lost
    hooks_due = settings.keys.webhook_due()
    rclient.zadd(hooks_due, {"msg_waiting": 1})  # due since 1970, nobody claims it
    publish(rclient, settings, {"jobId": "orphan", "fileId": rec.fileId, "extensions": []})
    gone = IntakeConsumer(rclient, settings, lambda job: (_ for _ in ()).throw(
        ConnectionError("worker died")))
    try:
        gone.poll_once(block_ms=10)
    except ConnectionError:
        pass  # the entry stays pending on a consumer that will never come back
    later = time.time() * 1000 + 5_000
    rclient.xclaim(settings.keys.intake(), GROUP, gone.consumer, 0,
                   [e[0] for e in rclient.xrange(settings.keys.intake())], idle=200_000)

    report = doctor.examine(rclient, settings, now_ms=later, store=runtime.kv)
    assert report["counts"] == {"extensions": 1, "handoffs": 0, "deliveries": 1, "intake": 1,
                                "legacyKeys": 0}
    assert report["extensions"][0]["jobId"] == "lost"
    assert json.loads(rclient.get(settings.keys.doctor_report()))["extensions"] == 1

    sent, woken, dispatched = [], [], []
    done = doctor.repair(rclient, settings, report, send=lambda q, j, s: sent.append((q, j, s)),
                         wake_webhooks=lambda: woken.append(1), dispatch=dispatched.append,
                         handoff=lambda j, s: None)
    assert done == {"extensions": 1, "handoffs": 0, "deliveries": 1, "intake": 1,
                    "legacyKeys": 0}
    assert sent == [("extensions", "lost", "remove-bg")] and woken == [1]
    assert [j["jobId"] for j in dispatched] == ["orphan"]
    assert rclient.xpending(settings.keys.intake(), GROUP)["pending"] == 0
    for _queue, job_id, slot in sent:  # what the re-sent message does: run it, once
        p.execute(job_id, slot)
    assert p.get_job("lost").to_json()["extensions"]["remove-bg"]["status"] == "success"
    rclient.zrem(hooks_due, "msg_waiting")
    assert doctor.examine(rclient, settings, store=runtime.kv)["counts"] == {
        "extensions": 0, "handoffs": 0, "deliveries": 0, "intake": 0, "legacyKeys": 0}


def test_keys_of_accounts_with_a_colon_written_before_are_renamed_once(settings, rclient):
    """Earlier versions wrote ``path:eu:acme:/a:b.jpg`` and ``units:eu:acme:2026-11`` for
    account ``eu:acme``; now its id is escaped there. The doctor finds exactly those, and
    --fix renames them, never over a key that exists; paths and months keep their colons."""
    ns, k = settings.keys.namespace, settings.keys
    rclient.set(f"{ns}:path:eu:acme:/a:b.jpg", json.dumps({"fileId": "f1"}))
    rclient.set(f"{ns}:units:eu:acme:2026-11", json.dumps({"total": 130}))
    rclient.set(k.path("acme", "/c:d.jpg"), json.dumps({"fileId": "f2"}))  # current
    rclient.set(k.path("eu:acme", "/new.jpg"), json.dumps({"fileId": "f3"}))  # current
    rclient.set(k.units("acme", "2026-11"), json.dumps({"total": 1}))  # current
    report = doctor.examine(rclient, settings)
    assert sorted((i["key"], i["now"]) for i in report["legacyKeys"]) == [
        (f"{ns}:path:eu:acme:/a:b.jpg", k.path("eu:acme", "/a:b.jpg")),
        (f"{ns}:units:eu:acme:2026-11", k.units("eu:acme", "2026-11"))]
    done = doctor.repair(rclient, settings, report, send=lambda *a: None,
                         wake_webhooks=lambda: None, dispatch=lambda j: None,
                         handoff=lambda *a: None)
    assert done["legacyKeys"] == 2
    assert json.loads(rclient.get(k.path("eu:acme", "/a:b.jpg"))) == {"fileId": "f1"}
    assert json.loads(rclient.get(k.units("eu:acme", "2026-11"))) == {"total": 130}
    assert doctor.examine(rclient, settings)["counts"]["legacyKeys"] == 0


def test_doctor_cli_exits_1_when_something_is_stuck(settings, rclient):
    rclient.zadd(settings.keys.webhook_due(), {"msg_waiting": 1})
    proc = cli(settings, "doctor", check=False)
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["counts"]["deliveries"] == 1
    fixed = json.loads(cli(settings, "doctor", "--fix").stdout)
    assert fixed["fixed"]["deliveries"] == 1
    assert rclient.llen("dramatiq:webhooks") == 1  # deliver_due was enqueued


def test_doctor_hands_on_a_final_extension_whose_webhook_was_lost(settings, runtime, rclient,
                                                                   astronaut):
    """The message that finished an extension died before the hand-off (Redis down): the
    extension is final, its delivery never created. The doctor finds it and hands it on."""
    from webhooks.deliverer import Webhooks

    p = runtime.pipeline
    rec = p.add_file(jpeg(astronaut.resize((64, 64))), "a.jpg")
    p.accept({"jobId": "no-hook", "fileId": rec.fileId, "webhookUrl": "https://example.test/h",
              "extensions": [{"name": "remove-bg"}]})
    # The runtime fixture hands nothing on (no notify): the hand-off is lost.
    p.execute("no-hook", "remove-bg")
    assert p.get_job("no-hook").to_json()["extensions"]["remove-bg"]["status"] == "success"
    later = time.time() * 1000 + settings.webhook_lease_s * 1000 + 5_000
    report = doctor.examine(rclient, settings, now_ms=later)
    assert [h["jobId"] for h in report["handoffs"]] == ["no-hook"]
    hooks = Webhooks(rclient, settings)

    def handoff(job_id, slot):
        job = p.get_job(job_id)
        hooks.hand_off(job, slot, p.get_file(job.fileId).file_object(settings.urls))

    done = doctor.repair(rclient, settings, report, send=lambda *a: None,
                         wake_webhooks=lambda: None, dispatch=lambda j: None, handoff=handoff)
    assert done["handoffs"] == 1
    (delivery,) = hooks.store.list(job_id="no-hook")
    assert delivery["event"] == "SUCCESS" and delivery["status"] == "pending"
    assert doctor.examine(rclient, settings, now_ms=later)["counts"]["handoffs"] == 0


def test_a_redis_that_does_not_persist_is_a_problem_and_readyz_can_require_it(
        settings, rclient, tmp_path):
    """Everything extworker holds is in Redis. Without AOF or save points the doctor says so
    (exit 1) and, with EXTWORKER_REQUIRE_PERSISTENT_REDIS, /readyz answers 503; a Redis
    with AOF on — the configuration the chart and the README give — passes both."""
    from tests.support import PrivateRedis
    from worker.telemetry.ops import check_ready

    volatile = redis.Redis.from_url(settings.redis_url)
    saved = {**volatile.config_get("appendonly"), **volatile.config_get("save")}
    volatile.config_set("appendonly", "no")
    volatile.config_set("save", "")
    try:
        report = doctor.examine(rclient, settings)
        assert report["problems"] and "no persistence" in report["problems"][0]
        proc = cli(settings, "doctor", check=False)
        assert proc.returncode == 1 and "no persistence" in proc.stderr
        settings.require_persistent_redis = True
        ok, problems = check_ready(volatile, settings)
        assert not ok and any("no persistence" in p for p in problems)
    finally:  # the machine's Redis as it was
        volatile.config_set("save", saved["save"])
        volatile.config_set("appendonly", saved["appendonly"])
    (tmp_path / "redis").mkdir()
    srv = PrivateRedis(tmp_path / "redis")  # appendonly yes, appendfsync always
    try:
        durable = redis.Redis.from_url(srv.url)
        assert doctor.examine(durable, settings)["problems"] == []
        ok, problems = check_ready(durable, settings)
        assert not any("persistence" in p for p in problems), problems
    finally:
        srv.stop()
