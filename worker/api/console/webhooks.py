"""Webhooks (``/console/webhooks``): the account's deliveries, redelivery and the
signing secret's rotation."""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations.

import json
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from worker.api.console.common import Account, Console, ConsoleDep
from worker.core.errors import ExtworkerError, NotFound

router = APIRouter()


def mine(console: Console, acct: str, status: str | None = None) -> list[dict[str, Any]]:
    out = []
    for d in console.runtime.webhooks.store.list(status=status, account=acct, limit=500):
        if d.get("accountId") != acct:
            continue
        if d.get("status") == "pending" and d.get("nextAt"):
            d["next"] = datetime.fromtimestamp(d["nextAt"] / 1000, UTC).isoformat(
                timespec="seconds")
        out.append(d)
    return out


@router.get("/webhooks")
def webhooks_page(request: Request, acct: Account, console: ConsoleDep) -> HTMLResponse:
    return console.page(request, "webhooks.html", acct, deliveries=mine(console, acct)[:200],
                secret=console.runtime.webhooks.secrets.current(acct),
                endpoint=console.runtime.account_settings.webhook_url(acct))


@router.post("/webhooks/endpoint")
def save_endpoint(request: Request, acct: Account, console: ConsoleDep,
                  url: Annotated[str, Form()] = "") -> Response:
    try:
        console.runtime.account_settings.set_webhook_url(acct, url)
    except ExtworkerError as e:
        return console.back(request, "/webhooks", str(e), "error")
    return console.back(request, "/webhooks", "Saved the endpoint." if url.strip() else
                        "No default endpoint: only uploads that name one get webhooks.")


def _mine(console: Console, acct: str, delivery_id: str) -> dict[str, Any]:
    doc = console.runtime.webhooks.store.get(delivery_id)
    if doc is None or doc.get("accountId") != acct:
        raise NotFound(f"no delivery {delivery_id}")
    return doc


@router.get("/webhooks/{delivery_id}")
def delivery_page(request: Request, acct: Account, console: ConsoleDep,
                  delivery_id: str) -> HTMLResponse:
    """One delivery: where it goes, the payload as signed and sent, each attempt's answer."""
    doc = _mine(console, acct, delivery_id)
    try:
        payload = json.dumps(json.loads(doc.get("body") or "null"), indent=2)
    except ValueError:
        payload = doc.get("body") or ""
    for a in doc.get("attempts", []):
        if a.get("at"):
            a["at_text"] = datetime.fromtimestamp(a["at"] / 1000, UTC).isoformat(
                timespec="seconds")
    return console.page(request, "delivery.html", acct, d=doc, payload=payload)


@router.post("/webhooks/{delivery_id}/redeliver")
def redeliver(request: Request, acct: Account, console: ConsoleDep, delivery_id: str) -> Response:
    _mine(console, acct, delivery_id)
    console.runtime.webhooks.redeliver(delivery_id)
    return console.back(request, "/webhooks", f"Redelivering {delivery_id}.")


@router.post("/webhooks/redeliver-exhausted")
def redeliver_exhausted(request: Request, acct: Account, console: ConsoleDep) -> Response:
    done = 0
    for d in mine(console, acct, "exhausted"):
        console.runtime.webhooks.redeliver(d["id"])
        done += 1
    return console.back(request, "/webhooks", f"Redelivering {done} exhausted deliveries.")


@router.post("/webhooks/rotate")
def rotate(request: Request, acct: Account, console: ConsoleDep) -> Response:
    console.runtime.webhooks.secrets.rotate(acct)
    return console.back(request, "/webhooks", "Rotated: the previous secret stays valid for "
                        "the grace period.")
