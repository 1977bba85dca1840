"""The job contract: what an upload service publishes, as pydantic v2 models.

``Job`` is the published contract (``worker/schema/job.schema.json`` is
generated from it; ``tests/core/test_contract.py`` fails when the file is stale).
Workers parse a message in two steps so one bad extension never sinks the
others: ``JobEnvelope`` validates the job-level fields and keeps each
extension as a raw object, then ``parse_extension`` validates each one on its
own and returns either a typed model or a message that names the field.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Collection, Mapping
from typing import Annotated, Any, ClassVar, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

ID_PATTERN = r"^[A-Za-z0-9._:\-]{1,128}$"


class StrictParams(BaseModel):
    """The base of params models: unknown keys are errors (a typo in a param must name
    itself, not vanish); fields may be given by name or alias.

    A params model whose errors pass through a discriminated union lists the union's
    tags in ``union_tags``: pydantic puts the tag in an error's path, messages leave it out.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    union_tags: ClassVar[frozenset[str]] = frozenset()


_Strict = StrictParams


# --- what every extension's params model builds on ---------------------------------


MAX_VALUE_DEPTH = 8
MAX_VALUE_CHARS = 10_000


def json_depth(value: Any, stop_after: int) -> int:
    """Nesting depth of parsed JSON (a scalar is 1), without recursion; stops counting
    once past ``stop_after``."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > stop_after:
            break
        if isinstance(item, dict):
            stack.extend((x, depth + 1) for x in item.values())
        elif isinstance(item, list):
            stack.extend((x, depth + 1) for x in item)
    return deepest


def bounded_value(v: Any) -> Any:
    """A metadata value small enough for a record: nested at most 8 levels, 10,000
    characters of JSON (a message can never inflate a record)."""
    if json_depth(v, MAX_VALUE_DEPTH) > MAX_VALUE_DEPTH:
        raise ValueError(f"nested deeper than {MAX_VALUE_DEPTH} levels")
    if len(json.dumps(v, default=str)) > MAX_VALUE_CHARS:
        raise ValueError(f"more than {MAX_VALUE_CHARS} characters of JSON")
    return v


class SavedExtensionRef(_Strict):
    name: Literal["saved-extension"]
    id: str = Field(..., pattern=ID_PATTERN)



# --- uploads and updates ------------------------------------------------------

MAX_TAG_CHARS = 500  # the upload API: all tags together
MAX_FOLDER_DEPTH = 50
MAX_DESCRIPTION = 4096
_COORDS = re.compile(r"^\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*$")


def parse_tags(value: list[str] | str | None) -> list[str] | None:
    """Tags as the upload API takes them: an array or one comma-separated string; at most
    500 characters in all, no ``%``. Trimmed, empties dropped, duplicates dropped."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else value
    tags = list(dict.fromkeys(t.strip() for t in items if t.strip()))
    if sum(len(t) for t in tags) > MAX_TAG_CHARS:
        raise ValueError(f"at most {MAX_TAG_CHARS} characters of tags in all")
    if any("%" in t for t in tags):
        raise ValueError("tags must not contain '%'")
    return tags


def parse_coordinates(value: str | None) -> str | None:
    """``x,y,width,height`` in pixels (width and height above 0); ``""`` clears them."""
    if value is None or value == "":
        return value
    m = _COORDS.match(value)
    if m is None:
        raise ValueError(f"expected x,y,width,height in whole pixels, got {value[:60]!r}")
    x, y, w, h = (int(g) for g in m.groups())
    if w == 0 or h == 0:
        raise ValueError("width and height must be above 0")
    return f"{x},{y},{w},{h}"


class _FileFields(_Strict):
    """Fields an upload and an update share, with the upload API's rules."""

    tags: list[str] | str | None = Field(
        None, description="An array, or one comma-separated string; 500 characters in all; "
        "no `%`.")
    customCoordinates: str | None = Field(
        None, description="`x,y,width,height`: an area of interest, within the image.")
    customMetadata: dict[str, Any] | None = Field(
        None, description="Values of the account's custom metadata fields (validated "
        "against them).")
    description: str | None = Field(None, max_length=MAX_DESCRIPTION)

    _tags = field_validator("tags")(classmethod(lambda cls, v: parse_tags(v)))
    _coords = field_validator("customCoordinates")(
        classmethod(lambda cls, v: parse_coordinates(v)))


