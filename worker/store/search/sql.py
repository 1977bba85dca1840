"""A parsed query as parameterised SQL over the PostgreSQL store's columns (every value, a
custom field's key included, is a bound parameter), and the columns a record is kept in."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from worker.store.search.grammar import (
    _ARRAYS,
    SORTS,
    Bool,
    Node,
    _ai_tags,
    _folder_of,
    _format_of,
    _when,
)

# --- translation to SQL (PostgreSQL) -------------------------------------------------------


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def to_sql(node: Node, params: list[Any]) -> str:
    """The condition as SQL over ``extworker_docs``'s columns; values go to ``params``
    (``%s`` placeholders) — the text is only this module's own fragments."""
    if isinstance(node, Bool):
        joiner = " AND " if node.op == "AND" else " OR "
        return "(" + joiner.join(to_sql(p, params) for p in node.parts) + ")"
    f, op, v = node.field, node.op, node.value
    col = f.column

    def p(value: Any) -> str:
        params.append(value)
        return "%s"

    if f.kind == "meta":
        return _meta_sql(col, node.key or "", op, v, p)
    if f.kind == "list":
        arrays = _ARRAYS[col]
        if op in ("EXISTS", "NOT EXISTS"):
            return f"cardinality({arrays}) {'>' if op == 'EXISTS' else '='} 0"
        if op == "HAS":
            return (f"EXISTS (SELECT 1 FROM unnest({arrays}) AS t "
                    f"WHERE strpos(lower(t), lower({p(v)})) > 0)")
        wanted = list(v) if op in ("IN", "NOT IN") else [v]
        # Each array column has its own GIN index: && on each, OR-ed.
        hit = ("(tags && %s::text[] OR ai_tags && %s::text[])" if col == "tags"
               else f"{arrays} && %s::text[]")
        params.extend([wanted] * hit.count("%s"))
        return hit if op in ("=", "IN") else f"NOT {hit}"
    if f.kind == "folder" and op == ":":
        return f"path LIKE {p(_like_prefix(v))}"
    if op == ":":
        return f"{col} LIKE {p(_like_prefix(v))}"
    if op == "HAS":
        return f"strpos(lower({col}), lower({p(v)})) > 0"
    if op == "IN":
        return f"{col} = ANY({p(list(v))})"
    if op == "NOT IN":
        return f"{col} <> ALL({p(list(v))})"
    sql_op = {"=": "=", "NOT =": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}[op]
    return f"{col} {sql_op} {p(v)}"


_ROOT = "'{}'"  # the path of a JSON value's root, for #>>


def _meta_sql(col: str, key: str, op: str, v: Any, p: Callable[[Any], str]) -> str:
    from psycopg.types.json import Jsonb

    doc = "(value -> 'embeddedMetadata')" if col == "embedded" else "custom"

    def item() -> str:  # the field's value: a placeholder of its own each time it is used
        return f"({doc} -> {p(key)})"

    if op in ("EXISTS", "NOT EXISTS"):
        return f"coalesce(jsonb_typeof({item()}), 'null') {'<>' if op == 'EXISTS' else '='} 'null'"
    if op in ("=", "NOT =", "IN", "NOT IN"):
        wanted = list(v) if op in ("IN", "NOT IN") else [v]
        # {key: value} or {key: [value]} is contained in the document: equality for a
        # scalar, membership for a MultiSelect list (GIN jsonb_path_ops on `custom`).
        ors = []
        for w in wanted:
            ors.append(f"{doc} @> {p(Jsonb({key: w}))}")
            ors.append(f"{doc} @> {p(Jsonb({key: [w]}))}")
        hit = "(" + " OR ".join(ors) + ")"
        return hit if op in ("=", "IN") else f"NOT {hit}"
    if op in (":", "HAS"):
        def test(text: str) -> str:
            return (f"starts_with({text}, {p(v)})" if op == ":"
                    else f"strpos(lower({text}), lower({p(v)})) > 0")

        scalar = f"CASE jsonb_typeof({item()}) WHEN 'string' THEN {test(item() + ' #>> ' + _ROOT)}"
        listed = (f"WHEN 'array' THEN EXISTS (SELECT 1 FROM jsonb_array_elements({item()}) "
                  f"AS e WHERE jsonb_typeof(e) = 'string' AND {test('(e #>> ' + _ROOT + ')')})")
        return f"({scalar} {listed} ELSE false END)"
    if isinstance(v, bool):
        return "false"
    if isinstance(v, float):
        return (f"(CASE WHEN jsonb_typeof({item()}) = 'number' THEN ({item()} #>> '{{}}')::numeric "
                f"{op} {p(v)} ELSE false END)")
    return (f"(CASE WHEN jsonb_typeof({item()}) = 'string' THEN ({item()} #>> '{{}}') "
            f"COLLATE \"C\" {op} {p(v)} ELSE false END)")


def order_sql(sort: tuple[str, bool] | None) -> str:
    if sort is None:
        return "path COLLATE \"C\""
    what, desc = sort
    d = " DESC" if desc else ""
    return f"{SORTS[what][0]}{d}, path COLLATE \"C\"{d}"


# --- what the PostgreSQL store keeps in columns -----------------------------------------------


COLUMNS = ("account", "path", "folder", "name", "tags", "ai_tags", "custom", "type",
           "file_type", "mime", "format", "size", "width", "height", "created_at",
           "updated_at", "private", "published", "alpha")


@dataclass(frozen=True)
class FileColumns:
    """Which documents are file records (keys under ``prefix``) and their column values."""

    prefix: str

    def of(self, key: str, doc: Any) -> dict[str, Any] | None:
        """The columns of a file record (``None`` for any other document, and for one
        without a record's fields: it is stored, and found by key only)."""
        if not key.startswith(self.prefix) or not isinstance(doc, dict):
            return None
        from psycopg.types.json import Jsonb

        try:
            path, mime = str(doc["filePath"]), str(doc.get("mime") or "")
            return {
                "account": doc.get("accountId", "default"), "path": path,
                "folder": _folder_of(path), "name": str(doc.get("name") or ""),
                "tags": [str(t) for t in doc.get("tags") or []], "ai_tags": _ai_tags(doc),
                "custom": Jsonb(doc.get("customMetadata") or {}),
                "type": doc.get("type", "file"), "file_type": doc.get("fileType"),
                "mime": mime, "format": _format_of(mime), "size": doc.get("size"),
                "width": doc.get("width"), "height": doc.get("height"),
                "created_at": _when(doc.get("createdAt")),
                "updated_at": _when(doc.get("updatedAt")),
                "private": bool(doc.get("isPrivateFile")),
                "published": bool(doc.get("isPublished", True)),
                "alpha": bool(doc.get("hasAlpha")),
            }
        except (KeyError, TypeError, AttributeError):
            return None


