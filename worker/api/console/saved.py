"""Saved extensions: list, create, edit, delete (``/console/saved``)."""

from __future__ import annotations

import json

from worker.api.console.crud import Crud

SAVED = Crud(
    path="/saved", template="saved.html", listed="saved", noun="saved extension",
    inputs=("name", "description", "config"), required=("name", "config"),
    json_name="config", blank={"name": "", "description": "", "config": ""},
    items=lambda rt, acct: rt.saved.list(acct),
    get=lambda rt, acct, key: rt.saved.get(acct, key),
    create=lambda rt, acct, v: rt.saved.create(acct, v["name"], v["description"],
                                               v["config"]),
    update=lambda rt, acct, key, v: rt.saved.update(acct, key, name=v["name"],
                                                    description=v["description"],
                                                    config=v["config"]),
    delete=lambda rt, acct, key: rt.saved.delete(acct, key),
    form_of=lambda item: {"name": item["name"], "description": item["description"],
                          "config": json.dumps(item["config"], indent=2)},
    done=lambda form: f"Saved {form['name']}.",
)
router = SAVED.router()
