"""One bounded JSON decoder for everything that reads JSON from outside: the intake stream's
entries and the API's form fields and bodies.

``json.loads`` recurses: a few thousand ``[`` raise ``RecursionError`` (a 500 and a traceback
in an API, an unnamed rejection in the intake). Here the size is checked first, then — only
when the text holds enough brackets to be too deep at all — the nesting is measured with
ijson's iterative parser (its C backend; no recursion, no tree built), so the error names
*where* it is too deep; only JSON within both limits reaches ``json.loads``.
"""

from __future__ import annotations

import json
from typing import Any

import ijson

from worker.core.errors import ErrorCode, PermanentError

MAX_DEPTH = 64


class JSONLimitError(PermanentError, ValueError):
    """JSON that is too large, too deep or malformed; the message starts with the field."""

    code = ErrorCode.INVALID_BODY


def _path(stack: list[Any], shown: int = 4) -> str:
    out = ""
    for part in stack[:shown]:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out + ("…" if len(stack) > shown else "")


def too_deep(data: bytes, max_depth: int) -> str | None:
    """Where ``data`` first nests deeper than ``max_depth`` (``.extensions[0].options``: the
    path of the container that goes past it; ``""`` for the top level), or None. Raises
    ``JSONLimitError`` when it is not JSON."""
    stack: list[Any] = []  # the path to the current value: keys and array indexes
    counters: list[int | None] = []  # per open container: the next index (arrays) or None
    try:
        for event, value in ijson.basic_parse(data):
            if event == "map_key":
                stack[-1] = value
                continue
            if counters and counters[-1] is not None:  # a value inside an array
                stack[-1] = counters[-1]
                counters[-1] += 1
            if event in ("start_map", "start_array"):
                if len(counters) + 1 > max_depth:
                    return _path(stack)
                stack.append(None)
                counters.append(0 if event == "start_array" else None)
            elif event in ("end_map", "end_array"):
                stack.pop()
                counters.pop()
    except ijson.JSONError as e:
        raise JSONLimitError(f"not valid JSON: {str(e).splitlines()[0][:200]}") from None
    return None


def loads(raw: bytes | str, field: str, *, max_bytes: int,
          max_depth: int = MAX_DEPTH) -> Any:
    """``raw`` decoded, or ``JSONLimitError`` naming ``field`` (and the path inside it)."""
    data = raw.encode() if isinstance(raw, str) else raw
    if len(data) > max_bytes:
        raise JSONLimitError(f"{field}: {len(data)} bytes, above the {max_bytes}-byte limit")
    # A scalar is depth 1; nesting past max_depth needs at least max_depth brackets.
    if data.count(b"[") + data.count(b"{") > max_depth:
        try:
            where = too_deep(data, max_depth)
        except JSONLimitError as e:
            raise JSONLimitError(f"{field}: {e}") from None
        if where is not None:
            raise JSONLimitError(f"{field}{where}: JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as e:
        raise JSONLimitError(f"{field}: not valid JSON: {str(e)[:200]}") from None


def top_level_string(data: bytes, key: str) -> str | None:
    """The string value of ``key`` at the top level of a JSON object, however deep or large
    its other values (iteratively, as ``too_deep``); None when ``data`` is not a JSON object,
    has no such string, or is malformed anywhere. The key may stand anywhere among the
    others, last too; the last occurrence wins, as in ``json.loads``."""
    depth, current, found = 0, None, None
    try:
        for event, value in ijson.basic_parse(data):
            if depth == 0 and event != "start_map":
                return None
            if depth == 1 and event != "end_map":  # the object's own close is no value
                if event == "map_key":
                    current = value
                    continue
                if current == key:
                    found = value if event == "string" else None
            if event in ("start_map", "start_array"):
                depth += 1
            elif event in ("end_map", "end_array"):
                depth -= 1
    except ijson.JSONError:
        return None
    return found


def field(name: str, raw: str | bytes, kind: type, max_bytes: int) -> Any:
    """A form field that holds JSON of ``kind`` (list or dict), decoded within the limits;
    ``JSONLimitError`` (a 400) naming the field otherwise."""
    value = loads(raw, name, max_bytes=max_bytes)
    if not isinstance(value, kind):
        raise JSONLimitError(f"{name}: must be a JSON {'array' if kind is list else 'object'}")
    return value
