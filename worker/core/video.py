"""Video files (mp4, webm, mov) as the file object document describes them, read with PyAV.

PyAV's wheels carry FFmpeg's libraries, so nothing else is installed (the ``video`` extra);
without it a video is stored as any other non-image file. What is read: the container's
duration (seconds) and bit rate (bits/s), the first video and audio streams' codecs, the
displayed width and height — the file object's ``duration``, ``bitRate``, ``videoCodec``,
``audioCodec``, ``width``, ``height``. Frames are decoded for a thumbnail (a keyframe) and
for the vision extensions (keyframes sampled across the duration).

Containers are opened from memory; decoding is bounded by ``max_frames`` per call, so a
hostile file costs a bounded amount of work.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from PIL import Image

# Container format names (FFmpeg's) → the file's MIME type.
_MIMES = {"mp4": "video/mp4", "mov": "video/quicktime", "webm": "video/webm",
          "matroska": "video/x-matroska"}
VIDEO_MIMES = frozenset(_MIMES.values())


def looks_like_video(head: bytes) -> bool:
    """The first bytes of an ISO-BMFF (mp4, mov: ``ftyp`` box) or Matroska/WebM (EBML)
    file: what the upload size limit for video is chosen by, before anything is decoded."""
    return head[4:8] == b"ftyp" or head[:4] == b"\x1a\x45\xdf\xa3"


def available() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class VideoInfo:
    mime: str
    width: int
    height: int
    duration: float  # seconds
    bit_rate: int  # bits per second
    video_codec: str
    audio_codec: str | None

    def fields(self) -> dict[str, Any]:
        """The file object's video fields."""
        return {"duration": round(self.duration), "bitRate": self.bit_rate,  # the SDK: int s
                "videoCodec": self.video_codec, "audioCodec": self.audio_codec}


def _open(data: bytes) -> Any:
    import av

    return av.open(io.BytesIO(data), mode="r")


def probe(data: bytes) -> VideoInfo | None:
    """The video facts of ``data``, or ``None`` when it is not a video PyAV can read."""
    if not looks_like_video(data[:16]) or not available():
        return None
    import av

    try:
        with _open(data) as container:
            names = container.format.name.split(",")
            mime = next((_MIMES[n] for n in names if n in _MIMES), None)
            video = next(iter(container.streams.video), None)
            if mime is None or video is None:
                return None
            if "mp4" in names:  # FFmpeg's one demuxer for the family: the ftyp brand tells
                mime = "video/quicktime" if data[8:12] == b"qt  " else "video/mp4"
            elif names[0] == "matroska" and "webm" in names:
                mime = "video/webm" if video.codec_context.name in ("vp8", "vp9", "av1") \
                    else "video/x-matroska"
            audio = next(iter(container.streams.audio), None)
            duration = (container.duration / av.time_base if container.duration
                        else float(video.duration * video.time_base) if video.duration
                        else 0.0)
            bit_rate = container.bit_rate or (int(len(data) * 8 / duration) if duration
                                              else 0)
            return VideoInfo(mime=mime, width=video.codec_context.width,
                             height=video.codec_context.height, duration=duration,
                             bit_rate=int(bit_rate), video_codec=video.codec_context.name,
                             audio_codec=audio.codec_context.name if audio else None)
    except (av.FFmpegError, ValueError, IndexError, OSError):
        return None


def keyframes(data: bytes, count: int, max_frames: int = 600) -> list[Image.Image]:
    """Up to ``count`` keyframes spread over the video (seeking to each point, then the
    first frame decoded there), as RGB images; ``[]`` when none decodes."""
    import av

    out: list[Image.Image] = []
    try:
        with _open(data) as container:
            stream = container.streams.video[0]
            stream.codec_context.skip_frame = "NONKEY"  # decode keyframes only
            duration = container.duration / av.time_base if container.duration else 0.0
            points = [duration * (i + 0.5) / count for i in range(count)] if duration else [0]
            decoded = 0
            for at in points:
                if duration:
                    container.seek(int(at * av.time_base), any_frame=False, backward=True)
                for frame in container.decode(stream):
                    decoded += 1
                    out.append(frame.to_image().convert("RGB"))
                    break
                if decoded >= max_frames:
                    break
    except (av.FFmpegError, ValueError, IndexError, OSError):
        return out
    return out


def thumbnail_frame(data: bytes) -> Image.Image | None:
    """The keyframe a video's thumbnail shows: the first one (the opening shot)."""
    frames = keyframes(data, 1)
    return frames[0] if frames else None


def gif_to_mp4(data: bytes, max_frames: int = 2_000) -> bytes:
    """An animated GIF as an H.264 MP4 (yuv420p, even sides, the GIF's own frame timing):
    the hosted ``gif-to-video`` post transformation."""
    import av

    src = Image.open(io.BytesIO(data))
    frames: list[tuple[Image.Image, int]] = []
    for i in range(getattr(src, "n_frames", 1)):
        if i >= max_frames:
            break
        src.seek(i)
        frames.append((src.convert("RGB"), max(20, int(src.info.get("duration", 100)))))
    w, h = (frames[0][0].width // 2) * 2 or 2, (frames[0][0].height // 2) * 2 or 2
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=1000)  # a millisecond time base
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        stream.options = {"preset": "veryfast", "crf": "23", "movflags": "+faststart"}
        at = 0
        for im, ms in frames:
            frame = av.VideoFrame.from_image(im.resize((w, h)) if im.size != (w, h) else im)
            frame = frame.reformat(format="yuv420p")
            frame.pts, frame.time_base = at, Fraction(1, 1000)
            at += ms
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return buf.getvalue()
