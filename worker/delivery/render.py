"""Computes a transformation chain on libvips (pyvips).

libvips, not Pillow: a thumbnail of a JPEG is decoded at 1/2–1/8 scale (shrink-on-load)
and processed in a streaming pipeline, never a whole full-size bitmap per step —
``benchmarks/delivery.py`` measures it against thumbor on the same photos and cores.
EXIF orientation is applied on load (what a browser shows); the output carries no
EXIF/XMP (no camera serial or GPS leaves through a thumbnail), only the ICC profile.
"""

from __future__ import annotations

from dataclasses import dataclass

from worker.delivery.transform import FORMATS, Chain, Step, TransformError

UNBOUNDED = 10_000_000


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
    return {v: k for k, v in FORMATS.items()}.get(source_mime, "png")


def _side(value: str | None, current: int) -> int | None:
    if value is None:
        return None
    return max(1, round(float(value) * current)) if "." in value else int(value)


def _background(step_bg: str | None, bands: int) -> list[float]:
    hexa = step_bg or "FFFFFF"
    rgba = [int(hexa[i:i + 2], 16) for i in range(0, len(hexa), 2)]
    if bands in (2, 4):
        return (rgba + [255])[:4] if bands == 4 else [rgba[0], (rgba + [255])[3]]
    return rgba[:3] if bands >= 3 else rgba[:1]


def _resize(source: object, step: Step, width: int, height: int, max_pixels: int,
            from_buffer: bool) -> object:
    import pyvips

    w, h = _side(step.get("w"), width), _side(step.get("h"), height)
    ar = step.get("ar")
    if ar:
        a, b = (int(x) for x in ar.split("-"))
        if w is not None:
            h = max(1, round(w * b / a))
        elif h is not None:
            w = max(1, round(h * a / b))
    crop, mode = step.get("c") or "maintain_ratio", step.get("cm")
    box_w, box_h = w or UNBOUNDED, h or UNBOUNDED
    out_w = w or round(width * (h or height) / height)
    out_h = h or round(height * (w or width) / width)
    if out_w * out_h > max_pixels:
        raise TransformError(f"w, h: {out_w}x{out_h} is more than the {max_pixels} pixels "
                             "an image may have here")
    options: dict[str, object] = {"height": box_h}
    if mode == "pad_resize":
        options["size"] = "both"
    elif crop == "force" and w and h:
        options["size"] = "force"
    elif crop == "at_max":
        options["size"] = "down"
    elif w and h:
        options.update(size="both", crop="centre")
    else:
        options["size"] = "both"
    if from_buffer:
        img = pyvips.Image.thumbnail_buffer(source, box_w, **options)
    else:
        img = source.thumbnail_image(box_w, **options)  # type: ignore[attr-defined]
    if mode == "pad_resize" and w and h:
        img = img.gravity("centre", w, h, extend="background",
                          background=_background(step.get("bg"), img.bands))
    return img


def render(data: bytes, chain: Chain, fmt: str, max_pixels: int) -> Rendered:
    """The chain applied to ``data`` (an image's bytes), encoded as ``fmt``."""
    import pyvips

    try:
        probe = pyvips.Image.new_from_buffer(data, "", access="sequential")
    except pyvips.Error as e:
        raise TransformError(f"tr: the file cannot be decoded as an image ({e})") from None
    if probe.width * probe.height > max_pixels:
        raise TransformError(f"tr: the image has more than the {max_pixels} pixels "
                             "transformations may read")
    # thumbnail_buffer applies EXIF orientation: the sides it resizes are turned ones.
    turned = probe.get_typeof("orientation") and probe.get("orientation") in (5, 6, 7, 8)
    img: object | None = None
    bg: str | None = None
    for step in chain.steps:
        bg = step.get("bg") or bg
        if step.get("w") or step.get("h"):
            if img is None:
                sides = (probe.height, probe.width) if turned else (probe.width, probe.height)
                img = _resize(data, step, *sides, max_pixels, from_buffer=True)
            else:
                img = _resize(img, step, img.width, img.height,  # type: ignore[attr-defined]
                              max_pixels, from_buffer=False)
        elif img is None:
            img = pyvips.Image.new_from_buffer(data, "").autorot()
        img = _apply(img, step)  # the step's other operations, after its resize
    if img is None:
        img = pyvips.Image.new_from_buffer(data, "").autorot()
    return _encode(img, fmt, chain.quality, bg)


def _apply(img: object, step: Step) -> object:
    rt = step.get("rt")
    if rt in ("90", "180", "270"):
        img = img.rot(f"d{rt}")  # type: ignore[attr-defined]
    if step.get("bl"):
        img = img.gaussblur(int(step.get("bl") or 1) / 2)  # type: ignore[attr-defined]
    if step.get("e") == "grayscale":
        img = img.colourspace("b-w")  # type: ignore[attr-defined]
    return img


def _encode(img: object, fmt: str, quality: int | None, bg: str | None) -> Rendered:
    v = img
    if v.interpretation not in ("srgb", "b-w"):  # type: ignore[attr-defined]
        v = v.colourspace("srgb")  # type: ignore[attr-defined]
    if v.format != "uchar":  # type: ignore[attr-defined]
        v = v.cast("uchar")  # type: ignore[attr-defined]
    if fmt == "jpg":
        if v.hasalpha():  # type: ignore[attr-defined]
            v = v.flatten(background=_background(bg, 3 if v.bands >= 3 else 1))  # type: ignore
        data = v.write_to_buffer(".jpg", Q=quality or 80, keep="icc")  # type: ignore
    elif fmt == "webp":
        data = v.write_to_buffer(".webp", Q=quality or 80, effort=2, keep="icc")  # type: ignore
    else:
        data = v.write_to_buffer(".png", compression=3, keep="icc")  # type: ignore
    return Rendered(data=data, mime=FORMATS[fmt], width=v.width, height=v.height)  # type: ignore
