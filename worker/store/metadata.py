"""Embedded metadata (EXIF, IPTC, XMP) in the media API's ``embeddedMetadata`` shape.

ExifTool itself does the reading: it is the reference for these formats (the media
API's keys are ExifTool's tag names), it reads all three families plus maker notes,
and its print conversions are the values the media API shows (``ResolutionUnit:
"inches"``). Pure-Python readers each cover part of it (Pillow: EXIF only; exiv2:
other tag names and conversions), so matching ExifTool would mean re-writing its
tables. It stays running (``-stay_open``) with a time limit per call, so a hostile
file can never hang a worker.

Normalisation on top of ExifTool's JSON (``-j``): one flat object, ExifTool's tag
names with punctuation dropped (``Caption-Abstract`` → ``CaptionAbstract``);
numbers stay numbers; dates become ISO 8601 in the media API's form
(``2002-07-13T15:58:28.000Z``; a zone offset, when the file has one, is applied);
a list tag holding one value prints as that value, as ``exiftool -j`` prints it (the
upload document's example: ``"Creator": "…"``); GPS coordinates are signed decimal degrees; binary
blobs and the File/System groups (facts about our temporary file) are left out.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import select
import shutil
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

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


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_METADATA_CHUNKS = (b"eXIf", b"iTXt", b"tEXt", b"zTXt")


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    """``(type, whole chunk bytes)`` of a PNG, in order; ``ValueError`` if it is not one."""
    if not data.startswith(_PNG_SIGNATURE):
        raise ValueError("not a PNG")
    out, pos = [], len(_PNG_SIGNATURE)
    while pos + 12 <= len(data):
        length = struct.unpack(">I", data[pos:pos + 4])[0]
        kind = data[pos + 4:pos + 8]
        end = pos + 12 + length
        out.append((kind, data[pos:end]))
        pos = end
        if kind == b"IEND":
            break
    return out


def splice_metadata(target: bytes, donor: bytes) -> bytes:
    """``target`` PNG with ``donor``'s metadata chunks (EXIF, XMP, text) before its pixels."""
    extra = b"".join(c for kind, c in png_chunks(donor) if kind in _METADATA_CHUNKS)
    if not extra:
        return target
    chunks = png_chunks(target)
    first_idat = next(i for i, (kind, _) in enumerate(chunks) if kind == b"IDAT")
    parts = [c for kind, c in chunks[:first_idat] if kind not in _METADATA_CHUNKS]
    rest = [c for kind, c in chunks[first_idat:] if kind not in _METADATA_CHUNKS]
    return _PNG_SIGNATURE + b"".join(parts) + extra + b"".join(rest)


def _tiny_png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, "PNG")
    return buf.getvalue()


class ExifTool:
    """ExifTool kept running (``-stay_open``): read embedded metadata, copy rights across.

    One process per instance, one call at a time (a lock); ~5 ms a read instead of the
    ~130 ms a fresh Perl process costs. pyexiftool does the same but has no per-call
    time limit, which a worker needs: here a call that exceeds ``timeout_s`` kills the
    process (the next call starts a fresh one) and its metadata is left out.
    """

    def __init__(self, executable: str = "exiftool", timeout_s: float = 20.0) -> None:
        self.executable = executable
        self.timeout_s = timeout_s
        self._warned = False
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._calls = 0
        self._tiny = _tiny_png()

    def available(self) -> bool:
        return shutil.which(self.executable) is not None

    def close(self) -> None:
        with self._lock:
            self._stop()

    def __del__(self) -> None:  # its owner (a pipeline) is gone: so is the process
        try:
            self._stop()
        except Exception:
            pass

    def _stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            for pipe in (self._proc.stdin, self._proc.stdout):
                if pipe is not None:
                    pipe.close()
            self._proc = None

    def _start(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen(
                [self.executable, "-stay_open", "True", "-@", "-", "-common_args",
                 "-charset", "filename=utf8"],
                # stderr unread would fill its pipe and stall the process: dropped.
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        return self._proc

    def _run(self, args: list[str]) -> tuple[int, bytes]:
        """One command; ``(0, stdout)``, or ``(1, b"")`` when it failed or took too long."""
        with self._lock:
            try:
                proc = self._start()
            except FileNotFoundError:
                # Metadata never fails an upload or an extension: without ExifTool it is
                # left out, and said once per process.
                if not self._warned:
                    self._warned = True
                    log.warning("exiftool is not installed (%r not found): embeddedMetadata "
                                "is left out; install libimage-exiftool-perl or set "
                                "EXTWORKER_EXIFTOOL", self.executable)
                return 1, b""
            self._calls += 1
            ready = f"{{ready{self._calls}}}".encode()
            assert proc.stdin is not None and proc.stdout is not None
            try:
                proc.stdin.write(("\n".join([*args, f"-execute{self._calls}"]) + "\n")
                                 .encode())
                proc.stdin.flush()
                out = self._read_until(proc, ready)
            except (OSError, TimeoutError) as e:
                log.warning("exiftool failed (%s); restarting it", e)
                self._stop()
                return 1, b""
            return 0, out

    def _read_until(self, proc: subprocess.Popen[bytes], marker: bytes) -> bytes:
        assert proc.stdout is not None
        fd, buf = proc.stdout.fileno(), bytearray()
        deadline = time.monotonic() + self.timeout_s
        while not buf.rstrip().endswith(marker):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError(f"no answer within {self.timeout_s} s")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise OSError("exiftool exited")
            buf += chunk
        return bytes(buf.rstrip()[: -len(marker)])

    def read(self, data: bytes) -> dict[str, Any]:
        """``embeddedMetadata`` of ``data`` (``{}`` when it carries none or cannot be read)."""
        if not data:
            return {}
        with tempfile.TemporaryDirectory(prefix="extworker-meta-") as tmp:
            path = Path(tmp) / "file"
            path.write_bytes(data)
            code, out = self._run(["-j", "-c", "%.8f", *_EXCLUDE, str(path)])
        try:
            parsed = json.loads(out or b"[]")
        except ValueError:
            log.warning("exiftool printed no JSON")
            return {}
        return normalise(parsed[0]) if parsed and isinstance(parsed[0], dict) else {}

    def carry_rights(self, source: bytes, target: bytes, suffix: str = ".png") -> bytes:
        """``target`` with the rights and description metadata of ``source`` written in.

        Used for derived versions (a cut-out keeps its photographer's copyright). For a
        PNG the tags are written into a 1x1 PNG and its metadata chunks spliced into the
        target (ExifTool rewriting a large file costs ~100 ms more). On any failure the
        target comes back unchanged: metadata never fails an extension."""
        is_png = suffix == ".png" and target.startswith(_PNG_SIGNATURE)
        with tempfile.TemporaryDirectory(prefix="extworker-meta-") as tmp:
            src, dst = Path(tmp) / "source", Path(tmp) / f"target{suffix}"
            src.write_bytes(source)
            dst.write_bytes(self._tiny if is_png else target)
            code, _ = self._run(["-q", "-q", "-overwrite_original", "-tagsFromFile", str(src),
                                 *RIGHTS_TAGS, str(dst)])
            if code != 0:
                return target
            written = dst.read_bytes()
        try:
            return splice_metadata(target, written) if is_png else written
        except (ValueError, StopIteration, struct.error):
            log.warning("could not splice metadata into the PNG; left out")
            return target
