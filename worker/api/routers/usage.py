"""Extension units of the key's account."""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations.

from typing import Annotated, Any

from fastapi import APIRouter, Query

from worker.api.deps import Account, RuntimeDep
from worker.api.limits import BoundedRoute

router = APIRouter(route_class=BoundedRoute, tags=["usage"])


@router.get("/v1/extworker/usage", operation_id="getUsage")
def usage(acct: Account, runtime: RuntimeDep, month: Annotated[str | None, Query(
        pattern=r"^\d{4}-\d{2}$")] = None) -> dict[str, Any]:
    """Extension units of the key's account in one month (``YYYY-MM``, default now)."""
    return runtime.pipeline.usage(acct, month)
