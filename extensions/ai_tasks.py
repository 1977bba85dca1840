"""``ai-tasks``: instructions answered **only** from the allowed options.

The engine never generates or parses free text. For every allowed option it
scores how well "image + instruction + option" fit, and the answer is chosen
among those options by score:

* ``select_tags`` / ``select_metadata`` — options at or above
  ``EXTWORKER_TASK_THRESHOLD`` are chosen, best first, at most
  ``max_selections``; if fewer than ``min_selections`` pass, the best
  remaining options fill up to ``min_selections`` (min/max always hold).
* ``yes_no`` — "yes" and "no" are scored the same way and normalised to one
  probability; if neither leads by ``EXTWORKER_TASK_YES_NO_MARGIN`` the answer
  is ``unknown`` and ``on_unknown`` applies.

Every output of one extension (tags added/removed, metadata set/unset) lands
in **one** record patch. Metadata writes are validated against the account's
custom metadata fields first; an unknown field or an invalid value fails the
extension with a message naming the task and field, and nothing is written.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Protocol

from PIL import Image
from pydantic import Field, field_validator, model_validator

from worker.core.contract import StrictParams, bounded_value
from worker.core.errors import ErrorCode, PermanentError
from worker.core.imaging import open_image
from worker.core.records import RecordPatch
from worker.core.settings import Settings
from worker.store.fields import CustomField, validate_value

from . import loaders
from .base import ExtensionContext, ExtensionResult
from .vision import VisionExtension

# --- params (this extension's part of the job contract) -----------------------


class MetadataSet(StrictParams):
    field: str = Field(..., min_length=1, max_length=128)
    value: Any

    _value = field_validator("value")(classmethod(lambda cls, v: bounded_value(v)))


class MetadataUnset(StrictParams):
    field: str = Field(..., min_length=1)


class Branch(StrictParams):
    add_tags: list[str] = Field(default_factory=list)
    remove_tags: list[str] = Field(default_factory=list)
    set_metadata: list[MetadataSet] = Field(default_factory=list)
    unset_metadata: list[MetadataUnset] = Field(default_factory=list)


class _Task(StrictParams):
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


class AiTasks(StrictParams):
    """The ``ai-tasks`` extension object: up to ten tasks."""

    union_tags: ClassVar[frozenset[str]] = frozenset({"select_tags", "select_metadata", "yes_no"})
    name: Literal["ai-tasks"]
    tasks: list[Task] = Field(..., min_length=1, max_length=10)


class TaskEngine(Protocol):
    """Scores options; implementations plug in behind ``EXTWORKER_TASK_ENGINE``."""

    device: str
    decode_side: int  # pixels per side worth decoding (0: full size)

    def score_options(self, image: Image.Image, instruction: str,
                      options: list[str]) -> list[float]: ...

    def yes_no(self, image: Image.Image, instruction: str) -> float: ...


class ZeroShotEngine:
    """CLIP-style scoring: similarity of the image with ``"<instruction> <option>"``.

    With SigLIP-family models each option gets its own probability; with
    CLIP-family models the scores are softmax shares over the options.
    """

    def __init__(self, model: Any) -> None:
        self.model = model
        self.device = model.device
        self.decode_side = model.decode_side

    def score_options(self, image: Image.Image, instruction: str,
                      options: list[str]) -> list[float]:
        q = instruction.strip()
        return self.model.scores(image, tuple(f"{q} {o}".strip() for o in options))

    def yes_no(self, image: Image.Image, instruction: str) -> float:
        q = instruction.strip()
        yes, no = self.model.scores(image, (f"{q} Yes.", f"{q} No."))
        return yes / (yes + no) if yes + no > 0 else 0.5


def engine_for(ctx: ExtensionContext) -> TaskEngine:
    s = ctx.settings
    if s.task_engine == "zero-shot":
        return ZeroShotEngine(loaders.get(ctx.models, "zero-shot", s.task_model or
                                          s.zero_shot_model, s))
    raise PermanentError(f"unknown task engine {s.task_engine!r}", code=ErrorCode.MISCONFIGURED)


def choose(options: list[Any], scores: list[float], min_sel: int, max_sel: int,
           threshold: float) -> list[Any]:
    """Options by score: those ≥ threshold (≤ max_sel), topped up to min_sel."""
    ranked = [o for o, _ in sorted(zip(options, scores, strict=True), key=lambda x: -x[1])]
    passed = [o for o, sc in sorted(zip(options, scores, strict=True), key=lambda x: -x[1])
              if sc >= threshold][:max_sel]
    if len(passed) < min_sel:
        passed += [o for o in ranked if o not in passed][: min_sel - len(passed)]
    return passed


class _Plan:
    """Accumulates every task's effect in order; later tasks win on conflicts."""

    def __init__(self) -> None:
        self.add: dict[str, None] = {}
        self.remove: dict[str, None] = {}
        self.set: dict[str, Any] = {}
        self.unset: dict[str, None] = {}

    def add_tags(self, tags: list[str]) -> None:
        for t in tags:
            self.add[t] = None
            self.remove.pop(t, None)

    def remove_tags(self, tags: list[str]) -> None:
        for t in tags:
            self.remove[t] = None
            self.add.pop(t, None)

    def set_meta(self, name: str, value: Any) -> None:
        self.set[name] = value
        self.unset.pop(name, None)

    def unset_meta(self, name: str) -> None:
        self.unset[name] = None
        self.set.pop(name, None)

    def patch(self) -> RecordPatch:
        return RecordPatch(add_tags=list(self.add), remove_tags=list(self.remove),
                           metadata_set=self.set, metadata_unset=list(self.unset))


