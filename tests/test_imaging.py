"""The PNG writer: lossless for every mode, readable by Pillow, colour profile kept."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageCms

from worker.core.imaging import encode_png

SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA", "P", "1"])
@pytest.mark.parametrize("level", [0, 1, 9])
def test_round_trip_is_lossless(mode, level):
    rng = np.random.default_rng(7)
    base = Image.fromarray(rng.integers(0, 256, (41, 67, 4), dtype=np.uint8), "RGBA")
    im = base.convert(mode)  # P and 1 take Pillow's path, the others the fast one
    data = encode_png(im, level, icc_profile=SRGB)
    back = Image.open(io.BytesIO(data))
    back.load()
    assert back.format == "PNG" and back.size == im.size
    assert back.info["icc_profile"] == SRGB
    if mode == "P":
        back = back.convert("RGBA")
        im = im.convert("RGBA")
    assert back.mode == im.mode
    assert np.array_equal(np.asarray(back), np.asarray(im))


def test_higher_levels_are_smaller_on_a_photo(astronaut):
    im = astronaut.convert("RGBA")
    sizes = [len(encode_png(im, level)) for level in (0, 1, 6)]
    assert sizes[0] > sizes[1] > sizes[2]
    assert sizes[0] > 4 * 512 * 512  # level 0 stores the filtered bytes as they are
