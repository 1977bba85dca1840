"""Custom metadata fields: list, create, edit, delete (``/console/fields``) — a form per
field type (its limits, its options), the schema as JSON behind an "advanced" switch."""

from __future__ import annotations

import json
from typing import Any

from worker.api.console.common import number
from worker.api.console.crud import Crud
from worker.core.errors import PermanentError
from worker.runtime import Runtime

TYPES = ("Text", "Textarea", "Number", "Date", "Boolean", "SingleSelect", "MultiSelect")
LIMITS = ("minValue", "maxValue", "minLength", "maxLength")


def _get(runtime: Runtime, acct: str, name: str) -> dict[str, Any] | None:
    found = runtime.fields.all(acct).get(name)
    return found.public() if found is not None else None


def schema_of(form: dict[str, str]) -> dict[str, Any]:
    """The schema the form's inputs describe; a PermanentError names the input at fault."""
    kind = form.get("type") or "Text"
    if kind not in TYPES:
        raise PermanentError(f"type: {kind!r} is not one of {', '.join(TYPES)}")
    schema: dict[str, Any] = {"type": kind}
    for name in LIMITS:
        text = form.get(name, "").strip()
        if not text:
            continue
        if name in ("minLength", "maxLength"):
            if not text.isdigit():
                raise PermanentError(f"{name}: a whole number of characters")
            schema[name] = int(text)
        elif kind == "Number":
            value = number(text)
            if isinstance(value, str):
                raise PermanentError(f"{name}: {text!r} is not a number")
            schema[name] = value
        else:
            schema[name] = text  # a Date's ISO 8601 (the store checks it)
    options = [o.strip() for o in form.get("selectOptions", "").split(",") if o.strip()]
    if options:
        schema["selectOptions"] = options
    return schema


def _form_of(item: dict[str, Any]) -> dict[str, str]:
    schema = item["schema"]
    return {"name": item["name"], "label": item["label"], "schema": json.dumps(schema),
            "type": schema.get("type", "Text"), "advanced": "",
            "selectOptions": ", ".join(str(o) for o in schema.get("selectOptions") or []),
            **{k: "" if schema.get(k) is None else str(schema[k]) for k in LIMITS}}


FIELDS = Crud(
    path="/fields", template="fields.html", listed="fields", noun="custom metadata field",
    inputs=("name", "label", "schema", "type", *LIMITS, "selectOptions", "advanced"),
    required=("name", "label", "schema"),
    json_name="schema", blank={"name": "", "label": "", "schema": '{"type": "Text"}',
                               "type": "Text", "selectOptions": "", "advanced": "",
                               **dict.fromkeys(LIMITS, "")},
    items=lambda rt, acct: [f.public() for f in rt.fields.all(acct).values()],
    get=_get,
    create=lambda rt, acct, v: rt.fields.create(acct, {"name": v["name"], "label": v["label"],
                                                       "schema": v["schema"]}),
    update=lambda rt, acct, key, v: rt.fields.update(acct, key, label=v["label"],
                                                     schema=v["schema"]),
    delete=lambda rt, acct, key: rt.fields.delete(acct, key),
    form_of=_form_of,
    done=lambda form: f"Saved field {form['name']}.",
    build=schema_of,
)
router = FIELDS.router()
