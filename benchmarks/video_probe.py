"""PyAV (in process, FFmpeg inside its wheel) against Debian's ``ffprobe`` (a process per
file), on tiny real videos made with PyAV: the same facts, and the time per probe, in one run.

    python benchmarks/video_probe.py [--rounds 20]
"""

from __future__ import annotations

import os
import sys

# Run as a script, this file's folder comes first on sys.path, and benchmarks/webhooks.py
# would shadow the `webhooks` package.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)
import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.videos import KINDS, make_video  # noqa: E402
from worker.core import video  # noqa: E402


def ffprobe(path: Path) -> dict[str, object]:
    out = json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
        capture_output=True, check=True).stdout)
    v = next(s for s in out["streams"] if s["codec_type"] == "video")
    a = next((s for s in out["streams"] if s["codec_type"] == "audio"), None)
    return {"duration": round(float(out["format"]["duration"])),
            "bitRate": int(out["format"]["bit_rate"]), "videoCodec": v["codec_name"],
            "audioCodec": a["codec_name"] if a else None, "width": v["width"],
            "height": v["height"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args()
    if shutil.which("ffprobe") is None:
        raise SystemExit("ffprobe is not installed (apt-get install ffmpeg)")
    tmp = Path(tempfile.mkdtemp(prefix="extworker-probe-"))
    print(f"{'video':<18} {'same facts (bitRate off by)':>27} {'PyAV ms':>8} {'ffprobe ms':>10} "
          f"{'ratio':>6}")
    try:
        for kind in KINDS:
            for seconds, size in ((2.0, (160, 96)), (20.0, (640, 360))):
                data = make_video(kind, seconds=seconds, size=size)
                path = tmp / KINDS[kind][3]
                path.write_bytes(data)
                ours = video.probe(data)
                assert ours is not None
                mine = {**ours.fields(), "width": ours.width, "height": ours.height}
                theirs = ffprobe(path)
                t0 = time.perf_counter()
                for _ in range(args.rounds):
                    video.probe(data)
                pyav_ms = (time.perf_counter() - t0) * 1000 / args.rounds
                t0 = time.perf_counter()
                for _ in range(args.rounds):
                    ffprobe(path)
                ff_ms = (time.perf_counter() - t0) * 1000 / args.rounds
                # The bit rate is size / duration: the two FFmpeg releases (PyAV's wheel, and
                # Debian's 5.1) round the container's duration differently.
                rate = abs(int(mine["bitRate"]) - int(theirs["bitRate"])) / int(
                    theirs["bitRate"])
                rest = {k: v for k, v in mine.items() if k != "bitRate"} == {
                    k: v for k, v in theirs.items() if k != "bitRate"}
                same = f"yes ({rate:.2%})" if rest and rate < 0.001 else \
                    f"no: {mine} vs {theirs}"
                print(f"{kind + f' {seconds:g} s':<18} {same:>27} {pyav_ms:8.2f} {ff_ms:10.2f} "
                      f"{ff_ms / pyav_ms:5.1f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
