"""Webhook throughput: extworker's full path vs a plain ``requests.post`` loop.

Both send the same number of signed-size JSON bodies to the same local
receiver (a separate process on 127.0.0.1). extworker's path is the real
one: claim from the Redis due set under a lease → egress check → sign
(Standard Webhooks) → POST → log the attempt and finish under the lease.

    python benchmarks/webhooks.py [--count 2000] [--redis redis://127.0.0.1:6379/14]

Uses its own Redis DB (default 14) and flushes only that DB.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time

# Run as a script, this file's folder comes first on sys.path and its name
# would shadow the `webhooks` package.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import redis  # noqa: E402
import requests  # noqa: E402

from webhooks.deliverer import Webhooks  # noqa: E402
from worker.core.settings import Settings  # noqa: E402


class Ok(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # as real servers do; else keep-alive stalls 40 ms

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    request_queue_size = 1024  # the default backlog of 5 resets concurrent clients


def serve(port_out) -> None:
    srv = Server(("127.0.0.1", 0), Ok)
    srv.daemon_threads = True
    port_out.put(srv.server_address[1])
    srv.serve_forever()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/14")
    args = ap.parse_args()
    q: multiprocessing.Queue = multiprocessing.Queue()
    proc = multiprocessing.Process(target=serve, args=(q,), daemon=True)
    proc.start()
    url = f"http://127.0.0.1:{q.get(timeout=10)}/hook"
    client = redis.Redis.from_url(args.redis)
    client.flushdb()
    settings = Settings(redis_url=args.redis, egress_allowlist="127.0.0.1/32")
    hooks = Webhooks(client, settings)
    file_object = {"fileId": "f" * 24, "name": "photo.jpg", "tags": ["a", "b"],
                   "versionInfo": {"id": "v" * 24, "name": "Version 2"}, "size": 123456}

    t0 = time.perf_counter()
    for i in range(args.count):
        hooks.enqueue(account="bench", url=url, job_id=f"job-{i}", file_id="f" * 24,
                      service="remove-bg", status="success", file_object=file_object, error=None)
    t_enqueue = time.perf_counter() - t0

    t0 = time.perf_counter()
    sent = 0
    while sent < args.count:
        n = hooks.run_due(limit=200)
        if n == 0:
            break
        sent += n
    t_ext = time.perf_counter() - t0
    delivered = len(hooks.store.list(status="delivered", limit=args.count))
    assert delivered == args.count, f"only {delivered} of {args.count} delivered"

    body = hooks.store.get(hooks.store.list(limit=1)[0]["id"])["body"].encode()
    t0 = time.perf_counter()
    for _ in range(args.count):
        requests.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=30)
    t_req = time.perf_counter() - t0
    with requests.Session() as s:
        t0 = time.perf_counter()
        for _ in range(args.count):
            s.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=30)
        t_sess = time.perf_counter() - t0

    ext, req, sess = args.count / t_ext, args.count / t_req, args.count / t_sess
    print(f"deliveries: {args.count}  (enqueue: {args.count / t_enqueue:,.0f}/s, not counted)")
    print(f"extworker claim→sign→send→log : {ext:8.0f} deliveries/s")
    print(f"plain requests.post loop       : {req:8.0f} posts/s      ratio {ext / req:5.2f}x")
    print(f"requests.Session().post loop   : {sess:8.0f} posts/s      ratio {ext / sess:5.2f}x")
    client.flushdb()
    proc.terminate()


if __name__ == "__main__":
    main()
