"""The servers tests start, each on a free loopback port: a real ``extworker serve``, a
redis-server of a test's own, moto's S3 server, a photo host, the API in a thread."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import redis

from tests.support.helpers import ROOT, env_for, wait_until
from tests.support.net import answers, free_port
from worker.core.settings import Settings


class Server:
    """A real ``extworker serve`` subprocess; its log is kept for assertions."""

    def __init__(self, settings: Settings, log: Path, *extra: str,
                 env: dict[str, str] | None = None) -> None:
        self.log = log
        self.fh = open(log, "w")
        self.http_port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "serve", "--processes", "1", "--threads", "2",
             *extra],
            env={**env_for(settings), "EXTWORKER_HTTP_PORT": str(self.http_port), **(env or {})},
            stdout=self.fh, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while "ready for action" not in log.read_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("worker did not start:\n" + log.read_text())
            time.sleep(0.1)

    def kill(self, sig: int) -> None:
        os.killpg(self.proc.pid, sig)
        self.proc.wait(10)
        self.fh.close()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM to the main process only, as Kubernetes does; it drains its children."""
        if self.fh.closed:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # whatever is left of the group
        except ProcessLookupError:
            pass
        self.proc.wait(5)
        self.fh.close()


def start_redis(server: str, port: int, *args: str) -> subprocess.Popen:
    """``redis-server`` on ``127.0.0.1:port``, answering before this returns."""
    proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", *args],
                            stdout=subprocess.DEVNULL)
    for _ in range(200):
        try:
            redis.Redis.from_url(f"redis://127.0.0.1:{port}/0").ping()
            return proc
        except redis.RedisError:
            time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"redis-server on port {port} did not start")


class PrivateRedis:
    """A redis-server of a test's own, on its own port, AOF fsynced on every write."""

    def __init__(self, workdir: Path) -> None:
        server = shutil.which("redis-server")
        if server is None:
            raise AssertionError("redis-server is needed for the fault tests")
        self.server = server
        self.dir, self.port = workdir, free_port()
        self.proc: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = start_redis(self.server, self.port, "--dir", str(self.dir),
                                "--appendonly", "yes", "--appendfsync", "always", "--save", "")

    def restart(self, down_s: float, kill: bool = False) -> None:
        """SHUTDOWN (AOF flushed) or SIGKILL (AOF fsynced on every write), stay down
        ``down_s``, start again on the same data."""
        assert self.proc is not None
        if kill:
            self.proc.kill()
        else:
            try:
                redis.Redis.from_url(self.url).shutdown(nosave=False)
            except redis.ConnectionError:
                pass
        self.proc.wait(10)
        time.sleep(down_s)
        self.start()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@contextlib.contextmanager
def s3_server() -> Iterator[str]:
    """A real S3 server on loopback (moto's standalone server, in its own process) with a
    bucket ``extworker``; the standard AWS environment points at it (endpoint, region,
    credentials), as a deployment's would. Yields the endpoint URL."""
    import boto3

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "test",
           "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        wait_until(lambda: answers(port), 30, "moto's S3 server listening", every=0.1)
        boto3.client("s3").create_bucket(Bucket="extworker")
        yield endpoint
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        proc.terminate()
        proc.wait(10)


class _Photo(BaseHTTPRequestHandler):
    body = b""
    trickle = False

    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        if not self.trickle:
            self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        if self.trickle:
            for _ in range(40):  # a byte every 0.1 s, 4 s in all: bounded
                try:
                    self.wfile.write(b"x")
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.1)
            return
        self.wfile.write(self.body)

    def log_message(self, *a):
        pass


@contextlib.contextmanager
def photo_hosts() -> Iterator[Callable[..., str]]:
    """``start(body, trickle=False)`` serves ``body`` as a JPEG on loopback; returns its URL
    (``trickle``: a byte every 0.1 s, 4 s in all, without a length)."""
    servers: list[ThreadingHTTPServer] = []

    def start(body: bytes, trickle: bool = False) -> str:
        handler = type("H", (_Photo,), {"body": body, "trickle": trickle})
        srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}/photo.jpg"

    try:
        yield start
    finally:
        for srv in servers:
            srv.shutdown()


@contextlib.contextmanager
def api_in_thread(settings: Settings) -> Iterator[tuple[str, Any]]:
    """``extworker api``'s app on a free port, in this process (uvicorn in a thread):
    ``(its base URL, its API key store)``. File URLs in its answers point at it."""
    import uvicorn

    from worker.api.app import create_app
    from worker.broker.actors import build_broker
    from worker.runtime import Runtime

    port = free_port()
    settings.api_url = f"http://127.0.0.1:{port}"
    runtime = Runtime(settings, broker=build_broker(settings))
    server = uvicorn.Server(uvicorn.Config(create_app(runtime), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, 20, "the API listening", every=0.05)
        yield f"http://127.0.0.1:{port}", runtime.apikeys
    finally:
        server.should_exit = True
        thread.join(10)


@contextlib.contextmanager
def pg_database() -> Iterator[str]:
    """A new PostgreSQL database (127.0.0.1:5432, or EXTWORKER_TEST_PG_URL's server),
    dropped after."""
    import uuid

    import psycopg

    server = os.environ.get("EXTWORKER_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432")
    name = f"extworker_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{server}/{name}"
    finally:
        with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
