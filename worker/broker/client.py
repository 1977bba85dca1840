"""The Python client of an upload service: publish a job, optionally wait for it.

Other languages publish the same JSON with a plain ``XADD`` (see the README);
this module is a convenience, not the contract.

``submit(job, wait=S)`` is the synchronous attempt: it returns within ``S``
seconds; extensions final by then come back ``success``/``failed`` with their
outputs and get **no** webhook; the rest come back ``pending`` and get the
webhook when they finish (``worker.store.claims`` makes that exactly one of the two).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import redis
from pydantic import BaseModel, ValidationError

from worker.broker.intake import publish
from worker.core.contract import JobEnvelope, extension_label, format_validation_error
from worker.core.errors import PermanentError
from worker.core.jobs import FINAL, JobDoc, wait_for
from worker.core.records import FileRecord
from worker.core.settings import Settings
from worker.store import claims
from worker.store.backends import open_store
from worker.store.kv import KV


def submit(
    job: dict[str, Any] | BaseModel,
    *,
    settings: Settings,
    client: redis.Redis | None = None,
    wait: float | None = None,
    poll_s: float = 0.02,
    store: KV | None = None,
) -> dict[str, Any]:
    """Publish ``job``; returns ``{"jobId", "extensionStatus", "file"}`` (see module doc).
    The job document and the record are read from ``store`` (default: the store
    ``EXTWORKER_STORE_URL`` names — Redis unless set)."""
    if isinstance(job, BaseModel):
        raw = job.model_dump(mode="json", exclude_none=True)
    else:
        raw = dict(job)
    raw.setdefault("jobId", uuid.uuid4().hex)
    started = time.monotonic()
    if wait is not None:
        raw["syncUntil"] = time.time() + wait
    try:
        JobEnvelope.model_validate(raw)
    except ValidationError as e:
        raise PermanentError(f"invalid job: {format_validation_error(e)}") from None
    client = client or redis.Redis.from_url(settings.redis_url)
    publish(client, settings, raw)
    kv = store if store is not None else open_store(settings, client)
    deadline = started + (wait or 0)
    asked = [extension_label(e, i) for i, e in enumerate(raw["extensions"])]

    def read() -> JobDoc | None:
        stored = kv.get(settings.keys.job(raw["jobId"]))
        return JobDoc.model_validate(stored) if stored is not None else None

    # Without --wait: one read. With it: until finished, leaving a little time for the
    # claims and the record read.
    doc = wait_for(read, lambda d: d.finished, deadline if wait is not None else 0.0,
                   poll_s, margin_s=2 * poll_s)
    return report(client, settings, kv, raw, doc, asked, claim=wait is not None)


def report(client: redis.Redis, settings: Settings, kv: KV, raw: dict[str, Any],
           doc: JobDoc | None, asked: list[str], claim: bool) -> dict[str, Any]:
    """What a waiting caller is told: with ``claim``, each final extension is claimed for
    the caller first, and one its webhook already claimed is reported ``pending``."""
    slots = doc.extensions if doc is not None else {}
    status: dict[str, str] = {}
    errors: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    for name in slots or dict.fromkeys(asked):
        slot = slots.get(name)
        final = slot is not None and slot.status in FINAL
        if final and claim and slot is not None and not slot.sync:
            final = False  # never answered to a waiting caller: its webhook reports it
        elif final and claim:
            owner = claims.claim(client, settings, raw["jobId"], name, claims.SYNC)
            final = owner == claims.SYNC  # else the webhook reports it
        if not final or slot is None:
            status[name] = "pending"
            continue
        status[name] = slot.status
        if slot.error:
            errors[name] = slot.error.model_dump()
        if slot.output:
            outputs[name] = slot.output
    file_id = (doc.fileId if doc is not None else None) or raw.get("fileId")
    rec = kv.get(settings.keys.file(file_id)) if file_id else None
    out: dict[str, Any] = {
        "jobId": raw["jobId"], "state": doc.state if doc is not None else None,
        "extensionStatus": status,
        "file": FileRecord.model_validate(rec).file_object(settings.urls) if rec else None,
    }
    if errors:
        out["errors"] = errors
    if outputs:
        out["outputs"] = outputs
    if doc is not None and doc.error:
        out["error"] = doc.error.model_dump()
    return out
