"""The upload side: a job carries its file (url, blobKey or base64) with the upload API's
fields and rules, files belong to an account, and updates change a file's details.

Given an upload job, when dispatch runs on real Redis, then the file record, its path,
its versions and the job document are what the upload API documents — one test per row
of the README's overwrite table, and one per bad upload.
"""

from __future__ import annotations

import base64
import io
import re
import socket
import time

import pytest
from PIL import Image

from extensions.registry import Registry
from tests.support import RecordingRuntime, jpeg
from worker.core.contract import JobEnvelope, format_validation_error, parse_tags
from worker.core.errors import PermanentError
from worker.core.records import AITag, RecordPatch
from worker.runtime import Runtime
from worker.store.kv import Txn
from worker.store.uploads import check_blob_key, normalise_folder, sanitize_file_name, unique_name

# Every test that uses the store runs on each backend (Redis, SQLite, PostgreSQL).
ON_EVERY_STORE = True


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.fixture
def small_jpeg(astronaut) -> bytes:
    return jpeg(astronaut.resize((64, 64)))


@pytest.fixture
def rt(settings, rclient) -> Runtime:
    """``notified``: (jobId, slot, status, error) of every final hand-off."""
    return RecordingRuntime(settings, record_notifications=True)


def upload(rt: Runtime, data: bytes | None = None, job_id: str | None = None,
           extensions: list | None = None, account: str = "default", **fields) -> dict:
    """Dispatch an upload job (base64 unless a source is given); returns the job document."""
    up = {"fileName": "photo.jpg", **fields}
    if not any(k in up for k in ("url", "blobKey", "base64")):
        up["base64"] = b64(data or b"")
    job = {"upload": up, "extensions": extensions or [], "accountId": account}
    if job_id:
        job["jobId"] = job_id
    doc = rt.pipeline.accept(job)
    assert doc is not None
    return doc.to_json()  # the document as publishers read it


def record_of(rt: Runtime, doc: dict):
    assert doc["state"] == "dispatched", doc.get("error")
    rec = rt.pipeline.get_file(doc["fileId"])
    assert rec is not None
    return rec


# --- the rules on their own (no Redis) ----------------------------------------


def test_file_name_rule_replaces_other_characters():
    assert sanitize_file_name("my photo (1).jpg") == "my_photo__1_.jpg"
    assert sanitize_file_name("café-été.JPG") == "café-été.JPG"  # letters in any script stay
    assert sanitize_file_name("a/b\\c:d.png") == "a_b_c_d.png"
    for bad in ("..", ".", "..."):
        with pytest.raises(PermanentError, match="upload.fileName"):
            sanitize_file_name(bad)


def test_folder_rule_and_unique_suffix():
    assert normalise_folder("/") == "/"
    assert normalise_folder("a//b c/d.e/") == "/a/b_c/d_e/"  # no "." survives: no ".."
    assert normalise_folder("../../etc") == "/__/__/etc/"
    assert re.fullmatch(r"photo_[A-Za-z0-9]{9}\.jpg", unique_name("photo.jpg"))
    assert unique_name("archive.tar.gz", lambda: "X") == "archive.tar_X.gz"
    assert unique_name("README", lambda: "X") == "README_X"


def test_folder_depth_is_capped_at_50_levels():
    ok = {"fileName": "a.jpg", "base64": "", "folder": "/".join(["f"] * 50)}
    JobEnvelope.model_validate({"upload": ok})
    with pytest.raises(Exception) as e:
        JobEnvelope.model_validate({"upload": {**ok, "folder": "/".join(["f"] * 51)}})
    assert "folder: at most 50 levels" in format_validation_error(e.value)


def test_tags_as_array_or_comma_string_500_chars_no_percent():
    assert parse_tags(" a, b ,,a") == ["a", "b"]
    assert parse_tags(["x", " y "]) == ["x", "y"]
    assert parse_tags(["a" * 250, "b" * 250]) is not None
    with pytest.raises(ValueError, match="500 characters"):
        parse_tags(["a" * 250, "b" * 251])
    with pytest.raises(ValueError, match="%"):
        parse_tags("50%,off")


