"""remove.bg's own options, as the hosted extensions document passes them on ("sent
directly to the third-party service"): each honoured on the real u2netp model, or refused
when the job is validated, naming the option.

The rules quoted are remove.bg's API reference (``/v1.0/removebg``'s form fields).
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tests.core.test_contract import parse_extension
from tests.pipeline.test_pipeline import run_job
from tests.support import jpeg


@pytest.fixture(scope="module")
def coffee() -> Image.Image:
    """A subject with empty space on every side (the astronaut fills her frame)."""
    import skimage.data

    return Image.fromarray(skimage.data.coffee())


def cut(runtime, image: Image.Image, **options) -> tuple[Image.Image, dict, dict]:
    """(the new version, its job slot, the record) of one remove-bg with ``options``."""
    rec = runtime.pipeline.add_file(jpeg(image), "a.jpg")
    doc = run_job(runtime, {"fileId": rec.fileId, "extensions": [
        {"name": "remove-bg", "options": options}]})
    slot = doc["extensions"]["remove-bg"]
    assert slot["status"] == "success", slot
    after = runtime.pipeline.get_file(rec.fileId)
    return Image.open(io.BytesIO(runtime.blobs.get(after.current.blobKey))), slot, after


def test_size_is_the_output_resolution(runtime, astronaut):
    """size: "preview" (same as "small" or "regular") — up to 0.25 megapixels; "medium" —
    up to 1.5 MP; "hd" — up to 4 MP; "full"/"4k"/"auto" — the original resolution."""
    big = astronaut.resize((1600, 1200))
    for size, cap in (("preview", 0.25e6), ("regular", 0.25e6), ("medium", 1.5e6)):
        im, slot, _ = cut(runtime, big, size=size)
        assert 0.97 * cap <= im.width * im.height <= cap, (size, im.size)
        assert abs(im.width / im.height - 4 / 3) < 0.01
        assert slot["output"]["size"] == size
    for size in ("hd", "full", "auto"):
        im, _, _ = cut(runtime, big, size=size)
        assert im.size == (1600, 1200), size


def test_format_and_channels(runtime, astronaut):
    """format: "auto" = PNG if transparent regions exist, otherwise JPG; "png", "jpg",
    "webp". channels: "rgba" the finalized image, "alpha" the alpha mask."""
    rgba, _, rec = cut(runtime, astronaut)
    assert (rgba.format, rgba.mode, rec.mime) == ("PNG", "RGBA", "image/png")
    for fmt, pil, mime in (("png", "PNG", "image/png"), ("jpg", "JPEG", "image/jpeg"),
                           ("webp", "WEBP", "image/webp")):
        im, slot, rec = cut(runtime, astronaut, format=fmt)
        assert (im.format, rec.mime, slot["output"]["format"]) == (pil, mime, fmt)
    jpg, _, _ = cut(runtime, astronaut, format="jpg")
    assert jpg.mode == "RGB" and min(jpg.getpixel((3, 3))) >= 250  # transparency → white
    webp, _, _ = cut(runtime, astronaut, format="webp")
    assert webp.mode == "RGBA" and webp.getpixel((3, 3))[3] == 0
    mask, _, rec = cut(runtime, astronaut, channels="alpha")
    assert (mask.format, mask.mode) == ("PNG", "L")
    assert np.array_equal(np.asarray(mask), np.asarray(rgba.getchannel("A")))


def test_roi_keeps_only_a_foreground_inside_it(runtime, astronaut):
    """roi: "Region of interest: only contents of this rectangular region can be detected
    as foreground" — x1 y1 x2 y2, px or %."""
    whole, _, _ = cut(runtime, astronaut)
    left, _, _ = cut(runtime, astronaut, roi="0% 0% 50% 100%")
    a, b = np.asarray(whole.getchannel("A")), np.asarray(left.getchannel("A"))
    assert b[:, 256:].max() == 0 and a[:, 256:].max() > 200  # the right half is gone
    assert np.array_equal(a[:, :256], b[:, :256])  # the left half is as it was
    px, _, _ = cut(runtime, astronaut, roi="0 0 256px 512px")
    assert np.array_equal(np.asarray(px.getchannel("A")), b)


def test_crop_and_crop_margin(runtime, coffee):
    """crop: "crop off all empty regions"; crop_margin: "absolute (e.g. "30px") or relative
    to the subject size (e.g. "10%")", 1, 2 or 4 values, at most 50 % or 500 px a side."""
    whole, _, _ = cut(runtime, coffee)
    x1, y1, x2, y2 = whole.getchannel("A").getbbox()
    w, h = x2 - x1, y2 - y1
    assert (w, h) != whole.size
    cropped, _, rec = cut(runtime, coffee, crop=True)
    assert cropped.size == (w, h) and (rec.width, rec.height) == (w, h)
    assert np.array_equal(np.asarray(cropped), np.asarray(whole.crop((x1, y1, x2, y2))))
    margin, _, _ = cut(runtime, coffee, crop=True, crop_margin="10px")
    assert margin.size == (w + 20, h + 20)
    assert margin.getchannel("A").getbbox() == (10, 10, 10 + w, 10 + h)
    css, _, _ = cut(runtime, coffee, crop=True, crop_margin="1px 2px 3px 4px")
    assert css.size == (w + 6, h + 4) and css.getchannel("A").getbbox()[:2] == (4, 1)
    rel, _, _ = cut(runtime, coffee, crop=True, crop_margin="10%")
    assert rel.size == (w + 2 * round(w / 10), h + 2 * round(h / 10))
    ignored, _, _ = cut(runtime, coffee, crop_margin="30px")  # only with crop=true
    assert ignored.size == whole.size


