"""The ``searchQuery`` grammar: tokens, the parser into a tree (``Cond``/``Bool``), the
fields (``FIELDS``), dates, sizes and sorting (see the package's doc for the language)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol, runtime_checkable

from worker.core.errors import ErrorCode, PermanentError

# --- the grammar ---------------------------------------------------------------------


class QueryError(PermanentError):
    def __init__(self, problem: str, token: str | None, pos: int) -> None:
        where = f"at position {pos}" + (f" ({token!r})" if token is not None else "")
        super().__init__(f"searchQuery: {problem} {where}", code=ErrorCode.INVALID_QUERY)
        self.token, self.pos = token, pos


Kind = Literal["text", "folder", "list", "number", "date", "bool", "meta"]
_OPS: dict[str, frozenset[str]] = {
    "text": frozenset({"=", ":", "IN", "NOT IN", "NOT =", "HAS"}),
    "folder": frozenset({"=", ":", "IN", "NOT IN", "NOT ="}),
    "list": frozenset({"=", "IN", "NOT IN", "NOT =", "HAS", "EXISTS", "NOT EXISTS"}),
    "number": frozenset({"=", "<", "<=", ">", ">=", "IN", "NOT IN", "NOT ="}),
    "date": frozenset({"<", "<=", ">", ">="}),
    "bool": frozenset({"=", "NOT ="}),
    "meta": frozenset({"=", ":", "<", "<=", ">", ">=", "IN", "NOT IN", "NOT =", "HAS",
                       "EXISTS", "NOT EXISTS"}),
}


@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: Kind
    column: str  # the PostgreSQL column (or JSONB document, for "meta")
    read: Callable[[dict[str, Any]], Any]  # the value from a stored record


def _folder_of(path: str) -> str:
    return path.rsplit("/", 1)[0] + "/"


def _format_of(mime: str) -> str:
    sub = mime.split("/", 1)[-1].split(";")[0].strip().lower()
    return {"jpeg": "jpg", "svg+xml": "svg", "x-icon": "ico", "vnd.microsoft.icon": "ico"
            }.get(sub, sub)


def _all_tags(doc: dict[str, Any]) -> list[str]:
    return [*(doc.get("tags") or []), *_ai_tags(doc)]


def _ai_tags(doc: dict[str, Any]) -> list[str]:
    return [t["name"] for t in doc.get("AITags") or [] if t.get("name")]


FIELDS: dict[str, FieldSpec] = {f.name: f for f in [
    FieldSpec("name", "text", "name", lambda d: d["name"]),
    FieldSpec("filePath", "text", "path", lambda d: d["filePath"]),
    FieldSpec("path", "folder", "folder", lambda d: _folder_of(d["filePath"])),
    # `tags` matches the file's tags and its AI tags' names (as the hosted API does).
    FieldSpec("tags", "list", "tags", _all_tags),
    FieldSpec("AITags.name", "list", "ai_tags", _ai_tags),
    FieldSpec("type", "text", "type", lambda d: d.get("type", "file")),
    FieldSpec("fileType", "text", "file_type", lambda d: d["fileType"]),
    FieldSpec("mime", "text", "mime", lambda d: d["mime"]),
    FieldSpec("format", "text", "format", lambda d: _format_of(d["mime"])),
    FieldSpec("size", "number", "size", lambda d: d["size"]),
    FieldSpec("width", "number", "width", lambda d: d.get("width")),
    FieldSpec("height", "number", "height", lambda d: d.get("height")),
    FieldSpec("createdAt", "date", "created_at", lambda d: _when(d.get("createdAt"))),
    FieldSpec("updatedAt", "date", "updated_at", lambda d: _when(d.get("updatedAt"))),
    FieldSpec("private", "bool", "private", lambda d: bool(d.get("isPrivateFile"))),
    FieldSpec("published", "bool", "published", lambda d: bool(d.get("isPublished", True))),
    FieldSpec("transparency", "bool", "alpha", lambda d: bool(d.get("hasAlpha"))),
]}
_META = {"customMetadata": "custom", "embeddedMetadata": "embedded"}
# The list API's own `tags` parameter: the file's tags only (any of them).
TAGS_PARAM = FieldSpec("tags", "list", "plain_tags", lambda d: d.get("tags") or [])
_ARRAYS = {"tags": "(tags || ai_tags)", "ai_tags": "ai_tags", "plain_tags": "tags"}


@dataclass(frozen=True)
class Cond:
    field: FieldSpec
    op: str
    value: Any  # normalised: str, float, bool, datetime, or a tuple of those
    key: str | None = None  # for customMetadata.<key> / embeddedMetadata.<key>


@dataclass(frozen=True)
class Bool:
    op: Literal["AND", "OR"]
    parts: tuple[Node, ...]


Node = Cond | Bool

_TOKEN = re.compile(r"""
    \s*(?:
      (?P<str>"(?:[^"\\]|\\.)*")
    | (?P<num>-?\d+(?:\.\d+)?(?![\w.]))
    | (?P<op><=|>=|[=:<>\[\](),])
    | (?P<word>[A-Za-z_][\w.\-]*)
    | (?P<bad>\S)
    )""", re.VERBOSE)
_SPAN = re.compile(r"^(\d+)(m|h|d|w|y)$")
_SPAN_UNIT = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1),
              "w": timedelta(weeks=1), "y": timedelta(days=365)}
_BYTES = re.compile(r"^(\d+(?:\.\d+)?)\s*(b|kb|mb|gb)$", re.IGNORECASE)
_BYTE_UNIT = {"b": 1, "kb": 1024, "mb": 1024 ** 2, "gb": 1024 ** 3}
_KEYWORDS = {"AND", "OR", "IN", "NOT", "HAS", "EXISTS", "TRUE", "FALSE"}
MAX_QUERY = 4000
MAX_TERMS = 100


@dataclass
class _Tok:
    kind: str  # str, num, op, word, end
    text: str
    value: Any
    pos: int


def _tokens(q: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while True:
        m = _TOKEN.match(q, pos)
        if m is None or m.end() == pos:  # only whitespace left
            break
        kind = m.lastgroup or "bad"
        text = m.group(kind)
        start = m.start(kind)
        if kind == "bad":
            raise QueryError("unexpected character", text, start)
        if kind == "str":
            value: Any = re.sub(r"\\(.)", r"\1", text[1:-1])
        elif kind == "num":
            value = float(text)
        else:
            value = text
        out.append(_Tok(kind, text, value, start))
        pos = m.end()
    out.append(_Tok("end", "", None, len(q)))
    return out


def parse(query: str, now: datetime | None = None) -> Node:
    """The query's tree; ``QueryError`` naming the first token that does not fit."""
    if len(query) > MAX_QUERY:
        raise QueryError(f"longer than {MAX_QUERY} characters", None, MAX_QUERY)
    p = _Parser(_tokens(query), now or datetime.now(UTC))
    if p.peek().kind == "end":
        raise QueryError("empty query", None, 0)
    node = p.or_()
    tok = p.peek()
    if tok.kind != "end":
        raise QueryError("expected AND, OR or the end", tok.text, tok.pos)
    return node


