"""Image decoding and encoding with the guards a worker needs.

Every decode error becomes a ``PermanentError`` with a message a user can act
on; a decompression bomb is refused before pixels are allocated.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import PermanentError


@dataclass
class ImageInfo:
    mime: str
    width: int
    height: int
    has_alpha: bool


def _check_pixels(im: Image.Image, max_pixels: int) -> None:
    if im.width * im.height > max_pixels:
        raise PermanentError(
            f"image is {im.width}x{im.height} = {im.width * im.height} pixels, above the "
            f"limit of {max_pixels}",
            code="image_too_large",
        )


def probe(data: bytes) -> ImageInfo | None:
    """Format, size and alpha of ``data``, or ``None`` when it is not an image."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
        w, h = im.size
        if im.format in ("JPEG", "MPO"):
            # EXIF orientations 5-8 rotate by 90 degrees: report the displayed size.
            if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):
                w, h = h, w
        mime = Image.MIME.get(im.format or "", "application/octet-stream")
        alpha = im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info
        return ImageInfo(mime=mime, width=w, height=h, has_alpha=alpha)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """Decode ``data`` fully, honouring EXIF orientation; ``PermanentError`` if unusable."""
    if not data:
        raise PermanentError("the file is empty (0 bytes)", code="invalid_image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            _check_pixels(im, max_pixels)
            im.load()
    except PermanentError:
        raise
    except UnidentifiedImageError:
        raise PermanentError(
            "the file is not an image in a supported format", code="invalid_image"
        ) from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise PermanentError(f"the image is corrupt or truncated: {e}", code="invalid_image") from e
    transposed = ImageOps.exif_transpose(im)
    return transposed if transposed is not None else im


def encode_png(im: Image.Image, compress_level: int) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG", compress_level=compress_level)
    return buf.getvalue()
