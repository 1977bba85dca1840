"""``extworker doctor``: find work that is stuck, and (``--fix``) set it moving again.

Three kinds, each safe to repair because every step it re-sends is idempotent:

* ``extensions`` — a slot still ``pending`` longer than its time limit after its job
  was dispatched (its message lost: a Redis outage, a purged queue): ``--fix`` sends its
  execute message again (a slot already final ignores it; one still running commits once);
* ``deliveries`` — webhook deliveries due longer than a lease with nobody claiming them
  (no webhook worker running): ``--fix`` wakes the ``webhooks`` queue;
* ``intake`` — stream entries pending on a consumer that stopped reading them for longer
  than the claim delay (no dispatch worker left): ``--fix`` claims and dispatches them.

The last report is kept in Redis (``<ns>:doctor``) and exported as the gauge
``extworker_stuck{kind}``; ``extworker_webhook_attempts_due`` and the intake gauges are
read live.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import redis

from .intake import CLAIM_IDLE_MS, GROUP, IntakeConsumer, stream_key
from .settings import Settings

Send = Callable[[str, str, str], None]  # (queue, jobId, slot): an execute message


def _ms(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000


def stuck_extensions(client: redis.Redis, settings: Settings, now_ms: float,
                     limit: int = 1000) -> list[dict[str, Any]]:
    """Pending slots of dispatched jobs older than the extension time limit."""
    out: list[dict[str, Any]] = []
    older = now_ms - settings.extension_time_limit_s * 1000
    keys: list[bytes] = []
    for key in client.scan_iter(match=settings.key("job", "*"), count=1000):
        keys.append(key)
        if len(keys) >= 500:
            out += _pending_in(client, keys, older)
            keys = []
        if len(out) >= limit:
            return out[:limit]
    return (out + _pending_in(client, keys, older))[:limit] if keys else out[:limit]


def _pending_in(client: redis.Redis, keys: list[bytes], older: float) -> list[dict[str, Any]]:
    found = []
    for raw in client.mget(keys):
        if raw is None:
            continue
        try:
            doc = json.loads(raw)
        except ValueError:
            continue
        if doc.get("state") != "dispatched" or _ms(doc.get("createdAt", "")) > older:
            continue
        for name, slot in doc.get("extensions", {}).items():
            if slot.get("status") == "pending" and slot.get("queue"):
                found.append({"jobId": doc["jobId"], "extension": name, "queue": slot["queue"],
                              "createdAt": doc["createdAt"]})
    return found


def unclaimed_deliveries(client: redis.Redis, settings: Settings, now_ms: float) -> int:
    """Deliveries due for longer than a lease: claimed ones are pushed a lease ahead."""
    due = settings.key("wh", "due")
    return int(client.zcount(due, "-inf", now_ms - settings.webhook_lease_s * 1000))


def idle_intake(client: redis.Redis, settings: Settings, limit: int = 1000) -> int:
    """Intake entries pending on consumers that have not touched them for twice the
    claim delay (a live dispatch worker would have claimed them by then)."""
    try:
        pending = client.xpending_range(stream_key(settings), GROUP, min="-", max="+",
                                        count=limit, idle=2 * CLAIM_IDLE_MS)
    except redis.ResponseError:  # no stream or group yet
        return 0
    return len(pending)


def examine(client: redis.Redis, settings: Settings,
            now_ms: float | None = None) -> dict[str, Any]:
    """The report: what is stuck, by kind. Also stored for the metrics."""
    now_ms = now_ms if now_ms is not None else time.time() * 1000
    extensions = stuck_extensions(client, settings, now_ms)
    report = {
        "checkedAt": int(now_ms),
        "counts": {"extensions": len(extensions),
                   "deliveries": unclaimed_deliveries(client, settings, now_ms),
                   "intake": idle_intake(client, settings)},
        "extensions": extensions,
    }
    client.set(settings.key("doctor"), json.dumps(report["counts"]))
    return report


def repair(client: redis.Redis, settings: Settings, report: dict[str, Any], send: Send,
           wake_webhooks: Callable[[], None], dispatch: Callable[[dict[str, Any]], None],
           ) -> dict[str, int]:
    """Set the stuck work of ``report`` moving; returns what was done, by kind."""
    done = {"extensions": 0, "deliveries": 0, "intake": 0}
    for item in report["extensions"]:
        send(item["queue"], item["jobId"], item["extension"])
        done["extensions"] += 1
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
