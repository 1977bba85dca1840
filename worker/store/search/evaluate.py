"""A parsed query evaluated in Python over records (the Redis and SQLite stores: a walk of
the account's records in path order), and their sort."""

from __future__ import annotations

from typing import Any

from worker.store.search.grammar import (
    SORTS,
    Bool,
    Node,
)

# --- evaluation in Python (Redis, SQLite) ------------------------------------------------


def _same(a: Any, b: Any) -> bool:
    """JSON equality: a boolean equals only a boolean, numbers compare as numbers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return float(a) == float(b)
    return type(a) is type(b) and a == b


def _compare(op: str, a: Any, b: Any) -> bool:
    if op == "<":
        return bool(a < b)
    if op == "<=":
        return bool(a <= b)
    if op == ">":
        return bool(a > b)
    return bool(a >= b)


def _meta_match(op: str, stored: Any, present: bool, value: Any) -> bool:
    items = stored if isinstance(stored, list) else [stored]
    if op == "EXISTS":
        return present
    if op == "NOT EXISTS":
        return not present
    if op in ("=", "NOT =", "IN", "NOT IN"):
        wanted = value if op in ("IN", "NOT IN") else (value,)
        hit = present and any(_same(s, w) for s in items for w in wanted)
        return hit if op in ("=", "IN") else not hit
    if not present:
        return False
    if op == ":":
        return any(isinstance(s, str) and s.startswith(value) for s in items)
    if op == "HAS":
        return any(isinstance(s, str) and value.lower() in s.lower() for s in items)
    # <, <=, >, >=: on a scalar of the value's type
    if isinstance(stored, list) or isinstance(stored, bool) or isinstance(value, bool):
        return False
    if isinstance(value, float):
        return isinstance(stored, int | float) and _compare(op, float(stored), value)
    return isinstance(stored, str) and _compare(op, stored, value)


def matches(node: Node, doc: dict[str, Any]) -> bool:
    """Whether the stored record ``doc`` satisfies the query."""
    if isinstance(node, Bool):
        parts = (matches(p, doc) for p in node.parts)
        return all(parts) if node.op == "AND" else any(parts)
    f, op, v = node.field, node.op, node.value
    if f.kind == "meta":
        meta = f.read(doc)
        present = node.key in meta and meta[node.key] is not None
        return _meta_match(op, meta.get(node.key), present, v)
    x = f.read(doc)
    if f.kind == "list":
        if op == "EXISTS":
            return bool(x)
        if op == "NOT EXISTS":
            return not x
        if op == "HAS":
            return any(v.lower() in t.lower() for t in x)
        wanted = v if op in ("IN", "NOT IN") else (v,)
        hit = any(w in x for w in wanted)
        return hit if op in ("=", "IN") else not hit
    if x is None:  # width/height of a non-image: matches nothing (SQL's NULL)
        return False
    if op == "=":
        return _same(x, v) if f.kind in ("number", "bool") else x == v
    if op == "NOT =":
        return not (_same(x, v) if f.kind in ("number", "bool") else x == v)
    if op == "IN":
        return any(_same(x, w) if f.kind == "number" else x == w for w in v)
    if op == "NOT IN":
        return not any(_same(x, w) if f.kind == "number" else x == w for w in v)
    if op == ":":
        # text: begins with; a folder: the file is in it or in any subfolder
        return x.startswith(v) if f.kind == "text" else doc["filePath"].startswith(v)
    if op == "HAS":
        return v.lower() in x.lower()
    return _compare(op, x, v)


def sort_docs(docs: list[dict[str, Any]], sort: tuple[str, bool] | None
              ) -> list[dict[str, Any]]:
    """Docs in the order a listing shows them (ties: path order)."""
    docs = sorted(docs, key=lambda d: d["filePath"].encode())
    if sort is None:
        return docs
    what, desc = sort
    key = SORTS[what][1]
    return sorted(docs, key=lambda d: (key(d), d["filePath"].encode()), reverse=desc)


