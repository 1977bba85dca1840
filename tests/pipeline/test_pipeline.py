"""The pipeline in-process on real Redis with the real u2netp model.

Given a file record and a job, when dispatch and execution run, then the
record, the versions, the units and the statuses are what a user expects —
including for bad input, duplicates, redelivery and quotas.
"""

from __future__ import annotations

import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from tests.support import STORE_BACKENDS, RecordingRuntime, jpeg
from worker.runtime import Runtime


def run_job(rt: Runtime, job: dict) -> dict:
    """Dispatch, then execute everything dispatch enqueued; returns the job document."""
    doc = rt.pipeline.accept(job)
    assert doc is not None
    while rt.queued:
        _, job_id, slot = rt.queued.pop(0)
        rt.pipeline.execute(job_id, slot)
    return rt.pipeline.get_job(doc.jobId).to_json()  # the document as publishers read it


def alpha_of(rt: Runtime, file_id: str) -> Image.Image:
    rec = rt.pipeline.get_file(file_id)
    im = Image.open(io.BytesIO(rt.blobs.get(rec.current.blobKey)))
    assert im.mode == "RGBA"
    return im.getchannel("A")


def test_remove_bg_on_a_real_photo(runtime, astronaut):
    rec = runtime.pipeline.add_file(jpeg(astronaut), "astronaut.jpg")
    doc = run_job(runtime, {"jobId": "j1", "fileId": rec.fileId,
                            "extensions": [{"name": "remove-bg"}]})
    assert doc["extensions"]["remove-bg"]["status"] == "success"
    after = runtime.pipeline.get_file(rec.fileId)
    assert after.versionInfo.name == "Version 2" and after.mime == "image/png"
    assert after.hasAlpha and (after.width, after.height) == (512, 512)
    assert after.extensionStatus == {"remove-bg": "success"}
    alpha = alpha_of(runtime, rec.fileId)
    assert alpha.getpixel((3, 3)) < 20  # background corner
    assert alpha.getpixel((230, 150)) > 235  # the astronaut's face
    # The old version's bytes are kept.
    assert runtime.blobs.get(after.versions[0].blobKey) == jpeg(astronaut)
    assert runtime.pipeline.usage("default")["extensions"] == {"remove-bg": 130}


def test_cut_out_is_lossless_and_keeps_the_colour_profile(runtime, astronaut):
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    source = jpeg(astronaut, icc_profile=icc)
    rec = runtime.pipeline.add_file(source, "icc.jpg")
    run_job(runtime, {"fileId": rec.fileId, "extensions": [{"name": "remove-bg"}]})
    after = runtime.pipeline.get_file(rec.fileId)
    out = Image.open(io.BytesIO(runtime.blobs.get(after.current.blobKey)))
    assert out.info.get("icc_profile") == icc
    px = np.asarray(out)
    decoded = np.asarray(Image.open(io.BytesIO(source)).convert("RGB"))
    alpha = px[..., 3]
    soft, clear = (alpha > 0) & (alpha < 255), alpha == 0
    assert soft.sum() > 1_000 and clear.sum() > 10_000  # soft edges and a background
    # Straight alpha: every visible pixel keeps its colour bit for bit (a premultiplied
    # cut-out would darken its soft edges); hidden colour is dropped.
    assert np.array_equal(px[alpha > 0][:, :3], decoded[alpha > 0])
    assert not px[clear][:, :3].any()


