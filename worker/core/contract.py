"""The job contract: what an upload service publishes, as pydantic v2 models.

``Job`` is the published contract (``worker/schema/job.schema.json`` is
generated from it; ``tests/test_contract.py`` fails when the file is stale).
Workers parse a message in two steps so one bad extension never sinks the
others: ``JobEnvelope`` validates the job-level fields and keeps each
extension as a raw object, then ``parse_extension`` validates each one on its
own and returns either a typed model or a message that names the field.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Annotated, Any, Literal

from PIL import ImageColor
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    ValidationError,
    field_validator,
    model_validator,
)

ID_PATTERN = r"^[A-Za-z0-9._:\-]{1,128}$"


class _Strict(BaseModel):
    """Unknown keys are errors: a typo in a param must name itself, not vanish."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


# --- remove-bg -------------------------------------------------------------


class RemoveBgOptions(_Strict):
    add_shadow: bool = Field(False, description="Draw a soft drop shadow under the subject.")
    semitransparency: bool = Field(
        True, description="Keep soft (semi-transparent) alpha; false gives a hard mask."
    )
    bg_color: str | None = Field(
        None,
        validation_alias=AliasChoices("bg_color", "bg_colour"),
        description="Solid background: hex (`81d4fa`, `#81d4fa`) or a CSS colour name.",
    )
    bg_image_url: HttpUrl | None = Field(None, description="Background image to composite onto.")
    model: str | None = Field(
        None, pattern=r"^[a-z0-9_\-]{1,64}$", description="extworker: rembg model name."
    )

    @field_validator("bg_color")
    @classmethod
    def _colour(cls, v: str | None) -> str | None:
        if v is None:
            return v
        value = v.strip()
        if re.fullmatch(r"[0-9a-fA-F]{3}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8}", value):
            value = "#" + value
        try:
            ImageColor.getrgb(value)
        except ValueError:
            raise ValueError(f"not a colour: {v!r} (use hex like 81d4fa or a name)") from None
        return value

    @model_validator(mode="after")
    def _exclusive(self) -> RemoveBgOptions:
        if self.bg_color is not None and self.bg_image_url is not None:
            raise ValueError("bg_color and bg_image_url are mutually exclusive")
        return self


class RemoveBg(_Strict):
    name: Literal["remove-bg"]
    options: RemoveBgOptions = Field(default_factory=RemoveBgOptions)


# --- tagging and description ----------------------------------------------


class _AutoTagging(_Strict):
    minConfidence: Annotated[float, Field(ge=0, le=100)] = Field(
        ..., description="Drop tags below this confidence (0-100)."
    )
    maxTags: Annotated[int, Field(ge=0, le=30)] = Field(..., description="At most this many.")


class GoogleAutoTagging(_AutoTagging):
    name: Literal["google-auto-tagging"]


class AwsAutoTagging(_AutoTagging):
    name: Literal["aws-auto-tagging"]


class AiAutoDescription(_Strict):
    name: Literal["ai-auto-description"]


# --- ai-tasks ---------------------------------------------------------------


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


def _bounded_value(v: Any) -> Any:
    """A metadata value small enough for a record: nested at most 8 levels, 10,000
    characters of JSON (a message can never inflate a record)."""
    if json_depth(v, MAX_VALUE_DEPTH) > MAX_VALUE_DEPTH:
        raise ValueError(f"nested deeper than {MAX_VALUE_DEPTH} levels")
    if len(json.dumps(v, default=str)) > MAX_VALUE_CHARS:
        raise ValueError(f"more than {MAX_VALUE_CHARS} characters of JSON")
    return v


class MetadataSet(_Strict):
    field: str = Field(..., min_length=1, max_length=128)
    value: Any

    _value = field_validator("value")(classmethod(lambda cls, v: _bounded_value(v)))


class MetadataUnset(_Strict):
    field: str = Field(..., min_length=1)


class Branch(_Strict):
    add_tags: list[str] = Field(default_factory=list)
    remove_tags: list[str] = Field(default_factory=list)
    set_metadata: list[MetadataSet] = Field(default_factory=list)
    unset_metadata: list[MetadataUnset] = Field(default_factory=list)


class _Task(_Strict):
    instruction: str = Field(..., min_length=1, max_length=2000)


def _check_vocabulary(v: list[str] | None) -> list[str] | None:
    if v is None:
        return v
    if sum(len(term) for term in v) > 500:
        raise ValueError("vocabulary must be at most 500 characters combined")
    if any("%" in term for term in v):
        raise ValueError("vocabulary terms must not contain '%'")
    if any(not term.strip() for term in v):
        raise ValueError("vocabulary terms must not be empty")
    return v


