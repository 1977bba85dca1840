"""File records: atomic patches under real concurrency, versions and their cap."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from worker.core.errors import PermanentError
from worker.core.records import AITag, FileRecord, NewVersion, RecordPatch
from worker.store.backends.redis_kv import RedisKV
from worker.store.backends.sqlite_kv import LocalKV
from worker.store.kv import DELETE, Txn


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


def _kv(backend, rclient, tmp_path, request):
    if backend == "postgres":
        return request.getfixturevalue("pgkv")
    return RedisKV(rclient) if backend == "redis" else LocalKV(tmp_path / "kv")


BACKENDS = ["redis", "local", "postgres"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_fifty_concurrent_patches_none_lost(backend, rclient, tmp_path, request):
    kv = _kv(backend, rclient, tmp_path, request)
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
    # Every source's tags, none lost (sources in the order their patches landed).
    assert sorted(t.confidence for t in rec.AITags or []) == list(range(50))


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
    from worker.models.cache import ModelCache

    cache = ModelCache(idle_ttl_s=60)

    def broken():
        raise OSError("corrupt model file")

    for i in range(100):
        with pytest.raises(OSError):
            cache.get(f"remove-bg:missing-{i}", broken)
    assert cache._used == {} and cache.loaded() == []
    cache.get("remove-bg:ok", lambda: object())
    assert list(cache._used) == ["remove-bg:ok"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_index_pages_by_prefix_in_byte_order_and_deletes(backend, rclient, tmp_path, request):
    kv = _kv(backend, rclient, tmp_path, request)
    idx = "extworker:files:acme"
    members = ["/b/z.jpg", "/a/ä.jpg", "/a/b.jpg", "/a/B.jpg", "/c.jpg"]
    kv.transact([], lambda cur: Txn(index_add={idx: members}, writes={"k1": 1, "k2": 2}))
    assert kv.index_range(idx, "/a/", 0, 10) == ["/a/B.jpg", "/a/b.jpg", "/a/ä.jpg"]
    assert kv.index_range(idx, "", 1, 2) == ["/a/b.jpg", "/a/ä.jpg"]
    kv.transact(["k1"], lambda cur: Txn(writes={"k1": DELETE},
                                        index_remove={idx: ["/a/b.jpg"]}))
    assert kv.get_many(["k1", "k2", "nope"]) == [None, 2, None]
    assert kv.index_range(idx, "/a/", 0, 10) == ["/a/B.jpg", "/a/ä.jpg"]


def test_local_kv_honours_ttls_and_imports_the_earlier_file_store(tmp_path):
    import json
    import time
    import urllib.parse

    root = tmp_path / "kv"
    root.mkdir()
    (root / (urllib.parse.quote("extworker:file:old", safe="") + ".json")).write_text(
        json.dumps({"fileId": "old"}))
    (root / (urllib.parse.quote("__index__:extworker:files:a", safe="") + ".json")).write_text(
        json.dumps(["/x.jpg"]))
    kv = LocalKV(root)
    assert kv.get("extworker:file:old") == {"fileId": "old"}
    assert kv.index_range("extworker:files:a", "", 0, 10) == ["/x.jpg"]
    assert not list(root.glob("*.json"))  # imported once, kept as *.json.imported
    kv.transact([], lambda cur: Txn(writes={"short": 1}, ttl={"short": 1}))
    assert kv.get("short") == 1
    time.sleep(1.1)
    assert kv.get("short") is None


def _local_patcher(root: str, start: int) -> None:
    kv = LocalKV(Path(root))
    for i in range(start, start + 25):
        _patch_in(kv, "extworker:file:f1", RecordPatch(add_tags=[f"tag{i}"]))


def test_local_kv_patches_from_two_processes_none_lost(tmp_path):
    """SQLite's write lock, not a lock in our process: two processes, 25 patches each."""
    import multiprocessing

    kv = LocalKV(tmp_path / "kv")
    kv.transact([], lambda cur: Txn(writes={"extworker:file:f1": _record().model_dump(
        mode="json")}))
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_local_patcher, args=(str(tmp_path / "kv"), s))
             for s in (0, 25)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    rec = FileRecord.model_validate(kv.get("extworker:file:f1"))
    assert sorted(rec.tags or []) == sorted(f"tag{i}" for i in range(50))


def test_postgres_store_honours_ttls_migrates_once_and_keeps_all_or_nothing(pgkv, pg_url):
    import time

    from worker.store.backends.postgres_kv import SCHEMA_VERSION, PostgresKV

    pgkv.transact([], lambda cur: Txn(writes={"a": {"x": 1}, "b": [1]}, ttl={"b": 1}))
    assert pgkv.get_many(["a", "b"]) == [{"x": 1}, [1]]
    time.sleep(1.2)
    assert pgkv.get("b") is None and pgkv.get("a") == {"x": 1}

    with pytest.raises(PermanentError):
        pgkv.transact(["a"], lambda cur: (_ for _ in ()).throw(PermanentError("no")))
    assert pgkv.get("a") == {"x": 1}
    # A second store on the same database: the schema is there, nothing runs twice.
    again = PostgresKV(pg_url, pgkv.files)
    assert again.migrate() == SCHEMA_VERSION
    with again.pool.connection() as conn:
        assert conn.execute("SELECT count(*) FROM extworker_schema").fetchone()[0] == \
            SCHEMA_VERSION
    again.close()