def test_scale_and_position(runtime, coffee):
    """scale: "relative to the total image size", 10%-100% — "implies position=center";
    position: "center", or horizontal and vertical percentages ("0% 0%": top left)."""
    whole, _, _ = cut(runtime, coffee)
    x1, y1, x2, y2 = whole.getchannel("A").getbbox()
    w, h = x2 - x1, y2 - y1
    half, _, _ = cut(runtime, coffee, scale="50%")
    f = min(0.5 * 600 / w, 0.5 * 400 / h)
    bx1, by1, bx2, by2 = half.getchannel("A").getbbox()
    assert half.size == (600, 400)
    assert abs((bx2 - bx1) - w * f) <= 3 and abs((by2 - by1) - h * f) <= 3
    assert abs((bx1 + bx2) / 2 - 300) <= 3 and abs((by1 + by2) / 2 - 200) <= 3  # centred
    corner, _, _ = cut(runtime, coffee, scale="50%", position="0% 0%")
    assert corner.getchannel("A").getbbox()[:2] == (0, 0)
    moved, _, _ = cut(runtime, coffee, position="100%")  # one value: both axes
    mx1, my1, mx2, my2 = moved.getchannel("A").getbbox()
    assert (mx2, my2) == (600, 400) and (mx2 - mx1, my2 - my1) == (w, h)


def test_bg_color_names_and_alpha(runtime, astronaut):
    """bg_color: "hex color code (e.g. 81d4fa, fff) or color name (e.g. green)" — the
    documents' own "bg_colour": "green" — an 8-digit hex carries alpha."""
    green, _, rec = cut(runtime, astronaut, bg_colour="green")
    assert rec.mime == "image/jpeg" and not rec.hasAlpha  # auto: nothing transparent
    assert max(abs(a - b) for a, b in zip(green.getpixel((3, 3)), (0, 128, 0), strict=True)) <= 3
    seethrough, _, rec = cut(runtime, astronaut, bg_color="ff000080")
    assert rec.mime == "image/png" and seethrough.mode == "RGBA"
    assert seethrough.getpixel((3, 3)) == (255, 0, 0, 128)
    assert seethrough.getpixel((230, 150))[3] == 255  # the subject stays opaque


def test_type_is_a_model_hint_where_one_is_configured(runtime, settings, astronaut):
    """type: "auto", "person", "product", "animal", "car", … — here the model for that type
    when ``EXTWORKER_REMOVE_BG_TYPE_MODELS`` names one; otherwise accepted and recorded."""
    settings.remove_bg_model = "u2net-not-pulled"  # the default would fail…
    settings.remove_bg_type_models = {"person": "u2netp"}  # …a person uses this one
    _, slot, _ = cut(runtime, astronaut, type="person", type_level="2")
    assert slot["model"] == "u2netp" and slot["output"]["type"] == "person"
    rec = runtime.pipeline.add_file(jpeg(astronaut), "b.jpg")
    doc = run_job(runtime, {"fileId": rec.fileId, "extensions": [
        {"name": "remove-bg", "options": {"type": "product"}}]})
    assert doc["extensions"]["remove-bg"]["status"] == "failed"
    assert "u2net-not-pulled" in doc["extensions"]["remove-bg"]["error"]["message"]


@pytest.mark.parametrize(("options", "named", "says"), [
    ({"format": "zip"}, "options.format", "zip"),
    ({"size": "8k"}, "options.size", "preview"),
    ({"type": "furniture"}, "options.type", "person"),
    ({"type_level": "3"}, "options.type_level", "latest"),
    ({"roi": "1 2 3"}, "options.roi", "x1 y1 x2 y2"),
    ({"roi": "0% 0% 120% 100%"}, "options.roi", "above 100%"),
    ({"crop_margin": "600px"}, "options.crop_margin", "500px"),
    ({"crop_margin": "60%"}, "options.crop_margin", "50%"),
    ({"crop_margin": "1px 2px 3px"}, "options.crop_margin", "1, 2 or 4"),
    ({"scale": "5%"}, "options.scale", "10%-100%"),
    ({"position": "left"}, "options.position", "center"),
    ({"channels": "rgb"}, "options.channels", "alpha"),
    ({"channels": "alpha", "bg_color": "red"}, "options", "mask alone"),
    ({"bg_color": "notacolour"}, "options.bg_color", "not a colour"),
    ({"bg_image_file": "x"}, "options", "bg_image_url"),
    ({"image_url": "https://example.com/a.jpg"}, "options", "job's file"),
    ({"shadow_type": "drop"}, "options.shadow_type", "not permitted"),
])
def test_each_option_out_of_range_is_refused_naming_it(options, named, says):
    with pytest.raises(ValueError) as e:
        parse_extension({"name": "remove-bg", "options": options}, "extensions[0]")
    assert str(e.value).startswith(f"extensions[0].{named}"), str(e.value)
    assert says in str(e.value)


def test_lengths_may_be_numbers():
    ext = parse_extension({"name": "remove-bg", "options": {"crop": True, "crop_margin": 10}})
    assert ext.options.crop_margin == "10"  # type: ignore[attr-defined]