class _Parser:
    def __init__(self, tokens: list[_Tok], now: datetime) -> None:
        self.toks, self.i, self.now, self.terms = tokens, 0, now, 0

    def peek(self, ahead: int = 0) -> _Tok:
        return self.toks[min(self.i + ahead, len(self.toks) - 1)]

    def take(self) -> _Tok:
        tok = self.peek()
        self.i += 1
        return tok

    def word(self, tok: _Tok, *words: str) -> bool:
        return tok.kind == "word" and tok.text.upper() in words

    def or_(self) -> Node:
        parts = [self.and_()]
        while self.word(self.peek(), "OR"):
            self.take()
            parts.append(self.and_())
        return parts[0] if len(parts) == 1 else Bool("OR", tuple(parts))

    def and_(self) -> Node:
        parts = [self.term()]
        while self.word(self.peek(), "AND"):
            self.take()
            parts.append(self.term())
        return parts[0] if len(parts) == 1 else Bool("AND", tuple(parts))

    def term(self) -> Node:
        tok = self.take()
        if tok.kind == "op" and tok.text == "(":
            node = self.or_()
            close = self.take()
            if close.text != ")" or close.kind != "op":
                raise QueryError("expected ')'", close.text or None, close.pos)
            return node
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise QueryError(f"more than {MAX_TERMS} conditions", tok.text, tok.pos)
        field, key = self.field(tok)
        op_tok = self.take()
        op = self.operator(op_tok)
        if op not in _OPS[field.kind]:
            raise QueryError(f"{field.name if key is None else field.name + '.' + key} does "
                             f"not take {op}", op_tok.text or None, op_tok.pos)
        if op in ("EXISTS", "NOT EXISTS"):
            return Cond(field, op, None, key)
        if op in ("IN", "NOT IN"):
            values = tuple(self.value(field, op, t) for t in self.list_())
            return Cond(field, op, values, key)
        return Cond(field, op, self.value(field, op, self.take()), key)

    def field(self, tok: _Tok) -> tuple[FieldSpec, str | None]:
        if tok.kind not in ("word", "str") or (tok.kind == "word"
                                                and tok.text.upper() in _KEYWORDS):
            raise QueryError("expected a field name", tok.text or None, tok.pos)
        name = str(tok.value)
        head, _, rest = name.partition(".")
        if head in _META:
            if not rest:
                raise QueryError(f"{head}: name the field ({head}.<name>)", tok.text, tok.pos)
            meta = FieldSpec(head, "meta", _META[head],
                             lambda d, h=head: d.get(h) or {})
            return meta, rest
        spec = FIELDS.get(name)
        if spec is None:
            raise QueryError(f"unknown field (one of {', '.join(FIELDS)}, customMetadata.<name>, "
                             "embeddedMetadata.<name>)", tok.text, tok.pos)
        return spec, None

    def operator(self, tok: _Tok) -> str:
        if tok.kind == "op" and tok.text in ("=", ":", "<", "<=", ">", ">="):
            return tok.text
        if self.word(tok, "IN", "HAS", "EXISTS"):
            return tok.text.upper()
        if self.word(tok, "NOT"):
            nxt = self.take()
            if self.word(nxt, "IN", "EXISTS"):
                return "NOT " + nxt.text.upper()
            if nxt.kind == "op" and nxt.text == "=":
                return "NOT ="
            raise QueryError("expected IN, EXISTS or = after NOT", nxt.text or None, nxt.pos)
        raise QueryError("expected an operator (=, :, <, <=, >, >=, IN, NOT IN, NOT =, HAS, "
                         "EXISTS, NOT EXISTS)", tok.text or None, tok.pos)

    def list_(self) -> list[_Tok]:
        open_ = self.take()
        if open_.text != "[" or open_.kind != "op":
            raise QueryError("expected '[' (a list)", open_.text or None, open_.pos)
        items = [self.take()]
        while self.peek().kind == "op" and self.peek().text == ",":
            self.take()
            items.append(self.take())
        close = self.take()
        if close.text != "]" or close.kind != "op":
            raise QueryError("expected ',' or ']'", close.text or None, close.pos)
        return items

    def value(self, field: FieldSpec, op: str, tok: _Tok) -> Any:
        def bad(what: str) -> QueryError:
            return QueryError(f"{field.name}: {what}", tok.text or None, tok.pos)

        scalar: Any
        if tok.kind == "str":
            scalar = tok.value
        elif tok.kind == "num":
            scalar = tok.value
        elif self.word(tok, "TRUE", "FALSE"):
            scalar = tok.text.upper() == "TRUE"
        else:
            raise bad("expected a value (a \"string\", a number, true or false)")
        kind = field.kind
        if kind in ("text", "folder", "list"):
            if not isinstance(scalar, str):
                raise bad("expected a \"string\"")
            if kind == "folder":
                return "/" + scalar.strip("/") + "/" if scalar.strip("/") else "/"
            return scalar
        if kind == "number":
            if isinstance(scalar, float):
                return scalar
            m = _BYTES.match(scalar) if isinstance(scalar, str) else None
            if m is None:
                raise bad("expected a number (or a size: \"500kb\", \"2mb\")")
            return float(m.group(1)) * _BYTE_UNIT[m.group(2).lower()]
        if kind == "date":
            if not isinstance(scalar, str):
                raise bad("expected a date: \"2026-01-31\", \"2026-01-31T12:00:00Z\" or a "
                          "span back from now (\"7d\")")
            try:
                return self.instant(scalar)
            except ValueError:
                raise bad("expected a date: \"2026-01-31\", \"2026-01-31T12:00:00Z\" or a "
                          "span back from now (\"7d\")") from None
        if kind == "bool":
            if isinstance(scalar, str) and scalar.lower() in ("true", "false"):
                return scalar.lower() == "true"
            if not isinstance(scalar, bool):
                raise bad("expected true or false")
            return scalar
        # meta: a string, number or boolean as given; a span or a date becomes the ISO
        # text the Date fields store, for <, > on dates.
        if isinstance(scalar, str) and op in ("<", "<=", ">", ">=") and _SPAN.match(scalar):
            return iso(self.instant(scalar))
        return scalar

    def instant(self, text: str) -> datetime:
        m = _SPAN.match(text)
        if m:
            return self.now - int(m.group(1)) * _SPAN_UNIT[m.group(2)]
        return _instant(text)


