"""The API's errors, in the hosted shape: ``{"message", "help"}`` with a 4xx/5xx code.

One handler (``answer``) for every error: the service's own (``worker.core.errors``: the
status and headers come from the error's class), Starlette's (a 404 route, its 413 body
limit, ``BodyError``) and FastAPI's request validation (a 400 naming the field)."""

from __future__ import annotations

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from worker.core.errors import ExtworkerError, SignInRequired

HELP = "For support see the extworker README (the HTTP API section)."
HANDLED = (ExtworkerError, StarletteHTTPException, RequestValidationError)


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"message": message, "help": HELP}, status_code=status,
                        headers=headers)


async def answer(request: Request, exc: Exception) -> Response:
    """The one exception handler of the app (registered for each of ``HANDLED``)."""
    if isinstance(exc, SignInRequired):  # a console page without a session
        base = request.scope.get("root_path", "").rstrip("/") + "/console"
        return RedirectResponse(base + "/login", status_code=exc.status)
    if isinstance(exc, RequestValidationError):
        parts = []
        for e in exc.errors():
            loc = ".".join(str(p) for p in e["loc"] if p not in ("body", "query", "path"))
            parts.append(f"{loc}: {e['msg']}" if loc else e["msg"])
        return error(400, "; ".join(parts) or "invalid request")
    if isinstance(exc, StarletteHTTPException):  # BodyError too
        if exc.status_code == 413 and not isinstance(exc, ExtworkerError):
            limit = request.app.state.body_limit(request.url.path)
            return error(413, f"request body larger than {limit} bytes")
        return error(exc.status_code, str(exc.detail), exc.headers)
    assert isinstance(exc, ExtworkerError)
    return error(exc.status, str(exc), exc.headers)
