"""What the synchronous attempt costs the HTTP API: uploads/s and response p50/p99, in one run.

A real ``serve`` and two real ``api`` processes on one Redis namespace: one answers at once
(``EXTWORKER_API_SYNC_WAIT_S=0``), one makes the hosted API's synchronous attempt with
``--wait`` seconds. ``--clients`` concurrent clients POST ``--uploads`` 1 MP JPEGs to each,
in three phases:

* ``tagging, wait 0``: google-auto-tagging, answered ``pending``; the time until its slot
  is final (upload → finishedAt) is what a wait must cover: its p50/p99 are printed, as the
  measurement the default wait is chosen from;
* ``tagging, wait W``: the same, answered in the response when done (the share printed);
* ``remove-bg, wait W``: never tried synchronously — the upload must not wait at all.

Ratios against the first phase are printed. ``--tagger full`` (default) is a full-size
ViT-B/16 with random weights (speed is real, tags are not); ``tiny`` the tests' model.

    python benchmarks/sync_wait.py [--uploads 24] [--clients 2] [--wait 3] [--tagger full]
"""

from __future__ import annotations

import os
import sys

# Run as a script, this file's folder comes first on sys.path, and benchmarks/webhooks.py
# would shadow the `webhooks` package.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)
import argparse
import json
import shutil
import subprocess
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.node import _stamp, free_port, pct, stop, tagger_models  # noqa: E402
from benchmarks.remove_bg import PHOTOS, photo  # noqa: E402
from worker.core.settings import Settings  # noqa: E402
from worker.models.catalog import pull  # noqa: E402
from worker.runtime import Runtime  # noqa: E402

ACCOUNT = "syncbench"