@pytest.mark.parametrize("coords, ok", [
    ("10,10,100,100", True), (" 0, 0, 1, 1 ", True), ("10,10,0,5", False),
    ("-1,0,5,5", False), ("1,2,3", False), ("a,b,c,d", False), ("1.5,2,3,4", False),
])
def test_custom_coordinates_format(coords, ok):
    job = {"upload": {"fileName": "a.jpg", "base64": "", "customCoordinates": coords}}
    if ok:
        JobEnvelope.model_validate(job)
    else:
        with pytest.raises(Exception) as e:
            JobEnvelope.model_validate(job)
        assert "upload.customCoordinates" in format_validation_error(e.value)


def test_exactly_one_source_and_no_file_id_with_an_upload():
    for up in ({"fileName": "a"}, {"fileName": "a", "base64": "", "url": "https://x.test/a"}):
        with pytest.raises(Exception) as e:
            JobEnvelope.model_validate({"upload": up})
        assert "exactly one of url, blobKey or base64" in format_validation_error(e.value)
    with pytest.raises(Exception) as e:
        JobEnvelope.model_validate({"fileId": "f1", "upload": {"fileName": "a", "base64": ""}})
    assert "fileId: not allowed with upload" in format_validation_error(e.value)
    with pytest.raises(Exception) as e:
        JobEnvelope.model_validate({"origin": "update", "update": {"tags": []}})
    assert "fileId: field required" in format_validation_error(e.value)


@pytest.mark.parametrize("key", ["../x.jpg", "/etc/passwd", "a/../../x", "a/..", "s3://b/x",
                                 "file:///etc/passwd", "a\\..\\x"])
def test_blob_keys_outside_the_storage_are_refused(key):
    with pytest.raises(PermanentError, match="outside the blob storage"):
        check_blob_key(key)


def test_the_published_schema_describes_uploads_and_updates():
    schema = Registry.discover().contract.job.model_json_schema()
    up = schema["$defs"]["Upload"]["properties"]
    for name in ("url", "blobKey", "base64", "fileName", "folder", "useUniqueFileName", "tags",
                 "isPrivateFile", "isPublished", "customCoordinates", "customMetadata",
                 "description", "overwriteFile", "overwriteAITags", "overwriteTags",
                 "overwriteCustomMetadata"):
        assert name in up, name
    assert set(schema["$defs"]["Update"]["properties"]) == {
        "tags", "customCoordinates", "customMetadata", "description"}


# --- a new file -----------------------------------------------------------------


def test_a_new_upload_creates_the_file_with_every_field(rt, small_jpeg):
    rt.pipeline.fields.create("default", {"name": "brand", "label": "Brand",
                                          "schema": {"type": "Text"}})
    doc = upload(rt, small_jpeg, job_id="up-1", fileName="my photo.jpg", folder="shop/shoes",
                 tags="red, shoe", isPrivateFile=True, isPublished=False,
                 customCoordinates="1,2,30,40", customMetadata={"brand": "Acme"},
                 description="A red shoe")
    rec = record_of(rt, doc)
    assert re.fullmatch(r"my_photo_[A-Za-z0-9]{9}\.jpg", rec.name)
    assert rec.filePath == f"/shop/shoes/{rec.name}" and rec.accountId == "default"
    assert rec.tags == ["red", "shoe"] and rec.customMetadata == {"brand": "Acme"}
    assert (rec.isPrivateFile, rec.isPublished) == (True, False)
    assert rec.customCoordinates == "1,2,30,40" and rec.description == "A red shoe"
    assert rec.versionInfo.name == "Version 1" and rec.mime == "image/jpeg"
    assert (rec.width, rec.height, rec.size) == (64, 64, len(small_jpeg))
    assert rt.blobs.get(rec.current.blobKey) == small_jpeg
    # The publisher finds its file through the job document.
    assert rt.pipeline.get_job("up-1").to_json()["fileId"] == rec.fileId
    assert [r.fileId for r in rt.pipeline.files.list("default", path="/shop/")] == [rec.fileId]


