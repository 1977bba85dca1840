"""Custom metadata fields, per account, and validation of values written to them.

A field is ``{name, label, schema: {type, selectOptions?, minValue?, maxValue?,
minLength?, maxLength?}}`` with ``type`` one of Text, Textarea, Number, Date,
Boolean, SingleSelect, MultiSelect. ``customMetadata`` written by ai-tasks is
checked against it; an unknown field or a bad value is a ``PermanentError``
whose message names the field.

All of an account's fields are one document (``<ns>:fields:<account>``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from worker.core.contract import format_validation_error
from worker.core.errors import ErrorCode, NotFound, PermanentError
from worker.store.kv import AccountDocs, Txn

FieldType = Literal["Text", "Textarea", "Number", "Date", "Boolean", "SingleSelect", "MultiSelect"]
MAX_FIELDS = 100


def _shown(v: Any) -> Any:
    return f"{v:g}" if isinstance(v, float) else v


class FieldSchema(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: FieldType
    selectOptions: list[str | int | float | bool] | None = None
    minValue: float | str | None = None
    maxValue: float | str | None = None
    minLength: int | None = Field(None, ge=0)
    maxLength: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _options(self) -> FieldSchema:
        selecting = self.type in ("SingleSelect", "MultiSelect")
        if selecting and not self.selectOptions:
            raise ValueError(f"selectOptions are required for {self.type}")
        if not selecting and self.selectOptions is not None:
            raise ValueError(f"selectOptions only apply to select fields, not {self.type}")
        low, high = self.minValue, self.maxValue
        if low is not None and high is not None and type(low) is type(high) and low > high:
            raise ValueError(f"minValue {_shown(low)} is above maxValue {_shown(high)}: no "
                             "value could pass")
        if (self.minLength is not None and self.maxLength is not None
                and self.minLength > self.maxLength):
            raise ValueError(f"minLength {self.minLength} is above maxLength "
                             f"{self.maxLength}: no text could pass")
        return self


class CustomField(BaseModel):
    name: str = Field(..., pattern=r"^[A-Za-z][A-Za-z0-9_\-]{0,63}$")
    label: str = Field(..., min_length=1, max_length=100)
    schema_: FieldSchema = Field(..., alias="schema")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def public(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def validate_value(f: CustomField, value: Any, where: str) -> Any:
    """The value to store, or ``PermanentError`` naming ``where`` (e.g. a task's field)."""
    s = f.schema_

    def bad(msg: str) -> PermanentError:
        return PermanentError(f"{where}: {msg} for custom metadata field {f.name!r}",
                              code=ErrorCode.INVALID_METADATA)

    if s.type in ("Text", "Textarea"):
        if not isinstance(value, str):
            raise bad("expected text")
        if s.minLength is not None and len(value) < s.minLength:
            raise bad(f"text shorter than {s.minLength}")
        if s.maxLength is not None and len(value) > s.maxLength:
            raise bad(f"text longer than {s.maxLength}")
        return value
    if s.type == "Number":
        n = _num(value)
        if n is None:
            raise bad("expected a number")
        if s.minValue is not None and n < float(s.minValue):
            raise bad(f"{value} is below {s.minValue}")
        if s.maxValue is not None and n > float(s.maxValue):
            raise bad(f"{value} is above {s.maxValue}")
        return value
    if s.type == "Date":
        try:
            day = dt.date.fromisoformat(str(value)[:10]) if isinstance(value, str) else None
        except ValueError:
            day = None
        if day is None:
            raise bad("expected an ISO date (YYYY-MM-DD)")
        return value
    if s.type == "Boolean":
        if not isinstance(value, bool):
            raise bad("expected true or false")
        return value
    options = s.selectOptions or []
    if s.type == "SingleSelect":
        if value not in options:
            raise bad(f"{value!r} is not one of its options")
        return value
    values = value if isinstance(value, list) else [value]
    wrong = [v for v in values if v not in options]
    if wrong:
        raise bad(f"{wrong!r} not among its options")
    return values


class FieldStore(AccountDocs):
    prefix = "fields"

    def all(self, account: str) -> dict[str, CustomField]:
        return {n: CustomField.model_validate(v) for n, v in self._doc(account).items()}

    def create(self, account: str, raw: dict[str, Any]) -> CustomField:
        try:
            field = CustomField.model_validate(raw)
        except ValidationError as e:
            raise PermanentError(format_validation_error(e)) from None
        key = self._key(account)

        def txn(cur: dict[str, Any]) -> Txn[None]:
            doc = cur[key] or {}
            if field.name in doc:
                raise PermanentError(f"name: field {field.name!r} already exists")
            if len(doc) >= MAX_FIELDS:
                raise PermanentError(f"an account has at most {MAX_FIELDS} fields")
            return Txn(writes={key: {**doc, field.name: field.public()}})

        self.kv.transact([key], txn)
        return field



    def update(self, account: str, name: str, *, label: str | None = None,
               schema: dict[str, Any] | None = None) -> CustomField:
        """Change a field's label or schema (its name is its id and stays)."""
        key = self._key(account)

        def txn(cur: dict[str, Any]) -> Txn[CustomField]:
            doc = cur[key] or {}
            if name not in doc:
                raise NotFound(f"custom metadata field not found: {name}")
            raw = {**doc[name], **({"label": label} if label is not None else {}),
                   **({"schema": schema} if schema is not None else {})}
            try:
                field = CustomField.model_validate(raw)
            except ValidationError as e:
                raise PermanentError(format_validation_error(e)) from None
            return Txn(writes={key: {**doc, name: field.public()}}, result=field)

        result = self.kv.transact([key], txn)
        assert result is not None
        return result
