"""``extworker api --workers N``: each uvicorn worker process builds its own app from the
environment (``EXTWORKER_*``), as ``cmd_api`` does for one."""

from __future__ import annotations

from fastapi import FastAPI


def app() -> FastAPI:
    """The app factory uvicorn calls in each worker process."""
    from worker.api.app import create_app
    from worker.broker.actors import build_broker
    from worker.core.settings import Settings
    from worker.runtime import Runtime
    from worker.telemetry.logs import configure

    settings = Settings()
    configure(settings)
    return create_app(Runtime(settings, broker=build_broker(settings)))
