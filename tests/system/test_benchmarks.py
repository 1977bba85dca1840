"""The benchmark scripts run (briefly) — so they cannot rot unnoticed. No timings asserted."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support import ROOT

pytestmark = pytest.mark.slow


def _run(*args: str) -> str:
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_remove_bg_benchmark(models_dir):
    out = _run("benchmarks/remove_bg.py", "--repeat", "1", "--models-dir", str(models_dir),
               "--photos", "astronaut-1MP")
    assert "astronaut-1MP" in out and "ext/raw" in out


def test_threads_benchmark(models_dir):
    out = _run("benchmarks/threads.py", "--processes", "2", "--images", "1", "--models-dir",
               str(models_dir))
    from worker.models.devices import available_cpus

    header = next(i for i, line in enumerate(out.splitlines()) if "budget img/s" in line)
    row = out.splitlines()[header + 1].split()
    processes, budget, default, ours, ratio = int(row[0]), int(row[1]), float(row[2]), \
        float(row[3]), float(row[4].rstrip("x"))
    assert processes == 2 and budget == max(1, available_cpus() // 2)
    assert default > 0 and ours > 0  # images really went through the model
    assert abs(ratio - ours / default) < 0.02  # the ratio printed is the one measured


def test_webhooks_benchmark(redis_url, rclient):
    out = _run("benchmarks/webhooks.py", "--count", "50", "--redis", redis_url)
    assert "deliveries/s" in out and "ratio" in out


def test_sync_wait_benchmark(models_dir, redis_url, tiny):
    """serve + two APIs (wait 0 and wait W), three phases, the ratios against the first."""
    out = _run("benchmarks/sync_wait.py", "--tagger", "tiny", "--uploads", "3", "--clients",
               "1", "--wait", "5", "--models-dir", str(models_dir), "--redis", redis_url)
    rows = {line.split(",")[0]: line.split() for line in out.splitlines()
            if line.startswith(("tagging,", "remove-bg,"))}
    assert set(rows) == {"tagging", "remove-bg"} and len(out.splitlines()) >= 5, out
    answered = [line for line in out.splitlines() if line.startswith("tagging, wait 5")]
    assert answered and answered[0].split()[6] == "100%", out  # 5 s is plenty for tiny models


def test_tag_quality_benchmark(models_dir):
    out = _run("benchmarks/tag_quality.py", "--models-dir", str(models_dir), "--rounds", "3")
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert "espresso" in rows["coffee"] and "images/s at batch 1" in out, out


def test_vision_benchmark():
    out = _run("benchmarks/vision.py", "--images", "2")
    assert "classifier" in out and "captioner" in out


def test_node_benchmark(models_dir, redis_url, tiny):
    """serve + intake with remove-bg and tagging, then rembg's own server, and the ratio."""
    out = _run("benchmarks/node.py", "--jobs", "4", "--processes", "1", "--threads", "2",
               "--tagger", "tiny", "--photos", "astronaut-1MP", "coffee-2MP",
               "--models-dir", str(models_dir), "--redis", redis_url)
    assert "FAILED" not in out, out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert "remove-bg" in lines and "google-auto-tagging" in lines, out
    assert "rembg s:" in out and "ratio extworker remove-bg / rembg s:" in out, out


def test_blobs_benchmark():
    out = _run("benchmarks/blobs.py", "--rounds", "2", "--sizes", "1024,65536")
    rows = [line.split() for line in out.splitlines() if line.split()[:1] in (["1024"],
                                                                             ["65536"])]
    assert [(r[0], r[1]) for r in rows] == [("1024", "put"), ("1024", "get"), ("65536", "put"),
                                             ("65536", "get")]
    for r in rows:
        s3fs_rate, obstore_rate, ratio = float(r[2]), float(r[3]), float(r[4].rstrip("x"))
        assert s3fs_rate > 0 and obstore_rate > 0
        assert abs(ratio - obstore_rate / s3fs_rate) < 0.05 * ratio + 0.01


def test_delivery_benchmark(redis_url, monkeypatch):
    monkeypatch.setenv("EXTWORKER_REDIS_URL", redis_url)  # its keys: a namespace of its own
    out = _run("benchmarks/delivery.py", "--requests", "4", "--rounds", "1", "--photos", "2",
               "--side", "800")
    rows = [line.split() for line in out.splitlines()
            if line.startswith(("extworker (", "thumbor "))]
    assert len(rows) == 2 and all(float(r[-2]) > 0 and r[-1] == "0" for r in rows)
    assert "ratio extworker/thumbor" in out and "first byte" in out


def test_console_benchmark(redis_url, monkeypatch):
    monkeypatch.setenv("EXTWORKER_REDIS_URL", redis_url)  # its keys: a namespace of its own
    out = _run("benchmarks/console.py", "--files", "300", "--rounds", "1")
    rows = [line for line in out.splitlines() if line.startswith("library, first page")]
    assert len(rows) == 1 and float(rows[0].split()[-1]) > 0
    assert int(rows[0].split()[-3]) > 1000  # 48 tiles of HTML


def test_store_benchmark(redis_url, monkeypatch, pg_url):
    """Every backend answers every listing with the same number of rows (the script
    asserts it) and the contention table shows no lost write."""
    monkeypatch.setenv("EXTWORKER_REDIS_URL", redis_url)  # its keys: a namespace of its own
    out = _run("benchmarks/store.py", "--files", "600", "--uploads", "8", "--clients", "2",
               "--rounds", "1", "--writers", "4", "--each", "3",
               "--pg", pg_url.rsplit("/", 1)[0])
    assert "searchQuery ms" in out and "postgres/redis" in out
    modes = [line.split() for line in out.splitlines()
             if line.startswith(("advisory", "SELECT", "SERIALIZABLE"))]
    assert len(modes) == 3 and all(m[-1] == "0" for m in modes)


def test_soak_one_minute(models_dir, tiny):
    """benchmarks/soak.py for one minute: a real api + serve, uploads with remove-bg and
    tagging, deletes, a flaky receiver, a worker kill -9 and a Redis restart; it exits 0
    only when every job is final, units match the successes, every webhook is delivered or
    exhausted, and blobs and records match (memory is judged on longer runs)."""
    out = _run("benchmarks/soak.py", "--minutes", "1", "--window", "15", "--rate", "0.5",
               "--keep", "10", "--models-dir", str(models_dir))
    assert "soak: OK" in out, out
    assert "kill -9 serve" in out and "Redis killed" in out, out
    assert " 0 not final" in out and "undelivered 0" in out, out
    assert "0 without a record, 0 records without their blob" in out, out
