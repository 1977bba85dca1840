"""Extension units: a per-account counter for the current month, and quotas.

The counter is a document ``<ns>:units:<account>:<YYYY-MM>`` =
``{"total": n, "extensions": {name: n}, "days": {"DD": {name: n}}}`` (``days``: since this
version; a month counted before has none for its earlier days). It is only ever changed inside the
same transaction that marks an extension ``success`` on its job document, and
that transition happens once per (job, extension), so a redelivered message
can never charge twice.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from worker.core.errors import QuotaExceeded


def month_of(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y-%m")


def empty_usage() -> dict[str, Any]:
    return {"total": 0, "extensions": {}}


def check_quota(usage: dict[str, Any] | None, units: int, quota: int | None) -> None:
    """Raise ``QuotaExceeded`` if charging ``units`` would go above ``quota``."""
    if quota is None or units <= 0:
        return
    if (usage or empty_usage())["total"] + units > quota:
        raise QuotaExceeded()


def charged(usage: dict[str, Any] | None, extension: str, units: int,
            now: datetime | None = None) -> dict[str, Any]:
    """The usage document after charging ``units`` for ``extension`` (today)."""
    doc = usage or empty_usage()
    ext = dict(doc["extensions"])
    ext[extension] = ext.get(extension, 0) + units
    day = (now or datetime.now(UTC)).strftime("%d")
    days = {d: dict(v) for d, v in (doc.get("days") or {}).items()}
    days.setdefault(day, {})
    days[day][extension] = days[day].get(extension, 0) + units
    return {"total": doc["total"] + units, "extensions": ext, "days": days}