def test_postgres_migrations_from_empty_and_from_the_previous_version(empty_pg_url):
    """Schema 1 (documents only) with file records in it → schema 2: the columns are added
    and filled for the records already there, so search finds them; from an empty database
    both steps run; every step runs once."""
    import psycopg

    from worker.core.keys import Keys
    from worker.store import search
    from worker.store.backends.postgres_kv import SCHEMA_VERSION, PostgresKV
    from worker.store.search import FileColumns

    columns = FileColumns(Keys("extworker").file(""))
    with psycopg.connect(empty_pg_url, autocommit=True) as conn:  # what version 1 made
        conn.execute("CREATE TABLE extworker_schema (version int NOT NULL)")
        conn.execute("CREATE TABLE extworker_docs (key text PRIMARY KEY, value jsonb NOT NULL, "
                     "expires_at timestamptz)")
        conn.execute('CREATE TABLE extworker_index (key text NOT NULL, member text COLLATE "C" '
                     'NOT NULL, PRIMARY KEY (key, member))')
        conn.execute("INSERT INTO extworker_schema VALUES (1)")
        # More documents under the file prefix that are not records than one backfill
        # batch holds, before the record: the backfill must page past them.
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO extworker_docs VALUES (%s, %s, NULL)",
                            [(f"extworker:file:0{i:05d}", psycopg.types.json.Jsonb({"n": i}))
                             for i in range(1001)])
        rec = _record("old").model_dump(mode="json")
        rec.update(tags=["kept"], accountId="acme", createdAt="2026-01-01T00:00:00.000Z")
        conn.execute("INSERT INTO extworker_docs VALUES (%s, %s, NULL)",
                     ("extworker:file:old", psycopg.types.json.Jsonb(rec)))
    kv = PostgresKV(empty_pg_url, columns)
    try:
        params: list = []
        where = search.to_sql(search.parse('tags = "kept" AND createdAt < "2026-02-01"'),
                              params)
        assert [d["fileId"] for d in kv.select_files("acme", where, params, "path", 0, 10)
                ] == ["old"]
        with kv.pool.connection() as conn:
            versions = [v for (v,) in conn.execute(
                "SELECT version FROM extworker_schema ORDER BY 1").fetchall()]
        assert versions == list(range(1, SCHEMA_VERSION + 1))
    finally:
        kv.close()


def test_a_job_runs_end_to_end_on_the_postgres_store(settings, rclient, pg_url, astronaut,
                                                     pgkv):
    """EXTWORKER_STORE_URL=postgresql://…: upload, the extension's outcome, units and the
    file listing all land in PostgreSQL; Redis holds none of the store's keys."""
    import base64

    from tests.support import RecordingRuntime, jpeg

    settings.store_url = pg_url
    rt = RecordingRuntime(settings)
    doc = rt.pipeline.accept({"jobId": "pg-1", "accountId": "acme", "upload": {
        "fileName": "a.jpg", "base64": base64.b64encode(jpeg(astronaut)).decode()},
        "extensions": [{"name": "aws-auto-tagging", "minConfidence": 0, "maxTags": 2}]})
    (queue, job_id, slot) = rt.queued[0]
    rt.pipeline.execute(job_id, slot)
    record = rt.pipeline.get_file(doc.fileId, "acme")
    assert record.extensionStatus == {"aws-auto-tagging": "success"} and record.AITags
    assert [r.fileId for r in rt.files.list("acme")] == [doc.fileId]
    assert rt.pipeline.usage("acme")["total"] == settings.unit_cost("aws-auto-tagging")
    assert pgkv.get(settings.keys.file(doc.fileId))["fileId"] == doc.fileId
    assert list(rclient.scan_iter(f"{settings.namespace}:file:*")) == []
    assert list(rclient.scan_iter(f"{settings.namespace}:job:*")) == []


def test_postgres_stores_a_file_key_document_that_is_not_a_record(pgkv):
    """A document under the file prefix without a record's fields (a hand edit, an older
    shape) is kept — without search columns — rather than failing the write."""
    key = "extworker:file:odd"
    pgkv.transact([key], lambda cur: Txn(writes={key: {"fileId": "odd", "note": 1}}))
    assert pgkv.get(key) == {"fileId": "odd", "note": 1}
    assert pgkv.select_files("default", None, [], "path", 0, 10) == []