class UploadFields(_FileFields):
    """What an upload says about its file: the upload API's fields, without the bytes."""

    fileName: str = Field(
        ..., min_length=1, max_length=1024, description="Characters other than letters, "
        "digits, `.` and `-` become `_`.")
    folder: str = Field(
        "/", max_length=4096, description="Created on demand; at most 50 levels; characters "
        "other than letters, digits, `/`, `_` and `-` become `_`.")
    useUniqueFileName: bool = Field(True, description="Add a unique suffix to the name.")
    isPrivateFile: bool = False
    isPublished: bool = True
    overwriteFile: bool = Field(
        True, description="false (with useUniqueFileName false): an existing file at the "
        "path rejects the upload.")
    overwriteAITags: bool = Field(True, description="Overwriting: drop the file's AITags.")
    overwriteTags: bool = Field(
        True, description="Overwriting without `tags`: drop the file's tags.")
    overwriteCustomMetadata: bool = Field(
        True, description="Overwriting without `customMetadata`: drop the file's values.")

    @model_validator(mode="after")
    def _depth(self) -> UploadFields:
        if len([level for level in self.folder.split("/") if level]) > MAX_FOLDER_DEPTH:
            raise ValueError(f"folder: at most {MAX_FOLDER_DEPTH} levels")
        return self


