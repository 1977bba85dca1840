"""Computes a transformation chain (``worker.delivery.transform``) on Pillow.

Chosen by measurement over libvips (pyvips, the field's usual fast path): for a thumbnail
of a camera-sized JPEG, Pillow's ``draft`` (the JPEG decoder's DCT scaling to 1/2–1/8) then
a Lanczos resize took 10–11 ms where ``pyvips.Image.thumbnail_buffer`` took 18–19 ms on the
same photos and core (libvips keeps a 2x margin on shrink-on-load for quality, and the
wheel's decoder is slower here) — ``benchmarks/delivery.py`` prints both, and the whole
server against thumbor. EXIF orientation is applied on load (what a browser shows); the
output keeps the ICC profile and no EXIF/XMP (no camera serial or GPS leaves through a
thumbnail).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageFilter, ImageOps

from worker.core import video
from worker.core.video import looks_like_video
from worker.delivery.transform import FORMATS, Chain, Step, TransformError

LANCZOS = Image.Resampling.LANCZOS


@dataclass
class Rendered:
    data: bytes
    mime: str
    width: int
    height: int


def output_format(chain: Chain, source_mime: str, accepts_webp: bool) -> str:
    """``jpg``, ``png`` or ``webp``: the chain's ``f``, else the source's own (other
    sources: PNG)."""
    fmt = chain.format
    if fmt == "auto":
        if accepts_webp:
            return "webp"
        fmt = None
    if fmt:
        return fmt
    if source_mime.startswith("video/"):
        return "jpg"  # a video's frame (its thumbnail)
    return {v: k for k, v in FORMATS.items()}.get(source_mime, "png")


def _gif_to_video(data: bytes, max_pixels: int) -> Rendered:
    try:
        im = Image.open(io.BytesIO(data))
    except Exception as e:  # noqa: BLE001 - Pillow raises many kinds for bad input
        raise TransformError(f"f-mp4: the file cannot be decoded ({e})") from None
    if im.format != "GIF":
        raise TransformError("f-mp4: applies to GIFs (gif-to-video)")
    if im.width * im.height * getattr(im, "n_frames", 1) > 4 * max_pixels:
        raise TransformError("f-mp4: the GIF has more frames x pixels than may be encoded")
    if not video.available():
        raise TransformError("f-mp4: needs the video extra (PyAV) on this node")
    out = video.gif_to_mp4(data)
    return Rendered(out, "video/mp4", im.width // 2 * 2, im.height // 2 * 2)


def _side(value: str | None, current: int) -> int | None:
    if value is None:
        return None
    return max(1, round(float(value) * current)) if "." in value else int(value)


def _rgba(hexa: str | None) -> tuple[int, int, int, int]:
    hexa = hexa or "FFFFFF"
    r, g, b = (int(hexa[i:i + 2], 16) for i in range(0, 6, 2))
    # RRGGBBAA: AA is the opacity in percent, 00-99 (the hosted form; 99 is opaque).
    alpha = round(int(hexa[6:]) * 255 / 99) if len(hexa) == 8 else 255
    return r, g, b, alpha


def _box(step: Step, width: int, height: int) -> tuple[int | None, int | None]:
    w, h = _side(step.get("w"), width), _side(step.get("h"), height)
    ar = step.get("ar")
    if ar:
        a, b = (int(x) for x in ar.split("-"))
        if w is not None:
            h = max(1, round(w * b / a))
        elif h is not None:
            w = max(1, round(h * a / b))
    return w, h


def _resize(im: Image.Image, step: Step, max_pixels: int) -> Image.Image:
    w, h = _box(step, im.width, im.height)
    out_w = w or max(1, round(im.width * (h or im.height) / im.height))
    out_h = h or max(1, round(im.height * (w or im.width) / im.width))
    if out_w * out_h > max_pixels:
        raise TransformError(f"w, h: {out_w}x{out_h} is more than the {max_pixels} pixels "
                             "an image may have here")
    crop, mode = step.get("c") or "maintain_ratio", step.get("cm")
    if mode == "pad_resize" and w and h:
        fill = _rgba(step.get("bg"))
        see_through = "A" in im.getbands() or "transparency" in im.info or fill[3] < 255
        if im.mode != "RGBA" and see_through:
            im = im.convert("RGBA")  # a see-through fill needs an alpha channel
        elif im.mode not in ("RGB", "RGBA"):
            im = im.convert("RGB")
        return ImageOps.pad(im, (w, h), LANCZOS, color=fill if im.mode == "RGBA"
                            else fill[:3])
    if w and h and crop == "force":
        return im.resize((w, h), LANCZOS, reducing_gap=3.0)
    if crop == "at_max":
        im = im.copy() if im.readonly else im
        im.thumbnail((w or im.width, h or im.height), LANCZOS)  # never enlarges
        return im
    if w and h:
        return ImageOps.fit(im, (w, h), LANCZOS)  # cover, then crop the centre
    return im.resize((out_w, out_h), LANCZOS, reducing_gap=3.0)


def _apply(im: Image.Image, step: Step) -> Image.Image:
    rt = step.get("rt")
    if rt in ("90", "180", "270"):  # clockwise
        im = im.rotate(-int(rt), expand=True)
    if step.get("bl"):
        im = im.filter(ImageFilter.GaussianBlur(int(step.get("bl") or 1) / 2))
    if step.get("e") == "grayscale":
        im = im.convert("LA" if "A" in im.getbands() else "L")
    return im


def render(data: bytes, chain: Chain, fmt: str, max_pixels: int) -> Rendered:
    """The chain applied to ``data`` (an image's bytes, or a video's: its opening keyframe),
    encoded as ``fmt``; ``mp4`` turns an animated GIF into a video (``gif-to-video``)."""
    if fmt == "mp4":
        return _gif_to_video(data, max_pixels)
    if looks_like_video(data[:16]):
        frame = video.thumbnail_frame(data) if video.available() else None
        if frame is None:
            raise TransformError("tr: no frame of this video can be decoded")
        im = frame
    else:
        try:
            im = Image.open(io.BytesIO(data))
        except Exception as e:  # noqa: BLE001 - Pillow raises many kinds for bad input
            raise TransformError(f"tr: the file cannot be decoded as an image ({e})") from None
    if im.width * im.height > max_pixels:
        raise TransformError(f"tr: the image has more than the {max_pixels} pixels "
                             "transformations may read")
    icc = im.info.get("icc_profile")
    first = chain.steps[0] if chain.steps else None
    if im.format == "JPEG" and first is not None and (first.get("w") or first.get("h")):
        turned = im.getexif().get(0x0112) in (5, 6, 7, 8)  # sides swap once oriented
        sw, sh = (im.height, im.width) if turned else (im.width, im.height)
        w, h = _box(first, sw, sh)
        if first.get("cm") != "pad_resize" and (first.get("c") or "") != "at_max" and w and h:
            # Covering the box: the short side must reach it; fitting: either side.
            scale = max(w / sw, h / sh)
        else:
            scale = min((w or sw) / sw, (h or sh) / sh)
        want = (max(1, round(sw * scale)), max(1, round(sh * scale)))
        im.draft(im.mode if im.mode in ("RGB", "L", "CMYK") else "RGB",
                 want if not turned else (want[1], want[0]))
    try:
        im = ImageOps.exif_transpose(im)
        for step in chain.steps:
            if step.get("w") or step.get("h"):
                im = _resize(im, step, max_pixels)
            im = _apply(im, step)
        return _encode(im, fmt, chain.quality, next(
            (s.get("bg") for s in reversed(chain.steps) if s.get("bg")), None), icc)
    except TransformError:
        raise
    except (OSError, ValueError) as e:
        raise TransformError(f"tr: the image cannot be transformed ({e})") from None


def _encode(im: Image.Image, fmt: str, quality: int | None, bg: str | None,
            icc: bytes | None) -> Rendered:
    extra = {"icc_profile": icc} if icc else {}
    out = io.BytesIO()
    if fmt == "jpg":
        if "A" in im.getbands() or im.mode == "P":
            rgba = im.convert("RGBA")
            flat = Image.new("RGB", rgba.size, _rgba(bg)[:3])
            flat.paste(rgba, mask=rgba.getchannel("A"))
            im = flat
        elif im.mode not in ("RGB", "L"):
            im = im.convert("RGB")
            extra = {}  # a CMYK profile does not describe RGB pixels
        im.save(out, "JPEG", quality=quality or 80, **extra)
    elif fmt == "webp":
        if im.mode not in ("RGB", "RGBA"):
            im = im.convert("RGBA" if "A" in im.getbands() or im.mode == "P" else "RGB")
        im.save(out, "WEBP", quality=quality or 80, method=2, **extra)
    else:
        if im.mode not in ("RGB", "RGBA", "L", "LA", "P"):
            im = im.convert("RGBA" if "A" in im.getbands() else "RGB")
        im.save(out, "PNG", compress_level=3, **extra)
    return Rendered(data=out.getvalue(), mime=FORMATS[fmt], width=im.width, height=im.height)
