"""``remove-bg``: cut the subject out with rembg on ONNX Runtime.

Speed notes (what makes end-to-end close to raw inference on big photos):
the model sees a copy reduced with a cheap box filter straight to its input
size, so rembg's own resize is a no-op; the mask is resized to full
resolution exactly once (bilinear, uint8); compositing stays in uint8 Pillow
ops — no float64 work at full resolution. PNG encoding is the remaining
floor (``EXTWORKER_PNG_COMPRESS_LEVEL``).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from PIL import Image, ImageChops, ImageColor, ImageFilter, ImageOps
from pydantic import AliasChoices, Field, HttpUrl, field_validator, model_validator

from worker.core.contract import StrictParams
from worker.core.errors import PermanentError
from worker.core.imaging import encode_png, open_image
from worker.models.devices import inference_threads

from . import loaders
from .base import Extension, ExtensionContext, ExtensionResult
from .rembg_session import RembgModel

# --- params (this extension's part of the job contract) -----------------------


class RemoveBgOptions(StrictParams):
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


class RemoveBgParams(StrictParams):
    """The ``remove-bg`` extension object of a job."""


    name: Literal["remove-bg"]
    options: RemoveBgOptions = Field(default_factory=RemoveBgOptions)


def _shadow(mask: Image.Image) -> Image.Image:
    """A soft drop shadow (alpha), offset down-right, blurred at reduced size."""
    w, h = mask.size
    k = max(1, min(w, h) // 256)
    small = mask.reduce(k) if k > 1 else mask
    radius = max(2.0, min(small.size) / 40)
    blurred = small.filter(ImageFilter.GaussianBlur(radius)).point(lambda v: v * 55 // 100)
    shadow = Image.new("L", small.size, 0)
    dx, dy = max(1, small.width // 50), max(1, small.height // 40)
    shadow.paste(blurred, (dx, dy))
    return shadow.resize((w, h), Image.Resampling.BILINEAR) if k > 1 else shadow


class RemoveBg(Extension):
    name = "remove-bg"
    queue = "extensions"
    params_model = RemoveBgParams

    def load(self, ctx: ExtensionContext, model: str) -> RembgModel:
        return loaders.get(ctx.models, "remove-bg", model, ctx.settings)  # type: ignore[no-any-return]

    def run(self, ctx: ExtensionContext, params: RemoveBgParams) -> ExtensionResult:
        opts = params.options
        model_name = opts.model or ctx.settings.remove_bg_model
        im = open_image(ctx.read_source(), ctx.settings.max_image_pixels)
        model = self.load(ctx, model_name)
        mask = model.mask(im)
        if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
            mask = ImageChops.darker(mask, im.convert("RGBA").getchannel("A"))
        if not opts.semitransparency:
            mask = mask.point(lambda v: 255 if v >= 128 else 0)
        rgb = im if im.mode == "RGB" else im.convert("RGB")
        shadow = _shadow(mask) if opts.add_shadow else None

        background = self._background(ctx, opts, rgb.size)
        if background is None:
            # Straight (not premultiplied) alpha, as PNG defines it: every visible pixel
            # keeps its exact colour, so soft edges do not darken. Fully transparent
            # pixels become (0,0,0,0): invisible either way, and they compress to nothing.
            out = rgb.convert("RGBA")
            out.putalpha(mask)
            visible = mask.point(lambda v: 255 if v else 0)
            out = Image.composite(out, Image.new("RGBA", rgb.size, (0, 0, 0, 0)), visible)
            if shadow is not None:
                layer = Image.new("RGBA", rgb.size, (0, 0, 0, 0))
                layer.putalpha(shadow)
                out = Image.alpha_composite(layer, out)
        else:
            out = background
            if shadow is not None:
                out.paste((0, 0, 0), (0, 0, *out.size), shadow)
            out.paste(rgb, (0, 0), mask)
        # The source's colour profile travels with the cut-out (wide-gamut photos would
        # otherwise shift colour when shown).
        # Deflated on this process's CPU budget (idle cores shorten one job; under full
        # load the threads simply take turns).
        data = encode_png(out, ctx.settings.png_compress_level, im.info.get("icc_profile"),
                          threads=inference_threads(ctx.settings))
        return ExtensionResult(
            new_version=data,
            output={"model": model_name, "width": out.width, "height": out.height},
            model=model_name,
            device=model.device,
            new_version_mime="image/png",
        )

    def _background(
        self, ctx: ExtensionContext, opts: Any, size: tuple[int, int]
    ) -> Image.Image | None:
        if opts.bg_color is not None:
            colour = ImageColor.getrgb(opts.bg_color)
            return Image.new("RGBA" if len(colour) == 4 else "RGB", size, colour)
        if opts.bg_image_url is not None:
            data = ctx.fetch(str(opts.bg_image_url))
            try:
                bg = open_image(data, ctx.settings.max_image_pixels)
            except PermanentError as e:
                raise PermanentError(f"options.bg_image_url: {e}", code=e.code) from None
            return ImageOps.fit(bg.convert("RGB"), size, Image.Resampling.BILINEAR)
        return None
