"""``extworker store copy``: a deployment's document store moved from Redis to PostgreSQL
(and on to SQLite) — everything the stores hold and nothing of Redis's own, resumed after
a stop, verified by counts and a checksum per account; a difference is reported."""

from __future__ import annotations

import base64
import json

import psycopg

from tests.support import RecordingRuntime, cli, jpeg
from worker.store import search
from worker.store.backends.redis_kv import RedisKV
from worker.store.backends.sqlite_kv import LocalKV
from worker.store.copy import RedisSource, copy_id, copy_store, summarise
from worker.store.files import Listing


def _fill(rt, image: bytes) -> None:
    """Files of two accounts (with tags, custom metadata), their jobs, API keys, a saved
    extension and a field — and keys that are Redis's own."""
    rt.fields.create("acme", {"name": "brand", "label": "Brand",
                              "schema": {"type": "Text"}})
    rt.saved.create("acme", "Tag it", "tags", {"name": "aws-auto-tagging", "maxTags": 2,
                                               "minConfidence": 0})
    rt.apikeys.create("acme")
    data = base64.b64encode(image).decode()
    for i in range(24):
        account = "acme" if i % 3 else "zeta"
        rt.pipeline.accept({"jobId": f"copy-{i}", "accountId": account, "upload": {
            "fileName": f"f{i}.jpg", "base64": data, "folder": f"/d{i % 4}",
            "tags": ["even" if i % 2 == 0 else "odd"],
            **({"customMetadata": {"brand": f"b{i}"}} if account == "acme" else {})}})


def test_copy_redis_to_postgres_resumes_verifies_and_serves(settings, rclient, pg_url, pgkv,
                                                            astronaut, tmp_path):
    rt = RecordingRuntime(settings)
    _fill(rt, jpeg(astronaut.resize((32, 32))))
    keys = settings.keys
    rclient.set(keys.claim("copy-1", "remove-bg"), "x")  # Redis's own: never copied
    rclient.set(keys.console_session("s1"), "acme")
    source = RedisSource(RedisKV(rclient), keys)
    before = summarise(source)
    assert before.accounts["acme"]["documents"] > 16 and before.accounts["zeta"]["documents"]

    # Cut short after two batches of ten; the state file says where it was.
    state = tmp_path / "copy-state.json"
    assert copy_store(source, pgkv, state, copy_id(settings.redis_url, pg_url), batch=10,
                      stop_after=2) is None
    assert json.loads(state.read_text())["copied"] >= 20
    assert summarise(pgkv).differences(before)  # half done: it says so

    # The command resumes from the same state and verifies.
    out = cli(settings, "store", "copy", "--from", settings.redis_url, "--to", pg_url,
              "--batch", "10", "--state", str(state), "--quiet")
    report = json.loads(out.stdout)
    assert report["verified"] and report["resumed"] and report["differences"] == []
    assert report["accounts"] == before.accounts
    assert not state.exists()  # removed once verified

    # A runtime on PostgreSQL serves what was in Redis: files, search, jobs, keys, fields.
    settings.store_url = pg_url
    pg = RecordingRuntime(settings)
    assert [r.fileId for r in pg.files.list("acme", limit=100)] == [
        r.fileId for r in rt.files.list("acme", limit=100)]
    odd = pg.files.search("acme", Listing(query=search.parse(
        '"customMetadata.brand" IN ["b1", "b5"] AND tags = "odd"')))
    assert sorted(r.name.split("_")[0] for r in odd) == ["f1", "f5"], [
        (r.name, r.customMetadata, r.tags) for r in pg.files.list("acme", limit=100)]
    assert pg.pipeline.get_job("copy-7").fileId == rt.pipeline.get_job("copy-7").fileId
    assert pg.fields.all("acme").keys() == {"brand"}
    assert [s["name"] for s in pg.saved.list("acme")] == ["Tag it"]
    with psycopg.connect(pg_url) as conn:
        (leaked,) = conn.execute("SELECT count(*) FROM extworker_docs WHERE key LIKE "
                                 "'%claim%' OR key LIKE '%console%'").fetchone()
    assert leaked == 0

    # PostgreSQL → SQLite: the other way round verifies too.
    local = LocalKV(tmp_path / "local")
    again = copy_store(pgkv, local, tmp_path / "s2.json", "pg-to-local", batch=7)
    assert again is not None and again.differences == []
    assert summarise(local).accounts == before.accounts

    # A changed record is a difference, named by its account.
    with psycopg.connect(pg_url) as conn:
        conn.execute("UPDATE extworker_docs SET value = jsonb_set(value, '{tags}', "
                     "'[\"changed\"]') WHERE key = %s", (keys.file(odd[0].fileId),))
    diffs = summarise(pgkv).differences(before)
    assert len(diffs) == 1 and diffs[0].startswith("account acme:")
