"""Saved extensions: list, create, edit, delete (``/console/saved``) — a form per extension
kind (its parameters; an ai-tasks' tasks as JSON), the whole configuration as JSON behind an
"advanced" switch. The job contract checks what is saved and names the parameter."""

from __future__ import annotations

import json
from typing import Any

from worker.api.console.common import json_input, number
from worker.api.console.crud import Crud
from worker.core.errors import PermanentError

KINDS = ("remove-bg", "google-auto-tagging", "aws-auto-tagging", "ai-auto-description",
         "ai-tasks")
PARAMS = ("minConfidence", "maxTags", "bg_color", "add_shadow", "semitransparency", "tasks")


def config_of(form: dict[str, str]) -> dict[str, Any]:
    """The configuration the form's inputs describe (the contract then checks it)."""
    kind = form.get("kind") or ""
    if kind not in KINDS:
        raise PermanentError(f"kind: choose one of {', '.join(KINDS)}")
    config: dict[str, Any] = {"name": kind}
    if kind.endswith("-auto-tagging"):
        for name in ("minConfidence", "maxTags"):
            text = form.get(name, "").strip()
            if text:
                config[name] = number(text)
    elif kind == "remove-bg":
        options: dict[str, Any] = {"add_shadow": bool(form.get("add_shadow")),
                                   "semitransparency": bool(form.get("semitransparency"))}
        if form.get("bg_color", "").strip():
            options["bg_color"] = form["bg_color"].strip()
        config["options"] = options
    elif kind == "ai-tasks":
        config["tasks"] = json_input("tasks", form.get("tasks") or "[]")
    return config


def _form_of(item: dict[str, Any]) -> dict[str, str]:
    config = item["config"]
    options = config.get("options") or {}
    return {"name": item["name"], "description": item["description"], "advanced": "",
            "config": json.dumps(config, indent=2), "kind": config.get("name", ""),
            "minConfidence": str(config.get("minConfidence", "")),
            "maxTags": str(config.get("maxTags", "")),
            "bg_color": str(options.get("bg_color", "")),
            "add_shadow": "1" if options.get("add_shadow") else "",
            "semitransparency": "1" if options.get("semitransparency") else "",
            "tasks": json.dumps(config["tasks"], indent=2) if "tasks" in config else ""}


SAVED = Crud(
    path="/saved", template="saved.html", listed="saved", noun="saved extension",
    inputs=("name", "description", "config", "kind", *PARAMS, "advanced"),
    required=("name", "config"),
    json_name="config",
    blank={"name": "", "description": "", "config": "", "kind": "google-auto-tagging",
           "minConfidence": "70", "maxTags": "5", "bg_color": "", "add_shadow": "",
           "semitransparency": "", "tasks": "", "advanced": ""},
    items=lambda rt, acct: rt.saved.list(acct),
    get=lambda rt, acct, key: rt.saved.get(acct, key),
    create=lambda rt, acct, v: rt.saved.create(acct, v["name"], v["description"],
                                               v["config"]),
    update=lambda rt, acct, key, v: rt.saved.update(acct, key, name=v["name"],
                                                    description=v["description"],
                                                    config=v["config"]),
    delete=lambda rt, acct, key: rt.saved.delete(acct, key),
    form_of=_form_of,
    done=lambda form: f"Saved {form['name']}.",
    build=config_of,
)
router = SAVED.router()
