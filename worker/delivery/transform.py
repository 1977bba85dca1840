"""The bounded subset of the hosted URL transformation grammar that delivery computes.

Both forms the SDKs write are read: the query parameter (``?tr=w-300,h-300``) and the path
segment (``/tr:w-300,h-300/…``); a chain is steps separated by ``:`` (the path form's steps
run first). Each step is ``key-value`` pairs separated by ``,``:

=============  ==========================================================================
``w``, ``h``   pixels (1–``MAX_SIDE``) or a fraction of the input (``0.5``)
``ar``         aspect ratio ``W-H`` (with one of ``w``/``h``)
``c``          ``maintain_ratio`` (default: cover, then centre crop), ``at_max`` (fit
               inside, never enlarge), ``force`` (stretch)
``cm``         ``pad_resize`` (fit inside, pad to the box with ``bg``)
``bg``         ``RRGGBB`` or ``RRGGBBAA`` (padding, and what transparency becomes in JPEG)
``q``          quality 1–100 (JPEG, WebP)
``f``          ``auto`` (WebP where the client accepts it), ``jpg``, ``png``, ``webp``
``bl``         gaussian blur 1–100
``e``          ``grayscale``
``rt``         rotate ``0``, ``90``, ``180``, ``270``, ``360`` or ``auto`` (EXIF)
``n``          a named transformation: ``ik_ml_thumbnail``, what ``thumbnail`` URLs use
=============  ==========================================================================

Anything else is ``TransformError`` naming the parameter (a 400). ``normalise`` gives the
canonical text of a chain — the same for every way of writing one transformation — which,
with the version, names the derivative in the blob store.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from worker.core.errors import ErrorCode, PermanentError

MAX_SIDE = 8192
NAMED = {"ik_ml_thumbnail": "w-200,h-200,c-at_max,q-80"}
FORMATS = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
VIDEO_FORMATS = {"mp4": "video/mp4"}  # f-mp4: a GIF as a video (gif-to-video)
_HEX = re.compile(r"^[0-9A-Fa-f]{6}([0-9A-Fa-f]{2})?$")
_NUM = re.compile(r"^\d+(\.\d+)?$")
_ORDER = ("n", "w", "h", "ar", "c", "cm", "bg", "rt", "bl", "e", "q", "f")


class TransformError(PermanentError, ValueError):
    """A transformation the grammar does not allow; the message names the parameter."""

    code = ErrorCode.INVALID_TRANSFORMATION


@dataclass(frozen=True)
class Step:
    values: dict[str, str] = field(default_factory=dict)

    def get(self, key: str) -> str | None:
        return self.values.get(key)

    def text(self) -> str:
        return ",".join(f"{k}-{self.values[k]}" for k in _ORDER if k in self.values)


@dataclass(frozen=True)
class Chain:
    steps: tuple[Step, ...]

    def text(self) -> str:
        return ":".join(s.text() for s in self.steps)

    @property
    def format(self) -> str | None:
        """The last ``f`` of the chain (``auto``, ``jpg``, ``png``, ``webp``), if any."""
        return next((s.get("f") for s in reversed(self.steps) if s.get("f")), None)

    @property
    def quality(self) -> int | None:
        q = next((s.get("q") for s in reversed(self.steps) if s.get("q")), None)
        return int(q) if q else None

    def __bool__(self) -> bool:
        return bool(self.steps)


def background(value: str) -> str:
    """The background's canonical text: ``RRGGBB``, or ``RRGGBBAA`` with the hosted form's
    opacity ``AA`` (``00``-``99``, percent: ``bg-FFFFFF50`` is half-transparent white); a
    colour name (``bg-red``) becomes its hex, so both spellings share one derivative."""
    from PIL import ImageColor

    if _HEX.match(value):
        if len(value) == 8 and not value[6:].isdigit():
            raise TransformError(f"bg-{value}: the last two digits of RRGGBBAA are the "
                                 "opacity, 00 to 99")
        return value.upper()
    if re.fullmatch(r"[A-Za-z]{3,30}", value) and value.lower() in ImageColor.colormap:
        r, g, b = ImageColor.getrgb(value.lower())[:3]
        return f"{r:02X}{g:02X}{b:02X}"
    raise TransformError(f"bg-{value}: bg must be a colour name (red), RRGGBB or RRGGBBAA "
                         "(AA the opacity, 00-99)")


def _int(key: str, value: str, low: int, high: int) -> str:
    if not value.isdigit() or not low <= int(value) <= high:
        raise TransformError(f"{key}-{value}: {key} must be a whole number from {low} to {high}")
    return str(int(value))


def _side(key: str, value: str) -> str:
    if not _NUM.match(value):
        raise TransformError(f"{key}-{value}: {key} must be pixels (1-{MAX_SIDE}) or a "
                             "fraction of the input (0.5)")
    number = float(value)
    if "." in value:
        if not 0 < number <= 1:
            raise TransformError(f"{key}-{value}: a fractional {key} must be above 0 and at "
                                 "most 1")
        return repr(number)
    return _int(key, value, 1, MAX_SIDE)


def _check(key: str, value: str) -> str:
    if key in ("w", "h"):
        return _side(key, value)
    if key == "ar":
        parts = value.split("-")
        if len(parts) != 2 or not all(p.isdigit() and 1 <= int(p) <= 100 for p in parts):
            raise TransformError(f"ar-{value}: ar must be W-H, each from 1 to 100 (ar-4-3)")
        return f"{int(parts[0])}-{int(parts[1])}"
    if key == "c":
        if value not in ("maintain_ratio", "at_max", "force"):
            raise TransformError(f"c-{value}: c must be maintain_ratio, at_max or force")
        return value
    if key == "cm":
        if value != "pad_resize":
            raise TransformError(f"cm-{value}: cm must be pad_resize")
        return value
    if key == "bg":
        return background(value)
    if key == "q":
        return _int(key, value, 1, 100)
    if key == "f":
        value = "jpg" if value == "jpeg" else value
        if value not in ("auto", *FORMATS, *VIDEO_FORMATS):
            raise TransformError(f"f-{value}: f must be auto, jpg, png, webp or mp4 (a GIF)")
        return value
    if key == "bl":
        return _int(key, value, 1, 100)
    if key == "e":
        if value != "grayscale":
            raise TransformError(f"e-{value}: the only effect is e-grayscale")
        return value
    if key == "rt":
        if value not in ("0", "90", "180", "270", "360", "auto"):
            raise TransformError(f"rt-{value}: rt must be 0, 90, 180, 270, 360 or auto")
        return value
    raise TransformError(f"{key}: not a transformation this deployment computes (supported: "
                         f"{', '.join(k for k in _ORDER)})")


def _step(text: str, named_ok: bool = True) -> list[Step]:
    values: dict[str, str] = {}
    expanded: list[Step] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise TransformError(f"{text!r}: an empty parameter")
        key, sep, value = part.partition("-")
        if not sep or not value:
            raise TransformError(f"{part}: a parameter is key-value (w-300)")
        if key == "n":
            if not named_ok or value not in NAMED:
                raise TransformError(f"n-{value}: no named transformation {value!r} (named: "
                                     f"{', '.join(NAMED)})")
            expanded += _step(NAMED[value], named_ok=False)
            continue
        if key in values:
            raise TransformError(f"{key}: given twice in one step ({text})")
        values[key] = _check(key, value)
    if "ar" in values and ("w" in values) == ("h" in values):
        raise TransformError("ar: give it with exactly one of w and h")
    if "cm" in values and not ("w" in values and "h" in values):
        raise TransformError("cm-pad_resize: needs both w and h")
    return expanded + ([Step(values)] if values else [])


MAX_STEPS = 10


def parse(*chains: str | None) -> Chain:
    """The chain of every given text (path form first, then the query's ``tr``)."""
    steps: list[Step] = []
    for chain in chains:
        if not chain:
            continue
        for text in chain.split(":"):
            steps += _step(text)
    if len(steps) > MAX_STEPS:
        raise TransformError(f"tr: at most {MAX_STEPS} steps in a chain")
    return Chain(tuple(steps))
