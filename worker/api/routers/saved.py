"""Saved extensions: create, list, get, update, delete (per account)."""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations.

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from worker.api.deps import Account, SavedDep
from worker.api.limits import BoundedRoute
from worker.core.errors import NotFound, PermanentError

router = APIRouter(route_class=BoundedRoute, tags=["saved extensions"])


class SavedBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    description: str | None = None
    config: dict[str, Any] | None = None


@router.post("/v1/saved-extensions", operation_id="createSavedExtension")
def create_saved(acct: Account, saved: SavedDep, body: SavedBody) -> dict[str, Any]:
    if body.name is None or body.config is None:
        raise PermanentError("name and config are required")
    return saved.create(acct, body.name, body.description or "", body.config)


@router.get("/v1/saved-extensions", operation_id="listSavedExtensions")
def list_saved(acct: Account, saved: SavedDep) -> list[dict[str, Any]]:
    return saved.list(acct)


@router.get("/v1/saved-extensions/{ext_id}", operation_id="getSavedExtension")
def get_saved(acct: Account, saved: SavedDep, ext_id: str) -> dict[str, Any]:
    item = saved.get(acct, ext_id)
    if item is None:
        raise NotFound(f"saved extension not found: {ext_id}")
    return item


@router.patch("/v1/saved-extensions/{ext_id}", operation_id="updateSavedExtension")
def update_saved(acct: Account, saved: SavedDep, ext_id: str,
                 body: SavedBody) -> dict[str, Any]:
    return saved.update(acct, ext_id, name=body.name, description=body.description,
                                config=body.config)


@router.delete("/v1/saved-extensions/{ext_id}", status_code=204,
               operation_id="deleteSavedExtension")
def delete_saved(acct: Account, saved: SavedDep, ext_id: str) -> None:
    if not saved.delete(acct, ext_id):
        raise NotFound(f"saved extension not found: {ext_id}")
