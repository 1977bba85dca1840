"""``extworker doctor``: find work that is stuck, and (``--fix``) set it moving again.

Three kinds, each safe to repair because every step it re-sends is idempotent:

* ``extensions`` — a slot still ``pending`` longer than its time limit after its job
  was dispatched (its message lost: a Redis outage, a purged queue): ``--fix`` sends its
  execute message again (a slot already final ignores it; one still running commits once);
* ``deliveries`` — webhook deliveries due longer than a lease with nobody claiming them
  (no webhook worker running): ``--fix`` wakes the ``webhooks`` queue;
* ``handoffs`` — extensions final without their webhook delivery (the message that
  finished them was lost before it handed them on): ``--fix`` hands them on (the delivery
  id is stable, so a receiver can tell a repeat);
* ``intake`` — stream entries pending on a consumer that stopped reading them for longer
  than the claim delay (no dispatch worker left): ``--fix`` claims and dispatches them;
* a Redis that does not persist (neither AOF nor save points) is reported under
  ``problems``: a restart would lose everything above; ``--fix`` cannot mend it;
* ``legacyKeys`` — ``path:`` and ``units:`` keys of accounts with a ``:`` in their id, as
  versions before the key-space fix wrote them (the account unescaped): ``--fix`` renames
  each to its key now (never over one that exists);
* ``blobs`` — bytes extworker wrote (``uploads/…``, ``<fileId>/…``, the API's
  ``incoming/api-…``) that no file record references, older than
  ``EXTWORKER_BLOB_ORPHAN_GRACE_S`` (younger ones may be work in flight: they are only
  counted, as ``blobsRecent``): ``--fix`` removes them. Objects an upload service put in
  the bucket itself (its ``blobKey`` inputs) are never judged.

The last report is kept in Redis (``<ns>:doctor``) and exported as the gauge
``extworker_stuck{kind}``; ``extworker_webhook_attempts_due`` and the intake gauges are
read live.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import redis
from pydantic import BaseModel

from worker.broker.intake import CLAIM_IDLE_MS, GROUP, IntakeConsumer
from worker.core.jobs import FINAL, JobDoc
from worker.core.records import FileRecord
from worker.core.settings import Settings
from worker.store.backends.redis_kv import RedisKV, persistence_problem
from worker.store.blobs import BlobStore
from worker.store.kv import KV

Send = Callable[[str, str, str], None]  # (queue, jobId, slot): an execute message


def _ms(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000


M = TypeVar("M", bound=BaseModel)


def _documents(store: KV, prefix: str, model: type[M]) -> Iterator[M]:
    """Every document whose key starts with ``prefix``, in batches (a scan: this is an
    operator's command, not a hot path) — from Redis, SQLite or PostgreSQL alike;
    unreadable ones are skipped."""
    for _, value in store.documents(prefix):
        try:
            yield model.model_validate(value)
        except ValueError:
            continue


def _jobs(store: KV, settings: Settings) -> Iterator[JobDoc]:
    """Every job document."""
    return _documents(store, settings.keys.job(""), JobDoc)


def _pending_slots(doc: JobDoc, older: float) -> list[dict[str, Any]]:
    """Pending slots of a dispatched job created before ``older`` (ms)."""
    if doc.state != "dispatched" or _ms(doc.createdAt) > older:
        return []
    return [{"jobId": doc.jobId, "extension": name, "queue": slot.queue,
             "createdAt": doc.createdAt}
            for name, slot in doc.extensions.items()
            if slot.status == "pending" and slot.queue]


def _finished_with_webhook(doc: JobDoc, oldest: float, newest: float) -> list[dict[str, Any]]:
    """Final slots of a job with a webhookUrl, finished between ``oldest`` and ``newest``."""
    from webhooks.events import webhook_id

    if not doc.webhookUrl:
        return []
    return [{"jobId": doc.jobId, "extension": name, "id": webhook_id(doc.jobId, name)}
            for name, slot in doc.extensions.items()
            if slot.status in FINAL and slot.finishedAt
            and oldest <= _ms(slot.finishedAt) <= newest]


def scan_jobs(client: redis.Redis, settings: Settings, now_ms: float, store: KV,
              limit: int = 1000) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One pass over the job documents: ``(stuck extensions, lost hand-offs)``.

    Stuck: pending slots of dispatched jobs older than the extension time limit. Lost
    hand-offs: final slots with a webhookUrl but no delivery (the message that finished
    them died before handing them on), finished between a lease and an hour ago (older
    deliveries may have been trimmed from the log)."""
    older = now_ms - settings.extension_time_limit_s * 1000
    newest, oldest = now_ms - settings.webhook_lease_s * 1000, now_ms - 3600 * 1000
    stuck: list[dict[str, Any]] = []
    candidates: list[dict[str, Any]] = []
    for doc in _jobs(store, settings):
        if len(stuck) < limit:
            stuck += _pending_slots(doc, older)
        if len(candidates) < 10 * limit:
            candidates += _finished_with_webhook(doc, oldest, newest)
    pipe = client.pipeline(transaction=False)
    for c in candidates:
        pipe.exists(settings.keys.webhook_delivery(c["id"]))
    found = pipe.execute() if candidates else []
    lost = [c for c, there in zip(candidates, found, strict=True) if not there]
    return stuck[:limit], lost[:limit]


# What extworker itself writes in the blob store: uploads as prepared, versions under their
# file's id, the API's incoming files, delivery's derivatives. Anything else belongs to
# whoever wrote it.
OWNED_BLOBS = re.compile(r"^(uploads/|[0-9a-f]{24}/|incoming/api-[0-9a-f]{32}$|derived/)")


def _referenced_blobs(store: KV, settings: Settings) -> set[str]:
    """Every blob key a file record's version references, and each version's derivatives'
    folder (``derived/<fileId>/<versionId>/``): a derivative of a version that is gone (a
    file deleted while one was being computed) is an orphan."""
    out: set[str] = set()
    for record in _documents(store, settings.keys.file(""), FileRecord):
        for v in record.versions:
            out.update((v.blobKey, f"derived/{record.fileId}/{v.id}/"))
    return out


def orphan_blobs(store: KV, settings: Settings, blobs: BlobStore, now_ms: float,
                 limit: int = 1000) -> tuple[list[dict[str, Any]], int]:
    """``(orphans older than the grace period, how many younger ones)``: blobs extworker
    wrote that no record references. The listing comes first and every blob a commit
    could still reference is young, so a record read later never makes one an orphan."""
    listed = [(k, t) for k, t in blobs.keys() if OWNED_BLOBS.match(k)]
    referenced = _referenced_blobs(store, settings)
    old: list[dict[str, Any]] = []
    recent = 0
    for key, modified in listed:
        if key in referenced or (key.startswith("derived/")
                                 and key.rsplit("/", 1)[0] + "/" in referenced):
            continue
        age_s = now_ms / 1000 - modified
        if age_s >= settings.blob_orphan_grace_s:
            old.append({"key": key, "ageS": int(age_s)})
        else:
            recent += 1
    return old[:limit], recent


_MONTH = re.compile(r":(\d{4}-\d{2})$")


def legacy_keys(client: redis.Redis, settings: Settings,
                limit: int = 10_000) -> list[tuple[str, str]]:
    """``(key written by an earlier version, its name now)`` for the ``path:`` and
    ``units:`` keys of accounts with a ``:``: earlier versions did not escape the account
    there. (Account ids never hold ``%`` or ``/``, paths start with ``/``, months are
    ``YYYY-MM``: the old account part is up to the path, or up to the month.)"""
    k, ns = settings.keys, settings.keys.namespace
    found: list[tuple[str, str]] = []
    for kind in ("path", "units"):
        prefix = f"{ns}:{kind}:"
        for raw in client.scan_iter(match=f"{prefix}*:*", count=1000):
            key = raw.decode() if isinstance(raw, bytes) else raw
            rest = key[len(prefix):]
            if kind == "path":
                cut = rest.find(":/")
                account, tail = (rest[:cut], rest[cut + 1:]) if cut > 0 else ("", "")
                new = k.path(account, tail) if ":" in account else None
            else:
                month = _MONTH.search(rest)
                account = rest[:month.start()] if month else ""
                new = k.units(account, month.group(1)) if month and ":" in account else None
            if new is not None and new != key:
                found.append((key, new))
                if len(found) >= limit:
                    return found
    return found


def unclaimed_deliveries(client: redis.Redis, settings: Settings, now_ms: float) -> int:
    """Deliveries due for longer than a lease: claimed ones are pushed a lease ahead."""
    due = settings.keys.webhook_due()
    return int(client.zcount(due, "-inf", now_ms - settings.webhook_lease_s * 1000))


def idle_intake(client: redis.Redis, settings: Settings, limit: int = 1000) -> int:
    """Intake entries pending on consumers that have not touched them for twice the
    claim delay (a live dispatch worker would have claimed them by then)."""
    try:
        pending = client.xpending_range(settings.keys.intake(), GROUP, min="-", max="+",
                                        count=limit, idle=2 * CLAIM_IDLE_MS)
    except redis.ResponseError:  # no stream or group yet
        return 0
    return len(pending)


def examine(client: redis.Redis, settings: Settings, now_ms: float | None = None,
            blobs: BlobStore | None = None, store: KV | None = None) -> dict[str, Any]:
    """The report: what is stuck, by kind (with ``blobs``, orphaned bytes too). Also
    stored for the metrics. ``store``: where job documents and records are (default: this
    Redis)."""
    now_ms = now_ms if now_ms is not None else time.time() * 1000
    store = store if store is not None else RedisKV(client)
    extensions, handoffs = scan_jobs(client, settings, now_ms, store)
    report = {
        "checkedAt": int(now_ms),
        "counts": {"extensions": len(extensions), "handoffs": len(handoffs),
                   "deliveries": unclaimed_deliveries(client, settings, now_ms),
                   "intake": idle_intake(client, settings)},
        "extensions": extensions,
        "handoffs": handoffs,
    }
    lost = persistence_problem(client)
    report["problems"] = [lost] if lost else []
    report["legacyKeys"] = [{"key": old, "now": new}
                            for old, new in legacy_keys(client, settings)]
    report["counts"]["legacyKeys"] = len(report["legacyKeys"])
    if blobs is not None:
        report["blobs"], report["blobsRecent"] = orphan_blobs(store, settings, blobs, now_ms)
        report["counts"]["blobs"] = len(report["blobs"])
    client.set(settings.keys.doctor_report(), json.dumps(report["counts"]))
    return report


def repair(client: redis.Redis, settings: Settings, report: dict[str, Any], send: Send,
           wake_webhooks: Callable[[], None], dispatch: Callable[[dict[str, Any]], None],
           handoff: Callable[[str, str], None], blobs: BlobStore | None = None
           ) -> dict[str, int]:
    """Set the stuck work of ``report`` moving (and remove its orphaned blobs); returns
    what was done, by kind.

    ``handoff(jobId, extension)`` hands a final extension on to the webhooks again."""
    done = {"extensions": 0, "handoffs": 0, "deliveries": 0, "intake": 0}
    done["legacyKeys"] = sum(bool(client.renamenx(item["key"], item["now"]))
                             for item in report.get("legacyKeys", []))
    if blobs is not None and "blobs" in report:
        for item in report["blobs"]:
            blobs.delete(item["key"])
        done["blobs"] = len(report["blobs"])
    for item in report["extensions"]:
        send(item["queue"], item["jobId"], item["extension"])
        done["extensions"] += 1
    for item in report["handoffs"]:
        handoff(item["jobId"], item["extension"])
        done["handoffs"] += 1
    if report["handoffs"]:
        wake_webhooks()
    if report["counts"]["deliveries"]:
        wake_webhooks()
        done["deliveries"] = report["counts"]["deliveries"]
    if report["counts"]["intake"]:
        consumer = IntakeConsumer(client, settings, dispatch)
        try:
            done["intake"] = consumer.claim_idle(2 * CLAIM_IDLE_MS)
        finally:
            consumer.leave()
    return done
