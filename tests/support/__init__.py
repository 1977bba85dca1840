"""What tests share beyond fixtures: helpers (waiting, images, the CLI), servers (``serve``,
redis-server, S3, PostgreSQL databases, the API in a thread, a photo host) and free ports.
Fixtures live in the ``conftest.py`` nearest the tests that use them.

Names load on first use (PEP 562), so a benchmark importing ``tests.support.net`` pulls in
nothing else."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]  # the checkout

_WHERE = {
    **dict.fromkeys(("DUPLICATES", "PHOTOS", "STORE_BACKENDS", "TEST_DB",
                     "RecordingRuntime", "cli", "concurrently", "env_for", "jpeg", "photo",
                     "report_duplicates", "sustained", "wait_until"), "helpers"),
    **dict.fromkeys(("answers", "free_port"), "net"),
    **dict.fromkeys(("PrivateRedis", "Server", "api_in_thread", "pg_database", "photo_hosts",
                     "s3_server", "start_redis"), "servers"),
}
__all__ = sorted([*_WHERE, "ROOT"])


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'tests.support' has no attribute {name!r}")
    return getattr(importlib.import_module(f"tests.support.{module}"), name)
