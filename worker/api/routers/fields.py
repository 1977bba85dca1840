"""Custom metadata fields: create, list, update, delete (the id is the field's name)."""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations, and
# `Account` (bound to this app's key store) lives in router()'s scope.

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from worker.api.deps import Api
from worker.api.errors import ApiError


class FieldBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    label: str | None = None
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")


def router(api: Api) -> APIRouter:
    r = APIRouter(route_class=api.route_type)
    Account = Annotated[str, Depends(api.account)]

    # --- custom metadata fields -----------------------------------------------------

    fields = api.runtime.fields

    def field_out(f: Any) -> dict[str, Any]:
        return {"id": f.name, **f.public()}

    @r.post("/v1/customMetadataFields", status_code=201)
    def create_field(acct: Account, body: FieldBody) -> dict[str, Any]:
        raw = body.model_dump(by_alias=True, exclude_none=True)
        raw.pop("description", None)
        return field_out(fields.create(acct, raw))

    @r.get("/v1/customMetadataFields")
    def list_fields(acct: Account) -> list[dict[str, Any]]:
        return [field_out(f) for f in fields.all(acct).values()]

    @r.patch("/v1/customMetadataFields/{field_id}")
    def update_field(acct: Account, field_id: str, body: FieldBody) -> dict[str, Any]:
        return field_out(fields.update(acct, field_id, label=body.label, schema=body.schema_))

    @r.delete("/v1/customMetadataFields/{field_id}")
    def delete_field(acct: Account, field_id: str) -> dict[str, Any]:
        if not fields.delete(acct, field_id):
            raise ApiError(404, f"custom metadata field not found: {field_id}")
        return {}

    return r
