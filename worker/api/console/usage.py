"""Usage (``/console/usage``): extension units per day and per extension, and the
quota."""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations.

import re
from datetime import datetime

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from worker.api.console.common import Account, ConsoleDep

router = APIRouter()


@router.get("/usage")
def usage(request: Request, acct: Account, console: ConsoleDep) -> HTMLResponse:
    month = request.query_params.get("month")
    if month is not None and not re.match(r"^\d{4}-(0[1-9]|1[0-2])$", month):
        month = None
    used = console.runtime.pipeline.usage(acct, month)
    per = sorted((used.get("extensions") or {}).items(), key=lambda kv: -kv[1])
    year, mon = (int(x) for x in used["month"].split("-"))
    last = (datetime(year + mon // 12, mon % 12 + 1, 1) - datetime(year, mon, 1)).days
    by_day = used.get("days") or {}
    days = [{"day": f"{d:02d}", "total": sum(by_day.get(f"{d:02d}", {}).values()),
             "extensions": sorted(by_day.get(f"{d:02d}", {}).items())}
            for d in range(1, last + 1)]
    return console.page(request, "usage.html", acct, month=used.get("month", month or ""),
                days=days, day_top=max([d["total"] for d in days] or [1]) or 1,
                usage=used, per_extension=per, top=max([v for _, v in per] or [1]),
                quota=console.runtime.settings.quota_for(acct))
