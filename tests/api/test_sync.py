"""The synchronous attempt: each extension is reported exactly once — to the waiting
caller or by webhook — even when it completes at the very instant of the deadline."""

from __future__ import annotations

import json
import threading
import time

import pytest

from tests.support import Server, cli, jpeg
from tests.support.receiver import Receiver
from webhooks.deliverer import Webhooks
from worker.broker.client import submit
from worker.broker.modelkeeper import loaded_anywhere
from worker.runtime import Runtime


def test_forced_race_reports_exactly_once(settings, rclient, runtime):
    """Through ``client.submit`` itself: the extension ends within a few milliseconds of
    the caller's deadline, while the deliverer runs, many times — each outcome reported
    once, to the caller (and then suppressed as a webhook) or by the webhook (and then
    ``pending`` for the caller), never both, never neither."""
    import random

    from worker.broker.intake import IntakeConsumer

    recv = Receiver()
    hooks = Webhooks(rclient, settings)
    pipeline = Runtime(settings, notify=hooks.hand_off).pipeline  # what the root wires
    intake = IntakeConsumer(rclient, settings, pipeline.accept)
    fid = pipeline.add_file(b"x", "x.txt").fileId
    rng = random.Random(3)
    outcomes = {"sync": 0, "webhook": 0}
    trials, wait = 60, 0.25
    try:
        for i in range(trials):
            job_id = f"race-{i}"
            report: dict = {}

            def caller(job_id=job_id, report=report):
                report.update(submit({"jobId": job_id, "fileId": fid, "webhookUrl": recv.url,
                                      "extensions": [{"name": "remove-bg"}]},
                                     settings=settings, client=rclient, wait=wait))

            def worker_and_deliverer(job_id=job_id):
                t0 = time.monotonic()
                while pipeline.get_job(job_id) is None:  # dispatch, as a worker would
                    intake.poll_once(block_ms=5)
                sync_until = pipeline.get_job(job_id).to_json()["syncUntil"]
                # Finish around the caller's last look (it polls every 20 ms and returns
                # 40 ms before its deadline) and the webhook's first due time (the deadline).
                time.sleep(max(0.0, sync_until - time.time() + rng.uniform(-0.07, 0.01)))
                pipeline.fail(job_id, "remove-bg", "boom", "internal_error")
                while time.monotonic() - t0 < wait + 2.0:
                    hooks.run_due()
                    found = hooks.store.list(job_id=job_id, limit=1)
                    if found and found[0]["status"] != "pending":
                        return
                    time.sleep(0.002)

            threads = [threading.Thread(target=caller),
                       threading.Thread(target=worker_and_deliverer)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(10)
            hooks.run_due()  # anything left
            (doc,) = hooks.store.list(job_id=job_id, limit=1)
            sent = sum(r.headers["webhook-id"] == doc["id"] for r in recv.requests)
            returned = report["extensionStatus"]["remove-bg"] == "failed"
            assert report["extensionStatus"]["remove-bg"] in ("failed", "pending"), report
            assert returned != (sent == 1), (i, report, doc["status"], sent)
            assert sent <= 1
            assert doc["status"] == ("suppressed" if returned else "delivered")
            outcomes["sync" if returned else "webhook"] += 1
        assert sum(outcomes.values()) == trials
        assert outcomes["sync"] and outcomes["webhook"], outcomes  # both sides of the race
    finally:
        recv.close()


@pytest.mark.slow
def test_submit_wait_returns_final_ones_and_webhooks_the_rest(settings, rclient, tmp_path,
                                                              astronaut):
    # As the README advises for pods that serve the synchronous attempt: preload the
    # models, so the wait below measures serving, not a cold import of torch.
    preload = [f"classifier:{settings.classifier_model}",
               f"zero-shot:{settings.zero_shot_model}", f"captioner:{settings.caption_model}"]
    server = Server(settings, tmp_path / "worker.log",
                    env={"EXTWORKER_PRELOAD": json.dumps(preload)})
    recv = Receiver()
    try:
        deadline = time.monotonic() + 120
        wanted = {k.split(":", 1)[1] for k in preload}
        while not wanted <= set(loaded_anywhere(rclient, settings)):
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()
            time.sleep(0.2)
        path = tmp_path / "a.jpg"
        path.write_bytes(jpeg(astronaut))
        fid = json.loads(cli(settings, "files", "add", str(path)).stdout)["fileId"]
        tagging = [{"name": "google-auto-tagging", "minConfidence": 0, "maxTags": 5},
                   {"name": "aws-auto-tagging", "minConfidence": 0, "maxTags": 5},
                   {"name": "ai-auto-description"}]
        # Enough time: everything comes back synchronously, and no webhook is sent.
        out = json.loads(cli(settings, "submit", "--file-id", fid, "--job-id", "sync-ok",
                             "--webhook-url", recv.url, "--extensions", json.dumps(tagging),
                             "--wait", "10").stdout)
        assert out["extensionStatus"] == {e["name"]: "success" for e in tagging}
        sources = {t["source"] for t in out["file"]["AITags"]}
        assert sources == {"google-auto-tagging", "aws-auto-tagging"}
        assert out["file"]["description"]
        # Too little time: everything is pending, and each gets its webhook.
        t0 = time.monotonic()
        late = submit({"fileId": fid, "jobId": "sync-late", "webhookUrl": recv.url,
                       "extensions": [{"name": "remove-bg"}]}, settings=settings,
                      client=rclient, wait=0.05)
        assert time.monotonic() - t0 < 1.0
        assert late["extensionStatus"] == {"remove-bg": "pending"}
        deadline = time.monotonic() + 30
        while not recv.requests and time.monotonic() < deadline:
            time.sleep(0.1)
        # The sync ones' deliveries fall due at syncUntil (10 s after submit): they
        # must stand down without sending anything.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            listed = {d["service"]: d["status"] for d in json.loads(
                cli(settings, "deliveries", "list", "--job-id", "sync-ok").stdout)}
            if "pending" not in listed.values():
                break
            time.sleep(0.5)
        assert listed == {e["name"]: "suppressed" for e in tagging}
        bodies = [json.loads(r.body) for r in recv.requests]
        assert [b["service"] for b in bodies] == ["remove-bg"]
        assert bodies[0]["fileObject"]["versionInfo"]["name"] == "Version 2"
    finally:
        recv.close()
        server.stop()


def test_apply_runs_vision_extensions_without_redis(settings, tmp_path, astronaut):
    settings.redis_url = "redis://127.0.0.1:1/0"
    img = tmp_path / "a.jpg"
    img.write_bytes(jpeg(astronaut))
    proc = cli(settings, "apply", str(img), "--extensions", json.dumps([
        {"name": "aws-auto-tagging", "minConfidence": 0, "maxTags": 3},
        {"name": "google-auto-tagging", "minConfidence": 0, "maxTags": 3},
        {"name": "ai-auto-description"}]))
    file = json.loads(proc.stdout)
    assert set(file["extensionStatus"].values()) == {"success"}
    assert len(file["AITags"]) == 6 and file["description"].endswith(".")