def _field(fields: dict[str, CustomField], name: str, where: str) -> CustomField:
    f = fields.get(name)
    if f is None:
        raise PermanentError(f"{where}: unknown custom metadata field {name!r}",
                             code=ErrorCode.UNKNOWN_FIELD)
    return f


def check_branch(branch: Branch | None, fields: dict[str, CustomField], where: str) -> None:
    if branch is None:
        return
    for j, item in enumerate(branch.set_metadata):
        f = _field(fields, item.field, f"{where}.set_metadata[{j}].field")
        validate_value(f, item.value, f"{where}.set_metadata[{j}].value")
    for j, un in enumerate(branch.unset_metadata):
        _field(fields, un.field, f"{where}.unset_metadata[{j}].field")


class AiTasksExtension(VisionExtension):
    name = "ai-tasks"
    params_model = AiTasks

    def units(self, params: AiTasks, settings: Settings) -> int:  # type: ignore[override]
        return settings.unit_cost(self.name) * len(params.tasks)

    def run(self, ctx: ExtensionContext, params: AiTasks) -> ExtensionResult:
        s = ctx.settings
        fields = ctx.custom_fields()
        # Validate every metadata write before any model runs: all or nothing.
        for i, task in enumerate(params.tasks):
            if isinstance(task, SelectMetadata):
                _field(fields, task.field, f"tasks[{i}].field")
            elif isinstance(task, YesNo):
                for branch_name in ("on_yes", "on_no", "on_unknown"):
                    check_branch(getattr(task, branch_name), fields, f"tasks[{i}].{branch_name}")
        engine = engine_for(ctx)
        image = open_image(ctx.read_source(), s.max_image_pixels, engine.decode_side)
        plan = _Plan()
        outputs = []
        for i, task in enumerate(params.tasks):
            if isinstance(task, SelectTags):
                scores = engine.score_options(image, task.instruction, task.vocabulary)
                picked = choose(task.vocabulary, scores, task.min_selections,
                                task.max_selections, s.task_threshold)
                plan.add_tags(picked)
                outputs.append({"type": task.type, "selected": picked,
                                "scores": _rounded(task.vocabulary, scores)})
            elif isinstance(task, SelectMetadata):
                outputs.append(self._select_metadata(i, task, fields, engine, image, plan, s))
            else:
                p_yes = engine.yes_no(image, task.instruction)
                margin = s.task_yes_no_margin
                answer = ("yes" if p_yes - (1 - p_yes) >= margin else
                          "no" if (1 - p_yes) - p_yes >= margin else "unknown")
                branch = {"yes": task.on_yes, "no": task.on_no, "unknown": task.on_unknown}[answer]
                if branch is not None:
                    plan.add_tags(branch.add_tags)
                    plan.remove_tags(branch.remove_tags)
                    for item in branch.set_metadata:
                        plan.set_meta(item.field, validate_value(
                            fields[item.field], item.value, f"tasks[{i}].set_metadata"))
                    for un in branch.unset_metadata:
                        plan.unset_meta(un.field)
                outputs.append({"type": task.type, "answer": answer,
                                "yes": round(p_yes * 100, 2)})
        return ExtensionResult(patch=plan.patch(), output={"tasks": outputs},
                               model=s.task_model or s.zero_shot_model, device=engine.device)

    def _select_metadata(self, i: int, task: SelectMetadata, fields: dict[str, CustomField],
                         engine: TaskEngine, image: Image.Image, plan: _Plan,
                         s: Settings) -> dict[str, Any]:
        f = fields[task.field]
        options = task.vocabulary or f.schema_.selectOptions
        if not options:
            raise PermanentError(
                f"tasks[{i}].vocabulary: required for the {f.schema_.type} field {f.name!r}",
                code=ErrorCode.INVALID_PARAMS)
        if f.schema_.type in ("SingleSelect", "MultiSelect"):
            allowed = f.schema_.selectOptions or []
            outside = [o for o in options if o not in allowed]
            if outside:
                raise PermanentError(f"tasks[{i}].vocabulary: {outside!r} are not options of "
                                     f"the field {f.name!r}", code=ErrorCode.INVALID_PARAMS)
        scores = engine.score_options(image, task.instruction, [str(o) for o in options])
        max_sel = 1 if f.schema_.type != "MultiSelect" else task.max_selections
        picked = choose(list(options), scores, min(task.min_selections, max_sel), max_sel,
                        s.task_threshold)
        if picked:
            value: Any = picked if f.schema_.type == "MultiSelect" else picked[0]
            plan.set_meta(f.name, validate_value(f, value, f"tasks[{i}].field"))
        return {"type": task.type, "field": f.name, "selected": picked,
                "scores": _rounded([str(o) for o in options], scores)}


def _rounded(options: list[Any], scores: list[float]) -> dict[str, float]:
    return {str(o): round(sc * 100, 2) for o, sc in zip(options, scores, strict=True)}