class _Selecting(_Task):
    min_selections: int = Field(0, ge=0)
    max_selections: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _bounds(self) -> _Selecting:
        if self.min_selections > self.max_selections:
            raise ValueError("min_selections must not exceed max_selections")
        return self


class SelectTags(_Selecting):
    type: Literal["select_tags"]
    vocabulary: list[str] = Field(..., min_length=1, max_length=30)
    _vocab = field_validator("vocabulary")(classmethod(lambda cls, v: _check_vocabulary(v)))


class SelectMetadata(_Selecting):
    type: Literal["select_metadata"]
    field: str = Field(..., min_length=1)
    vocabulary: list[Any] | None = Field(None, min_length=1, max_length=30)


class YesNo(_Task):
    type: Literal["yes_no"]
    on_yes: Branch | None = None
    on_no: Branch | None = None
    on_unknown: Branch | None = None

    @model_validator(mode="after")
    def _one_branch(self) -> YesNo:
        if self.on_yes is None and self.on_no is None:
            raise ValueError("at least one of on_yes or on_no is required")
        return self


Task = Annotated[SelectTags | SelectMetadata | YesNo, Field(discriminator="type")]


class AiTasks(_Strict):
    name: Literal["ai-tasks"]
    tasks: list[Task] = Field(..., min_length=1, max_length=10)


class SavedExtensionRef(_Strict):
    name: Literal["saved-extension"]
    id: str = Field(..., pattern=ID_PATTERN)


BuiltinExtension = Annotated[
    RemoveBg | GoogleAutoTagging | AwsAutoTagging | AiAutoDescription | AiTasks | SavedExtensionRef,
    Field(discriminator="name"),
]
BUILTIN_NAMES: tuple[str, ...] = (
    "remove-bg",
    "google-auto-tagging",
    "aws-auto-tagging",
    "ai-auto-description",
    "ai-tasks",
    "saved-extension",
)
BUILTIN_MODELS: dict[str, type[BaseModel]] = {
    "remove-bg": RemoveBg,
    "google-auto-tagging": GoogleAutoTagging,
    "aws-auto-tagging": AwsAutoTagging,
    "ai-auto-description": AiAutoDescription,
    "ai-tasks": AiTasks,
    "saved-extension": SavedExtensionRef,
}
_UNION_TAGS = frozenset(BUILTIN_NAMES) | {"select_tags", "select_metadata", "yes_no"}


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


class Job(_JobFields):
    """A job exactly as an upload service publishes it (the published JSON Schema)."""

    extensions: list[BuiltinExtension] = Field(default_factory=list, max_length=20)
    _work = model_validator(mode="after")(_need_work)


class JobEnvelope(_JobFields):
    """What a worker validates first: job fields strict, extensions still raw."""

    extensions: list[Any] = Field(default_factory=list, max_length=20)
    _work = model_validator(mode="after")(_need_work)


def format_validation_error(err: ValidationError, prefix: str = "") -> str:
    """``options.bg_color: not a colour: 'x'`` — every problem, each naming its field."""
    parts = []
    for e in err.errors(include_url=False):
        loc = prefix
        for p in e["loc"]:
            if p in _UNION_TAGS:  # pydantic puts the union member's tag in the path
                continue
            loc += f"[{p}]" if isinstance(p, int) else (f".{p}" if loc else str(p))
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


def parse_extension(
    raw: Any, prefix: str = "", extra: dict[str, type[BaseModel]] | None = None
) -> BaseModel:
    """Validate one extension object by its ``name``; raises ``ValueError`` naming the field.

    ``extra`` maps third-party extension names to their params models.
    """
    if not isinstance(raw, dict):
        raise ValueError(f"{prefix}: an extension must be an object with a name")
    name = raw.get("name")
    model = BUILTIN_MODELS.get(name) if isinstance(name, str) else None
    if model is None and extra and isinstance(name, str):
        model = extra.get(name)
    if model is None:
        where = f"{prefix}.name" if prefix else "name"
        if name is None:
            raise ValueError(f"{where}: field required")
        raise ValueError(f"{where}: unknown extension {shown(name)}")
    try:
        return model.model_validate(raw)
    except ValidationError as e:
        raise ValueError(format_validation_error(e, prefix)) from None


def job_json_schema() -> dict[str, Any]:
    """The JSON Schema published in ``worker/schema/job.schema.json``."""
    schema = Job.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://github.com/extworker/extworker/worker/schema/job.schema.json"
    return schema
