"""Fixtures of the store tests: a PostgreSQL database of a test's own (migrations), and a
worker node's ``default`` queue in this process (bulk folder jobs)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support import pg_database
from worker.core.settings import Settings
from worker.runtime import Runtime


@pytest.fixture
def empty_pg_url() -> Iterator[str]:
    """A database of its own, empty, for one test (migrations)."""
    with pg_database() as url:
        yield url


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
