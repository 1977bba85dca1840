"""End to end through a real ``extworker serve`` subprocess and real Redis.

The job is published by *another process* (the CLI, or a bare Redis client
speaking only ``XADD``, as an upload service in any language would).
"""

from __future__ import annotations

import json
import time

import pytest

from tests.support import cli, jpeg

pytestmark = pytest.mark.slow


def _add(settings, tmp_path, data: bytes, name: str = "photo.jpg") -> dict:
    path = tmp_path / name
    path.write_bytes(data)
    return json.loads(cli(settings, "files", "add", str(path), "--tags", "a,b").stdout)


def _wait_job(rclient, settings, job_id: str, timeout: float = 60, state: str = "dispatched"
              ) -> dict:
    """The job document once it is in ``state`` with no extension pending.

    Jobs travel through dramatiq, so two jobs published in one order may finish in
    the other: wait for each job by its own id, never infer one from another.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        raw = rclient.get(settings.keys.job(job_id))
        if raw:
            doc = json.loads(raw)
            if doc["state"] == state and all(
                    s["status"] != "pending" for s in doc["extensions"].values()):
                return doc
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not reach {state}")


def test_serve_runs_a_job_published_by_another_process(server, settings, rclient, tmp_path,
                                                       astronaut):
    rec = _add(settings, tmp_path, jpeg(astronaut))
    assert rec["tags"] == ["a", "b"] and rec["versionInfo"]["name"] == "Version 1"
    out = cli(settings, "submit", "--file-id", rec["fileId"], "--job-id", "cli-1",
              "--extensions", '[{"name": "remove-bg"}, {"name": "nope"}]', "--wait", "60")
    result = json.loads(out.stdout)
    assert result["extensionStatus"] == {"remove-bg": "success", "extensions[1]": "failed"}
    assert result["file"]["versionInfo"]["name"] == "Version 2"
    assert result["file"]["hasAlpha"] is True and result["file"]["mime"] == "image/png"
    usage = json.loads(cli(settings, "usage", "default").stdout)
    assert usage["total"] == 130 and usage["extensions"] == {"remove-bg": 130}
    got = json.loads(cli(settings, "files", "get", rec["fileId"]).stdout)
    assert got == result["file"]


def test_plain_redis_xadd_intake_and_duplicate_job_id(server, settings, rclient, tmp_path,
                                                      astronaut):
    rec = _add(settings, tmp_path, jpeg(astronaut))
    job = {"jobId": "raw-1", "fileId": rec["fileId"], "extensions": [{"name": "remove-bg"}]}
    # What a Go/Node/Ruby upload service does: one XADD, nothing else.
    for _ in range(2):
        rclient.execute_command("XADD", settings.keys.intake(), "MAXLEN", "~", "100000", "*",
                                "job", json.dumps(job))
    doc = _wait_job(rclient, settings, "raw-1")
    assert doc["extensions"]["remove-bg"]["status"] == "success"
    time.sleep(1.0)  # give the duplicate time to be (not) processed
    got = json.loads(cli(settings, "files", "get", rec["fileId"]).stdout)
    assert got["versionInfo"]["name"] == "Version 2"
    assert json.loads(cli(settings, "usage", "default").stdout)["total"] == 130
    assert rclient.xlen(settings.keys.intake()) == 0  # acknowledged and deleted


def test_bad_input_fails_readably_and_the_worker_stays_up(server, settings, rclient, tmp_path,
                                                          astronaut):
    whole = jpeg(astronaut)
    cases = {"zero": b"", "text": b"hello, not an image", "truncated": whole[: len(whole) // 3]}
    ids = {k: _add(settings, tmp_path, v, f"{k}.jpg")["fileId"] for k, v in cases.items()}
    for name, fid in ids.items():
        cli(settings, "submit", "--file-id", fid, "--job-id", f"bad-{name}",
            "--extensions", '[{"name": "remove-bg"}]')
    # Not a JSON object at all, and a job without a fileId: dropped or rejected, never a crash.
    rclient.xadd(settings.keys.intake(), {"job": "{not json"})
    rclient.xadd(settings.keys.intake(), {"job": json.dumps({"jobId": "nofile", "extensions": []})})
    for name in cases:
        doc = _wait_job(rclient, settings, f"bad-{name}")
        err = doc["extensions"]["remove-bg"]["error"]
        assert doc["extensions"]["remove-bg"]["status"] == "failed" and err["message"]
    rejected = _wait_job(rclient, settings, "nofile", state="rejected")
    assert rejected["state"] == "rejected" and "fileId" in rejected["error"]["message"]
    assert server.alive()
    # …and it still does real work afterwards.
    good = _add(settings, tmp_path, whole, "good.jpg")["fileId"]
    out = cli(settings, "submit", "--file-id", good, "--extensions", '[{"name": "remove-bg"}]',
              "--wait", "60")
    assert json.loads(out.stdout)["extensionStatus"] == {"remove-bg": "success"}


def test_submit_wait_returns_pending_when_time_runs_out(settings, rclient, tmp_path, astronaut):
    # No worker is running: after the wait everything is still pending.
    rec = _add(settings, tmp_path, jpeg(astronaut))
    out = cli(settings, "submit", "--file-id", rec["fileId"], "--extensions",
              '[{"name": "remove-bg"}]', "--wait", "0.5")
    assert json.loads(out.stdout)["extensionStatus"] == {"remove-bg": "pending"}


def test_webhooks_end_to_end(server, settings, rclient, tmp_path, astronaut):
    from standardwebhooks import Webhook

    from tests.support.receiver import Receiver

    recv = Receiver()
    try:
        good = _add(settings, tmp_path, jpeg(astronaut), "good.jpg")["fileId"]
        bad = _add(settings, tmp_path, b"\xff\xd8\xff garbage", "bad.jpg")["fileId"]
        for fid, job in ((good, "wh-good"), (bad, "wh-bad")):
            cli(settings, "submit", "--file-id", fid, "--job-id", job, "--webhook-url", recv.url,
                "--extensions", '[{"name": "remove-bg"}]')
        for job in ("wh-good", "wh-bad"):
            _wait_job(rclient, settings, job)
        deadline = time.monotonic() + 20
        while len(recv.requests) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.5)  # nothing more arrives
        assert len(recv.requests) == 2
        secret = json.loads(cli(settings, "secrets", "show", "default").stdout)["secret"]
        events = {}
        for req in recv.requests:
            body = Webhook(secret).verify(req.body, req.headers)
            events[body["status"]] = body
        ok = events["SUCCESS"]
        assert ok["service"] == "remove-bg" and ok["fileObject"]["fileId"] == good
        assert ok["fileObject"]["versionInfo"]["name"] == "Version 2"
        assert ok["fileObject"]["extensionStatus"] == {"remove-bg": "success"}
        fail = events["FAILURE"]
        assert fail["fileId"] == bad and fail["error"]["code"] == "invalid_image"
        assert "corrupt" in fail["error"]["message"] or "not an image" in fail["error"]["message"]
        listed = json.loads(cli(settings, "deliveries", "list", "--job-id", "wh-good").stdout)
        assert [d["status"] for d in listed] == ["delivered"]
    finally:
        recv.close()


def test_intake_gives_a_job_without_id_a_stable_one(settings, rclient):
    from worker.broker.intake import IntakeConsumer

    sent: list[dict] = []
    consumer = IntakeConsumer(rclient, settings, sent.append)
    entry = rclient.xadd(settings.keys.intake(), {"job": json.dumps(
        {"fileId": "f", "extensions": [{"name": "remove-bg"}]})})
    fields = {b"job": rclient.xrange(settings.keys.intake())[0][1][b"job"]}
    consumer.handle(entry, dict(fields))
    consumer.handle(entry, dict(fields))  # the same entry delivered again
    assert sent[0]["jobId"] == sent[1]["jobId"] == f"intake-{entry.decode()}"


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_on_postgresql_with_a_broker_database_of_its_own_redis_holds_only_queues(
        settings, rclient, tmp_path, astronaut):
    """EXTWORKER_STORE_URL=postgresql://… and EXTWORKER_BROKER_URL on another database:
    a job runs end to end through serve; the broker's database holds dramatiq's keys and
    nothing else (its maintenance runs KEYS over it), Redis holds none of the store's, and
    the record with its new version is in PostgreSQL."""
    import psycopg
    import redis

    from tests.support import TEST_DB, Server

    broker_url = settings.redis_url.rsplit("/", 1)[0] + f"/{(TEST_DB + 1) % 16}"
    broker = redis.Redis.from_url(broker_url)
    broker.flushdb()
    settings.broker_url = broker_url
    worker = Server(settings, tmp_path / "worker.log")
    try:
        rec = _add(settings, tmp_path, jpeg(astronaut.resize((256, 256))))
        out = cli(settings, "submit", "--file-id", rec["fileId"], "--extensions",
                  '[{"name": "remove-bg"}]', "--wait", "90")
        assert json.loads(out.stdout)["extensionStatus"] == {"remove-bg": "success"}, (
            out.stdout + (tmp_path / "worker.log").read_text()[-3000:])
        assert json.loads(cli(settings, "keys", "create", "acme").stdout)["key"]
        broker_keys = {k.decode() for k in broker.scan_iter(count=1000)}
        assert broker_keys and all(k.startswith("dramatiq:") for k in broker_keys), broker_keys
        ours = [k.decode() for k in rclient.scan_iter(count=1000)]
        assert not any(k.startswith("dramatiq:") for k in ours), ours
        assert [k for k in ours if settings.keys.is_store_key(k)] == []
        with psycopg.connect(settings.store_url) as conn:
            (doc,) = conn.execute("SELECT value FROM extworker_docs WHERE key = %s",
                                  (settings.keys.file(rec["fileId"]),)).fetchone()
        assert doc["versionInfo"]["name"] == "Version 2"
    finally:
        worker.stop()
        broker.flushdb()
