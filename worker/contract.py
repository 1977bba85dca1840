"""The job contract: what an upload service publishes, as pydantic v2 models.

``Job`` is the published contract (``worker/schema/job.schema.json`` is
generated from it; ``tests/test_contract.py`` fails when the file is stale).
Workers parse a message in two steps so one bad extension never sinks the
others: ``JobEnvelope`` validates the job-level fields and keeps each
extension as a raw object, then ``parse_extension`` validates each one on its
own and returns either a typed model or a message that names the field.
"""

from __future__ import annotations

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


class MetadataSet(_Strict):
    field: str = Field(..., min_length=1)
    value: Any


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


# --- the job ----------------------------------------------------------------


class _JobFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    jobId: str = Field(
        default_factory=lambda: uuid.uuid4().hex,
        pattern=ID_PATTERN,
        description="Idempotency key chosen by the client; generated when absent.",
    )
    accountId: str = Field("default", pattern=ID_PATTERN, description="Who is metered.")
    fileId: str = Field(..., pattern=ID_PATTERN, description="The file record to work on.")
    webhookUrl: HttpUrl | None = Field(None, description="Told once per extension at its end.")
    removeAITags: list[str] | Literal["all"] | None = Field(
        None, description="AITags to remove (names, or `all`) before the extensions run."
    )
    origin: Literal["upload", "update"] = "upload"
    dryRun: bool = Field(False, description="Run everything, charge no units.")
    syncUntil: float | None = Field(
        None, description="Set by a waiting client (epoch seconds): extensions final before "
        "this are reported to it and get no webhook.",
    )


class Job(_JobFields):
    """A job exactly as an upload service publishes it (the published JSON Schema)."""

    extensions: list[BuiltinExtension] = Field(..., min_length=1, max_length=20)


class JobEnvelope(_JobFields):
    """What a worker validates first: job fields strict, extensions still raw."""

    extensions: list[Any] = Field(..., min_length=1, max_length=20)


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


def extension_label(raw: Any, index: int) -> str:
    """The status key of a raw extension: its name when it has one."""
    if isinstance(raw, dict) and isinstance(raw.get("name"), str) and raw["name"]:
        return raw["name"][:64]
    return f"extensions[{index}]"


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
        raise ValueError(f"{where}: unknown extension {name!r}")
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
