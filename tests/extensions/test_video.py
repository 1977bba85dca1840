"""Video, as the file object document describes it, through the official SDK: tiny real
videos made with PyAV (``tests/support/videos.py``) — mp4 (H.264 + AAC), webm (VP9 + Opus), mov
(MPEG-4 + AAC)."""

from __future__ import annotations

import io

import httpx
import pytest
from imagekitio import BadRequestError, ImageKit
from PIL import Image

from tests.support import jpeg, wait_until
from tests.support.videos import KINDS, make_video
from worker.core import video

pytest.importorskip("av")


@pytest.fixture
def ik(api):
    base_url, keys = api
    key = keys.create("acme")["key"]
    return ImageKit(private_key=key, base_url=base_url), base_url, key


@pytest.mark.parametrize(("kind", "mime", "vcodec", "acodec"), [
    ("mp4", "video/mp4", "h264", "aac"),
    ("webm", "video/webm", "vp9", "opus"),
    ("mov", "video/quicktime", "mpeg4", "aac"),
])
def test_a_video_upload_carries_the_documents_video_fields(ik, kind, mime, vcodec, acodec):
    """The file object: "duration" (seconds), "bitRate" (bits per second), "videoCodec",
    "audioCodec", "width", "height", "fileType" — and a thumbnail that opens (a keyframe)."""
    client, _, _ = ik
    data = make_video(kind, seconds=2.0, size=(160, 96))
    up = client.files.upload(file=data, file_name=KINDS[kind][3]).to_dict()
    assert (up["width"], up["height"], up["fileType"]) == (160, 96, "non-image")
    served = httpx.get(up["url"], timeout=30)
    assert served.status_code == 200 and served.content == data
    listed = client.files.get(up["fileId"]).to_dict()
    assert listed["mime"] == mime
    assert listed["duration"] == 2  # whole seconds, as the SDK types it
    assert (listed["videoCodec"], listed["audioCodec"]) == (vcodec, acodec)
    assert abs(listed["bitRate"] - len(data) * 8 / 2.0) < 0.2 * listed["bitRate"]
    thumb = httpx.get(up["thumbnailUrl"], timeout=30)
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    frame = Image.open(io.BytesIO(thumb.content))
    assert frame.format == "JPEG" and frame.size == (160, 96)  # at_max never enlarges
    # The opening keyframe itself: the gradient runs red → blue across the frame.
    left, right = frame.convert("RGB").getpixel((4, 48)), frame.convert("RGB").getpixel(
        (155, 48))
    assert left[0] < 60 < 190 < right[0] or left[2] > 190 > 60 > right[2], (left, right)
    small = httpx.get(up["url"] + "?tr=w-80", timeout=30)
    assert Image.open(io.BytesIO(small.content)).size == (80, 48)


def test_an_image_has_no_video_fields(ik, astronaut):
    client, _, _ = ik
    up = client.files.upload(file=jpeg(astronaut), file_name="a.jpg").to_dict()
    got = client.files.get(up["fileId"]).to_dict()
    assert not {"duration", "bitRate", "videoCodec", "audioCodec"} & set(got)


def test_videos_have_their_own_size_limit(settings, ik, astronaut):
    """The upload document: files up to 25 MB, videos up to 300 MB — two settings here."""
    client, base_url, key = ik
    clip = make_video("mp4", seconds=2.0)
    photo = jpeg(astronaut)
    settings.upload_max_bytes = len(clip) - 1  # the clip is above the image limit…
    settings.video_max_bytes = len(clip) + 10  # …and within the video limit
    assert len(photo) > settings.upload_max_bytes
    assert client.files.upload(file=clip, file_name="ok.mp4").to_dict()["fileId"]
    with pytest.raises(Exception) as err:
        client.files.upload(file=photo, file_name="big.jpg")
    assert "413" in str(err.value) or "larger than" in str(err.value)
    settings.video_max_bytes = len(clip) - 1
    r = httpx.post(f"{base_url}/api/v1/files/upload", auth=(key, ""),
                   data={"fileName": "big.mp4"}, files={"file": ("big.mp4", clip)}, timeout=30)
    assert r.status_code == 413 and "a video" in r.json()["message"], r.text


