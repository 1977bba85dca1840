"""API keys (``/console/keys``): the account's keys listed by their hints, a new one shown
once (never stored where it could be shown again), revoking one."""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations.

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from worker.api.console.common import Account, ConsoleDep

router = APIRouter()


def _page(request: Request, console: Any, acct: str, created: dict[str, Any] | None = None,
          status: int = 200) -> HTMLResponse:
    return console.page(request, "keys.html", acct, status=status,
                        keys=console.runtime.apikeys.list(acct), created=created)


@router.get("/keys")
def keys_page(request: Request, acct: Account, console: ConsoleDep) -> HTMLResponse:
    return _page(request, console, acct)


@router.post("/keys")
def create_key(request: Request, acct: Account, console: ConsoleDep) -> HTMLResponse:
    """The new key in this answer only (no redirect: a message would be stored for the next
    page, and a private key is stored nowhere but as its digest and sealed copy)."""
    return _page(request, console, acct, created=console.runtime.apikeys.create(acct),
                 status=201)


@router.post("/keys/{key_id}/revoke")
def revoke_key(request: Request, acct: Account, console: ConsoleDep, key_id: str) -> Response:
    console.runtime.apikeys.revoke(acct, key_id)
    return console.back(request, "/keys", f"Revoked {key_id}: it no longer authenticates.")
