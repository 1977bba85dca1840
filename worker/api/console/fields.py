"""Custom metadata fields: list, create, edit, delete (``/console/fields``)."""

from __future__ import annotations

import json
from typing import Any

from worker.api.console.crud import Crud
from worker.runtime import Runtime


def _get(runtime: Runtime, acct: str, name: str) -> dict[str, Any] | None:
    found = runtime.fields.all(acct).get(name)
    return found.public() if found is not None else None


FIELDS = Crud(
    path="/fields", template="fields.html", listed="fields", noun="custom metadata field",
    inputs=("name", "label", "schema"), required=("name", "label", "schema"),
    json_name="schema", blank={"name": "", "label": "", "schema": '{"type": "Text"}'},
    items=lambda rt, acct: [f.public() for f in rt.fields.all(acct).values()],
    get=_get,
    create=lambda rt, acct, v: rt.fields.create(acct, {"name": v["name"], "label": v["label"],
                                                       "schema": v["schema"]}),
    update=lambda rt, acct, key, v: rt.fields.update(acct, key, label=v["label"],
                                                     schema=v["schema"]),
    delete=lambda rt, acct, key: rt.fields.delete(acct, key),
    form_of=lambda item: {"name": item["name"], "label": item["label"],
                          "schema": json.dumps(item["schema"])},
    done=lambda form: f"Saved field {form['name']}.",
)
router = FIELDS.router()
