"""Saved extensions: create, list, get, update, delete (per account)."""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations, and
# `Account` (bound to this app's key store) lives in router()'s scope.

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict

from worker.api.deps import Api
from worker.api.errors import ApiError


class SavedBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    description: str | None = None
    config: dict[str, Any] | None = None


def router(api: Api) -> APIRouter:
    r = APIRouter(route_class=api.route_type)
    Account = Annotated[str, Depends(api.account)]

    # --- saved extensions ---------------------------------------------------------

    saved = api.runtime.saved

    @r.post("/v1/saved-extensions")
    def create_saved(acct: Account, body: SavedBody) -> dict[str, Any]:
        if body.name is None or body.config is None:
            raise ApiError(400, "name and config are required")
        return saved.create(acct, body.name, body.description or "", body.config)

    @r.get("/v1/saved-extensions")
    def list_saved(acct: Account) -> list[dict[str, Any]]:
        return saved.list(acct)

    @r.get("/v1/saved-extensions/{ext_id}")
    def get_saved(acct: Account, ext_id: str) -> dict[str, Any]:
        item = saved.get(acct, ext_id)
        if item is None:
            raise ApiError(404, f"saved extension not found: {ext_id}")
        return item

    @r.patch("/v1/saved-extensions/{ext_id}")
    def update_saved(acct: Account, ext_id: str, body: SavedBody) -> dict[str, Any]:
        return saved.update(acct, ext_id, name=body.name, description=body.description,
                            config=body.config)

    @r.delete("/v1/saved-extensions/{ext_id}", status_code=204)
    def delete_saved(acct: Account, ext_id: str) -> None:
        if not saved.delete(acct, ext_id):
            raise ApiError(404, f"saved extension not found: {ext_id}")

    return r
