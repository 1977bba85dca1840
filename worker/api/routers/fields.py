"""Custom metadata fields: create, list, update, delete (the id is the field's name)."""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations.

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from worker.api.deps import Account, FieldsDep
from worker.api.limits import BoundedRoute
from worker.core.errors import NotFound

router = APIRouter(route_class=BoundedRoute, tags=["custom metadata fields"])


class FieldBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    label: str | None = None
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")


def field_out(f: Any) -> dict[str, Any]:
    return {"id": f.name, **f.public()}


@router.post("/v1/customMetadataFields", status_code=201,
             operation_id="createCustomMetadataField")
def create_field(acct: Account, fields: FieldsDep, body: FieldBody) -> dict[str, Any]:
    raw = body.model_dump(by_alias=True, exclude_none=True)
    raw.pop("description", None)
    return field_out(fields.create(acct, raw))


@router.get("/v1/customMetadataFields", operation_id="listCustomMetadataFields")
def list_fields(acct: Account, fields: FieldsDep) -> list[dict[str, Any]]:
    return [field_out(f) for f in fields.all(acct).values()]


@router.patch("/v1/customMetadataFields/{field_id}",
              operation_id="updateCustomMetadataField")
def update_field(acct: Account, fields: FieldsDep, field_id: str,
                 body: FieldBody) -> dict[str, Any]:
    return field_out(fields.update(acct, field_id, label=body.label,
                                           schema=body.schema_))


@router.delete("/v1/customMetadataFields/{field_id}",
               operation_id="deleteCustomMetadataField")
def delete_field(acct: Account, fields: FieldsDep, field_id: str) -> dict[str, Any]:
    if not fields.delete(acct, field_id):
        raise NotFound(f"custom metadata field not found: {field_id}")
    return {}