def test_gif_to_video_post_transformation(ik):
    """The upload document's post transformation ``gif-to-video``: the GIF as an MP4 video,
    made right after the upload and served at the file's URL with ``tr=f-mp4``."""
    client, _, _ = ik
    frames = [Image.new("RGB", (64, 48), (i * 25, 40, 200 - i * 20)) for i in range(8)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    up = client.files.upload(file=buf.getvalue(), file_name="anim.gif",
                             transformation={"post": [{"type": "gif-to-video"}]}).to_dict()
    wait_until(lambda: httpx.get(up["url"] + "?tr=f-mp4", timeout=30).headers.get(
        "x-extworker-derivative") == "stored", 30, "the MP4 made after the upload")
    mp4 = httpx.get(up["url"] + "?tr=f-mp4", timeout=30)
    assert mp4.headers["content-type"] == "video/mp4"
    info = video.probe(mp4.content)
    assert info is not None and info.video_codec == "h264" and (info.width, info.height) == (
        64, 48)
    assert 0.6 < info.duration < 1.0  # 8 frames of 100 ms
    with pytest.raises(BadRequestError, match="gif-to-video applies to GIFs"):
        client.files.upload(file=jpeg(Image.new("RGB", (8, 8))), file_name="x.jpg",
                            transformation={"post": [{"type": "gif-to-video"}]})


@pytest.mark.parametrize(("ext", "kind"), [("aws-auto-tagging", "classifier"),
                                           ("google-auto-tagging", "zero-shot")])
def test_tagging_a_video_merges_its_keyframes(runtime, ext, kind):
    """Beyond the hosted service: a video is tagged on keyframes spread over it, each tag
    at its best frame's confidence; charged once, as for an image (the units table)."""
    from extensions import loaders
    from extensions.auto_tagging import DEFAULT_VOCABULARY, load_vocabulary
    from tests.pipeline.test_pipeline import run_job

    data = make_video("mp4", seconds=4.0)
    rec = runtime.pipeline.add_file(data, "clip.mp4")
    doc = run_job(runtime, {"fileId": rec.fileId, "extensions": [
        {"name": ext, "minConfidence": 0, "maxTags": 30}]})
    slot = doc["extensions"][ext]
    assert slot["status"] == "success", slot
    assert slot["output"]["frames"] == runtime.settings.video_keyframes == 4
    s = runtime.settings
    model = loaders.get(runtime.models, kind, s.classifier_model if kind == "classifier"
                        else s.zero_shot_model, s)
    best: dict[str, float] = {}
    for frame in video.keyframes(data, 4):
        scored = model.predict(frame) if kind == "classifier" else model.predict(
            frame, load_vocabulary(str(s.tag_vocabulary_file or DEFAULT_VOCABULARY)))
        for name, p in scored:
            best[name] = max(best.get(name, 0.0), p)
    tags = runtime.pipeline.get_file(rec.fileId).AITags or []
    assert {t.name: t.confidence for t in tags} == {
        n: round(p * 100, 2) for n, p in sorted(best.items(), key=lambda kv: -kv[1])[:30]}
    assert runtime.pipeline.usage("default")["extensions"] == {ext: s.unit_cost(ext)}


def test_a_video_is_described_from_its_keyframes(runtime):
    from tests.pipeline.test_pipeline import run_job

    rec = runtime.pipeline.add_file(make_video("webm", seconds=2.0), "clip.webm")
    doc = run_job(runtime, {"fileId": rec.fileId, "extensions": [
        {"name": "ai-auto-description"}]})
    assert doc["extensions"]["ai-auto-description"]["status"] == "success", doc
    assert runtime.pipeline.get_file(rec.fileId).description
    cut = run_job(runtime, {"fileId": rec.fileId, "extensions": [{"name": "remove-bg"}]})
    err = cut["extensions"]["remove-bg"]["error"]
    assert err["code"] == "invalid_image" and "not an image" in err["message"]


@pytest.mark.skipif(__import__("shutil").which("ffprobe") is None,
                    reason="Debian's ffprobe is not installed (apt-get install ffmpeg)")
@pytest.mark.parametrize("kind", list(KINDS))
def test_the_probe_agrees_with_ffprobe(tmp_path, kind):
    """PyAV's facts are FFmpeg's: the same as Debian's ffprobe prints for the file (the bit
    rate within 0.1 %: the two releases round the container's duration differently)."""
    from benchmarks.video_probe import ffprobe

    data = make_video(kind, seconds=3.0, size=(320, 180))
    path = tmp_path / KINDS[kind][3]
    path.write_bytes(data)
    info = video.probe(data)
    assert info is not None
    theirs = ffprobe(path)
    ours = {**info.fields(), "width": info.width, "height": info.height}
    assert abs(ours.pop("bitRate") - theirs.pop("bitRate")) < 0.001 * info.bit_rate
    assert ours == theirs
