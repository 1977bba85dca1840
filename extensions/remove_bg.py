"""``remove-bg``: cut the subject out with rembg on ONNX Runtime.

Speed notes (what makes end-to-end close to raw inference on big photos):
the model sees a copy reduced with a cheap box filter straight to its input
size, so rembg's own resize is a no-op; the mask is resized to full
resolution exactly once (bilinear, uint8); compositing stays in uint8 Pillow
ops — no float64 work at full resolution. PNG encoding is the remaining
floor (``EXTWORKER_PNG_COMPRESS_LEVEL``).
"""

from __future__ import annotations

import io
import re
from typing import Any, Literal

from PIL import Image, ImageChops, ImageColor, ImageFilter, ImageOps
from pydantic import AliasChoices, Field, HttpUrl, field_validator, model_validator

from worker.core.contract import StrictParams
from worker.core.errors import ErrorCode, PermanentError
from worker.core.imaging import encode_png, open_image
from worker.models.devices import inference_threads

from . import loaders
from .base import Extension, ExtensionContext, ExtensionResult
from .rembg_session import RembgModel

# --- params (this extension's part of the job contract) -----------------------
#
# remove.bg's own parameters ("sent directly to the third-party service" in the hosted API),
# each honoured here — or refused when the job is validated (an HTTP API caller gets a 400
# naming the option), never a failed extension later.

# size → the largest output, in pixels (None: the original's, up to remove.bg's 36 MP).
SIZES: dict[str, float | None] = {"preview": 0.25e6, "small": 0.25e6, "regular": 0.25e6,
                                  "medium": 1.5e6, "hd": 4e6, "full": None, "4k": None,
                                  "auto": None}
FULL_PIXELS = 36e6
_LENGTH = r"(?:\d+(?:\.\d+)?)(?:px|%)?"
_PERCENT = r"(?:\d+(?:\.\d+)?)%"


def _parts(v: str, counts: tuple[int, ...], pattern: str, what: str) -> list[str]:
    """``v``'s space-separated values, each matching ``pattern``, as many as ``counts`` allows."""
    parts = v.split()
    if len(parts) not in counts or not all(re.fullmatch(pattern, p) for p in parts):
        raise ValueError(f"{v!r} is not {what}")
    return parts


def _lengths(v: object) -> object:
    return str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v


