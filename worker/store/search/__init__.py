"""Searching an account's files: the media API's ``searchQuery`` grammar, parsed once and
then either run over records in Python (the Redis and SQLite stores: a scan of the account)
or translated to parameterised SQL over the PostgreSQL store's columns (indexed).

The grammar (the hosted list API's Lucene-like language)::

    query  := or
    or     := and ("OR" and)*
    and    := term ("AND" term)*
    term   := "(" or ")" | field op value | field "IN" list | field "NOT" "IN" list
            | field "NOT" "=" value | field "EXISTS" | field "NOT" "EXISTS"
    op     := "=" | ":" | "<" | "<=" | ">" | ">=" | "HAS"
    value  := "string" | number | true | false
    list   := "[" value ("," value)* "]"

A field is a bare word or a quoted string (``"customMetadata.brand"``). Words are case
insensitive (``and``, ``in``); field names are not. What each field means, and which
operators it takes, is ``FIELDS``: ``=`` is equality, ``:`` begins-with (for ``path``: in
the folder or any subfolder), ``HAS`` a case-insensitive substring, ``IN`` any of the list.
Dates take ISO 8601 (``"2026-01-31"``, ``"2026-01-31T12:00:00Z"``) or a span back from
now: ``"30m"``, ``"24h"``, ``"7d"``, ``"2w"``, ``"1y"`` (``createdAt > "7d"``: the last
seven days). Sizes take bytes or ``"500kb"``, ``"2mb"``, ``"1gb"``.

Both evaluations follow one definition: the query tables in ``tests/store/test_search.py`` run
on every backend and must return the same ids. A bad query is a ``QueryError`` naming the
token and its position; the SQL never contains text from the query (every value, field
key included, is a bound parameter).

The package: ``grammar`` (the parser, the fields, sorting), ``evaluate`` (the tree run in
Python), ``sql`` (the tree as PostgreSQL). Its names are all here.
"""

from __future__ import annotations

from worker.store.search.evaluate import (
    matches,
    sort_docs,
)
from worker.store.search.grammar import (
    FIELDS,
    MAX_QUERY,
    MAX_TERMS,
    SORTS,
    TAGS_PARAM,
    Bool,
    Cond,
    FieldSpec,
    Kind,
    Node,
    QueryError,
    Searchable,
    check_sort,
    iso,
    normalise_folder,
    parse,
    scan_filter,
)
from worker.store.search.sql import (
    COLUMNS,
    FileColumns,
    order_sql,
    to_sql,
)

__all__ = [
    "Bool", "COLUMNS", "Cond", "FIELDS", "FieldSpec", "FileColumns", "Kind", "MAX_QUERY",
    "MAX_TERMS", "Node", "QueryError", "SORTS", "Searchable", "TAGS_PARAM", "check_sort",
    "iso", "matches", "normalise_folder", "order_sql", "parse", "scan_filter", "sort_docs",
    "to_sql",
]