class Upload(UploadFields):
    """A new file, or a new version of the file at the same path (``origin: upload``)."""

    url: HttpUrl | None = Field(
        None, description="Fetched by the worker through the egress guard: headers within "
        "8 s, the whole body within EXTWORKER_FETCH_DEADLINE_S, size-capped, no redirects.")
    blobKey: str | None = Field(
        None, min_length=1, max_length=1024, description="A key the upload service wrote "
        "into the shared blob storage (EXTWORKER_BLOB_URL); relative, never outside it.")
    base64: str | None = Field(
        None, description="The bytes, base64 (or a `data:` URI); small files only "
        "(EXTWORKER_UPLOAD_BASE64_MAX_BYTES).")

    @model_validator(mode="after")
    def _one_source(self) -> Upload:
        given = [n for n in ("url", "blobKey", "base64") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("exactly one of url, blobKey or base64 is required"
                             + (f" (got {', '.join(given)})" if given else ""))
        return self


class Update(_FileFields):
    """Update File Details (``origin: update``): a field present changes, one absent stays.

    ``tags`` replaces the tags (``null`` or ``[]`` removes them); ``customMetadata`` sets
    the keys given, and a key given as ``null`` is removed; ``customCoordinates``
    replaces them (``null`` or ``""`` removes them); ``description`` replaces it
    (``null`` removes it)."""


# --- the job ----------------------------------------------------------------


class _JobFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    jobId: str = Field(
        default_factory=lambda: uuid.uuid4().hex,
        pattern=ID_PATTERN,
        description="Idempotency key chosen by the client; generated when absent.",
    )
    accountId: str = Field("default", pattern=ID_PATTERN, description="Who is metered.")
    fileId: str | None = Field(
        None, pattern=ID_PATTERN, description="The file record to work on (absent when "
        "`upload` creates it; the job document records the one it created).")
    webhookUrl: HttpUrl | None = Field(None, description="Told once per extension at its end.")
    removeAITags: list[str] | Literal["all"] | None = Field(
        None, description="AITags to remove (names, or `all`) before the extensions run."
    )
    origin: Literal["upload", "update"] = "upload"
    upload: Upload | None = Field(None, description="The file itself (origin `upload`).")
    update: Update | None = Field(None, description="Fields to change (origin `update`).")
    dryRun: bool = Field(False, description="Run everything, charge no units.")
    syncUntil: float | None = Field(
        None, description="Set by a waiting client (epoch seconds): extensions final before "
        "this are reported to it and get no webhook.",
    )
    syncExtensions: list[Annotated[str, Field(max_length=128)]] | None = Field(
        None, max_length=64, description="With `syncUntil`: the extensions (by handler name) "
        "the waiting client may be answered for; every other one always gets its webhook "
        "(absent: all of them). The HTTP API names the ones the hosted service tries "
        "synchronously (auto-tagging).",
    )

    @model_validator(mode="after")
    def _target(self) -> _JobFields:
        if self.upload is not None:
            if self.origin != "upload":
                raise ValueError("upload: only with origin 'upload'")
            if self.fileId is not None:
                raise ValueError("fileId: not allowed with upload (the upload creates or "
                                 "chooses the file by its path)")
        elif self.fileId is None:
            raise ValueError("fileId: field required (or an upload object)")
        if self.update is not None and self.origin != "update":
            raise ValueError("update: only with origin 'update'")
        return self


def _need_work(job: Any) -> Any:
    if not job.extensions and job.upload is None and job.update is None:
        raise ValueError("extensions: at least one extension (or an upload or update)")
    return job


class JobEnvelope(_JobFields):
    """What a worker validates first: job fields strict, extensions still raw."""

    extensions: list[Any] = Field(default_factory=list, max_length=20)
    _work = model_validator(mode="after")(_need_work)


def format_validation_error(err: ValidationError, prefix: str = "",
                            union_tags: Collection[str] = ()) -> str:
    """``options.bg_color: not a colour: 'x'`` — every problem, each naming its field."""
    parts = []
    for e in err.errors(include_url=False):
        loc = prefix
        for p in e["loc"]:
            if p in union_tags:  # pydantic puts the union member's tag in the path
                continue
            if isinstance(p, int):
                loc += f"[{p}]"
            elif not re.fullmatch(r"[A-Za-z_][\w-]*", str(p)):  # odd names, quoted
                loc += f"[{json.dumps(str(p))}]"
            else:
                loc += f".{p}" if loc else str(p)
        msg = e["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


def extension_label(raw: Any, index: int, known: frozenset[str] | None = None) -> str:
    """The status key of a raw extension: its name when it has one — and, given ``known``,
    only a known one, so a publisher's invented names never become keys of a record."""
    if isinstance(raw, dict) and isinstance(raw.get("name"), str) and raw["name"]:
        if known is None or raw["name"] in known:
            return raw["name"][:64]
    return f"extensions[{index}]"


def shown(value: Any, limit: int = 64) -> str:
    """``repr`` of a user's value for an error message, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…'"


def _named(model: type[BaseModel], name: str) -> bool:
    field = model.model_fields.get("name")
    return field is not None and get_origin(field.annotation) is Literal and get_args(
        field.annotation) == (name,)


class Contract:
    """The job contract of this deployment, assembled from the installed extensions.

    ``params`` maps each extension's name to the params model it owns (built-ins and
    plug-ins alike, found through entry points by ``extensions.registry``); the contract
    adds ``saved-extension``. It validates one extension at a time (``parse_extension``)
    and publishes the whole job as a JSON Schema (``json_schema``)."""

    def __init__(self, params: Mapping[str, type[BaseModel]]) -> None:
        self.params: dict[str, type[BaseModel]] = {**params,
                                                   "saved-extension": SavedExtensionRef}
        self.names = frozenset(self.params)
        self.union_tags = self.names.union(
            *(getattr(m, "union_tags", frozenset()) for m in self.params.values()))
        # The published schema's discriminated union takes the models whose ``name`` is a
        # Literal of their own name (every built-in; a plug-in's that is not still parses).
        tagged = [m for n, m in sorted(self.params.items()) if _named(m, n)]
        union = Union[tuple(tagged)]  # noqa: UP007
        self.job: type[BaseModel] = create_model(
            "Job", __base__=_JobFields, __doc__="A job exactly as an upload service publishes "
            "it (the published JSON Schema).",
            __validators__={"_work": model_validator(mode="after")(_need_work)},
            extensions=(list[Annotated[union, Field(discriminator="name")]],  # type: ignore[valid-type]
                        Field(default_factory=list, max_length=20)))

    def parse_extension(self, raw: Any, prefix: str = "") -> BaseModel:
        """Validate one extension object by its ``name``; raises ``ValueError`` naming the
        field."""
        if not isinstance(raw, dict):
            raise ValueError(f"{prefix}: an extension must be an object with a name")
        name = raw.get("name")
        model = self.params.get(name) if isinstance(name, str) else None
        if model is None:
            where = f"{prefix}.name" if prefix else "name"
            if name is None:
                raise ValueError(f"{where}: field required")
            raise ValueError(f"{where}: unknown extension {shown(name)}")
        try:
            return model.model_validate(raw)
        except ValidationError as e:
            raise ValueError(format_validation_error(e, prefix, self.union_tags)) from None

    def json_schema(self) -> dict[str, Any]:
        """The JSON Schema of a job (``worker/schema/job.schema.json`` for the built-ins)."""
        schema = self.job.model_json_schema(mode="validation")
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = "https://github.com/extworker/extworker/worker/schema/job.schema.json"
        return schema