class RemoveBgOptions(StrictParams):
    size: Literal["preview", "small", "regular", "medium", "hd", "full", "4k", "auto"] = Field(
        "auto", description="Output resolution: preview/small/regular up to 0.25 MP, medium "
        "1.5 MP, hd 4 MP, full/4k/auto the original's (up to 36 MP).")
    type: Literal["auto", "person", "product", "animal", "car", "transportation",
                  "graphic"] = Field(
        "auto", description="The foreground's kind: a model hint where one is configured "
        "(`EXTWORKER_REMOVE_BG_TYPE_MODELS`), else recorded only.")
    type_level: Literal["none", "1", "2", "latest"] = Field(
        "latest", description="remove.bg's classification depth: accepted and recorded.")
    format: Literal["auto", "png", "jpg", "webp", "zip"] = Field(
        "auto", description="auto: PNG where the result has transparency, else JPG.")
    roi: str = Field("0% 0% 100% 100%", description="Region of interest `x1 y1 x2 y2` (px or "
                     "%): only a foreground inside it is kept.")
    crop: bool = Field(False, description="Crop off the empty regions around the subject.")
    crop_margin: str = Field("0", description="Margin around the cropped subject: px or % "
                             "of the subject, 1, 2 or 4 values as in CSS (at most 500 px or "
                             "50 % a side).")
    scale: str = Field("original", description="The subject's size relative to the image, "
                       "10%-100%, or `original`.")
    position: str = Field("original", description="`original`, `center`, or `x% [y%]`; a "
                          "scale implies `center`.")
    channels: Literal["rgba", "alpha"] = Field(
        "rgba", description="rgba: the finished image; alpha: the mask alone (greyscale).")
    add_shadow: bool = Field(False, description="Draw a soft drop shadow under the subject.")
    semitransparency: bool = Field(
        True, description="Keep soft (semi-transparent) alpha; false gives a hard mask."
    )
    bg_color: str | None = Field(
        None,
        validation_alias=AliasChoices("bg_color", "bg_colour"),
        description="Solid background: hex (`81d4fa`, `#81d4fa`, with alpha `81d4fa80`) or a "
        "CSS colour name (`green`).",
    )
    bg_image_url: HttpUrl | None = Field(None, description="Background image to composite onto.")
    model: str | None = Field(
        None, pattern=r"^[a-z0-9_\-]{1,64}$", description="extworker: rembg model name."
    )

    @model_validator(mode="before")
    @classmethod
    def _inputs(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name in ("image_file", "image_url", "image_file_b64"):
                if name in data:
                    raise ValueError(f"{name}: not an option here (the job's file is the "
                                     "input)")
            if "bg_image_file" in data:
                raise ValueError("bg_image_file: not an option here (send bg_image_url)")
        return data

    @field_validator("format")
    @classmethod
    def _format(cls, v: str) -> str:
        if v == "zip":
            raise ValueError("zip (remove.bg's JPG + alpha-mask archive) is not produced: "
                             "use png or webp, or channels=alpha for the mask")
        return v

    @field_validator("roi", "crop_margin", "scale", "position", mode="before")
    @classmethod
    def _strings(cls, v: object) -> object:
        return _lengths(v)

    @field_validator("roi")
    @classmethod
    def _roi(cls, v: str) -> str:
        parts = _parts(v, (4,), _LENGTH, "`x1 y1 x2 y2` (each px or %)")
        if any(p.endswith("%") and float(p[:-1]) > 100 for p in parts):
            raise ValueError(f"{v!r}: a percentage above 100%")
        return v

    @field_validator("crop_margin")
    @classmethod
    def _margin(cls, v: str) -> str:
        for p in _parts(v, (1, 2, 4), _LENGTH, "1, 2 or 4 lengths (px or %)"):
            if p.endswith("%") and float(p[:-1]) > 50:
                raise ValueError(f"{p}: at most 50% of the subject a side")
            if not p.endswith("%") and float(p.removesuffix("px")) > 500:
                raise ValueError(f"{p}: at most 500px a side")
        return v

    @field_validator("scale")
    @classmethod
    def _scale(cls, v: str) -> str:
        if v != "original" and not (re.fullmatch(_PERCENT, v) and 10 <= float(v[:-1]) <= 100):
            raise ValueError(f"{v!r} is not 10%-100% or `original`")
        return v

    @field_validator("position")
    @classmethod
    def _position(cls, v: str) -> str:
        if v in ("original", "center"):
            return v
        what = "`original`, `center` or `x% [y%]` (0%-100%)"
        if any(float(p[:-1]) > 100 for p in _parts(v, (1, 2), _PERCENT, what)):
            raise ValueError(f"{v!r} is not {what}")
        return v

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
        if self.channels == "alpha" and (self.bg_color or self.bg_image_url or
                                         self.add_shadow):
            raise ValueError("channels=alpha returns the mask alone: it takes no bg_color, "
                             "bg_image_url or add_shadow")
        return self

    @property
    def placed(self) -> bool:
        """Whether the subject moves: cropped, scaled or positioned."""
        return self.crop or self.scale != "original" or self.position != "original"


class RemoveBgParams(StrictParams):
    """The ``remove-bg`` extension object of a job."""

    name: Literal["remove-bg"]
    options: RemoveBgOptions = Field(default_factory=RemoveBgOptions)


def _length(text: str, whole: float) -> float:
    """A px or % length (``%`` of ``whole``)."""
    return float(text[:-1]) * whole / 100 if text.endswith("%") else float(
        text.removesuffix("px"))


def roi_box(roi: str, size: tuple[int, int]) -> tuple[int, int, int, int]:
    w, h = size
    x1, y1, x2, y2 = (_length(p, w if i % 2 == 0 else h) for i, p in enumerate(roi.split()))
    box = (max(0, round(x1)), max(0, round(y1)), min(w, round(x2)), min(h, round(y2)))
    if box[0] >= box[2] or box[1] >= box[3]:
        raise PermanentError(f"options.roi: {roi!r} leaves nothing of a {w}x{h} image",
                             code=ErrorCode.INVALID_PARAMS)
    return box


def margins(spec: str, subject: tuple[int, int]) -> tuple[int, int, int, int]:
    """(top, right, bottom, left) in px, CSS order, each at most 500 px / 50 %."""
    parts = spec.split()
    parts = {1: parts * 4, 2: parts * 2, 4: parts}[len(parts)]
    w, h = subject
    out = []
    for i, p in enumerate(parts):
        whole = h if i % 2 == 0 else w
        out.append(round(min(_length(p, whole), 500.0, whole / 2 if p.endswith("%") else 500)))
    return out[0], out[1], out[2], out[3]


def layout(opts: RemoveBgOptions, size: tuple[int, int], bbox: tuple[int, int, int, int]
           ) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """The canvas size and where the subject (``bbox`` of the image) lands on it, as a box
    (it may be scaled): remove.bg's crop, crop_margin, scale and position."""
    bw, bh = bbox[2] - bbox[0], bbox[3] - bbox[1]
    if opts.crop:
        top, right, bottom, left = margins(opts.crop_margin, (bw, bh))
        canvas = (bw + left + right, bh + top + bottom)
        box = (left, top, left + bw, top + bh)
    else:
        canvas, box = size, bbox
    position = opts.position
    if opts.scale != "original" and position == "original":
        position = "center"  # remove.bg: "scaling the subject implies position=center"
    if opts.scale != "original":
        s = float(opts.scale[:-1]) / 100
        f = min(s * canvas[0] / bw, s * canvas[1] / bh)
        sw, sh = max(1, round(bw * f)), max(1, round(bh * f))
    else:
        sw, sh = bw, bh
    if position == "original":
        if (sw, sh) == (bw, bh):
            return canvas, box
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        x, y = round(cx - sw / 2), round(cy - sh / 2)
    else:
        px, py = (("50%", "50%") if position == "center" else
                  tuple((position.split() * 2)[:2]))
        x = round((canvas[0] - sw) * float(px[:-1]) / 100)
        y = round((canvas[1] - sh) * float(py[:-1]) / 100)
    return canvas, (x, y, x + sw, y + sh)


def _place(layer: Image.Image, bbox: tuple[int, int, int, int], canvas: tuple[int, int],
           box: tuple[int, int, int, int]) -> Image.Image:
    """``layer``'s ``bbox`` region, resized to ``box`` on a transparent (zero) canvas."""
    part = layer.crop(bbox)
    if part.size != (box[2] - box[0], box[3] - box[1]):
        part = part.resize((box[2] - box[0], box[3] - box[1]), Image.Resampling.LANCZOS)
    out = Image.new(layer.mode, canvas, 0)
    out.paste(part, box[:2])
    return out


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
        model_name = (opts.model or ctx.settings.remove_bg_type_models.get(opts.type)
                      or ctx.settings.remove_bg_model)
        im = open_image(ctx.read_source(), ctx.settings.max_image_pixels)
        cap = SIZES[opts.size] or FULL_PIXELS
        if im.width * im.height > cap:  # `size`: the output's resolution (and the model's input)
            f = (cap / (im.width * im.height)) ** 0.5
            im = im.resize((max(1, int(im.width * f)), max(1, int(im.height * f))),
                           Image.Resampling.LANCZOS)
        model = self.load(ctx, model_name)
        mask = model.mask(im)
        if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
            mask = ImageChops.darker(mask, im.convert("RGBA").getchannel("A"))
        if not opts.semitransparency:
            mask = mask.point(lambda v: 255 if v >= 128 else 0)
        if opts.roi != "0% 0% 100% 100%":  # only a foreground inside the region is kept
            box = roi_box(opts.roi, im.size)
            inside = Image.new("L", im.size, 0)
            inside.paste(mask.crop(box), box[:2])
            mask = inside
        rgb = im if im.mode == "RGB" else im.convert("RGB")
        shadow = _shadow(mask) if opts.add_shadow else None
        size = rgb.size
        if opts.placed:
            bbox = mask.getbbox() or (0, 0, *rgb.size)  # no subject found: the whole image
            size, box = layout(opts, rgb.size, bbox)
            rgb = _place(rgb, bbox, size, box)
            mask = _place(mask, bbox, size, box)
            if shadow is not None:
                shadow = _place(shadow, bbox, size, box)
        if opts.channels == "alpha":
            out = mask
        else:
            out = self._compose(ctx, opts, rgb, mask, shadow)
        data, mime, ext = self._encode(ctx, opts, out, im.info.get("icc_profile"))
        return ExtensionResult(
            new_version=data,
            output={"model": model_name, "width": out.width, "height": out.height,
                    "format": ext, "size": opts.size, "type": opts.type,
                    "channels": opts.channels},
            model=model_name,
            device=model.device,
            new_version_mime=mime,
            new_version_ext=ext,
        )

    def _compose(self, ctx: ExtensionContext, opts: RemoveBgOptions, rgb: Image.Image,
                 mask: Image.Image, shadow: Image.Image | None) -> Image.Image:
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
            return out
        if background.mode == "RGBA":  # a translucent colour: the subject stays opaque
            fg = rgb.convert("RGBA")
            fg.putalpha(mask)
            if shadow is not None:
                layer = Image.new("RGBA", rgb.size, (0, 0, 0, 0))
                layer.putalpha(shadow)
                background = Image.alpha_composite(background, layer)
            return Image.alpha_composite(background, fg)
        out = background
        if shadow is not None:
            out.paste((0, 0, 0), (0, 0, *out.size), shadow)
        out.paste(rgb, (0, 0), mask)
        return out

    def _encode(self, ctx: ExtensionContext, opts: RemoveBgOptions, out: Image.Image,
                icc: bytes | None) -> tuple[bytes, str, str]:
        """remove.bg's ``format``: auto is PNG where the result has transparency (or is
        the mask), else JPG; JPG has none (it lies on white)."""
        fmt = opts.format
        if fmt == "auto":
            fmt = "png" if out.mode in ("RGBA", "L") else "jpg"
        if fmt == "png":
            # The source's colour profile travels with the cut-out (wide-gamut photos would
            # otherwise shift colour when shown). Deflated on this process's CPU budget
            # (idle cores shorten one job; under full load the threads take turns).
            return (encode_png(out, ctx.settings.png_compress_level, icc,
                               threads=inference_threads(ctx.settings)), "image/png", "png")
        buf = io.BytesIO()
        extra = {"icc_profile": icc} if icc and out.mode != "L" else {}
        if fmt == "webp":
            out.save(buf, "WEBP", quality=90, method=4, **extra)
            return buf.getvalue(), "image/webp", "webp"
        if out.mode == "RGBA":
            flat = Image.new("RGB", out.size, (255, 255, 255))
            flat.paste(out, (0, 0), out)
            out = flat
        out.save(buf, "JPEG", quality=90, **extra)
        return buf.getvalue(), "image/jpeg", "jpg"

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