def test_unique_names_never_collide(rt, small_jpeg):
    a = record_of(rt, upload(rt, small_jpeg))
    b = record_of(rt, upload(rt, small_jpeg))
    assert a.fileId != b.fileId and a.filePath != b.filePath
    assert a.name.startswith("photo_") and b.name.startswith("photo_")


def test_without_unique_names_the_path_is_the_name(rt, small_jpeg):
    rec = record_of(rt, upload(rt, small_jpeg, useUniqueFileName=False, folder="/x"))
    assert rec.filePath == "/x/photo.jpg" and rec.name == "photo.jpg"


def test_extensions_run_on_the_uploaded_file(rt, small_jpeg):
    doc = upload(rt, small_jpeg, extensions=[{"name": "remove-bg"}])
    assert doc["extensions"]["remove-bg"]["status"] == "pending"
    while rt.queued:
        _, job_id, slot = rt.queued.pop(0)
        rt.pipeline.execute(job_id, slot)
    rec = rt.pipeline.get_file(doc["fileId"])
    assert rec.versionInfo.name == "Version 2" and rec.mime == "image/png"
    assert rec.extensionStatus == {"remove-bg": "success"}


def test_a_duplicate_upload_job_writes_once(rt, small_jpeg):
    first = upload(rt, small_jpeg, job_id="same")
    again = upload(rt, small_jpeg, job_id="same")
    assert again["fileId"] == first["fileId"]
    assert len(rt.pipeline.files.list("default")) == 1


# --- overwriting the file at a path (the README's table, row by row) -------------


@pytest.fixture
def existing(rt, small_jpeg):
    """A file at /photo.jpg with tags, AITags, custom metadata, coordinates and a description."""
    rt.pipeline.fields.create("default", {"name": "brand", "label": "Brand",
                                          "schema": {"type": "Text"}})
    rec = record_of(rt, upload(rt, small_jpeg, useUniqueFileName=False, tags=["old"],
                               customMetadata={"brand": "Old"}, customCoordinates="0,0,8,8",
                               description="old text", isPrivateFile=True))
    fk = rt.pipeline.file_key(rec.fileId)
    patch = RecordPatch(ai_tags=[AITag(name="cat", confidence=90, source="x")],
                        ai_tags_source="x")
    rt.kv.transact([fk], lambda cur: Txn(
        writes={fk: patch.apply(rt.pipeline.get_file(rec.fileId), 100).model_dump(mode="json")}))
    return rec


def overwrite(rt, existing, data: bytes, **fields):
    return record_of(rt, upload(rt, data, useUniqueFileName=False, **fields))


def test_same_path_is_a_new_version_of_the_same_file(rt, existing, astronaut):
    new_bytes = jpeg(astronaut.resize((32, 32)))
    rec = overwrite(rt, existing, new_bytes)
    assert rec.fileId == existing.fileId and rec.versionInfo.name == "Version 2"
    assert len(rec.versions) == 2 and rec.size == len(new_bytes) and rec.width == 32
    assert rt.blobs.get(rec.versions[0].blobKey) != new_bytes  # version 1 kept
    assert len(rt.pipeline.files.list("default")) == 1


def test_overwrite_defaults_drop_ai_tags_tags_metadata_and_coordinates(rt, existing, small_jpeg):
    rec = overwrite(rt, existing, small_jpeg)
    assert rec.AITags is None  # overwriteAITags (default true)
    assert rec.tags is None  # overwriteTags, no tags in the request
    assert rec.customMetadata == {}  # overwriteCustomMetadata, none in the request
    assert rec.customCoordinates is None  # not specified: removed
    assert rec.isPrivateFile is False  # the request's value (its default)
    assert rec.description == "old text"  # not documented for overwrites: kept


def test_overwrite_ai_tags_false_keeps_them(rt, existing, small_jpeg):
    rec = overwrite(rt, existing, small_jpeg, overwriteAITags=False)
    assert [t.name for t in rec.AITags] == ["cat"]


