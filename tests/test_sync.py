"""The synchronous attempt: each extension is reported exactly once — to the waiting
caller or by webhook — even when it completes at the very instant of the deadline."""

from __future__ import annotations

import json
import threading
import time

import pytest

from tests.conftest import Server, cli, jpeg
from tests.receiver import Receiver
from webhooks.deliverer import Webhooks
from worker import claims
from worker.client import submit
from worker.modelkeeper import loaded_anywhere


def test_forced_race_reports_exactly_once(settings, rclient):
    """Completion and deadline at the same instant, many times: caller XOR webhook."""
    recv = Receiver()
    try:
        hooks = Webhooks(rclient, settings)
        outcomes = {"sync": 0, "webhook": 0}
        trials = 150
        for i in range(trials):
            job = f"race-{i}"
            now = time.time()
            # The extension finished exactly at the caller's deadline.
            hooks.enqueue(account="acme", url=recv.url, job_id=job, file_id="f",
                          service="google-auto-tagging", status="success",
                          file_object={"fileId": "f"}, error=None, sync_until=now)
            barrier = threading.Barrier(2)
            caller: dict[str, str] = {}

            def caller_returns(job=job, caller=caller, barrier=barrier):
                barrier.wait()
                caller["owner"] = claims.claim(rclient, settings, job, "google-auto-tagging",
                                               claims.SYNC)

            def deliverer_runs(barrier=barrier):
                barrier.wait()
                hooks.run_due()

            threads = [threading.Thread(target=caller_returns),
                       threading.Thread(target=deliverer_runs)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            hooks.run_due()  # anything left
            doc = hooks.store.get(next(iter(
                d["id"] for d in hooks.store.list(job_id=job, limit=1))))
            sent = sum(r.headers["webhook-id"] == doc["id"] for r in recv.requests)
            returned = caller["owner"] == claims.SYNC
            assert returned != (sent == 1), (i, caller, doc["status"], sent)
            assert sent <= 1
            assert doc["status"] == ("suppressed" if returned else "delivered")
            outcomes["sync" if returned else "webhook"] += 1
        assert sum(outcomes.values()) == trials
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
