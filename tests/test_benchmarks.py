"""The benchmark scripts run (briefly) — so they cannot rot unnoticed. No timings asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
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
    assert "budget img/s" in out and "x" in out.splitlines()[-2]


def test_webhooks_benchmark(redis_url, rclient):
    out = _run("benchmarks/webhooks.py", "--count", "50", "--redis", redis_url)
    assert "deliveries/s" in out and "ratio" in out


def test_vision_benchmark():
    out = _run("benchmarks/vision.py", "--images", "2")
    assert "classifier" in out and "captioner" in out
