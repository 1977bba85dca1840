"""MkDocs hook: the settings page's table, generated from ``worker.core.settings.Settings``
at build time (the model's field descriptions are the only copy)."""

from __future__ import annotations

import json
from typing import Any

from pydantic_core import PydanticUndefined

MARKER = "<!-- settings: generated from worker.core.settings.Settings by docs/hooks/settings.py -->"


def _default(field: Any) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
    elif field.default is PydanticUndefined:
        return "(required)"
    else:
        value = field.default
    if isinstance(value, dict | list):
        return f"`{json.dumps(value, sort_keys=True)}`"
    return f"`{value}`"


def settings_table() -> str:
    from worker.core.settings import Settings

    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        text = (field.description or "").replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `EXTWORKER_{name.upper()}` | {_default(field)} | {text} |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    if page.file.src_uri == "settings.md":
        if MARKER not in markdown:
            raise ValueError("docs/settings.md lost its generated-table marker")
        return markdown.replace(MARKER, settings_table())
    return markdown
