"""File records: atomic patches under real concurrency, versions and their cap."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from worker.core.errors import PermanentError
from worker.core.records import AITag, FileRecord, NewVersion, RecordPatch
from worker.store.kv import LocalKV, RedisKV, Txn


def _record(fid: str = "f1") -> FileRecord:
    return FileRecord.model_validate({
        "fileId": fid, "name": "a.jpg", "filePath": "/a.jpg",
        "versionInfo": {"id": "v1", "name": "Version 1"}, "url": "file:///a", "fileType": "image",
        "mime": "image/jpeg", "size": 10, "createdAt": "t", "updatedAt": "t",
        "versions": [{"id": "v1", "name": "Version 1", "blobKey": "k", "mime": "image/jpeg",
                      "size": 10, "createdAt": "t"}],
    })


def _patch_in(kv, key: str, patch: RecordPatch, max_versions: int = 100) -> None:
    def fn(cur):
        rec = patch.apply(FileRecord.model_validate(cur[key]), max_versions)
        return Txn(writes={key: rec.model_dump(mode="json")})
    kv.transact([key], fn)


@pytest.mark.parametrize("backend", ["redis", "local"])
def test_fifty_concurrent_patches_none_lost(backend, rclient, tmp_path):
    kv = RedisKV(rclient) if backend == "redis" else LocalKV(tmp_path / "kv")
    key = "extworker:file:f1"
    kv.transact([key], lambda cur: Txn(writes={key: _record().model_dump(mode="json")}))

    def work(i: int) -> None:
        _patch_in(kv, key, RecordPatch(
            status={f"ext{i}": "success"}, add_tags=[f"tag{i}"],
            metadata_set={f"m{i}": i},
            ai_tags=[AITag(name=f"n{i}", confidence=i, source=f"src{i}")],
            ai_tags_source=f"src{i}",
        ))

    with ThreadPoolExecutor(max_workers=50) as pool:
        list(pool.map(work, range(50)))
    rec = FileRecord.model_validate(kv.get(key))
    assert len(rec.extensionStatus) == 50
    assert sorted(rec.tags or []) == sorted(f"tag{i}" for i in range(50))
    assert rec.customMetadata == {f"m{i}": i for i in range(50)}
    assert [t.confidence for t in rec.AITags or []] == sorted(range(50), reverse=True)


def test_ai_tags_replace_same_source_keep_others_and_remove():
    rec = _record()
    rec.AITags = [AITag(name="cat", confidence=90, source="google-auto-tagging"),
                  AITag(name="pet", confidence=80, source="aws-auto-tagging")]
    out = RecordPatch(ai_tags=[AITag(name="dog", confidence=70, source="google-auto-tagging")],
                      ai_tags_source="google-auto-tagging").apply(rec, 100)
    assert [(t.name, t.source) for t in out.AITags or []] == [
        ("pet", "aws-auto-tagging"), ("dog", "google-auto-tagging")]
    assert RecordPatch(remove_ai_tags=["pet"]).apply(out, 100).AITags[0].name == "dog"
    assert RecordPatch(remove_ai_tags="all").apply(out, 100).AITags is None


def _version(origin: str) -> NewVersion:
    return NewVersion(blobKey=f"k-{origin}", url="u", mime="image/png", size=5, width=2,
                      height=2, hasAlpha=True, origin=origin)


def test_new_version_names_and_dedupe():
    rec = RecordPatch(new_version=_version("job1/remove-bg")).apply(_record(), 100)
    assert rec.versionInfo.name == "Version 2" and rec.hasAlpha and rec.mime == "image/png"
    again = RecordPatch(new_version=_version("job1/remove-bg")).apply(rec, 100)
    assert len(again.versions) == 2 and again.versionInfo == rec.versionInfo
    assert [v.blobKey for v in again.versions] == ["k", "k-job1/remove-bg"]  # old bytes kept


def test_version_cap_fails_clearly_and_overwrites_nothing():
    rec = _record()
    for i in range(99):
        rec = RecordPatch(new_version=_version(f"j{i}/remove-bg")).apply(rec, 100)
    assert rec.versionInfo.name == "Version 100"
    with pytest.raises(PermanentError) as info:
        RecordPatch(new_version=_version("late/remove-bg")).apply(rec, 100)
    assert "maximum is 100" in str(info.value) and info.value.code == "version_limit"
    assert rec.versionInfo.name == "Version 100" and len(rec.versions) == 100


def test_a_failed_model_load_leaves_nothing_in_the_cache():
    from worker.models.catalog import ModelCache

    cache = ModelCache(idle_ttl_s=60)

    def broken():
        raise OSError("corrupt model file")

    for i in range(100):
        with pytest.raises(OSError):
            cache.get(f"remove-bg:missing-{i}", broken)
    assert cache._used == {} and cache.loaded() == []
    cache.get("remove-bg:ok", lambda: object())
    assert list(cache._used) == ["remove-bg:ok"]
