"""Tiny real videos made with PyAV (FFmpeg's encoders inside its wheels): a moving
gradient with a tone, in the containers and codecs uploads meet."""

from __future__ import annotations

import io
from fractions import Fraction

import numpy as np

KINDS = {  # name → (container, video codec, audio codec, file name)
    "mp4": ("mp4", "libx264", "aac", "clip.mp4"),
    "webm": ("webm", "libvpx-vp9", "libopus", "clip.webm"),
    "mov": ("mov", "mpeg4", "aac", "clip.mov"),
}


def make_video(kind: str, seconds: float = 2.0, size: tuple[int, int] = (160, 96),
               fps: int = 10) -> bytes:
    import av

    fmt, vcodec, acodec, _ = KINDS[kind]
    buf = io.BytesIO()
    w, h = size
    with av.open(buf, mode="w", format=fmt) as out:
        video = out.add_stream(vcodec, rate=fps)
        video.width, video.height, video.pix_fmt = w, h, "yuv420p"
        video.gop_size = fps  # a keyframe each second
        audio = out.add_stream(acodec, rate=48000)
        for i in range(int(seconds * fps)):
            x = np.linspace(0, 255, w, dtype=np.uint8)
            rgb = np.stack([np.tile(x, (h, 1)), np.full((h, w), (i * 25) % 256, np.uint8),
                            np.tile(x[::-1], (h, 1))], axis=-1)
            for packet in video.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        samples = audio.frame_size or 960
        t = 0
        while t < seconds * 48000:
            tone = (0.2 * np.sin(2 * np.pi * 440 * (np.arange(samples) + t) / 48000)
                    ).astype(np.float32).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(tone, format="flt", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = 48000, t, Fraction(1, 48000)
            for packet in audio.encode(frame):
                out.mux(packet)
            t += samples
        for packet in audio.encode():
            out.mux(packet)
    return buf.getvalue()
