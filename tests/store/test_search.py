"""``GET /v1/files``'s ``searchQuery`` (the hosted grammar), its sort and filters: one table
of queries with the files each must return, run on every store backend (Redis and SQLite
evaluate in Python, PostgreSQL in SQL over its columns); bad queries answer a 400 naming
the token; through the official SDK's ``assets.list(search_query=…)``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from worker.core.keys import Keys
from worker.core.records import FileRecord
from worker.core.settings import Settings
from worker.store import search
from worker.store.backends.redis_kv import RedisKV
from worker.store.backends.sqlite_kv import LocalKV
from worker.store.blobs import BlobStore
from worker.store.fields import FieldStore
from worker.store.files import FileStore, Listing
from worker.store.kv import Txn
from worker.store.metadata import ExifTool
from worker.store.search import QueryError

NOW = datetime.now(UTC)


def _at(**delta: float) -> str:
    return search.iso(NOW - timedelta(**delta))


# Five files of account "acme" (ids a–e), in path order: e, d, c, b, a.
FILES = {
    "a": dict(filePath="/products/shoe-red.jpg", tags=["sale", "shoes"],
              AITags=[{"name": "Shoe", "confidence": 90, "source": "aws-auto-tagging"},
                      {"name": "Red", "confidence": 80, "source": "aws-auto-tagging"}],
              customMetadata={"brand": "Nike", "price": 120, "colors": ["red", "white"],
                              "launch": "2026-01-15T00:00:00.000Z"},
              size=150_000, width=800, height=600, mime="image/jpeg", created=_at(days=1)),
    "b": dict(filePath="/products/shoe-blue.png", tags=["shoes"],
              AITags=[{"name": "Shoe", "confidence": 70, "source": "google-auto-tagging"}],
              customMetadata={"brand": "Adidas", "price": 80, "colors": ["blue"]},
              size=2_500_000, width=1200, height=1200, mime="image/png", hasAlpha=True,
              created=_at(days=10)),
    "c": dict(filePath="/products/archive/old-hat.jpg", tags=["hat"],
              customMetadata={"brand": "Puma", "price": 25.5, "onSale": True},
              size=40_000, width=300, height=200, mime="image/jpeg", isPrivateFile=True,
              created=_at(days=400)),
    "d": dict(filePath="/docs/manual.pdf", size=900_000, mime="application/pdf",
              fileType="non-image", isPublished=False, created=_at(days=3),
              embeddedMetadata={"Author": "ACME Inc", "PageCount": 12}),
    "e": dict(filePath="/banner_100%.jpg", tags=["sale"], customMetadata={"brand": "nike"},
              size=5_000, width=100, height=50, mime="image/jpeg", created=_at(hours=2),
              embeddedMetadata={"Keywords": ["Summer", "Beach"]}),
}
# Another account's file that matches nearly everything: it must never show.
OTHER = dict(filePath="/products/shoe-red.jpg", tags=["sale", "hat", "shoes"],
             customMetadata={"brand": "Nike", "price": 120}, size=150_000, width=800,
             height=600, mime="image/jpeg", created=_at(hours=1))

QUERIES = [
    ('tags IN ["sale"]', "ea"),
    ('tags = "Shoe"', "ba"),  # an AI tag's name: `tags` covers both
    ('"AITags.name" = "Red"', "a"),
    ('AITags.name IN ["Shoe"]', "ba"),
    ('tags NOT IN ["sale", "hat"]', "db"),
    ('tags EXISTS', "ecba"),
    ('tags NOT EXISTS', "d"),
    ('tags HAS "SHO"', "ba"),
    ('name = "old-hat.jpg"', "c"),
    ('name : "shoe"', "ba"),
    ('name HAS "BLUE"', "b"),
    ('name IN ["manual.pdf", "old-hat.jpg"]', "dc"),
    ('name NOT = "manual.pdf"', "ecba"),
    ('name = "banner_100%.jpg"', "e"),
    ('name : "banner_1"', "e"),
    ('name : "banner%"', ""),  # LIKE's wildcards are literal characters
    ('name : "b_nner"', ""),
    ('filePath = "/docs/manual.pdf"', "d"),
    ('path = "/products"', "ba"),  # in the folder itself
    ('path : "/products/"', "cba"),  # …or any subfolder
    ('path : "/"', "edcba"),
    ('path IN ["/docs/", "/products/archive/"]', "dc"),
    ('createdAt > "7d"', "eda"),
    ('createdAt < "30d"', "c"),
    ('createdAt > "12h" OR createdAt <= "1y"', "ec"),
    ('createdAt >= "2020-01-01" AND createdAt < "2100-01-01T00:00:00Z"', "edcba"),
    ('updatedAt > "2d"', "ea"),
    ('size > "1mb"', "b"),
    ('size < 50000', "ec"),
    ('size >= 900000', "db"),
    ('size = 5000', "e"),
    ('size IN [5000, 40000]', "ec"),
    ('width > 500', "ba"),
    ('width NOT = 100', "cba"),  # the PDF has no width: it matches no comparison
    ('height <= 200', "ec"),
    ('format = "jpg"', "eca"),
    ('format IN ["png", "pdf"]', "db"),
    ('fileType = "non-image"', "d"),
    ('mime : "image/"', "ecba"),
    ('type = "file"', "edcba"),
    ('private = true', "c"),
    ('published = false', "d"),
    ('transparency = true', "b"),
    ('"customMetadata.brand" = "Nike"', "a"),
    ('"customMetadata.brand" HAS "nike"', "ea"),
    ('"customMetadata.brand" IN ["Adidas", "Puma"]', "cb"),
    ('"customMetadata.brand" NOT IN ["Nike"]', "edcb"),
    ('"customMetadata.brand" : "Ad"', "b"),
    ('"customMetadata.price" > 50', "ba"),
    ('"customMetadata.price" <= 25.5', "c"),
    ('"customMetadata.price" = 120', "a"),
    ('"customMetadata.colors" = "red"', "a"),  # a MultiSelect: membership
    ('"customMetadata.colors" IN ["blue", "white"]', "ba"),
    ('"customMetadata.colors" : "bl"', "b"),
    ('"customMetadata.onSale" = true', "c"),
    ('"customMetadata.onSale" = 1', ""),  # a boolean is not a number
    ('"customMetadata.price" EXISTS', "cba"),
    ('"customMetadata.price" NOT EXISTS', "ed"),
    ('"customMetadata.launch" > "2026-01-01"', "a"),
    ('"customMetadata.launch" < "1d"', "a"),
    ('"customMetadata.brand" > 3', ""),  # a number compares with numbers only
    ('"embeddedMetadata.Author" = "ACME Inc"', "d"),
    ('"embeddedMetadata.PageCount" > 10', "d"),
    ('"embeddedMetadata.Keywords" = "Beach"', "e"),
    ('tags IN ["sale"] AND size > 10000', "a"),
    ('tags IN ["sale"] OR fileType = "non-image"', "eda"),
    ('(tags = "hat" OR tags = "sale") AND createdAt > "7d"', "ea"),
    ('tags = "shoes" AND ("customMetadata.price" < 100 OR private = true)', "b"),
    ('tags in ["hat"] or name = "manual.pdf"', "dc"),  # words in any case
    ('name = "x\'); DROP TABLE extworker_docs; --"', ""),  # a value, never SQL
]

BAD = [
    ('tags IN "sale"', "expected '['", '"sale"'),
    ('colour = "red"', "unknown field", "colour"),
    ('size > "big"', "size: expected a number", '"big"'),
    ('createdAt > "yesterday"', "createdAt: expected a date", '"yesterday"'),
    ('createdAt = "7d"', "createdAt does not take =", "="),
    ('private = "maybe"', "expected true or false", '"maybe"'),
    ('tags = "a" AND', "expected a field name", None),
    ('(tags = "a"', "expected ')'", None),
    ('name ~ "x"', "unexpected character", "~"),
    ('tags = "a" name = "b"', "expected AND, OR or the end", "name"),
    ('name = sale', "expected a value", "sale"),
    ('customMetadata = "x"', "name the field", "customMetadata"),
    ('tags NOT "x"', "expected IN, EXISTS or = after NOT", '"x"'),
    ('', "empty query", None),
]


def _doc(fid: str, spec: dict, account: str) -> dict:
    spec = dict(spec)
    created = spec.pop("created")
    path = spec["filePath"]
    return FileRecord.model_validate({
        "fileId": fid, "accountId": account, "name": path.rsplit("/", 1)[1],
        "versionInfo": {"id": "v1", "name": "Version 1"}, "url": f"file:///{fid}",
        "fileType": "image", "createdAt": created, "updatedAt": created, **spec,
    }).model_dump(mode="json")


@pytest.fixture(params=["redis", "sqlite", "postgres"])
def files(request, rclient, tmp_path: Path) -> FileStore:
    """A file store on each backend holding FILES (account acme) and OTHER (account zeta)."""
    if request.param == "postgres":
        kv = request.getfixturevalue("pgkv")
    else:
        kv = RedisKV(rclient) if request.param == "redis" else LocalKV(tmp_path / "kv")
    settings = Settings(redis_url="redis://unused", data_dir=tmp_path)
    store = FileStore(kv, BlobStore(str(tmp_path / "blobs")), settings, FieldStore(kv, settings),
                      ExifTool(settings.exiftool))
    docs = {**{(fid, "acme"): _doc(fid, spec, "acme") for fid, spec in FILES.items()},
            ("x", "zeta"): _doc("x", OTHER, "zeta")}
    for (fid, account), doc in docs.items():
        path = doc["filePath"]
        kv.transact([], lambda cur, fid=fid, account=account, doc=doc, path=path: Txn(
            writes={store.file_key(fid): doc,
                    store.path_key(account, path): {"fileId": fid}},
            index_add=store.placed(account, path)))
    return store


def _ids(records) -> str:
    return "".join(r.fileId for r in records)


@pytest.mark.parametrize(("query", "expected"), QUERIES, ids=[q for q, _ in QUERIES])
def test_each_query_returns_its_files_on_every_backend(files, query, expected):
    got = files.search("acme", Listing(query=search.parse(query)))
    assert _ids(got) == expected


def test_sorting_paging_and_the_list_parameters(files):
    def ids(**kw) -> str:
        if "query" in kw:
            kw["query"] = search.parse(kw["query"])
        if "sort" in kw:
            kw["sort"] = search.check_sort(kw["sort"])
        return _ids(files.search("acme", Listing(**kw)))

    assert ids(sort="ASC_SIZE") == "ecadb"
    assert ids(sort="DESC_SIZE") == "bdace"
    assert ids(sort="DESC_CREATED") == "eadbc"
    assert ids(sort="ASC_UPDATED") == "cbdae"
    assert ids(sort="ASC_WIDTH") == "decab"  # no width first
    assert ids(sort="DESC_HEIGHT") == "baced"
    assert ids(sort="ASC_NAME") == "edcba"
    assert ids(sort="DESC_NAME") == "abcde"
    assert ids(sort="ASC_RELEVANCE") == "edcba"  # every match is as relevant: path order
    assert ids(query="tags EXISTS", skip=1, limit=2) == "cb"
    assert ids(query="tags EXISTS", sort="DESC_SIZE", skip=1, limit=2) == "ac"
    assert ids(tags=["sale", "hat"]) == "eca"
    assert ids(tags=["Shoe"]) == ""  # the `tags` parameter is the file's own tags
    assert ids(name="manual.pdf") == "d"
    assert ids(file_type="image") == "ecba"
    assert ids(file_type="non-image") == "d"
    assert ids(path="/products") == "cba"
    assert ids(path="/products/archive/") == "c"
    # With a searchQuery, `tags` and `name` have no effect (as in the hosted API).
    assert ids(query='size < 50000', tags=["hat"], name="nope") == "ec"
    assert ids(query='size < 50000', path="/products") == "c"
    assert _ids(files.search("zeta", Listing(query=search.parse('tags = "hat"')))) == "x"
    assert _ids(files.search("nobody", Listing())) == ""


@pytest.mark.parametrize(("query", "problem", "token"), BAD, ids=[q or "empty" for q, *_ in BAD])
def test_a_bad_query_names_its_token(query, problem, token):
    with pytest.raises(QueryError) as e:
        search.parse(query)
    assert problem in str(e.value)
    assert e.value.token == token
    if token is not None:
        assert query[e.value.pos:].startswith(token)


def test_sort_values():
    assert search.check_sort("DESC_CREATED") == ("CREATED", True)
    for bad in ("DESC_DURATION", "SIDEWAYS_NAME", "ASC"):
        with pytest.raises(Exception, match="sort"):
            search.check_sort(bad)


def test_postgres_answers_from_its_indexes(files):
    """The rare-tag and folder queries are index scans on PostgreSQL, not a table scan."""
    kv = files.kv
    if not hasattr(kv, "explain"):
        pytest.skip("PostgreSQL only: the other backends walk the account's paths")
    with kv.pool.connection() as conn:
        conn.execute("SET enable_seqscan = off")  # five rows: make the planner show its index
        conn.commit()
    for query in ('tags IN ["sale"]', 'path = "/products"', '"customMetadata.brand" = "Nike"'):
        params: list = []
        where = search.to_sql(search.parse(query), params)
        plan = kv.explain("acme", where, params, search.order_sql(None))
        assert "Index" in plan and "Seq Scan" not in plan, (query, plan)
    assert Keys("extworker").file("") == files.kv.files.prefix


@pytest.fixture(params=["redis", "postgres"])
def store_for_api(request, settings):
    """The API's store: Redis (default) or PostgreSQL (requested before ``api``)."""
    if request.param == "postgres":
        request.getfixturevalue("pgkv")  # emptied for this test
        settings.store_url = request.getfixturevalue("pg_url")
    return request.param


