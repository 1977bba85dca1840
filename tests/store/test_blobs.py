"""The blob store contract, on each real engine: a local directory, fsspec's memory, and S3
(a real S3 server: moto's standalone server, on loopback).

Given a store, when bytes are put, read, listed, sized and deleted, then each call does
what the contract says; a key that holds nothing is a permanent ``blob_not_found`` naming
the key (never a server path); a key outside the store is refused. A job whose source
blob is gone ends ``failed`` with that error, not an ``internal_error``.
"""

from __future__ import annotations

import base64
import uuid

import pytest

from tests.support import RecordingRuntime, jpeg
from worker.core.errors import BlobNotFound, PermanentError
from worker.store.blobs import BlobStore


@pytest.fixture(params=["local", "memory", "s3"])
def store(request, tmp_path) -> BlobStore:
    if request.param == "local":
        return BlobStore(f"file://{tmp_path / 'blobs'}")
    if request.param == "s3":
        request.getfixturevalue("s3_server")
        return BlobStore(f"s3://extworker/run-{uuid.uuid4().hex}")
    return BlobStore(f"memory://blobs-{uuid.uuid4().hex}")


def test_put_get_size_list_delete(store):
    store.put("a/b/c.bin", b"12345")
    store.put("a/d.bin", b"")
    store.put("a/b/c.bin", b"123456")  # a rewrite replaces the whole object
    assert store.get("a/b/c.bin") == b"123456" and store.size("a/b/c.bin") == 6
    assert store.get("a/d.bin") == b"" and store.exists("a/d.bin")
    assert [k for k, _ in store.keys("a/")] == ["a/b/c.bin", "a/d.bin"]
    assert [k for k, _ in store.keys("a/b/")] == ["a/b/c.bin"]
    assert list(store.keys("nothing/")) == []
    store.delete("a/b/c.bin")
    store.delete("a/b/c.bin")  # deleting what is gone is no error
    assert not store.exists("a/b/c.bin")
    assert [k for k, _ in store.keys()] == ["a/d.bin"]


def test_a_missing_blob_is_permanent_and_named_by_its_key(store):
    for read in (store.get, store.size):
        with pytest.raises(BlobNotFound) as e:
            read("uploads/gone/c.jpg")
        assert isinstance(e.value, PermanentError) and e.value.code == "blob_not_found"
        assert str(e.value) == "blob not found: uploads/gone/c.jpg"


@pytest.mark.parametrize("key", ["/etc/passwd", "../x", "a/../../x"])
def test_a_key_outside_the_store_is_refused(store, key):
    with pytest.raises(ValueError):
        store.put(key, b"x")


def test_a_job_whose_source_blob_is_gone_fails_naming_the_key(settings, rclient, astronaut):
    rt = RecordingRuntime(settings, record_notifications=True)
    doc = rt.pipeline.accept({"jobId": "gone", "upload": {
        "fileName": "a.jpg", "base64": base64.b64encode(jpeg(astronaut.resize((32, 32)))).decode()},
        "extensions": [{"name": "remove-bg"}]})
    key = rt.pipeline.get_file(doc.fileId).current.blobKey
    rt.blobs.delete(key)  # another node's storage, say: the bytes are not here
    slot = rt.pipeline.execute("gone", "remove-bg")
    assert slot.status == "failed" and slot.error.code == "blob_not_found", slot
    assert slot.error.message == f"blob not found: {key}"
    assert str(settings.data_dir) not in slot.error.message


def test_an_s3_outage_mid_job_makes_it_wait_and_loses_nothing(settings, rclient, s3_server,
                                                              astronaut, monkeypatch):
    """S3 goes away after remove-bg's model ran, before its version is written: the job is
    retried (a RetryableError: it waits for the store), not failed; once S3 is back the
    retry commits once — one new version, units once — and the bucket holds exactly the
    bytes the record references."""
    import s3fs

    from tests.support.tcpproxy import Proxy
    from worker.core.errors import RetryableError

    proxy = Proxy(int(s3_server.rsplit(":", 1)[1]))
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")  # the client's own retries, kept short
    s3fs.S3FileSystem.clear_instance_cache()
    prefix = f"outage-{uuid.uuid4().hex}"
    settings.blob_url = f"s3://extworker/{prefix}"
    try:
        rt = RecordingRuntime(settings)
        doc = rt.pipeline.accept({"jobId": "outage", "upload": {
            "fileName": "a.jpg",
            "base64": base64.b64encode(jpeg(astronaut.resize((96, 96)))).decode()},
            "extensions": [{"name": "remove-bg"}]})
        handler = rt.registry.get("remove-bg")
        real_run = handler.run

        def run_then_cut(ctx, params):
            result = real_run(ctx, params)
            proxy.cut()  # the model has run; the store goes away now
            return result

        handler.run = run_then_cut
        with pytest.raises(RetryableError, match="blob storage"):
            rt.pipeline.execute("outage", "remove-bg")
        assert rt.pipeline.get_job("outage").extensions["remove-bg"].status == "pending"
        proxy.restore()
        handler.run = real_run
        slot = rt.pipeline.execute("outage", "remove-bg")  # what dramatiq's retry runs
        assert slot.status == "success", slot
        record = rt.pipeline.get_file(doc.fileId)
        assert len(record.versions) == 2
        assert rt.pipeline.usage("default")["extensions"] == {"remove-bg": 130}
        stored = {k for k, _ in rt.blobs.keys()}
        assert stored == {v.blobKey for v in record.versions}  # nothing lost, none twice
        assert rt.blobs.url(record.current.blobKey).startswith(f"s3://extworker/{prefix}/")
    finally:
        proxy.close()
        s3fs.S3FileSystem.clear_instance_cache()
