"""The HTTP API, shaped like the hosted one: existing SDKs work by changing the base URL.

Authentication is what the SDKs send: HTTP Basic with the account's private API key as the
user name (``extworker keys create ACCOUNT``). Every request is scoped to that account;
another account's file is ``404``. Errors have the hosted shape, ``{"message", "help"}``,
with a 4xx code and the field named. Uploads and updates go through the same job path as a
published job: the dispatch step runs in this process (the file is written, the slots are
``pending``) and the execute messages go to the workers' queues; each extension's webhook
follows from the worker that finishes it.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations.

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from worker import services
from worker.api import console
from worker.api.deps import RuntimeDep
from worker.api.errors import HANDLED, answer
from worker.api.errors import error as _error
from worker.api.limits import BodyError
from worker.api.routers import delivery as delivery_routes
from worker.api.routers import fields as field_routes
from worker.api.routers import files as file_routes
from worker.api.routers import library as library_routes
from worker.api.routers import saved as saved_routes
from worker.api.routers import uploads as upload_routes
from worker.api.routers import usage as usage_routes
from worker.delivery.service import Delivery
from worker.runtime import Runtime
from worker.telemetry.metrics import API_REQUESTS, API_SECONDS, DERIVATIVES

access = logging.getLogger("worker.api.access")

class GuardAndMeasure:
    """Body limit (413), then a metric and a JSON access-log line per request: the route
    template and status, never the key or a file id. Plain ASGI (not Starlette's
    ``BaseHTTPMiddleware``, which wraps every response in a stream of its own: measured
    here as a share of a delivered thumbnail's time)."""

    def __init__(self, app: Any, max_body: Callable[[str], int]) -> None:
        self.app, self.max_body = app, max_body  # read per request, by path

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body(scope.get("path", ""))
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await _error(413, f"request body larger than {limit} bytes")(
                    scope, receive, send)
                return
        # A body without a Content-Length (chunked) is counted as it arrives.
        seen = [0]
        upstream = receive

        async def receive(upstream: Any = upstream) -> Any:
            message = await upstream()
            if message.get("type") == "http.request":
                seen[0] += len(message.get("body", b""))
                if seen[0] > limit:
                    raise BodyError(413, f"request body larger than {limit} bytes")
            return message

        started, status = time.perf_counter(), [500]

        async def measured(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, measured)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            seconds = time.perf_counter() - started
            method = scope.get("method", "")
            API_REQUESTS.labels(method, route, str(status[0])).inc()
            API_SECONDS.labels(method, route).observe(seconds)
            access.info("request", extra={"method": method, "route": route,
                                          "status": status[0], "ms": round(seconds * 1000, 1)})


def create_app(runtime: Runtime) -> FastAPI:
    """The API over one process's ``Runtime`` (built with a broker, so dispatched work
    reaches the workers' queues): the runtime and its services go on ``app.state``, where
    every route's dependencies (``worker.api.deps``) find them."""
    settings = runtime.settings
    delivery = Delivery(settings, runtime.blobs, runtime.files, runtime.apikeys, runtime.redis,
                        on_derive=lambda outcome: DERIVATIVES.labels(outcome).inc())

    # max_body_size: Starlette's body limit, which also stops a body streamed without a
    # Content-Length (chunked) once it passes the limit — a 413 (answered by errors.answer).
    # Uploads may carry a video (EXTWORKER_VIDEO_MAX_BYTES); every other body keeps
    # EXTWORKER_API_MAX_BODY_BYTES (GuardAndMeasure holds each route to its own).
    def body_limit(path: str) -> int:  # read per request, as the settings may change
        if path.endswith("/files/upload"):
            return max(settings.api_max_body_bytes, settings.video_max_bytes + 2**20)
        return settings.api_max_body_bytes

    app = FastAPI(title="extworker", version="1", description=__doc__,
                  max_body_size=body_limit("/files/upload"))
    app.state.runtime = runtime
    app.state.services = services.build(runtime, delivery)
    app.state.body_limit = body_limit
    app.add_middleware(GuardAndMeasure, max_body=body_limit)
    for kind in HANDLED:
        app.add_exception_handler(kind, answer)

    app.include_router(ops_router)
    for routes in (upload_routes, library_routes, file_routes, saved_routes, field_routes,
                   usage_routes):
        app.include_router(routes.router)
    if runtime.webhooks is not None:  # the console needs Redis (sessions, webhooks)
        app.state.console = console.Console(app.state.services)
        app.include_router(console.router)
    # Last: /<account>/<filePath> would otherwise shadow the routes above.
    app.include_router(delivery_routes.router)
    app.openapi = lambda: _openapi(app, runtime)  # type: ignore[method-assign]
    return app


ops_router = APIRouter(include_in_schema=False)


@ops_router.get("/metrics")
def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


@ops_router.get("/healthz")
def healthz() -> dict[str, Any]:
    return {"ok": True, "at": time.time()}


@ops_router.get("/readyz")
def readyz(runtime: RuntimeDep) -> JSONResponse:
    """Ready when Redis answers (every request needs it)."""
    try:
        assert runtime.redis is not None
        runtime.redis.ping()
    except Exception as e:
        return JSONResponse({"ready": False, "reason": f"redis: {e}"}, status_code=503)
    return JSONResponse({"ready": True})


def _openapi(app: FastAPI, runtime: Runtime) -> dict[str, Any]:
    """FastAPI's document, with the job contract's own schemas where the API carries
    extensions and file details: generated from the same models (the installed
    extensions' params), referenced, never copied by hand."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    doc = get_openapi(title=app.title, version=app.version, description=app.description,
                      routes=app.routes)
    contract = json.loads(json.dumps(runtime.registry.contract.json_schema()).replace(
        "#/$defs/", "#/components/schemas/"))
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(contract["$defs"])
    extensions = {"type": "array", "items": contract["properties"]["extensions"]["items"],
                  "maxItems": 20}
    schemas["Extensions"] = extensions
    ref = {"$ref": "#/components/schemas/Extensions"}
    patch = doc["paths"]["/v1/files/{fileId}/details"]["patch"]
    patch["requestBody"]["content"]["application/json"]["schema"] = {"allOf": [
        {"$ref": "#/components/schemas/Update"},
        {"type": "object", "properties": {
            "extensions": ref, "webhookUrl": {"type": "string", "format": "uri"},
            "removeAITags": contract["properties"]["removeAITags"]}}]}
    for body in ("Body_upload", "Body_uploadV2"):
        form = schemas[body]["properties"]
        form["extensions"] = {**form["extensions"], "contentMediaType": "application/json",
                              "contentSchema": ref}
    saved = schemas["SavedBody"]["properties"]
    saved["config"] = {"anyOf": [{"$ref": "#/components/schemas/ExtensionConfig"},
                                 {"type": "null"}]}
    schemas["ExtensionConfig"] = {
        "oneOf": [r for r in contract["properties"]["extensions"]["items"]["oneOf"]
                  if r["$ref"] != "#/components/schemas/SavedExtensionRef"]}
    app.openapi_schema = doc
    return doc