def start(argv: list[str], env: dict[str, str], log: Path, ready: str | int
          ) -> subprocess.Popen[bytes]:
    """``extworker <argv>``, once ready (a line in its log, or its port answering)."""
    fh = open(log, "w")
    proc = subprocess.Popen([sys.executable, "-m", "worker.cli", *argv], env=env, stdout=fh,
                            stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
    deadline = time.monotonic() + 180
    while True:
        if isinstance(ready, str):
            if ready in log.read_text():
                return proc
        else:
            try:
                if httpx.get(f"http://127.0.0.1:{ready}/openapi.json", timeout=2).is_success:
                    return proc
            except httpx.HTTPError:
                pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{argv[0]} did not start:\n" + log.read_text()[-3000:])
        time.sleep(0.2)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--uploads", type=int, default=24, help="per phase")
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--wait", type=float, default=3.0, help="EXTWORKER_API_SYNC_WAIT_S")
    ap.add_argument("--tagger", default="full", help="full | tiny | a model in MODELS_DIR/hf")
    ap.add_argument("--models-dir", default=".data/models")
    ap.add_argument("--redis", default=os.environ.get("EXTWORKER_REDIS_URL",
                                                      "redis://127.0.0.1:6379/12"))
    args = ap.parse_args()
    models_dir = Path(args.models_dir)
    pull("u2netp", models_dir)
    tagger = tagger_models(args.tagger, models_dir)
    assert tagger is not None
    data_dir = Path(tempfile.mkdtemp(prefix="extworker-sync-"))
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    settings = Settings(redis_url=args.redis, namespace=namespace, data_dir=data_dir,
                        models_dir=models_dir)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "EXTWORKER_REDIS_URL": args.redis,
           "EXTWORKER_NAMESPACE": namespace, "EXTWORKER_DATA_DIR": str(data_dir),
           "EXTWORKER_MODELS_DIR": str(models_dir), "EXTWORKER_CLASSIFIER_MODEL": tagger,
           "EXTWORKER_TAGGER_GOOGLE": "classifier", "EXTWORKER_HTTP_PORT": str(free_port()),
           "EXTWORKER_PRELOAD": json.dumps(["remove-bg:u2netp", f"classifier:{tagger}"])}
    procs = []
    client = redis.Redis.from_url(args.redis)
    try:
        procs.append(start(["serve", "--processes", "1", "--threads", "2"], env,
                           data_dir / "serve.log", "ready for action"))
        ports = {}
        for wait in (0.0, args.wait):
            port = free_port()
            procs.append(start(["api", "--port", str(port)],
                               {**env, "EXTWORKER_API_SYNC_WAIT_S": str(wait)},
                               data_dir / f"api-{wait}.log", port))
            ports[wait] = port
        runtime = Runtime(settings)
        key = runtime.apikeys.create(ACCOUNT)["key"]
        jpeg = photo(*PHOTOS["astronaut-1MP"])
        tagging = {"name": "google-auto-tagging", "minConfidence": 0, "maxTags": 5}

        def upload(port: int, extensions: list[dict[str, object]]) -> tuple[float, float, dict]:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", auth=(key, ""),
                              timeout=120) as http:
                t0 = time.time()
                r = http.post("/api/v1/files/upload", data={
                    "fileName": "p.jpg", "extensions": json.dumps(extensions)},
                    files={"file": ("p.jpg", jpeg)})
                r.raise_for_status()
                return t0, time.time() - t0, r.json()

        def final_after(fid: str, t0: float) -> float:
            while True:
                jobs = runtime.pipeline.jobs(ACCOUNT, count=1, file_id=fid)
                if jobs and jobs[0].finished:
                    return max(_stamp(s.finishedAt) for s in jobs[0].extensions.values()
                               if s.finishedAt) - t0
                time.sleep(0.1)

        def phase(port: int, extensions: list[dict[str, object]]) -> dict[str, float]:
            with ThreadPoolExecutor(args.clients) as pool:
                # Warm-up, until final: the first inferences and connections are not timed.
                for t, _, o in pool.map(lambda _: upload(port, extensions), range(args.clients)):
                    final_after(o["fileId"], t)
                time.sleep(1.5)  # then idle, as between real uploads: the workers' polls back off
                t0 = time.time()
                done = list(pool.map(lambda _: upload(port, extensions), range(args.uploads)))
                elapsed = time.time() - t0
            took = [d for _, d, _ in done]
            answered = [o for _, _, o in done
                        if "success" in (o.get("extensionStatus") or {}).values()]
            finals = [final_after(o["fileId"], t) for t, _, o in done]
            return {"uploads_s": len(done) / elapsed, "p50": pct(took, 50), "p99": pct(took, 99),
                    "sync": len(answered) / len(done), "final_p50": pct(finals, 50),
                    "final_p99": pct(finals, 99)}

        print(f"sync wait: {os.cpu_count()} CPU(s), serve 1x2, {args.uploads} uploads per phase "
              f"by {args.clients} clients, 1 MP JPEG; tagger {tagger} (classifier)")
        rows = [("tagging, wait 0", phase(ports[0.0], [tagging])),
                (f"tagging, wait {args.wait:g}", phase(ports[args.wait], [tagging])),
                (f"remove-bg, wait {args.wait:g}", phase(ports[args.wait],
                                                         [{"name": "remove-bg"}]))]
        base = rows[0][1]
        print(f"{'phase':<22} {'uploads/s':>9} {'p50 s':>7} {'p99 s':>7} {'in response':>11} "
              f"{'final p50':>9} {'final p99':>9} {'uploads/s x':>11} {'p99 x':>7}")
        for name, r in rows:
            print(f"{name:<22} {r['uploads_s']:9.2f} {r['p50']:7.3f} {r['p99']:7.3f} "
                  f"{r['sync']:10.0%} {r['final_p50']:9.2f} {r['final_p99']:9.2f} "
                  f"{r['uploads_s'] / base['uploads_s']:10.2f}x {r['p99'] / base['p99']:6.2f}x")
        print(f"tagging final after upload (wait 0): p50 {base['final_p50']:.2f} s, "
              f"p99 {base['final_p99']:.2f} s — a wait below p99 answers fewer in the response")
    finally:
        for proc in reversed(procs):
            stop(proc)
        for k in client.scan_iter(f"{namespace}:*", count=1000):
            client.delete(k)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
