"""Delivery: thumbnails/s of ``extworker api`` and of thumbor, same photos and cores, one
run; the image library's share (our Pillow pipeline against libvips' ``thumbnail_buffer``,
in-process, one thread); and the first-byte latency of an original.

    python benchmarks/delivery.py [--requests 80] [--concurrency 4] [--side 3000]

Both servers get the same JPEGs (scikit-image's sample photographs, enlarged to ``--side``
pixels on the long edge — camera-sized, so decoding matters as it does in production) and
the same requests: fit inside ``S``x``S`` with ``S`` different on every request, so that
neither answers from a cache. thumbor (PyPI, its default Pillow engine, file loader, no
result storage) runs with one process per core; extworker's API as one process with one
derivation thread per core (``--workers``/``--threads`` change that). Both are pinned to
the same CPUs, and measured in alternating rounds. thumbor is installed into its own virtual
environment (``--thumbor-venv``, created on first use).

Needs Redis (``EXTWORKER_REDIS_URL``, default 127.0.0.1:6379/0): the benchmark's keys are
under a namespace of their own, removed at the end.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.support.net import free_port  # noqa: E402  (the tests' one free-port helper)

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "cat")



def _wait(url: str, proc: subprocess.Popen, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited ({proc.returncode})")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit(f"{what} did not start")


def _photos(side: int, count: int, folder: Path) -> list[tuple[str, bytes]]:
    import skimage.data

    out = []
    for name in PHOTOS[:count]:
        im = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
        scale = side / max(im.size)
        im = im.resize((round(im.width * scale), round(im.height * scale)), Image.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=90)
        (folder / f"{name}.jpg").write_bytes(buf.getvalue())
        out.append((f"{name}.jpg", buf.getvalue()))
    return out


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def _thumbor_exe(venv: Path) -> Path:
    exe = venv / "bin" / "thumbor"
    if not exe.exists():
        print(f"installing thumbor into {venv} …", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                        "--disable-pip-version-check", "thumbor==7.8.0"], check=True)
    return exe


def _rate(urls: list[str], concurrency: int) -> tuple[float, int]:
    """Thumbnails per second over ``urls`` with ``concurrency`` clients; failures."""
    with httpx.Client(timeout=120) as client:
        def one(url: str) -> bool:
            r = client.get(url)
            return r.status_code == 200 and len(r.content) > 100

        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            ok = list(pool.map(one, urls))
        return len(urls) / (time.perf_counter() - started), ok.count(False)


def _first_byte(url: str, rounds: int) -> tuple[float, float]:
    """Median seconds to the first byte and to the last of a GET of ``url``."""
    firsts, wholes = [], []
    with httpx.Client(timeout=60) as client:
        for _ in range(rounds):
            started = time.perf_counter()
            with client.stream("GET", url) as r:
                it = r.iter_raw()
                next(it)
                firsts.append(time.perf_counter() - started)
                for _chunk in it:
                    pass
                wholes.append(time.perf_counter() - started)
    return statistics.median(firsts), statistics.median(wholes)


def _libraries(photos: list[tuple[str, bytes]], n: int = 20) -> tuple[float, float]:
    """Milliseconds per 200-px thumbnail, in-process on one thread: ours (Pillow) and
    libvips (pyvips), the same photos and sizes."""
    import pyvips

    from worker.delivery.render import render
    from worker.delivery.transform import parse

    def ours(i: int) -> None:
        render(photos[i % len(photos)][1], parse(f"w-{200 + i},h-{200 + i},c-at_max,q-80"),
               "jpg", 50_000_000)

    def vips(i: int) -> None:
        pyvips.Image.thumbnail_buffer(photos[i % len(photos)][1], 200 + i, height=200 + i,
                                      size="down").write_to_buffer(".jpg", Q=80)

    out = []
    for fn in (ours, vips):
        fn(0)
        started = time.perf_counter()
        for i in range(n):
            fn(i)
        out.append((time.perf_counter() - started) / n * 1000)
    return out[0], out[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=80)
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds (median)")
    ap.add_argument("--concurrency", type=int, default=0, help="default: 2 per core")
    ap.add_argument("--side", type=int, default=3000, help="long edge of the photos, px")
    ap.add_argument("--photos", type=int, default=len(PHOTOS))
    ap.add_argument("--workers", type=int, default=1, help="extworker api processes")
    ap.add_argument("--threads", type=int, default=0,
                    help="derivation threads per process (default: one per core)")
    ap.add_argument("--thumbor-venv", type=Path, default=ROOT / ".data" / "bench-thumbor")
    args = ap.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    concurrency = args.concurrency or 2 * len(cpus)
    tmp = Path(tempfile.mkdtemp(prefix="extworker-delivery-"))
    photos = _photos(args.side, args.photos, tmp)
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    api_port, thumbor_port = free_port(), free_port()
    api_url = f"http://127.0.0.1:{api_port}"
    env = {**os.environ, "EXTWORKER_DATA_DIR": str(tmp / "data"),
           "EXTWORKER_NAMESPACE": namespace, "EXTWORKER_API_URL": api_url,
           "EXTWORKER_DELIVERY_THREADS": str(args.threads or len(cpus)),
           "EXTWORKER_DELIVERY_QUEUE": str(10 * concurrency),
           "EXTWORKER_EMBEDDED_METADATA": "false"}
    pin = ["taskset", "-c", ",".join(map(str, cpus))]
    procs: list[subprocess.Popen] = []
    try:
        key = json.loads(subprocess.run(
            [sys.executable, "-m", "worker.cli", "keys", "create", "bench"], env=env,
            cwd=ROOT, capture_output=True, text=True, check=True).stdout)["key"]
        procs.append(subprocess.Popen(
            [*pin, sys.executable, "-m", "worker.cli", "api", "--port", str(api_port),
             "--workers", str(args.workers)],
            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True))
        _wait(f"{api_url}/healthz", procs[-1], "extworker api")
        conf = tmp / "thumbor.conf"
        conf.write_text(f"LOADER = 'thumbor.loaders.file_loader'\n"
                        f"FILE_LOADER_ROOT_PATH = {str(tmp)!r}\n"
                        "ALLOW_UNSAFE_URL = True\nRESULT_STORAGE = None\nSTORAGE = "
                        "'thumbor.storages.no_storage'\nQUALITY = 80\n"
                        "MAX_AGE = 0\nAUTO_WEBP = False\n")
        procs.append(subprocess.Popen(
            [*pin, str(_thumbor_exe(args.thumbor_venv)), "-p", str(thumbor_port), "-i",
             "127.0.0.1", "-c", str(conf), "--processes", str(len(cpus))],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        thumbor_url = f"http://127.0.0.1:{thumbor_port}"
        _wait(f"{thumbor_url}/healthcheck", procs[-1], "thumbor")

        paths = []
        for name, data in photos:
            up = httpx.post(f"{api_url}/api/v1/files/upload", auth=(key, ""), data={
                "fileName": name, "useUniqueFileName": "false", "folder": "/bench"},
                files={"file": (name, data, "image/jpeg")}, timeout=60)
            up.raise_for_status()
            paths.append(up.json()["url"])
        sides = [160 + i for i in range(args.requests)]
        ours = [f"{paths[i % len(paths)]}?tr=w-{s},h-{s},c-at_max,q-80"
                for i, s in enumerate(sides)]
        theirs = [f"{thumbor_url}/unsafe/fit-in/{s}x{s}/{photos[i % len(photos)][0]}"
                  for i, s in enumerate(sides)]
        # Warm both (imports, first decode) on sizes the measured run does not ask for.
        _rate([u.replace("?tr=w-", "?tr=w-1").replace(",h-", ",h-1") for u in ours[:4]], 2)
        _rate([u.replace("fit-in/", "fit-in/1") for u in theirs[:4]], 2)
        # Alternating rounds, medians: the two see the same machine noise.
        runs: dict[str, list[tuple[float, int]]] = {"ours": [], "thumbor": []}
        for r in range(args.rounds):
            bump = [f"{u}&r={r}" if r else u for u in ours]  # new derivatives each round
            runs["ours"].append(_rate([u.replace(",q-80", f",q-{80 - r}") for u in bump],
                                      concurrency))
            runs["thumbor"].append(_rate(theirs, concurrency))
        ours_rate = statistics.median(x for x, _ in runs["ours"])
        thumbor_rate = statistics.median(x for x, _ in runs["thumbor"])
        ours_failed = sum(f for _, f in runs["ours"])
        thumbor_failed = sum(f for _, f in runs["thumbor"])
        largest = max(range(len(photos)), key=lambda i: len(photos[i][1]))
        first, whole = _first_byte(paths[largest], 20)
        print(f"photos: {len(photos)} JPEGs, long edge {args.side} px; {args.requests} "
              f"thumbnails per round, median of {args.rounds} alternating rounds; "
              f"{concurrency} clients; CPUs {cpus}")
        print(f"{'server':<22}{'thumbnails/s':>14}{'failed':>8}")
        print(f"{'extworker (Pillow)':<22}{ours_rate:>14.1f}{ours_failed:>8}")
        print(f"{'thumbor 7.8 (Pillow)':<22}{thumbor_rate:>14.1f}{thumbor_failed:>8}")
        print(f"ratio extworker/thumbor: {ours_rate / thumbor_rate:.2f}x")
        pillow_ms, vips_ms = _libraries(photos)
        print(f"image library, in-process, one thread: Pillow (ours) {pillow_ms:.1f} ms, "
              f"libvips {vips_ms:.1f} ms per thumbnail; ratio libvips/Pillow time "
              f"{vips_ms / pillow_ms:.2f}x")
        size_mb = len(photos[largest][1]) / 1e6
        print(f"original {photos[largest][0]} ({size_mb:.1f} MB) from extworker api: first "
              f"byte {first * 1000:.1f} ms, whole {whole * 1000:.1f} ms (median of 20)")
    finally:
        # Each server leads a process group of its own: thumbor --processes forks workers
        # that outlive their parent, so the whole group goes.
        for proc in procs:
            _signal_group(proc, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
            _signal_group(proc, signal.SIGKILL)
        import redis

        client = redis.Redis.from_url(env.get("EXTWORKER_REDIS_URL", "redis://127.0.0.1:6379/0"))
        for k in client.scan_iter(f"{namespace}:*"):
            client.delete(k)
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