def _instant(text: str) -> datetime:
    t = datetime.fromisoformat(text)
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _when(text: Any) -> datetime | None:
    """A stored record's date, or None where it holds none that parses."""
    try:
        return _instant(text)
    except (TypeError, ValueError):
        return None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --- sorting ------------------------------------------------------------------------

SORTS: dict[str, tuple[str, Callable[[dict[str, Any]], Any]]] = {
    "NAME": ("name COLLATE \"C\"", lambda d: d["name"]),
    "CREATED": ("coalesce(created_at, 'epoch')", lambda d: _when(d.get("createdAt")) or _EPOCH),
    "UPDATED": ("coalesce(updated_at, 'epoch')", lambda d: _when(d.get("updatedAt")) or _EPOCH),
    "HEIGHT": ("coalesce(height, -1)", lambda d: d.get("height") or -1),
    "WIDTH": ("coalesce(width, -1)", lambda d: d.get("width") or -1),
    "SIZE": ("size", lambda d: d["size"]),
}


def check_sort(sort: str | None) -> tuple[str, bool] | None:
    """``(field, descending)`` of a ``sort`` value; ``None`` (path order) for none or
    RELEVANCE (no ranking here: every match is equally relevant)."""
    if not sort:
        return None
    direction, _, what = sort.upper().partition("_")
    if direction not in ("ASC", "DESC") or not what:
        raise PermanentError(f"sort: {sort!r} is not ASC_<field> or DESC_<field>",
                             code=ErrorCode.INVALID_QUERY)
    if what == "RELEVANCE":
        return None
    if what not in SORTS:
        raise PermanentError(f"sort: {sort!r} is not supported (ASC_/DESC_ with one of "
                             f"{', '.join(SORTS)}, RELEVANCE)", code=ErrorCode.INVALID_QUERY)
    return what, direction == "DESC"



def normalise_folder(path: str) -> str:
    """``products`` / ``/products`` / ``/products/`` → ``/products/`` (``/``: everything)."""
    inner = path.strip("/")
    return "/" + inner + "/" if inner else ""


@runtime_checkable
class Searchable(Protocol):
    """A store that answers listings itself (``PostgresKV``)."""

    def select_files(self, account: str, where: str | None, params: list[Any], order: str,
                     skip: int, limit: int) -> list[dict[str, Any]]: ...


def scan_filter(query: Node | None, extra: Iterable[Node]) -> Node | None:
    """The query AND the listing's own filters (path, tags, name, fileType)."""
    parts = [*([query] if query is not None else []), *extra]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else Bool("AND", tuple(parts))