def test_overwrite_tags_false_keeps_tags_and_given_tags_replace(rt, existing, small_jpeg):
    assert overwrite(rt, existing, small_jpeg, overwriteTags=False).tags == ["old"]
    assert overwrite(rt, existing, small_jpeg, tags=["new"]).tags == ["new"]
    assert overwrite(rt, existing, small_jpeg, tags=["newer"], overwriteTags=False).tags == [
        "newer"]


def test_overwrite_custom_metadata_false_keeps_it_and_given_replaces(rt, existing, small_jpeg):
    kept = overwrite(rt, existing, small_jpeg, overwriteCustomMetadata=False)
    assert kept.customMetadata == {"brand": "Old"}
    given = overwrite(rt, existing, small_jpeg, customMetadata={"brand": "New"})
    assert given.customMetadata == {"brand": "New"}


def test_overwrite_sets_what_the_request_gives(rt, existing, small_jpeg):
    rec = overwrite(rt, existing, small_jpeg, customCoordinates="1,1,4,4", description="new",
                    isPublished=False)
    assert (rec.customCoordinates, rec.description, rec.isPublished) == ("1,1,4,4", "new", False)


def test_overwrite_file_false_rejects_and_writes_nothing(rt, existing, small_jpeg):
    before = rt.pipeline.get_file(existing.fileId)
    doc = upload(rt, small_jpeg, job_id="no-overwrite", useUniqueFileName=False,
                 overwriteFile=False, extensions=[{"name": "remove-bg"}],
                 tags=["should-not-land"])
    assert doc["state"] == "rejected" and doc["fileId"] is None
    assert doc["error"]["code"] == "file_exists"
    assert "a file already exists at /photo.jpg" in doc["error"]["message"]
    assert doc["extensions"]["remove-bg"]["status"] == "failed"
    after = rt.pipeline.get_file(existing.fileId)
    assert after.model_dump(exclude={"updatedAt"}) == before.model_dump(exclude={"updatedAt"})
    assert list(rt.blobs.keys("uploads/no-overwrite/")) == []  # bytes removed again
    assert rt.blobs.get(before.current.blobKey)  # the existing file's bytes untouched
    assert rt.queued == []
    assert rt.notified == [("no-overwrite", "remove-bg", "failed", doc["error"])]


def test_overwrite_file_false_on_a_free_path_creates(rt, small_jpeg):
    rec = record_of(rt, upload(rt, small_jpeg, useUniqueFileName=False, overwriteFile=False))
    assert rec.filePath == "/photo.jpg"


def test_the_100_version_limit_rejects_the_upload(rt, small_jpeg):
    rt.pipeline.settings.max_versions = 3
    for _ in range(3):
        rec = record_of(rt, upload(rt, small_jpeg, useUniqueFileName=False))
    doc = upload(rt, small_jpeg, useUniqueFileName=False)
    assert doc["state"] == "rejected" and doc["error"]["code"] == "version_limit"
    assert rt.pipeline.get_file(rec.fileId).versionInfo.name == "Version 3"


# --- accounts ---------------------------------------------------------------------


def test_files_belong_to_an_account(rt, small_jpeg):
    a = record_of(rt, upload(rt, small_jpeg, account="acme", useUniqueFileName=False))
    b = record_of(rt, upload(rt, small_jpeg, account="other", useUniqueFileName=False))
    assert a.filePath == b.filePath and a.fileId != b.fileId  # paths unique per account
    assert (a.accountId, b.accountId) == ("acme", "other")
    # Another account's job cannot read, run on or change the file: "not found", no leak.
    doc = rt.pipeline.accept({"fileId": a.fileId, "accountId": "other",
                              "extensions": [{"name": "remove-bg"}]}).to_json()
    assert doc["extensions"]["remove-bg"]["error"] == {
        "message": f"file not found: {a.fileId}", "code": "file_not_found"}
    upd = rt.pipeline.accept({"fileId": a.fileId, "accountId": "other", "origin": "update",
                              "update": {"tags": ["stolen"]}}).to_json()
    assert upd["state"] == "rejected" and upd["error"]["code"] == "file_not_found"
    assert rt.pipeline.get_file(a.fileId).tags is None
    assert rt.pipeline.get_file(a.fileId, "other") is None
    assert [r.fileId for r in rt.pipeline.files.list("other")] == [b.fileId]