def test_exif_orientation_is_respected(runtime, astronaut):
    wide = astronaut.resize((600, 300))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when displayed
    rec = runtime.pipeline.add_file(jpeg(wide, exif=exif.tobytes()), "rot.jpg")
    assert (rec.width, rec.height) == (300, 600)
    run_job(runtime, {"fileId": rec.fileId, "extensions": [{"name": "remove-bg"}]})
    after = runtime.pipeline.get_file(rec.fileId)
    assert (after.width, after.height) == (300, 600)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "empty"),
        (b"%PDF-1.4 this is not an image at all", "not an image"),
        (None, "corrupt or truncated"),  # a JPEG cut in half
    ],
)
def test_bad_files_fail_readably(runtime, astronaut, data, fragment):
    if data is None:
        whole = jpeg(astronaut)
        data = whole[: len(whole) // 2]
    rec = runtime.pipeline.add_file(data, "bad.jpg")
    doc = run_job(runtime, {"fileId": rec.fileId, "extensions": [{"name": "remove-bg"}]})
    slot = doc["extensions"]["remove-bg"]
    assert slot["status"] == "failed" and fragment in slot["error"]["message"]
    after = runtime.pipeline.get_file(rec.fileId)
    assert after.extensionStatus["remove-bg"] == "failed"
    assert fragment in after.extensionErrors["remove-bg"].message
    assert after.versionInfo.name == "Version 1"
    assert runtime.pipeline.usage("default")["total"] == 0


def test_invalid_params_fail_that_extension_only(runtime, astronaut):
    # A deployment without the ai-tasks handler (as without the `vision` extra).
    runtime.registry.handlers.pop("ai-tasks")
    rec = runtime.pipeline.add_file(jpeg(astronaut), "a.jpg")
    doc = run_job(runtime, {"fileId": rec.fileId, "extensions": [
        {"name": "remove-bg", "options": {"bg_color": "zzz"}},
        {"name": "google-auto-tagging", "minConfidence": 50},
        {"name": "ai-tasks", "tasks": [{"type": "select_tags", "instruction": "Kind?",
                                        "vocabulary": ["shirt", "shoe"]}]},
    ]})
    ext = doc["extensions"]
    assert ext["remove-bg"]["status"] == "failed"
    assert "extensions[0].options.bg_color" in ext["remove-bg"]["error"]["message"]
    assert "extensions[1].maxTags" in ext["google-auto-tagging"]["error"]["message"]
    assert "not available in this deployment" in ext["ai-tasks"]["error"]["message"]
    assert runtime.queued == []


def test_unknown_extension_fails_others_run(runtime, astronaut):
    rec = runtime.pipeline.add_file(jpeg(astronaut), "a.jpg")
    doc = run_job(runtime, {"fileId": rec.fileId, "extensions": [
        {"name": "sharpen"}, {"name": "remove-bg"}]})
    # An unknown name is keyed by its position: invented names never become record keys.
    assert doc["extensions"]["extensions[0]"]["status"] == "failed"
    assert doc["extensions"]["extensions[0]"]["error"]["message"] == (
        "extensions[0].name: unknown extension 'sharpen'")
    assert doc["extensions"]["remove-bg"]["status"] == "success"


def test_a_message_cannot_inflate_records_and_errors_name_their_field(runtime, astronaut):
    rec = runtime.pipeline.add_file(jpeg(astronaut.resize((16, 16))), "a.jpg")
    deep: object = 1
    for _ in range(60):
        deep = {"a": deep}
    doc = runtime.pipeline.accept({"fileId": rec.fileId, "extensions": [
        {"name": "x" * 5_000_000},
        *({"name": f"made-up-{i}"} for i in range(5)),
        {"name": "ai-tasks", "tasks": [{"type": "yes_no", "instruction": "?", "on_yes": {
            "set_metadata": [{"field": "f", "value": deep}]}}]}]}).to_json()
    slots = doc["extensions"]
    assert len(slots["extensions[0]"]["error"]["message"]) < 200
    assert slots["extensions[0]"]["error"]["message"].startswith(
        "extensions[0].name: unknown extension 'xxxx")
    assert slots["ai-tasks"]["error"]["message"] == (
        "extensions[6].tasks[0].on_yes.set_metadata[0].value: nested deeper than 8 levels")
    record = runtime.pipeline.get_file(rec.fileId)
    assert set(record.extensionStatus) == {f"extensions[{i}]" for i in range(6)} | {"ai-tasks"}
    assert len(record.model_dump_json()) < 10_000


@pytest.mark.parametrize("store_url", STORE_BACKENDS, indirect=True)
def test_duplicate_job_id_processed_once(runtime, astronaut):
    rec = runtime.pipeline.add_file(jpeg(astronaut), "a.jpg")
    job = {"jobId": "dup-1", "fileId": rec.fileId, "extensions": [{"name": "remove-bg"}]}
    run_job(runtime, job)
    run_job(runtime, job)
    after = runtime.pipeline.get_file(rec.fileId)
    assert len(after.versions) == 2
    assert runtime.pipeline.usage("default")["total"] == 130


@pytest.mark.parametrize("store_url", STORE_BACKENDS, indirect=True)
def test_redelivered_execution_charges_once(runtime, astronaut):
    rec = runtime.pipeline.add_file(jpeg(astronaut), "a.jpg")
    runtime.pipeline.accept({"jobId": "r1", "fileId": rec.fileId,
                             "extensions": [{"name": "remove-bg"}]})
    (_, job_id, slot), = runtime.queued
    # The same message delivered three times, two of them at once.
    threads = [threading.Thread(target=runtime.pipeline.execute, args=(job_id, slot))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    runtime.pipeline.execute(job_id, slot)
    after = runtime.pipeline.get_file(rec.fileId)
    assert len(after.versions) == 2
    assert runtime.pipeline.usage("default")["total"] == 130


def test_quota_refusal_charges_nothing(settings, rclient, astronaut):
    settings.quotas = {"small": 100}
    rt = RecordingRuntime(settings)
    rec = rt.pipeline.add_file(jpeg(astronaut), "a.jpg", account="small")
    doc = run_job(rt, {"fileId": rec.fileId, "accountId": "small",
                       "extensions": [{"name": "remove-bg"}]})
    slot = doc["extensions"]["remove-bg"]
    assert slot["status"] == "failed"
    assert slot["error"] == {"message": "extension unit quota exceeded", "code": "quota_exceeded"}
    assert rt.pipeline.usage("small")["total"] == 0
    assert rt.pipeline.get_file(rec.fileId).versionInfo.name == "Version 1"


def test_quota_used_up_while_an_extension_runs_is_refused_at_commit(settings, rclient,
                                                                    astronaut):
    """Both jobs pass the early check (130 of 200 left); the second to commit finds the
    quota used by the first and is refused inside the transaction: nothing charged,
    no version written, its cut-out's bytes removed."""
    settings.quotas = {"small": 200}
    rt = RecordingRuntime(settings)
    a = rt.pipeline.add_file(jpeg(astronaut), "a.jpg", account="small")
    b = rt.pipeline.add_file(jpeg(astronaut), "b.jpg", account="small")
    for job_id, rec in (("first", a), ("second", b)):
        rt.pipeline.accept({"jobId": job_id, "fileId": rec.fileId, "accountId": "small",
                            "extensions": [{"name": "remove-bg"}]})
    handler = rt.registry.get("remove-bg")
    real_run = handler.run

    def run_while_another_commits(ctx, params):
        if ctx.job_id == "first":  # while "first" runs, "second" runs and commits
            rt.pipeline.execute("second", "remove-bg")
        return real_run(ctx, params)

    handler.run = run_while_another_commits
    try:
        slot = rt.pipeline.execute("first", "remove-bg").to_json()
    finally:
        handler.run = real_run
    assert rt.pipeline.get_job("second").to_json()["extensions"]["remove-bg"]["status"] == "success"
    assert slot["status"] == "failed" and slot["error"]["code"] == "quota_exceeded"
    assert rt.pipeline.usage("small")["total"] == 130  # charged once, for "second"
    assert rt.pipeline.get_file(a.fileId).versionInfo.name == "Version 1"
    assert not rt.blobs.exists(f"{a.fileId}/first-remove-bg.png")


def test_dry_run_charges_nothing(runtime, astronaut):
    rec = runtime.pipeline.add_file(jpeg(astronaut), "a.jpg")
    doc = run_job(runtime, {"fileId": rec.fileId, "dryRun": True,
                            "extensions": [{"name": "remove-bg"}]})
    assert doc["extensions"]["remove-bg"]["status"] == "success"
    assert runtime.pipeline.usage("default")["total"] == 0


def test_bg_color_and_shadow(runtime, astronaut):
    rec = runtime.pipeline.add_file(jpeg(astronaut), "a.jpg")
    run_job(runtime, {"fileId": rec.fileId, "extensions": [
        {"name": "remove-bg", "options": {"bg_colour": "00ff00", "add_shadow": True}}]})
    after = runtime.pipeline.get_file(rec.fileId)
    assert not after.hasAlpha
    # remove.bg's format=auto: no transparency left, so a JPG.
    assert after.mime == "image/jpeg"
    im = Image.open(io.BytesIO(runtime.blobs.get(after.current.blobKey)))
    assert im.mode == "RGB"
    assert max(abs(a - b) for a, b in zip(im.getpixel((3, 3)), (0, 255, 0), strict=True)) <= 2


def test_hard_mask_without_semitransparency(runtime, astronaut):
    rec = runtime.pipeline.add_file(jpeg(astronaut), "a.jpg")
    run_job(runtime, {"fileId": rec.fileId, "extensions": [
        {"name": "remove-bg", "options": {"semitransparency": False}}]})
    hist = alpha_of(runtime, rec.fileId).histogram()
    assert {i for i, n in enumerate(hist) if n} == {0, 255}


class _ImageHandler(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


def test_bg_image_url_is_fetched_and_composited(runtime, astronaut):
    buf = io.BytesIO()
    Image.new("RGB", (40, 40), (200, 0, 200)).save(buf, "PNG")
    _ImageHandler.body = buf.getvalue()
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _ImageHandler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        rec = runtime.pipeline.add_file(jpeg(astronaut), "a.jpg")
        url = f"http://127.0.0.1:{srv.server_address[1]}/bg.png"
        run_job(runtime, {"fileId": rec.fileId, "extensions": [
            {"name": "remove-bg", "options": {"bg_image_url": url}}]})
    finally:
        srv.shutdown()
    after = runtime.pipeline.get_file(rec.fileId)
    im = Image.open(io.BytesIO(runtime.blobs.get(after.current.blobKey)))
    assert after.extensionStatus["remove-bg"] == "success"
    assert after.mime == "image/jpeg"  # format=auto: nothing transparent is left
    assert max(abs(a - b) for a, b in zip(im.getpixel((3, 3)), (200, 0, 200),
                                          strict=True)) <= 3


def test_unreachable_or_refused_bg_image_url_fails_readably(runtime, astronaut):
    rec = runtime.pipeline.add_file(jpeg(astronaut), "a.jpg")
    doc = run_job(runtime, {"fileId": rec.fileId, "extensions": [
        {"name": "remove-bg", "options": {"bg_image_url": "http://10.0.0.1/bg.png"}}]})
    err = doc["extensions"]["remove-bg"]["error"]
    assert err["code"] == "url_refused" and "private" in err["message"]
    doc = run_job(runtime, {"fileId": rec.fileId, "extensions": [
        {"name": "remove-bg", "options": {"bg_image_url": "http://127.0.0.1:9/bg.png"}}]})
    err = doc["extensions"]["remove-bg"]["error"]
    assert err["code"] == "url_unreachable"


def test_unknown_file_fails_all_extensions(runtime):
    doc = run_job(runtime, {"fileId": "missing", "extensions": [{"name": "remove-bg"}]})
    assert doc["extensions"]["remove-bg"]["error"]["code"] == "file_not_found"


def test_missing_model_names_the_pull_command(runtime, astronaut):
    rec = runtime.pipeline.add_file(jpeg(astronaut), "a.jpg")
    doc = run_job(runtime, {"fileId": rec.fileId, "extensions": [
        {"name": "remove-bg", "options": {"model": "silueta"}}]})
    err = doc["extensions"]["remove-bg"]["error"]
    assert "extworker models pull silueta" in err["message"] and err["code"] == "model_missing"


def test_version_limit_fails_the_extension_and_keeps_the_record(settings, rclient, astronaut):
    settings.max_versions = 2
    rt = RecordingRuntime(settings)
    rec = rt.pipeline.add_file(jpeg(astronaut), "a.jpg")
    run_job(rt, {"fileId": rec.fileId, "extensions": [{"name": "remove-bg"}]})
    v2 = rt.pipeline.get_file(rec.fileId)
    doc = run_job(rt, {"fileId": rec.fileId, "extensions": [{"name": "remove-bg"}]})
    assert doc["extensions"]["remove-bg"]["error"]["code"] == "version_limit"
    after = rt.pipeline.get_file(rec.fileId)
    assert after.versionInfo == v2.versionInfo and len(after.versions) == 2
    assert rt.pipeline.usage("default")["total"] == 130
