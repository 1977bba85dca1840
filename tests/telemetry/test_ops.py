"""Operations: metrics scraped over HTTP after real jobs, health and readiness probes,
graceful shutdown on SIGTERM, and structured logs — all against real `extworker serve`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
import redis

from tests.support import Server, cli, free_port, jpeg, wait_until
from tests.support.receiver import Receiver
from worker.models import devices
from worker.telemetry.metrics import METRICS

pytestmark = pytest.mark.slow
SLOW = '["tests.support.slow_extension:Sleep"]'


def _get(port: int, path: str) -> tuple[int, str]:
    """(status, body); (0, reason) while nothing listens yet — the HTTP fork starts
    alongside the worker processes, not before them."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except urllib.error.URLError as e:
        return 0, str(e.reason)


def _wait_for(predicate, timeout: float = 30, every: float = 0.2):
    return wait_until(predicate, timeout, "condition", every)


def _sample(text: str, name: str, **labels: str) -> float | None:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        metric, _, value = line.rpartition(" ")
        mname, _, rest = metric.partition("{")
        got = ",".join(sorted(p for p in rest.rstrip("}").split(",") if p))
        if mname == name and got == want:
            return float(value)
    return None


def _job_done(rclient, settings, job_id):
    raw = rclient.get(settings.keys.job(job_id))
    doc = json.loads(raw) if raw else None
    if doc and doc["state"] == "dispatched" and all(
            s["status"] != "pending" for s in doc["extensions"].values()):
        return doc
    return None


def test_metrics_after_real_jobs(server, settings, rclient, tmp_path, astronaut):
    recv = Receiver()
    try:
        img = tmp_path / "a.jpg"
        img.write_bytes(jpeg(astronaut))
        fid = json.loads(cli(settings, "files", "add", str(img)).stdout)["fileId"]
        bad = tmp_path / "bad.jpg"
        bad.write_bytes(b"junk")
        bid = json.loads(cli(settings, "files", "add", str(bad)).stdout)["fileId"]
        # No --wait: finished extensions are then reported by webhook, not synchronously.
        cli(settings, "submit", "--file-id", fid, "--webhook-url", recv.url, "--extensions",
            '[{"name": "remove-bg"}, {"name": "aws-auto-tagging", "minConfidence": 0, '
            '"maxTags": 2}]')
        cli(settings, "submit", "--file-id", bid, "--extensions", '[{"name": "remove-bg"}]',
            "--wait", "60")
        _wait_for(lambda: len(recv.requests) >= 2)

        def scraped():
            code, text = _get(server.http_port, "/metrics")
            ok = _sample(text, "extworker_webhook_attempts_total", outcome="delivered",
                         status_class="2xx")
            return text if code == 200 and ok == 2 else None

        text = _wait_for(scraped)
    finally:
        recv.close()
    s = lambda name, **kw: _sample(text, name, **kw)  # noqa: E731
    assert s("extworker_extension_jobs_total", extension="remove-bg", status="success") == 1
    assert s("extworker_extension_jobs_total", extension="remove-bg", status="failed") == 1
    assert s("extworker_extension_jobs_total", extension="aws-auto-tagging",
             status="success") == 1
    assert s("extworker_units_charged_total", extension="remove-bg") == 130
    assert s("extworker_units_charged_total", extension="aws-auto-tagging") == 1
    assert s("extworker_extension_duration_seconds_count", extension="remove-bg") == 2
    assert s("extworker_inference_seconds_count", model="u2netp", device="cpu") == 1
    assert s("extworker_webhook_delivery_latency_seconds_count") == 2
    assert s("extworker_messages_total", queue="default", actor="dispatch") == 2
    assert s("extworker_queue_messages", queue="extensions", state="ready") == 0
    assert s("extworker_queue_messages", queue="default", state="dead") == 0
    assert s("extworker_webhook_attempts_due") == 0
    assert s("extworker_up") == 1
    assert s("extworker_models_loaded") == 2  # u2netp and the tiny classifier
    for line in text.splitlines():  # no ids in labels
        assert fid not in line and "jobId" not in line
    # Every family we expose is documented (METRICS feeds the README table).
    families = {ln.split(" ")[2] for ln in text.splitlines() if ln.startswith("# TYPE")}
    documented = set(METRICS) | {n.removesuffix("_total") for n in METRICS}
    assert families and families <= documented, families - documented