def test_search_query_through_the_official_sdk(store_for_api, api, astronaut):
    """``assets.list(search_query=…)`` as the SDK sends it; a bad query is the SDK's
    BadRequestError naming the token; ``type=folder`` lists folder objects."""
    from imagekitio import BadRequestError, ImageKit

    from tests.support import jpeg

    base_url, keys = api
    ik = ImageKit(private_key=keys.create("acme")["key"], base_url=base_url)
    small, big = jpeg(astronaut.resize((64, 64))), jpeg(astronaut)
    for name, data, tags, folder in [("a.jpg", big, ["sale", "red"], "/shop"),
                                     ("b.jpg", small, ["sale"], "/shop/old"),
                                     ("c.jpg", small, ["red"], "/")]:
        ik.files.upload(file=data, file_name=name, tags=tags, folder=folder,
                        use_unique_file_name=False)

    def names(**kw) -> list[str]:
        return [f.to_dict()["name"] for f in ik.assets.list(**kw)]

    assert names(search_query='tags IN ["sale"] AND createdAt > "1d"') == ["a.jpg", "b.jpg"]
    # b and c are the same bytes: ties in path order (reversed, as the sort is)
    assert names(search_query='tags = "red" OR size < "10kb"', sort="DESC_SIZE") == [
        "a.jpg", "b.jpg", "c.jpg"]
    assert names(search_query='size > "20kb"') == ["a.jpg"]
    assert names(search_query='path = "/shop"') == ["a.jpg"]
    assert names(search_query='path : "/shop"', sort="ASC_SIZE") == ["b.jpg", "a.jpg"]
    assert names(search_query='tags = "red"', path="/shop") == ["a.jpg"]
    # the list API's own `tags` parameter (the SDK's extra_query: v5 has no argument for it)
    assert names(extra_query={"tags": "red"}, sort="DESC_NAME") == ["c.jpg", "a.jpg"]
    assert names(search_query='createdAt < "1d"') == []
    assert names(search_query='width = 64', skip=1) == ["b.jpg"]  # path order: /c.jpg first
    with pytest.raises(BadRequestError) as bad:
        ik.assets.list(search_query='tags IN "sale"')
    assert bad.value.body["message"] == (
        "searchQuery: expected '[' (a list) at position 8 ('\"sale\"')")
    with pytest.raises(BadRequestError, match="sort"):
        ik.assets.list(sort="DESC_DURATION")
    folders = [f.to_dict() for f in ik.assets.list(type="folder")]
    assert [(f["type"], f["folderPath"]) for f in folders] == [("folder", "/shop")]
    mixed = [f.to_dict() for f in ik.assets.list(type="all", path="/shop")]
    assert [(f["type"], f["name"]) for f in mixed] == [("folder", "old"), ("file", "a.jpg"),
                                                       ("file", "b.jpg")]
    assert [f.to_dict()["name"] for f in ik.assets.list(type="all", path="/shop", skip=1,
                                                        limit=1)] == ["a.jpg"]
