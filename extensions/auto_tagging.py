"""``google-auto-tagging`` and ``aws-auto-tagging`` on local models.

Both names keep the hosted API's params (``minConfidence`` 0–100, ``maxTags``
0–30) and output (``AITags`` entries ``{name, confidence, source}``, best
first). Which local tagger answers each name is a setting
(``EXTWORKER_TAGGER_GOOGLE`` / ``EXTWORKER_TAGGER_AWS``): ``classifier`` (an
ImageNet-style image classifier) or ``zero-shot`` (a CLIP-style model over
the tag vocabulary). Re-running a tagger replaces the AITags of its own
source and keeps the others.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Annotated, ClassVar, Literal

import numpy as np
from pydantic import AliasChoices, Field

from worker.core.contract import StrictParams
from worker.core.errors import ErrorCode, PermanentError
from worker.core.records import AITag, RecordPatch

from . import loaders
from .base import ExtensionContext, ExtensionResult
from .vision import VisionExtension


class _TaggingParams(StrictParams):
    # The hosted API's Python SDK sends these snake_cased in uploads (it serialises the
    # extensions before applying its aliases), so both spellings are accepted.
    minConfidence: Annotated[float, Field(ge=0, le=100)] = Field(
        ..., validation_alias=AliasChoices("minConfidence", "min_confidence"),
        description="Drop tags below this confidence (0-100)."
    )
    maxTags: Annotated[int, Field(ge=0, le=30)] = Field(
        ..., validation_alias=AliasChoices("maxTags", "max_tags"),
        description="At most this many.")


class GoogleAutoTaggingParams(_TaggingParams):
    name: Literal["google-auto-tagging"]


class AwsAutoTaggingParams(_TaggingParams):
    name: Literal["aws-auto-tagging"]


DEFAULT_VOCABULARY = Path(__file__).with_name("data") / "tags.txt"


@cache
def load_vocabulary(path: str) -> tuple[str, ...]:
    """One label per line; ``#`` comments and blanks ignored; duplicates dropped."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    labels = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    return tuple(dict.fromkeys(labels))


def select(scored: list[tuple[str, float]], min_confidence: float, max_tags: int,
           source: str) -> list[AITag]:
    """Apply the thresholds exactly: confidence ≥ minConfidence, at most maxTags, in the
    tagger's order (best first; the imagenet tagger puts a narrower tag before a broader one
    of about the same confidence)."""
    tags = []
    for name, p in scored:
        confidence = round(p * 100, 2)
        if confidence >= min_confidence and len(tags) < max_tags:
            tags.append(AITag(name=name, confidence=confidence, source=source))
    return tags


def _mean(vectors: list[list[float]]) -> list[float] | None:
    """One embedding for the file: a video's keyframes averaged, L2-normalised again."""
    if not vectors:
        return None
    mean = np.mean(np.asarray(vectors, dtype=np.float32), axis=0)
    return (mean / max(float(np.linalg.norm(mean)), 1e-12)).tolist()  # type: ignore[no-any-return]


class _AutoTagging(VisionExtension):
    setting: ClassVar[str]
    synchronous = True  # the hosted API tries auto-tagging synchronously first

    def run(self, ctx: ExtensionContext, params: _TaggingParams) -> ExtensionResult:
        s = ctx.settings
        kind = getattr(s, self.setting)
        if kind not in ("imagenet", "classifier", "zero-shot"):  # the settings prevent this
            raise PermanentError(f"unknown tagger kind {kind!r}", code=ErrorCode.MISCONFIGURED)
        name = {"imagenet": s.imagenet_model, "classifier": s.classifier_model,
                "zero-shot": s.zero_shot_model}[kind]
        model = loaders.get(ctx.models, kind, name, s)
        # Decoded only as large as the model can use (JPEG: at 1/2-1/8 scale).
        images = self.images(ctx.read_source(), s, model.decode_side)
        vocabulary = (None if kind != "zero-shot" else
                      load_vocabulary(str(s.tag_vocabulary_file or DEFAULT_VOCABULARY)))
        best: dict[str, float] = {}
        embeddings = []
        for image in images:  # a video's keyframes: each label at its best frame's score
            if hasattr(model, "predict_and_embed"):  # the imagenet tagger: one run, both
                scored, embedding = model.predict_and_embed(image)
                embeddings.append(embedding)
            else:
                scored = model.predict(image) if vocabulary is None else model.predict(
                    image, vocabulary)
            for label, p in scored:
                best[label] = max(best.get(label, 0.0), p)
        merged = (model.order(best) if hasattr(model, "order")
                  else sorted(best.items(), key=lambda kv: -kv[1]))
        tags = select(merged, params.minConfidence, params.maxTags, self.name)
        return ExtensionResult(
            patch=RecordPatch(ai_tags=tags, ai_tags_source=self.name),
            output={"AITags": [t.model_dump() for t in tags], "tagger": kind,
                    "frames": len(images)},
            model=name, device=model.device, embedding=_mean(embeddings),
        )


class GoogleAutoTagging(_AutoTagging):
    name = "google-auto-tagging"
    params_model = GoogleAutoTaggingParams
    setting = "tagger_google"


class AwsAutoTagging(_AutoTagging):
    name = "aws-auto-tagging"
    params_model = AwsAutoTaggingParams
    setting = "tagger_aws"