def test_health_and_readiness_follow_redis(settings, tmp_path, models_dir):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                             "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    _wait_for(lambda: _ping(url), timeout=10, every=0.05)
    settings.redis_url = url
    srv = Server(settings, tmp_path / "w.log", "--queues", "default", "extensions")
    try:
        _wait_for(lambda: _get(srv.http_port, "/healthz")[0] == 200)
        code, body = _get(srv.http_port, "/readyz")
        assert code == 200 and json.loads(body)["status"] == "ok"
        proc.terminate()
        proc.wait(10)
        _wait_for(lambda: _get(srv.http_port, "/readyz")[0] == 503)
        code, body = _get(srv.http_port, "/healthz")
        assert code == 503 and "redis" in json.loads(body)["problems"][0]
        assert _get(srv.http_port, "/nope")[0] == 404
    finally:
        srv.stop(timeout=5)
        if proc.poll() is None:
            proc.kill()


def _ping(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url).ping())
    except redis.RedisError:
        return False


def test_readiness_reports_a_missing_model(settings, tmp_path, rclient):
    env = {"EXTWORKER_PRELOAD": '["captioner:not-pulled"]'}
    srv = Server(settings, tmp_path / "w.log", "--queues", "extensions", env=env)
    try:
        code, body = _wait_for(lambda: (r := _get(srv.http_port, "/readyz"))[0] and r)
        assert code == 503
        assert "extworker models pull not-pulled" in json.loads(body)["problems"][0]
    finally:
        srv.stop()


def test_sigterm_finishes_the_running_job_and_returns_the_rest(settings, rclient, tmp_path):
    env = {"EXTWORKER_EXTRA_EXTENSIONS": SLOW, "EXTWORKER_SHUTDOWN_TIMEOUT_S": "20"}
    img = tmp_path / "f.bin"
    img.write_bytes(b"any file")
    fid = json.loads(cli(settings, "files", "add", str(img)).stdout)["fileId"]
    a = Server(settings, tmp_path / "a.log", "--threads", "1", env=env)
    for i in range(3):
        cli(settings, "submit", "--file-id", fid, "--job-id", f"slow-{i}", "--extensions",
            json.dumps([{"name": "sleep", "seconds": 2, "tag": f"t{i}"}]))
    _wait_for(lambda: '"extension started"' in (tmp_path / "a.log").read_text(), every=0.05)
    a.proc.send_signal(signal.SIGTERM)  # mid-job, others waiting or prefetched
    a.proc.wait(30)
    log = (tmp_path / "a.log").read_text()
    assert "Killing" not in log
    done_by_a = [i for i in range(3) if _job_done(rclient, settings, f"slow-{i}")]
    assert len(done_by_a) >= 1  # the running one finished before the process left
    b = Server(settings, tmp_path / "b.log", env=env)
    try:
        for i in range(3):
            doc = _wait_for(lambda i=i: _job_done(rclient, settings, f"slow-{i}"))
            assert doc["extensions"]["sleep"]["status"] == "success"
    finally:
        b.stop()
    tags = json.loads(cli(settings, "files", "get", fid).stdout)["tags"]
    assert sorted(tags) == ["t0", "t1", "t2"]  # every job ran, none twice


def test_a_job_cut_off_by_the_timeout_is_redelivered(settings, rclient, tmp_path):
    env = {"EXTWORKER_EXTRA_EXTENSIONS": SLOW, "EXTWORKER_SHUTDOWN_TIMEOUT_S": "1",
           "EXTWORKER_BROKER_HEARTBEAT_TIMEOUT_S": "2",
           "EXTWORKER_BROKER_MAINTENANCE_CHANCE": "1000000"}
    img = tmp_path / "f.bin"
    img.write_bytes(b"any file")
    fid = json.loads(cli(settings, "files", "add", str(img)).stdout)["fileId"]
    a = Server(settings, tmp_path / "a.log", "--threads", "1", env=env)
    cli(settings, "submit", "--file-id", fid, "--job-id", "long", "--extensions",
        json.dumps([{"name": "sleep", "seconds": 6}]))
    _wait_for(lambda: '"extension started"' in (tmp_path / "a.log").read_text(), every=0.05)
    a.stop(timeout=15)
    assert not _job_done(rclient, settings, "long")  # cut off, not acknowledged
    b = Server(settings, tmp_path / "b.log", env=env)
    try:
        doc = _wait_for(lambda: _job_done(rclient, settings, "long"), timeout=40)
        assert doc["extensions"]["sleep"]["status"] == "success"
    finally:
        b.stop()


