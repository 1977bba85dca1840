"""``ai-auto-description``: a caption from a local image-to-text model.

Writes the record's ``description``: one sentence, special tokens removed,
sentence case. Model and length are settings (``EXTWORKER_CAPTION_MODEL``,
``EXTWORKER_CAPTION_MAX_TOKENS``).
"""

from __future__ import annotations

from typing import Literal

from worker.core.contract import StrictParams
from worker.core.errors import PermanentError
from worker.core.imaging import open_image
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
        image = open_image(ctx.read_source(), s.max_image_pixels, model.decode_side)
        text = model.predict(image, s.caption_max_tokens)
        if not text:
            raise PermanentError("the captioning model produced no text", code="empty_output")
        return ExtensionResult(
            patch=RecordPatch(set_fields={"description": text}),
            output={"description": text}, model=s.caption_model, device=model.device,
        )
