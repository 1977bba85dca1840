"""Embedded metadata (EXIF, IPTC, XMP) in the media API's ``embeddedMetadata`` shape.

ExifTool itself does the reading: it is the reference for these formats (the media
API's keys are ExifTool's tag names), it reads all three families plus maker notes,
and its print conversions are the values the media API shows (``ResolutionUnit:
"inches"``). Pure-Python readers each cover part of it (Pillow: EXIF only; exiv2:
other tag names and conversions), so matching ExifTool would mean re-writing its
tables. It runs as a subprocess with a time limit per call (~0.1 s), so a hostile
file can never hang a worker.

Normalisation on top of ExifTool's JSON (``-j``): one flat object, ExifTool's tag
names with punctuation dropped (``Caption-Abstract`` → ``CaptionAbstract``);
numbers stay numbers; dates become ISO 8601 in the media API's form
(``2002-07-13T15:58:28.000Z``; a zone offset, when the file has one, is applied);
list tags are always arrays; GPS coordinates are signed decimal degrees; binary
blobs and the File/System groups (facts about our temporary file) are left out.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# Tags ExifTool defines as lists: one value is still an array in the media API.
LIST_TAGS = frozenset({
    "Keywords", "Subject", "SupplementalCategories", "Creator", "HierarchicalSubject",
    "Contributor", "PersonInImage", "CatalogSets", "Language", "Publisher",
})
# What a derived version (a remove-bg cut-out) keeps from its source: who made it,
# who owns it, what it shows. Read from any family, written as EXIF + XMP (PNG has no IPTC).
RIGHTS_TAGS = (
    # IPTC first: a value the source also has in XMP or EXIF (below) wins over it.
    "-XMP-dc:Rights<IPTC:CopyrightNotice", "-XMP-dc:Creator<IPTC:By-line",
    "-XMP-dc:Description<IPTC:Caption-Abstract", "-XMP-dc:Subject<IPTC:Keywords",
    "-XMP-photoshop:Credit<IPTC:Credit", "-XMP-photoshop:Source<IPTC:Source",
    "-XMP-photoshop:Headline<IPTC:Headline", "-XMP-dc:Title<IPTC:ObjectName",
    "-EXIF:Artist", "-EXIF:Copyright", "-EXIF:ImageDescription",
    "-XMP-dc:Creator", "-XMP-dc:Rights", "-XMP-dc:Description", "-XMP-dc:Title",
    "-XMP-dc:Subject", "-XMP-xmpRights:all", "-XMP-photoshop:Credit",
    "-XMP-photoshop:Source", "-XMP-photoshop:Headline", "-XMP-iptcCore:CreatorContactInfo",
)
MAX_VALUE_CHARS = 2_000  # longer strings (embedded documents, thumbnails as text) are dropped
MAX_TOTAL_CHARS = 64_000  # a record never carries more than this much embedded metadata

_DATE = re.compile(
    r"^(\d{4}):(\d{2}):(\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?)?"
    r"(Z|[+-]\d{2}:?\d{2})?$"
)
_EXCLUDE = ("--File:all", "--System:all", "--ExifTool:all")


def media_key(tag: str) -> str:
    """``Caption-Abstract`` → ``CaptionAbstract``: the media API keeps letters and digits."""
    return re.sub(r"[^A-Za-z0-9_]", "", tag)


def iso_date(value: str) -> str | None:
    """An ExifTool date (``2002:07:13 15:58:28``) in the media API's ISO 8601 form."""
    m = _DATE.match(value)
    if m is None:
        return None
    y, mo, d, h, mi, s, frac, zone = m.groups()
    try:
        when = dt.datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(s or 0),
                           int(float(frac or 0) * 1_000_000))
    except ValueError:  # "0000:00:00 00:00:00" and friends: not a date
        return None
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        hh, mm = int(zone[1:3]), int(zone[-2:])
        when -= sign * dt.timedelta(hours=hh, minutes=mm)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _coordinate(value: Any, negative_ref: bool) -> float | None:
    text = str(value).strip()
    m = re.match(r"^(-?\d+(?:\.\d+)?)\s*([NSEW])?$", text)
    if m is None:
        return None
    number = float(m.group(1))
    if m.group(2) in ("S", "W") or (m.group(2) is None and negative_ref):
        number = -abs(number)
    return round(number, 8)