# --- updates ------------------------------------------------------------------------


def test_update_changes_only_the_fields_given(rt, existing):
    rt.pipeline.fields.create("default", {"name": "size", "label": "Size",
                                          "schema": {"type": "Number", "maxValue": 50}})
    doc = rt.pipeline.accept({
        "fileId": existing.fileId, "origin": "update", "removeAITags": ["cat"],
        "update": {"tags": ["a", "b"], "customMetadata": {"size": 42, "brand": None}}}).to_json()
    assert doc["state"] == "dispatched", doc
    rec = rt.pipeline.get_file(existing.fileId)
    assert rec.tags == ["a", "b"] and rec.customMetadata == {"size": 42}
    assert rec.AITags is None and rec.description == "old text"  # untouched
    assert rec.customCoordinates == "0,0,8,8" and rec.versionInfo.name == "Version 1"
    rt.pipeline.accept({"fileId": existing.fileId, "origin": "update",
                        "update": {"tags": None, "customCoordinates": None,
                                   "description": "new"}})
    rec = rt.pipeline.get_file(existing.fileId)
    assert (rec.tags, rec.customCoordinates, rec.description) == (None, None, "new")


def test_update_with_extensions_runs_them_after_the_change(rt, existing):
    doc = rt.pipeline.accept({"fileId": existing.fileId, "origin": "update",
                              "update": {"description": "d"},
                              "extensions": [{"name": "remove-bg"}]}).to_json()
    assert [q[2] for q in rt.queued] == ["remove-bg"]
    assert doc["origin"] == "update"


@pytest.mark.parametrize("update, field", [
    ({"customMetadata": {"nope": 1}}, "update.customMetadata.nope"),
    ({"customMetadata": {"brand": 7}}, "update.customMetadata.brand"),
    ({"customCoordinates": "0,0,65,10"}, "update.customCoordinates"),
])
def test_a_bad_update_is_rejected_naming_the_field(rt, existing, update, field):
    doc = rt.pipeline.accept(
        {"fileId": existing.fileId, "origin": "update", "update": update}).to_json()
    assert doc["state"] == "rejected" and doc["error"]["message"].startswith(field)
    assert rt.pipeline.get_file(existing.fileId).customMetadata == {"brand": "Old"}


# --- bad uploads: each rejected with a readable reason, nothing written ----------------


def _nothing_written(rt):
    assert rt.pipeline.files.list("default") == []
    assert rt.blobs.fs.find(f"{rt.blobs.root}/uploads") == []


def test_unreachable_url(rt):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    doc = upload(rt, url=f"http://127.0.0.1:{port}/a.jpg?X-Amz-Signature=secret",
                 extensions=[{"name": "remove-bg"}])
    assert doc["state"] == "rejected" and doc["error"]["code"] == "url_unreachable"
    assert doc["error"]["message"].startswith(f"upload.url: cannot fetch http://127.0.0.1:{port}")
    assert "secret" not in doc["error"]["message"]  # presigned queries never echoed
    assert doc["extensions"]["remove-bg"]["error"] == doc["error"]
    _nothing_written(rt)


def test_private_address_is_refused_before_connecting(settings, rclient):
    settings.egress_allowlist = None  # no allowlist: the production default
    rt = RecordingRuntime(settings, record_notifications=True)
    doc = upload(rt, url="http://169.254.169.254/latest/meta-data/")
    assert doc["state"] == "rejected" and doc["error"]["code"] == "url_refused"
    assert "upload.url" in doc["error"]["message"]
    _nothing_written(rt)




def test_upload_from_a_url(rt, photo_server, small_jpeg):
    rec = record_of(rt, upload(rt, url=photo_server(small_jpeg)))
    assert rt.blobs.get(rec.current.blobKey) == small_jpeg


