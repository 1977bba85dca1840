"""The console's weight and server time: each page's HTML + JS + CSS in bytes, and the
library page's server time with ``--files`` files in one folder (default 100,000).

    python benchmarks/console.py [--files 100000] [--rounds 5]

The files are written straight into Redis in the store's own format (records, path keys,
the path index — what ``FileStore`` writes, pipelined: an upload per file would measure
uploads); the pages are fetched from a real ``extworker api`` on a free port. Needs Redis
(``EXTWORKER_REDIS_URL``, default 127.0.0.1:6379/0): the keys are under a namespace of their
own, removed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx

# This folder holds a webhooks.py: the package of that name must win.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))
from tests.support.net import free_port  # noqa: E402  (the tests' one free-port helper)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()

    import redis
    import uvicorn

    from worker.api.app import create_app
    from worker.broker.actors import build_broker
    from worker.core.records import FileRecord, new_id, now_iso
    from worker.core.settings import Settings
    from worker.runtime import Runtime

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    settings = Settings(redis_url=os.environ.get("EXTWORKER_REDIS_URL",
                                                 "redis://127.0.0.1:6379/0"),
                        namespace=namespace, api_url=base, data_dir=tempfile.mkdtemp())
    client = redis.Redis.from_url(settings.redis_url)
    keys = settings.keys
    try:
        started = time.perf_counter()
        now = now_iso()
        pipe = client.pipeline(transaction=False)
        for i in range(args.files):
            fid, vid = new_id(), new_id()
            path = f"/bench/photo-{i:07d}.jpg"
            record = FileRecord.model_validate({
                "fileId": fid, "accountId": "bench", "name": path.rsplit("/", 1)[1],
                "filePath": path, "tags": ["sale"] if i % 1000 == 0 else ["all"],
                "versionInfo": {"id": vid, "name": "Version 1"}, "url": "", "fileType": "image",
                "mime": "image/jpeg", "width": 512, "height": 512, "size": 40_000,
                "createdAt": now, "updatedAt": now,
                "versions": [{"id": vid, "name": "Version 1", "blobKey": f"bench/{fid}",
                              "mime": "image/jpeg", "size": 40_000, "width": 512,
                              "height": 512, "createdAt": now}]})
            pipe.set(keys.file(fid), json.dumps(record.model_dump(mode="json"),
                                               separators=(",", ":")))
            pipe.set(keys.path("bench", path), json.dumps({"fileId": fid}))
            pipe.zadd(keys.file_index("bench"), {path: 0})
            if i % 5000 == 4999:
                pipe.execute()
        pipe.execute()
        print(f"{args.files} files written in {time.perf_counter() - started:.1f} s")

        runtime = Runtime(settings, broker=build_broker(settings))
        key = runtime.apikeys.create("bench")["key"]
        server = uvicorn.Server(uvicorn.Config(create_app(runtime), host="127.0.0.1",
                                               port=port, log_level="warning"))
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.05)
        http = httpx.Client(base_url=base, timeout=60, follow_redirects=False)
        signed_in = http.post("/console/login", data={"key": key},
                              headers={"Sec-Fetch-Site": "same-origin"})
        http.cookies.set("extworker_console", signed_in.cookies["extworker_console"])
        assets = sum(len(http.get(f"/console/static/{n}").content)
                     for n in ("console.js", "console.css"))
        pages = {"library, first page": "/console/?path=/bench/",
                 "library, page 1000": "/console/?path=/bench/&page=1000",
                 "library, a rare tag": "/console/?path=/bench/&tag=sale",
                 "library, a name search": "/console/?path=/bench/&q=photo-0000042",
                 "upload": "/console/upload", "saved extensions": "/console/saved",
                 "jobs": "/console/jobs", "webhooks": "/console/webhooks",
                 "usage": "/console/usage", "sign-in": "/console/login"}
        print(f"{'page':<26}{'HTML bytes':>11}{'+JS+CSS':>9}{'server ms (median)':>20}")
        for name, url in pages.items():
            times, size = [], 0
            for _ in range(args.rounds):
                t = time.perf_counter()
                r = http.get(url)
                times.append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200, (url, r.status_code, r.text[:200])
                size = len(r.content)
            print(f"{name:<26}{size:>11}{size + assets:>9}{statistics.median(times):>20.1f}")
        print(f"JS + CSS (one copy, cached): {assets} bytes; no other asset, no CDN")
        server.should_exit = True
    finally:
        for k in client.scan_iter(f"{namespace}:*", count=10_000):
            client.delete(k)


if __name__ == "__main__":
    main()
