"""What many tests call: waiting, images, concurrency, the CLI as a subprocess."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time

from PIL import Image

from tests.support import ROOT
from worker.core.jobs import JobDoc
from worker.core.settings import Settings
from worker.runtime import Runtime

TEST_DB = int(os.environ.get("EXTWORKER_TEST_REDIS_DB", "13"))
# The document store's backends. A store test runs on each: a module says
# `ON_EVERY_STORE = True` (each of its tests that uses the settings), or one test is
# decorated `@pytest.mark.parametrize("store_url", STORE_BACKENDS, indirect=True)`;
# everything else runs on Redis.
STORE_BACKENDS = ["redis", "sqlite", "postgres"]
# Six of scikit-image's sample photographs, different enough that their masks differ.
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "cat", "immunohistochemistry")


class RecordingRuntime(Runtime):
    """An in-process runtime on real Redis: the executions it would enqueue are collected
    in ``queued`` (not sent); with ``record_notifications``, every final hand-off goes to
    ``notified`` as (jobId, slot, status, error)."""

    def __init__(self, settings: Settings, record_notifications: bool = False) -> None:
        self.queued: list[tuple[str, str, str]] = []
        self.notified: list[tuple[str, str, str, object]] = []

        def notify(doc: JobDoc, slot: str, file_object: object) -> None:
            s = doc.extensions[slot]
            self.notified.append((doc.jobId, slot, s.status,
                                  s.error.model_dump() if s.error else None))

        super().__init__(settings, enqueue=lambda q, j, s: self.queued.append((q, j, s)),
                         notify=notify if record_notifications else None)


def concurrently(fn, items: list) -> list:
    """``fn`` on every item, each in its own thread, released together; results (or
    the exception raised) in the items' order."""
    results: dict[int, object] = {}
    barrier = threading.Barrier(len(items))

    def call(i, item):
        barrier.wait()
        try:
            results[i] = fn(item)
        except Exception as e:  # noqa: BLE001 - the test looks at it
            results[i] = e

    threads = [threading.Thread(target=call, args=(i, x)) for i, x in enumerate(items)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return [results[i] for i in range(len(items))]


def sustained(call, threads: int, seconds: float) -> tuple[list[float], list[int]]:
    """``call(n)`` (n unique across threads) from ``threads`` threads in a loop for
    ``seconds``: ``(each thread's worst call time, the n whose answer was not 2 * n)``."""
    worst = [0.0] * threads
    wrong: list[int] = []
    stop = time.monotonic() + seconds

    def loop(k: int) -> None:
        n = 0
        while time.monotonic() < stop:
            t0 = time.monotonic()
            x = k * 1_000_000 + n
            if call(x) != 2 * x:
                wrong.append(x)
            worst[k] = max(worst[k], time.monotonic() - t0)
            n += 1

    pool = [threading.Thread(target=loop, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(seconds + 30)
    return worst, wrong


def wait_until(predicate, timeout: float, what: str, every: float = 0.3):
    """``predicate()``'s first truthy value within ``timeout`` s, else an AssertionError
    saying ``what`` did not happen."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout} s")


def jpeg(im: Image.Image, quality: int = 90, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.convert("RGB").save(buf, "JPEG", quality=quality, **kw)
    return buf.getvalue()


def photo(name: str) -> Image.Image:
    """scikit-image's sample photograph ``name``, as RGB."""
    import skimage.data

    return Image.fromarray(getattr(skimage.data, name)()).convert("RGB")


def env_for(settings: Settings) -> dict[str, str]:
    """The environment of a subprocess (the CLI, ``serve``) with ``settings``."""
    env = dict(os.environ)
    env.update({
        "EXTWORKER_REDIS_URL": settings.redis_url,
        "EXTWORKER_DATA_DIR": str(settings.data_dir),
        "EXTWORKER_API_URL": settings.api_url,
        "EXTWORKER_MODELS_DIR": str(settings.models_dir),
        "EXTWORKER_EGRESS_ALLOWLIST": settings.egress_allowlist or "",
        "EXTWORKER_CLASSIFIER_MODEL": settings.classifier_model,
        "EXTWORKER_ZERO_SHOT_MODEL": settings.zero_shot_model,
        "EXTWORKER_CAPTION_MODEL": settings.caption_model,
        "EXTWORKER_TAGGER_GOOGLE": settings.tagger_google,
        "EXTWORKER_TAGGER_AWS": settings.tagger_aws,
        "PYTHONUNBUFFERED": "1",
    })
    if settings.tag_vocabulary_file:
        env["EXTWORKER_TAG_VOCABULARY_FILE"] = str(settings.tag_vocabulary_file)
    for name in ("store_url", "broker_url"):
        if getattr(settings, name):
            env[f"EXTWORKER_{name.upper()}"] = str(getattr(settings, name))
    return env


def cli(settings: Settings, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    exe = [sys.executable, "-m", "worker.cli"]
    proc = subprocess.run([*exe, *args], env=env_for(settings), capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"extworker {args} failed: {proc.stderr}")
    return proc


# --- webhook duplicates, counted across the fault tests and reported once -----------------

DUPLICATES: list[tuple[str, int, int]] = []  # (fault, webhook-ids, sends beyond one per id)


def report_duplicates(fault: str, ids: int, extra_sends: int) -> None:
    """Record what a fault test saw: at-least-once with a stable id, duplicates counted."""
    DUPLICATES.append((fault, ids, extra_sends))
