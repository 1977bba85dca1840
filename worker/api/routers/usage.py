"""Extension units of the key's account."""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations, and
# `Account` (bound to this app's key store) lives in router()'s scope.

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from worker.api.deps import Api


def router(api: Api) -> APIRouter:
    r = APIRouter(route_class=api.route_type)
    Account = Annotated[str, Depends(api.account)]
    pipeline = api.pipeline
    # --- usage -----------------------------------------------------------------------

    @r.get("/v1/extworker/usage")
    def usage(acct: Account, month: Annotated[str | None, Query(
            pattern=r"^\d{4}-\d{2}$")] = None) -> dict[str, Any]:
        """Extension units of the key's account in one month (``YYYY-MM``, default now)."""
        return pipeline.usage(acct, month)

    return r
