"""Node throughput: ``extworker serve`` end to end vs rembg's own HTTP server, in one run.

extworker: a real ``serve`` (``--processes`` x ``--threads``) on Redis; the photos (1-4 MP
JPEGs from scikit-image's samples) are written into the blob storage the workers share and
``--jobs`` uploads are published through the intake stream, each asking for remove-bg (and,
with ``--tagger``, google-auto-tagging). Timed from the first publish to the last extension
final: jobs/s, per extension p50/p95 latency (publish → finishedAt), CPU busy, and the GPU's
busy share and memory when ``nvidia-smi`` is there. Warm-up jobs (models loading) go first and
are not counted.

rembg: ``rembg s --no-ui`` (what a user would run instead for background removal) on the same
machine, same model, the same photos POSTed by as many concurrent clients as extworker has
worker threads. The ratio extworker / rembg (remove-bg images/s) is printed.

    python benchmarks/node.py [--processes 1] [--threads 2] [--jobs 24] [--model u2netp]
        [--tagger none|tiny|full|NAME] [--models-dir DIR] [--redis URL] [--no-rembg]
        [--device auto|cpu|cuda] [--shared-models auto|on|off]
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
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import httpx
import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.remove_bg import PHOTOS, photo  # noqa: E402
from tests.support.net import free_port  # noqa: E402  (the tests' one free-port helper)
from worker.core.settings import Settings  # noqa: E402
from worker.models.catalog import pull  # noqa: E402


class CpuMeter:
    """Share of all CPUs busy between ``start`` and ``stop`` (from /proc/stat)."""

    @staticmethod
    def _read() -> tuple[int, int]:
        with open("/proc/stat") as fh:
            values = [int(v) for v in fh.readline().split()[1:]]
        idle = values[3] + values[4]  # idle + iowait
        return sum(values) - idle, sum(values)

    def start(self) -> None:
        self.t0 = self._read()

    def stop(self) -> float:
        busy, total = self._read()
        return 100 * (busy - self.t0[0]) / max(1, total - self.t0[1])


class GpuMeter:
    """``nvidia-smi`` sampled every 200 ms: mean utilisation and peak memory (when present)."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        if shutil.which("nvidia-smi") is None:
            return
        self.proc = subprocess.Popen(
            ["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
             "--format=csv,noheader,nounits", "-lms", "200"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                util, mem = (float(v) for v in line.split(",")[:2])
            except ValueError:
                continue
            self.samples.append((util, mem))

    def stop(self) -> str:
        if self.proc is None:
            return "no nvidia-smi"
        self.proc.terminate()
        if not self.samples:
            return "nvidia-smi gave no samples"
        util = statistics.mean(u for u, _ in self.samples)
        mem = max(m for _, m in self.samples)
        return f"GPU busy {util:.0f}% (mean of {len(self.samples)} samples), " \
               f"memory peak {mem / 1024:.1f} GiB"


def session_rss(sid: int) -> list[tuple[str, float]]:
    """(name, resident MiB) of every process in session ``sid`` (serve and its children)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[3]) != sid:  # field 6 of stat: the session id
                continue
            name = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:60]
            pages = int((stat.parent / "statm").read_text().split()[1])
        except (OSError, ValueError, IndexError):
            continue
        out.append((name.strip(), pages * os.sysconf("SC_PAGE_SIZE") / 2**20))
    return sorted(out, key=lambda x: -x[1])


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then the whole session (it started one) if it lingers."""
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)


def _stamp(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def tagger_models(kind: str, models_dir: Path) -> str | None:
    """The classifier model for google-auto-tagging, or None for remove-bg only."""
    if kind == "none":
        return None
    from tests.support.tiny_models import build, build_full_size

    if kind == "efficientnet-lite0":  # the trained default (the `imagenet` tagger)
        from worker.models.catalog import pull

        pull(kind, models_dir)
        return kind
    if kind == "tiny":
        return build(models_dir)["classifier"]
    if kind == "full":
        return build_full_size(models_dir)["classifier"]
    return kind  # a model already in MODELS_DIR/hf


def run_extworker(args: argparse.Namespace, models_dir: Path, tagger: str | None,
                  photos: list[tuple[str, bytes]]) -> dict[str, object]:
    data_dir = Path(tempfile.mkdtemp(prefix="extworker-node-"))
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    settings = Settings(redis_url=args.redis, namespace=namespace, data_dir=data_dir,
                        models_dir=models_dir)
    blobs = data_dir / "blobs" / "incoming"
    blobs.mkdir(parents=True)
    for name, data in photos:
        (blobs / name).write_bytes(data)
    extensions: list[dict[str, object]] = [{"name": "remove-bg", "options": {"model": args.model}}]
    preload = [f"remove-bg:{args.model}"]
    if tagger:
        extensions.append({"name": "google-auto-tagging", "minConfidence": 0, "maxTags": 5})
        preload.append(f"{'imagenet' if tagger == 'efficientnet-lite0' else 'classifier'}:"
                       f"{tagger}")
    env = {**os.environ, "EXTWORKER_REDIS_URL": args.redis, "EXTWORKER_NAMESPACE": namespace,
           "EXTWORKER_DATA_DIR": str(data_dir), "EXTWORKER_MODELS_DIR": str(models_dir),
           "EXTWORKER_PRELOAD": json.dumps(preload), "EXTWORKER_HTTP_PORT": str(free_port()),
           "EXTWORKER_DEVICE": args.device, "EXTWORKER_SHARED_MODELS": args.shared_models,
           "PYTHONUNBUFFERED": "1"}
    if tagger == "efficientnet-lite0":
        env.update({"EXTWORKER_IMAGENET_MODEL": tagger, "EXTWORKER_TAGGER_GOOGLE": "imagenet"})
    elif tagger:
        env.update({"EXTWORKER_CLASSIFIER_MODEL": tagger, "EXTWORKER_TAGGER_GOOGLE": "classifier"})
    log = data_dir / "serve.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "serve", "--processes", str(args.processes),
             "--threads", str(args.threads)],
            env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
    client = redis.Redis.from_url(args.redis)
    keys = settings.keys
    try:
        deadline = time.monotonic() + 120
        while "ready for action" not in log.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("serve did not start:\n" + log.read_text()[-3000:])
            time.sleep(0.1)

        def publish(count: int, tag: str) -> dict[str, float]:
            sent = {}
            for i in range(count):
                name, _ = photos[i % len(photos)]
                job_id = f"{tag}-{i}"
                sent[job_id] = time.time()
                client.xadd(keys.intake(), {"job": json.dumps({
                    "jobId": job_id, "extensions": extensions,
                    "upload": {"blobKey": f"incoming/{name}", "fileName": name,
                               "useUniqueFileName": True}})})
            return sent

        def wait(sent: dict[str, float], limit: float) -> dict[str, dict[str, object]]:
            done: dict[str, dict[str, object]] = {}
            end = time.monotonic() + limit
            while len(done) < len(sent):
                if time.monotonic() > end:
                    raise SystemExit(f"only {len(done)}/{len(sent)} jobs finished; log: {log}")
                # One MGET per poll, a few polls a second: the poller shares the node's CPUs
                # with what it measures (latencies come from finishedAt, not from polling).
                waiting = sorted(sent.keys() - done.keys())
                for job_id, raw in zip(waiting, client.mget([keys.job(j) for j in waiting]),
                                       strict=True):
                    doc = json.loads(raw) if raw else {}
                    slots = doc.get("extensions") or {}
                    if slots and all(s.get("status") in ("success", "failed")
                                     for s in slots.values()):
                        done[job_id] = slots
                time.sleep(0.2)
            return done

        warm = args.processes * args.threads
        wait(publish(warm, "warm"), 600)
        cpu, gpu = CpuMeter(), GpuMeter()
        cpu.start()
        gpu.start()
        t0 = time.time()
        sent = publish(args.jobs, "run")
        done = wait(sent, 600 + 30 * args.jobs)
        last = max(_stamp(str(s["finishedAt"])) for slots in done.values()
                   for s in slots.values())
        elapsed = last - t0
        busy = cpu.stop()
        gpu_line = gpu.stop()
        rss = session_rss(proc.pid)
        failed = [(j, n, s.get("error")) for j, slots in done.items() for n, s in slots.items()
                  if s.get("status") != "success"]
        per_ext = {}
        for ext in {n for slots in done.values() for n in slots}:
            lat = [_stamp(str(slots[ext]["finishedAt"])) - sent[j] for j, slots in done.items()]
            per_ext[ext] = (len(lat) / elapsed, pct(lat, 50), pct(lat, 95))
        return {"elapsed": elapsed, "jobs_s": len(done) / elapsed, "per_ext": per_ext,
                "cpu": busy, "gpu": gpu_line, "failed": failed, "rss": rss}
    finally:
        stop(proc)
        for key in client.scan_iter(f"{namespace}:*", count=1000):
            client.delete(key)
        shutil.rmtree(data_dir, ignore_errors=True)


def run_rembg_server(args: argparse.Namespace, models_dir: Path,
                     photos: list[tuple[str, bytes]]) -> dict[str, object]:
    port = free_port()
    clients = args.processes * args.threads
    home = Path(tempfile.mkdtemp(prefix="rembg-home-"))
    shutil.copytree(models_dir / "rembg", home, dirs_exist_ok=True)  # rembg's own layout
    env = {**os.environ, "U2NET_HOME": str(home)}
    exe = shutil.which("rembg", path=os.path.dirname(sys.executable)) or shutil.which("rembg")
    log = home / "rembg-s.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [str(exe), "s", "--host", "127.0.0.1", "--port", str(port), "--no-ui",
             "--threads", str(clients), "--log_level", "warning"],
            env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/api/remove"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/api", timeout=1)
                break
            except httpx.HTTPError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("rembg s did not start:\n" + log.read_text()[-3000:]) from None
                time.sleep(0.2)
        http = httpx.Client(timeout=600)

        def one(item: tuple[str, bytes]) -> float:
            t = time.time()
            r = http.post(url, params={"model": args.model}, data={"model": args.model},
                          files={"file": (item[0], item[1], "image/jpeg")})
            r.raise_for_status()
            if not r.content.startswith(b"\x89PNG"):
                raise SystemExit(f"rembg s answered {r.headers.get('content-type')}")
            return time.time() - t

        work = [photos[i % len(photos)] for i in range(args.jobs)]
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(one, work[:clients]))  # warm-up: the session loads
            cpu = CpuMeter()
            cpu.start()
            t0 = time.time()
            lat = list(pool.map(one, work))
            elapsed = time.time() - t0
        return {"elapsed": elapsed, "images_s": len(lat) / elapsed, "p50": pct(lat, 50),
                "p95": pct(lat, 95), "cpu": cpu.stop()}
    finally:
        stop(proc)
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--processes", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--jobs", type=int, default=24)
    ap.add_argument("--model", default="u2netp")
    ap.add_argument("--tagger", default="none",
                    help="none | efficientnet-lite0 (the trained default) | tiny (tests' random "
                         "model) | full (ViT-B/16, random weights) | a model name in MODELS_DIR/hf")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--shared-models", default="auto", choices=["auto", "on", "off"],
                    help="one inference process for the node (auto: when a GPU is visible)")
    ap.add_argument("--models-dir", default=".data/models")
    ap.add_argument("--redis", default=os.environ.get("EXTWORKER_REDIS_URL",
                                                      "redis://127.0.0.1:6379/12"))
    ap.add_argument("--photos", nargs="+", choices=list(PHOTOS), default=list(PHOTOS))
    ap.add_argument("--no-rembg", action="store_true", help="skip rembg's server")
    args = ap.parse_args()
    models_dir = Path(args.models_dir)
    pull(args.model, models_dir)
    tagger = tagger_models(args.tagger, models_dir)
    photos = [(f"{n}.jpg", photo(*PHOTOS[n])) for n in args.photos]
    cores = os.cpu_count()
    print(f"node: {cores} CPU(s); serve --processes {args.processes} --threads "
          f"{args.threads}, shared models {args.shared_models}; {args.jobs} jobs over "
          f"{len(photos)} photos (1-4 MP JPEG); "
          f"remove-bg model {args.model}" + (f"; google-auto-tagging: {tagger}" if tagger else ""))
    ext = run_extworker(args, models_dir, tagger, photos)
    print(f"extworker: {ext['jobs_s']:.2f} jobs/s ({args.jobs} jobs in {ext['elapsed']:.1f} s), "
          f"CPU busy {ext['cpu']:.0f}%, {ext['gpu']}")
    for name, (rate, p50, p95) in sorted(ext["per_ext"].items()):  # type: ignore[attr-defined]
        print(f"  {name:<22} {rate:7.2f}/s   p50 {p50:6.2f} s   p95 {p95:6.2f} s")
    rss = ext["rss"]
    print(f"  memory: {sum(m for _, m in rss):.0f} MiB resident in {len(rss)} processes "  # type: ignore[attr-defined]
          f"({', '.join(f'{m:.0f}' for _, m in rss)} MiB)")  # type: ignore[attr-defined]
    if ext["failed"]:
        print(f"  FAILED: {ext['failed'][:3]}")
    if args.no_rembg:
        return
    rb = run_rembg_server(args, models_dir, photos)
    print(f"rembg s:   {rb['images_s']:.2f} images/s ({args.jobs} images in {rb['elapsed']:.1f} s, "
          f"{args.processes * args.threads} concurrent clients), p50 {rb['p50']:.2f} s, "
          f"p95 {rb['p95']:.2f} s, CPU busy {rb['cpu']:.0f}%")
    rate = ext["per_ext"]["remove-bg"][0]  # type: ignore[index]
    print(f"ratio extworker remove-bg / rembg s: {rate / rb['images_s']:.2f}x "
          "(extworker also stores the upload and the new version and commits the record)")


if __name__ == "__main__":
    main()
