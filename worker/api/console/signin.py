"""Sign-in with an account's private key, sign-out, and the console's own assets."""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations.

from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from worker.api.console.common import Account, ConsoleDep, back, base_of
from worker.api.console.session import COOKIE, TTL_S, same_origin
from worker.core.errors import Forbidden, NotFound

_STATIC = {"console.css": "text/css", "console.js": "text/javascript",
           "favicon.svg": "image/svg+xml"}
router = APIRouter()


@router.get("/login")
def login_form(request: Request, console: ConsoleDep) -> HTMLResponse:
    return console.page(request, "login.html", None)


@router.post("/login")
def login(request: Request, console: ConsoleDep, key: Annotated[str, Form()]) -> Response:
    if not same_origin(request.headers, request.headers.get("host", "")):
        raise Forbidden("cross-site request refused")
    acct = console.runtime.apikeys.account_of(key.strip())
    if acct is None:
        return console.page(request, "login.html", None, status=401,
                    error="That key does not sign in to any account.")
    response = back(request, "/")
    secure = request.url.scheme == "https" or \
        request.headers.get("x-forwarded-proto") == "https"
    response.set_cookie(COOKIE, console.sessions.start(acct), max_age=TTL_S, httponly=True,
                        samesite="lax", secure=secure, path=base_of(request))
    return response


@router.post("/logout")
def logout(request: Request, acct: Account, console: ConsoleDep) -> Response:
    console.sessions.end(request.cookies.get(COOKIE))
    response = back(request, "/login")
    response.delete_cookie(COOKIE, path=base_of(request))
    return response


@router.get("/static/{name}")
def static(name: str) -> Response:
    if name not in _STATIC:
        raise NotFound("no such asset")
    data = resources.files("worker.api.console").joinpath("static", name).read_bytes()
    return Response(data, media_type=_STATIC[name],
                    headers={"Cache-Control": "public, max-age=3600"})
