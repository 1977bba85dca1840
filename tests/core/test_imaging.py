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


def _jpeg(im: Image.Image, **kwargs) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=92, **kwargs)
    return buf.getvalue()


@pytest.mark.parametrize(("size", "min_side", "decoded"), [
    ((2448, 1634), 448, (1224, 817)),  # 4 MP: 1/2 (1/4 would leave 408 < 448)
    ((4000, 3000), 448, (1000, 750)),  # 1/4 (1/8 would leave 375 < 448)
    ((1024, 1024), 768, (1024, 1024)),  # 1 MP for 384-pixel models: full size
    ((1024, 1024), 0, (1024, 1024)),  # 0: full size
])
def test_a_jpeg_is_decoded_no_larger_than_needed(astronaut, size, min_side, decoded):
    from worker.core.imaging import open_image

    im = open_image(_jpeg(astronaut.resize(size)), 10**8, min_side)
    assert im.size == decoded
    assert min(im.size) >= min_side


def test_a_reduced_decode_gives_the_model_the_same_picture(astronaut):
    """What a 224-pixel model sees from a draft decode vs a full decode then resize."""
    from worker.core.imaging import open_image

    data = _jpeg(astronaut.resize((2448, 1634), Image.Resampling.LANCZOS))
    full = open_image(data, 10**8).resize((224, 224), Image.Resampling.BICUBIC)
    draft = open_image(data, 10**8, 448).resize((224, 224), Image.Resampling.BICUBIC)
    diff = np.abs(np.asarray(full, np.int16) - np.asarray(draft, np.int16))
    assert diff.mean() < 2.0 and np.percentile(diff, 99) < 16


def test_a_reduced_decode_still_honours_exif_orientation(astronaut):
    from worker.core.imaging import open_image

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    im = open_image(_jpeg(astronaut.resize((2000, 1000)), exif=exif), 10**8, 224)
    assert im.size == (250, 500)


@pytest.mark.parametrize("threads", [2, 3, 8])
def test_parallel_deflate_is_one_valid_zlib_stream(astronaut, threads):
    import zlib

    from zlib_ng import zlib_ng

    from worker.core.imaging import deflate

    data = np.asarray(astronaut.resize((2048, 1536)).convert("RGBA")).tobytes()  # 12 MB
    whole = zlib_ng.compress(data, 2)
    split = deflate(data, 2, threads)
    assert split != whole  # really cut into slices
    assert zlib.decompress(split) == data  # one stream, Adler-32 of the whole included
    assert len(split) <= len(whole) * 1.01  # primed slices lose (almost) nothing


def test_a_png_deflated_on_threads_decodes_to_the_same_pixels(astronaut):
    im = astronaut.resize((2048, 1536)).convert("RGBA")
    data = encode_png(im, 2, threads=4)
    back = Image.open(io.BytesIO(data))
    back.load()
    assert back.mode == "RGBA" and np.array_equal(np.asarray(back), np.asarray(im))
    assert data != encode_png(im, 2)  # the threaded path was taken
