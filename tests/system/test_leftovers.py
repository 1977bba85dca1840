"""No bytes are left behind: every way out of an upload or a delete removes what it wrote,
and ``extworker doctor`` finds (and ``--fix`` removes) whatever a crash still leaves.

Given an upload whose path is never free, a delivery of a job that another delivery of the
same job beat to the commit, or a delete that a new version races, when each ends, then the
blob store holds exactly the bytes that some record references.
"""

from __future__ import annotations

import base64
import os
import time

from tests.support import RecordingRuntime, jpeg
from worker.broker import doctor
from worker.core.egress import EgressPolicy
from worker.core.errors import RetryableError
from worker.pipeline.dispatch import Dispatcher
from worker.store.backends.redis_kv import RedisKV
from worker.store.files import FileStore, PathTaken


def _job(job_id: str, data: bytes) -> dict:
    return {"jobId": job_id, "upload": {"fileName": "photo.jpg",
                                        "base64": base64.b64encode(data).decode()},
            "extensions": []}


def _dispatcher(rt: RecordingRuntime, files: FileStore) -> Dispatcher:
    return Dispatcher(rt.settings, rt.kv, rt.blobs, rt.registry, files, rt.saved,
                      EgressPolicy.parse(rt.settings.egress_allowlist), enqueue=None,
                      hand_off=lambda doc, slot: None)


def _referenced(rt: RecordingRuntime) -> set[str]:
    return doctor._referenced_blobs(rt.kv, rt.settings)


class NeverFree(FileStore):
    """Every path it chooses is taken by the time the transaction looks."""

    def in_txn(self, *args, **kwargs):
        raise PathTaken("/photo.jpg")


def test_a_dispatch_that_finds_no_free_path_removes_its_bytes(settings, rclient, astronaut):
    rt = RecordingRuntime(settings)
    files = NeverFree(rt.kv, rt.blobs, settings, rt.fields, rt.exiftool)
    try:
        _dispatcher(rt, files).accept(_job("no-path", jpeg(astronaut.resize((32, 32)))))
    except RetryableError as e:
        assert "no free path" in str(e)
    else:
        raise AssertionError("expected a retry")
    assert list(rt.blobs.keys("uploads/no-path/")) == []


class RacedFiles(FileStore):
    """Right after preparing its upload, another delivery of the same job commits first."""

    def __init__(self, *args, rival, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.rival = rival

    def prepare(self, *args, **kwargs):
        prepared = super().prepare(*args, **kwargs)
        rival, self.rival = self.rival, None
        if rival is not None:
            rival()
        return prepared


def test_a_delivery_beaten_to_the_commit_removes_its_own_bytes(settings, rclient, astronaut):
    rt = RecordingRuntime(settings)
    job = _job("raced", jpeg(astronaut.resize((32, 32))))
    files = RacedFiles(rt.kv, rt.blobs, settings, rt.fields, rt.exiftool,
                       rival=lambda: rt.pipeline.accept(dict(job)))
    doc = _dispatcher(rt, files).accept(dict(job))
    assert doc is not None and doc.fileId is not None
    record = rt.pipeline.get_file(doc.fileId)
    stored = [k for k, _ in rt.blobs.keys("uploads/raced/")]
    assert stored == [record.current.blobKey]  # the winner's bytes, and only those


class RacingKV(RedisKV):
    """Its first read of a file record lets ``then`` run right after — a new version
    committing between a delete's read and its transaction."""

    def __init__(self, client, then) -> None:
        super().__init__(client)
        self.then = then

    def get(self, key: str):
        value = super().get(key)
        if ":file:" in key and self.then is not None:
            then, self.then = self.then, None
            then()
        return value


def test_a_delete_removes_a_version_committed_while_it_ran(settings, rclient, astronaut):
    rt = RecordingRuntime(settings)
    doc = rt.pipeline.accept({"jobId": "cut", "upload": {
        "fileName": "a.jpg", "base64": base64.b64encode(jpeg(astronaut.resize((96, 96)))).decode()},
        "extensions": [{"name": "remove-bg"}]})
    fid = doc.fileId
    files = FileStore(RacingKV(rclient, lambda: rt.pipeline.execute("cut", "remove-bg")),
                      rt.blobs, settings, rt.fields, rt.exiftool)
    assert files.delete(fid, "default")
    assert rt.pipeline.get_file(fid) is None
    left = [k for k, _ in rt.blobs.keys() if k.startswith((f"{fid}/", "uploads/cut/"))]
    assert left == []  # the cut-out committed meanwhile is gone too


def test_doctor_reports_and_fix_removes_orphaned_blobs_past_the_grace(settings, rclient,
                                                                       astronaut):
    rt = RecordingRuntime(settings)
    doc = rt.pipeline.accept(_job("kept", jpeg(astronaut.resize((32, 32)))))
    record = rt.pipeline.get_file(doc.fileId)
    kept = record.current.blobKey
    # A thumbnail of the kept version (delivery's), and one of a file deleted meanwhile.
    thumb = f"derived/{doc.fileId}/{record.current.id}/{'c' * 24}.jpg"
    old = ["uploads/crashed/0123456789ab/photo.jpg", f"{doc.fileId}/crashed-remove-bg.png",
           "incoming/api-" + "ab" * 16, f"derived/{'d' * 24}/{'e' * 24}/{'f' * 24}.jpg"]
    for key in [*old, thumb, "uploads/in-flight/0123456789ab/a.jpg", "incoming/photo.jpg"]:
        rt.blobs.put(key, b"bytes")
    day_ago = time.time() - settings.blob_orphan_grace_s - 60
    root = settings.data_dir / "blobs"
    for key in [*old, kept, thumb, "incoming/photo.jpg"]:
        os.utime(root / key, (day_ago, day_ago))
    report = doctor.examine(rclient, settings, blobs=rt.blobs)
    # Old orphans reported; the in-flight one only counted; the record's bytes and a
    # publisher's own object (incoming/photo.jpg) never.
    assert sorted(b["key"] for b in report["blobs"]) == sorted(old)
    assert report["counts"]["blobs"] == 4 and report["blobsRecent"] == 1
    done = doctor.repair(rclient, settings, report, send=lambda *a: None,
                         wake_webhooks=lambda: None, dispatch=lambda j: None,
                         handoff=lambda *a: None, blobs=rt.blobs)
    assert done["blobs"] == 4
    remaining = {k for k, _ in rt.blobs.keys()}
    assert remaining == {kept, thumb, "uploads/in-flight/0123456789ab/a.jpg",
                         "incoming/photo.jpg"}
    assert _referenced(rt) == {kept, thumb.rsplit("/", 1)[0] + "/"}