def normalise(raw: dict[str, Any]) -> dict[str, Any]:
    """ExifTool's ``-j`` object → the media API's ``embeddedMetadata``."""
    out: dict[str, Any] = {}
    total = 0
    for tag, value in raw.items():
        if tag == "SourceFile":
            continue
        key = media_key(tag)
        if not key or key in out:
            continue
        if isinstance(value, str):
            if value.startswith("(Binary data") or len(value) > MAX_VALUE_CHARS:
                continue
            value = iso_date(value) or value
        if key in LIST_TAGS and not isinstance(value, list):
            value = [value]
        if key in ("GPSLatitude", "GPSLongitude", "GPSDestLatitude", "GPSDestLongitude"):
            ref = str(raw.get(tag + "Ref", ""))
            coordinate = _coordinate(value, ref.startswith(("South", "West", "S", "W")))
            if coordinate is None:
                continue
            value = coordinate
        size = len(json.dumps(value, default=str))
        if total + size > MAX_TOTAL_CHARS:
            continue
        total += size
        out[key] = value
    return out


class ExifTool:
    """ExifTool as a subprocess: read embedded metadata, copy rights metadata across."""

    def __init__(self, executable: str = "exiftool", timeout_s: float = 20.0) -> None:
        self.executable = executable
        self.timeout_s = timeout_s
        self._warned = False

    def available(self) -> bool:
        return shutil.which(self.executable) is not None

    def _run(self, args: list[str]) -> subprocess.CompletedProcess[bytes]:
        try:
            return subprocess.run([self.executable, *args], capture_output=True,
                                  timeout=self.timeout_s, check=False)
        except FileNotFoundError:
            # Metadata never fails an upload or an extension: without ExifTool it is left
            # out, and said once per process.
            if not self._warned:
                self._warned = True
                log.warning("exiftool is not installed (%r not found): embeddedMetadata is "
                            "left out; install libimage-exiftool-perl or set "
                            "EXTWORKER_EXIFTOOL", self.executable)
            return subprocess.CompletedProcess(args, 127, b"[]", b"not installed")
        except subprocess.TimeoutExpired:
            log.warning("exiftool took longer than %ss; metadata left out", self.timeout_s)
            return subprocess.CompletedProcess(args, 1, b"[]", b"timeout")

    def read(self, data: bytes) -> dict[str, Any]:
        """``embeddedMetadata`` of ``data`` (``{}`` when it carries none or cannot be read)."""
        if not data:
            return {}
        with tempfile.TemporaryDirectory(prefix="extworker-meta-") as tmp:
            path = Path(tmp) / "file"
            path.write_bytes(data)
            proc = self._run(["-j", "-c", "%.8f", "-charset", "filename=utf8", *_EXCLUDE,
                              str(path)])
        try:
            parsed = json.loads(proc.stdout or b"[]")
        except ValueError:
            log.warning("exiftool printed no JSON: %s", proc.stderr[:200])
            return {}
        return normalise(parsed[0]) if parsed and isinstance(parsed[0], dict) else {}

    def carry_rights(self, source: bytes, target: bytes, suffix: str = ".png") -> bytes:
        """``target`` with the rights and description metadata of ``source`` written in.

        Used for derived versions (a cut-out keeps its photographer's copyright). On any
        failure the target comes back unchanged: metadata never fails an extension."""
        with tempfile.TemporaryDirectory(prefix="extworker-meta-") as tmp:
            src, dst = Path(tmp) / "source", Path(tmp) / f"target{suffix}"
            src.write_bytes(source)
            dst.write_bytes(target)
            proc = self._run(["-q", "-q", "-overwrite_original", "-tagsFromFile", str(src),
                              *RIGHTS_TAGS, str(dst)])
            if proc.returncode != 0:
                log.warning("exiftool could not copy metadata: %s", proc.stderr[:200])
                return target
            return dst.read_bytes()
