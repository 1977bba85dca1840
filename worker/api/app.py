"""The HTTP API, shaped like the hosted one: existing SDKs work by changing the base URL.

Authentication is what the SDKs send: HTTP Basic with the account's private API key as the
user name (``extworker keys create ACCOUNT``). Every request is scoped to that account;
another account's file is ``404``. Errors have the hosted shape, ``{"message", "help"}``,
with a 4xx code and the field named. Uploads and updates go through the same job path as a
published job: the dispatch step runs in this process (the file is written, the slots are
``pending``) and the execute messages go to the workers' queues; each extension's webhook
follows from the worker that finishes it.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations, and
# `Account` (a dependency bound to this app's key store) lives in create_app's scope.

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from worker.api import console
from worker.api.deps import Api
from worker.api.errors import ApiError
from worker.api.errors import error as _error
from worker.api.limits import BodyError, bounded_route
from worker.api.routers import delivery as delivery_routes
from worker.api.routers import fields as field_routes
from worker.api.routers import files as file_routes
from worker.api.routers import library as library_routes
from worker.api.routers import saved as saved_routes
from worker.api.routers import uploads as upload_routes
from worker.api.routers import usage as usage_routes
from worker.core.errors import PermanentError
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
    reaches the workers' queues)."""
    settings = runtime.settings
    keys = runtime.apikeys
    delivery = Delivery(settings, runtime.blobs, runtime.files, keys, runtime.redis,
                        on_derive=lambda outcome: DERIVATIVES.labels(outcome).inc())
    # max_body_size: Starlette's body limit, which also stops a body streamed without a
    # Content-Length (chunked) once it passes the limit — a 413 (answered by _body_error).
    # Uploads may carry a video (EXTWORKER_VIDEO_MAX_BYTES); every other body keeps
    # EXTWORKER_API_MAX_BODY_BYTES (GuardAndMeasure holds each route to its own).
    def body_limit(path: str) -> int:  # read per request, as the settings may change
        if path.endswith("/files/upload"):
            return max(settings.api_max_body_bytes, settings.video_max_bytes + 2**20)
        return settings.api_max_body_bytes

    app = FastAPI(title="extworker", version="1", description=__doc__,
                  max_body_size=body_limit("/files/upload"))
    # Before any route is declared: every JSON body is decoded within the limits.
    app.router.route_class = bounded_route(settings.api_max_body_bytes)

    app.add_middleware(GuardAndMeasure, max_body=body_limit)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.message, exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """Our own ``BodyError``s and Starlette's (its body limit: 413), in the API's shape."""
        if exc.status_code == 413 and not isinstance(exc, BodyError):
            return _error(413, f"request body larger than {body_limit(request.url.path)} "
                          "bytes")
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(PermanentError)
    async def _permanent(request: Request, exc: PermanentError) -> JSONResponse:
        status = {"not_found": 404, "file_not_found": 404, "version_not_found": 404,
                  "file_exists": 409}.get(exc.code, 400)
        return _error(status, str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for e in exc.errors():
            loc = ".".join(str(p) for p in e["loc"] if p not in ("body", "query", "path"))
            parts.append(f"{loc}: {e['msg']}" if loc else e["msg"])
        return _error(400, "; ".join(parts) or "invalid request")

    api = Api(runtime, delivery, app.router.route_class)

    app.include_router(upload_routes.router(api))
    app.include_router(library_routes.router(api, runtime.library, runtime.bulk))
    app.include_router(file_routes.router(api))
    app.include_router(saved_routes.router(api))
    app.include_router(field_routes.router(api))
    app.include_router(usage_routes.router(api))

    app.openapi = lambda: _openapi(app, runtime)  # type: ignore[method-assign]

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, Any]:
        return {"ok": True, "at": time.time()}

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> JSONResponse:
        """Ready when Redis answers (every request needs it)."""
        try:
            assert runtime.redis is not None
            runtime.redis.ping()
        except Exception as e:
            return JSONResponse({"ready": False, "reason": f"redis: {e}"}, status_code=503)
        return JSONResponse({"ready": True})

    if runtime.webhooks is not None:  # the console needs Redis (sessions, webhooks)
        app.include_router(console.router(api, runtime.library, runtime.webhooks))

        @app.exception_handler(console.SignIn)
        async def _sign_in(request: Request, exc: Exception) -> Response:
            base = request.scope.get("root_path", "").rstrip("/") + "/console"
            return RedirectResponse(base + "/login", status_code=303)

    # Last: /<account>/<filePath> would otherwise shadow the routes above.
    app.include_router(delivery_routes.router(delivery))
    return app


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
    for body in ("Body_upload_api_v1_files_upload_post",
                 "Body_upload_v2_api_v2_files_upload_post"):
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
