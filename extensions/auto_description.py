"""``ai-auto-description``: a caption from a local image-to-text model.

Writes the record's ``description``: one sentence, special tokens removed,
sentence case. Model and length are settings (``EXTWORKER_CAPTION_MODEL``,
``EXTWORKER_CAPTION_MAX_TOKENS``).
"""

from __future__ import annotations

from collections import Counter
from typing import Literal

from worker.core.contract import StrictParams
from worker.core.errors import ErrorCode, PermanentError
from worker.core.records import RecordPatch

from . import loaders
from .base import ExtensionContext, ExtensionResult
from .vision import VisionExtension


class AiAutoDescriptionParams(StrictParams):
    """The ``ai-auto-description`` extension object: its name, nothing else."""

    name: Literal["ai-auto-description"]


class AiAutoDescription(VisionExtension):
    name = "ai-auto-description"
    params_model = AiAutoDescriptionParams

    def run(self, ctx: ExtensionContext, params: AiAutoDescriptionParams) -> ExtensionResult:
        s = ctx.settings
        model = loaders.get(ctx.models, "captioner", s.caption_model, s)
        images = self.images(ctx.read_source(), s, model.decode_side)
        # A video: each keyframe captioned; the caption most frames share (else the first).
        captions = [c for c in (model.predict(im, s.caption_max_tokens) for im in images) if c]
        text = Counter(captions).most_common(1)[0][0] if captions else ""
        if not text:
            raise PermanentError("the captioning model produced no text",
                                 code=ErrorCode.EMPTY_OUTPUT)
        return ExtensionResult(
            patch=RecordPatch(set_fields={"description": text}),
            output={"description": text}, model=s.caption_model, device=model.device,
        )