def test_logs_are_json_with_context_and_no_secrets(settings, rclient, tmp_path, astronaut):
    # Two processes: each must know it is one of two, and take half the CPUs for inference.
    server = Server(settings, tmp_path / "worker.log", "--processes", "2")
    recv = Receiver()
    try:
        img = tmp_path / "a.jpg"
        img.write_bytes(jpeg(astronaut))
        fid = json.loads(cli(settings, "files", "add", str(img)).stdout)["fileId"]
        secret = json.loads(cli(settings, "secrets", "show", "default").stdout)["secret"]
        cli(settings, "submit", "--file-id", fid, "--job-id", "logged", "--webhook-url",
            recv.url, "--extensions", '[{"name": "remove-bg"}]')
        _wait_for(lambda: recv.requests)
        time.sleep(0.5)
        sig = recv.requests[0].headers["webhook-signature"]
    finally:
        recv.close()
        server.stop()
    lines = [json.loads(ln) for ln in server.log.read_text().splitlines() if ln.startswith("{")]
    cpus = devices.available_cpus()
    assert any(ln["event"] == f"inference threads: {max(1, cpus // 2)} per process "
               f"({cpus} CPU(s) available, 2 process(es))" for ln in lines)
    finished = [ln for ln in lines if ln["event"] == "extension finished"]
    assert finished and finished[0]["jobId"] == "logged" and finished[0]["fileId"] == fid
    assert finished[0]["extension"] == "remove-bg" and finished[0]["attempt"] == 1
    assert finished[0]["device"] == "cpu"
    text = server.log.read_text()
    assert secret not in text and secret[6:] not in text and sig.split(",")[1] not in text


def test_serve_removes_only_stale_samples_from_the_operators_metrics_dir(settings, rclient,
                                                                         tmp_path):
    metrics_dir = tmp_path / "prom"
    metrics_dir.mkdir()
    (metrics_dir / "counter_4242.db").write_bytes(b"stale")
    (metrics_dir / "keep-me.txt").write_text("the operator's")
    (metrics_dir / "sub").mkdir()
    srv = Server(settings, tmp_path / "w.log", env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)})
    try:
        assert not (metrics_dir / "counter_4242.db").exists()
        assert (metrics_dir / "keep-me.txt").read_text() == "the operator's"
        assert (metrics_dir / "sub").is_dir()
    finally:
        srv.stop()


def test_dead_processes_stop_counting_in_live_gauges(tmp_path):
    from worker.telemetry.metrics import reap_dead_processes

    code = ("from prometheus_client import Gauge; "
            "Gauge('x_live', 'x', multiprocess_mode='livesum').set(3)")
    proc = subprocess.run([sys.executable, "-c", code], timeout=60,
                          env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)})
    assert proc.returncode == 0
    (sample,) = tmp_path.glob("gauge_livesum_*.db")
    pid = int(sample.stem.rsplit("_", 1)[1])
    assert reap_dead_processes(str(tmp_path)) == [pid]  # gone: SIGKILLed or exited
    assert not sample.exists()


def test_redact_drops_secret_keys_and_masks_secret_values(settings):
    """What the JSON log prints when something does log a secret (directly, not inferred
    from a run where nothing happened to log one)."""
    import io
    import logging

    from worker.telemetry.logs import configure

    settings.log_format = "json"
    out = io.StringIO()
    configure(settings, stream=out)
    try:
        secret = "whsec_" + "A" * 44
        log = logging.getLogger("extworker.test")
        log.info("signing with %s", secret, extra={"secret": secret, "authorization":
                                                   "Basic abc", "fileId": "f1"})
        log.warning("fetch failed: https://b.s3.amazonaws.com/x.jpg?X-Amz-Credential=AKIA1"
                    "&X-Amz-Signature=deadbeef&size=2")
        try:
            raise RuntimeError(f"header webhook-signature: v1,{'B' * 44}")
        except RuntimeError:
            log.exception("attempt crashed")
    finally:
        logging.getLogger().handlers[:] = []
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    text = out.getvalue()
    assert secret not in text and "A" * 44 not in text and "B" * 44 not in text
    assert "deadbeef" not in text and "AKIA1" not in text and "abc" not in text
    assert lines[0]["secret"] == lines[0]["authorization"] == "[redacted]"
    assert lines[0]["event"] == "signing with [redacted]" and lines[0]["fileId"] == "f1"
    assert lines[1]["event"].endswith("?[redacted]&[redacted]&size=2")
    assert "[redacted]" in lines[2]["exception"]