def test_oversize_upload_is_refused(rt, photo_server, small_jpeg):
    rt.pipeline.settings.upload_max_bytes = len(small_jpeg) - 1
    for doc in (upload(rt, url=photo_server(small_jpeg)), upload(rt, small_jpeg)):
        assert doc["state"] == "rejected", doc
        assert doc["error"]["code"] in ("url_too_large", "upload_too_large")
    rt.blobs.put("incoming/big.jpg", small_jpeg)
    doc = upload(rt, blobKey="incoming/big.jpg")
    assert doc["error"]["code"] == "upload_too_large"
    assert "upload.blobKey" in doc["error"]["message"]
    assert rt.pipeline.files.list("default") == []


def test_inline_base64_is_capped_separately(rt, small_jpeg):
    rt.pipeline.settings.upload_base64_max_bytes = 100
    doc = upload(rt, small_jpeg)
    assert doc["error"]["code"] == "upload_too_large"
    assert "put large files in blob storage" in doc["error"]["message"]
    assert upload(rt, base64="###")["error"]["message"] == "upload.base64: not valid base64"


def test_a_trickling_url_is_cut_at_the_deadline(rt, photo_server):
    rt.pipeline.settings.fetch_deadline_s = 1.0
    t0 = time.monotonic()
    doc = upload(rt, url=photo_server(b"", trickle=True))
    assert time.monotonic() - t0 < 2.5  # the server would trickle for 4 s
    assert doc["state"] == "rejected" and "no complete response within" in doc["error"]["message"]


def test_blob_key_upload_and_refusals(rt, small_jpeg):
    rt.blobs.put("incoming/a.jpg", small_jpeg)
    rec = record_of(rt, upload(rt, blobKey="incoming/a.jpg"))
    assert rt.blobs.get(rec.current.blobKey) == small_jpeg
    doc = upload(rt, blobKey="../../etc/passwd")
    assert doc["state"] == "rejected" and doc["error"]["message"].startswith("upload.blobKey:")
    doc = upload(rt, blobKey="incoming/missing.jpg")
    assert doc["error"]["code"] == "blob_not_found"


def test_bad_file_name_is_rejected(rt, small_jpeg):
    doc = upload(rt, small_jpeg, fileName="..")
    assert doc["state"] == "rejected" and doc["error"]["message"].startswith("upload.fileName")
    _nothing_written(rt)


def test_not_an_image_is_stored_and_image_extensions_fail(rt):
    doc = upload(rt, b"%PDF-1.4 not an image", fileName="doc.pdf",
                 extensions=[{"name": "remove-bg"}])
    rec = record_of(rt, doc)
    assert rec.fileType == "non-image" and rec.mime == "application/pdf"  # by its name
    while rt.queued:
        _, job_id, slot = rt.queued.pop(0)
        rt.pipeline.execute(job_id, slot)
    slot = rt.pipeline.get_job(doc["jobId"]).to_json()["extensions"]["remove-bg"]
    assert slot["status"] == "failed" and slot["error"]["code"] == "invalid_image"


def test_custom_metadata_is_checked_against_the_account_fields(rt, small_jpeg):
    doc = upload(rt, small_jpeg, customMetadata={"colour": "red"})
    assert doc["state"] == "rejected"
    assert doc["error"]["message"].startswith("upload.customMetadata.colour: no custom metadata")
    doc = upload(rt, small_jpeg, customCoordinates="60,60,10,10")
    assert doc["error"]["message"].startswith("upload.customCoordinates: the area 60,60,10,10")
    _nothing_written(rt)


def test_image_dimensions_survive_a_png_upload(rt):
    buf = io.BytesIO()
    Image.new("RGBA", (20, 10), (1, 2, 3, 4)).save(buf, "PNG")
    rec = record_of(rt, upload(rt, buf.getvalue(), fileName="a.png"))
    assert (rec.width, rec.height, rec.hasAlpha, rec.mime) == (20, 10, True, "image/png")
