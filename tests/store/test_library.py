"""The file calls a media library lives on, through the official SDK unmodified: versions
(restore, delete), rename, move, copy, folders (bulk jobs), bulk delete, and bulk tag
updates that are one transaction (20 concurrent callers lose nothing)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from imagekitio import BadRequestError, ConflictError, ImageKit, NotFoundError

from tests.support import jpeg, wait_until
from worker.store.kv import Txn

# Every test that uses the store runs on each backend (Redis, SQLite, PostgreSQL).
ON_EVERY_STORE = True


@pytest.fixture
def ik(api):
    base_url, keys = api
    return ImageKit(private_key=keys.create("acme")["key"], base_url=base_url)


def _up(ik, data, name, folder="/"):
    return ik.files.upload(file=data, file_name=name, folder=folder,
                           use_unique_file_name=False).to_dict()


def _paths(ik, path=""):
    return sorted(f.to_dict()["filePath"] for f in ik.assets.list(path=path))


def test_restore_and_delete_versions(ik, astronaut):
    one, two = jpeg(astronaut), jpeg(astronaut.rotate(90))
    up = _up(ik, one, "v.jpg")
    _up(ik, two, "v.jpg")
    v1, v2 = ik.files.versions.list(up["fileId"])
    restored = ik.files.versions.restore(v1.version_info.id, file_id=up["fileId"]).to_dict()
    assert restored["versionInfo"]["name"] == "Version 3"
    assert httpx.get(up["url"]).content == one  # the file shows version 1's bytes again
    assert [v.version_info.name for v in ik.files.versions.list(up["fileId"])] == [
        "Version 1", "Version 2", "Version 3"]
    ik.files.versions.delete(v2.version_info.id, file_id=up["fileId"])
    assert [v.version_info.name for v in ik.files.versions.list(up["fileId"])] == [
        "Version 1", "Version 3"]
    with pytest.raises(BadRequestError, match="current version"):
        ik.files.versions.delete(restored["versionInfo"]["id"], file_id=up["fileId"])
    ik.files.versions.delete(v1.version_info.id, file_id=up["fileId"])  # shares its bytes
    assert httpx.get(up["url"]).content == one  # …with version 3, which keeps them
    with pytest.raises(NotFoundError):
        ik.files.versions.restore("nope", file_id=up["fileId"])
    _up(ik, two, "v.jpg")
    assert ik.files.versions.list(up["fileId"])[-1].version_info.name == "Version 4"


def test_rename_move_and_copy(ik, astronaut):
    data = jpeg(astronaut)
    up = _up(ik, data, "a.jpg", "/src")
    ik.files.rename(file_path="/src/a.jpg", new_file_name="b.jpg")
    got = ik.files.get(up["fileId"]).to_dict()
    assert got["filePath"] == "/src/b.jpg" and got["name"] == "b.jpg"
    assert httpx.get(up["url"]).status_code == 404 and httpx.get(got["url"]).content == data
    ik.files.move(source_file_path="/src/b.jpg", destination_path="/dest")
    assert _paths(ik) == ["/dest/b.jpg"]
    _up(ik, jpeg(astronaut.rotate(90)), "b.jpg", "/dest")  # version 2
    ik.files.copy(source_file_path="/dest/b.jpg", destination_path="/copies",
                  include_file_versions=True)
    assert _paths(ik) == ["/copies/b.jpg", "/dest/b.jpg"]
    copy = next(f.to_dict() for f in ik.assets.list(path="/copies"))
    assert copy["fileId"] != up["fileId"]
    assert len(ik.files.versions.list(copy["fileId"])) == 2
    ik.files.delete(up["fileId"])  # the original's bytes go; the copy has its own
    assert httpx.get(copy["url"]).status_code == 200
    _up(ik, data, "x.jpg", "/copies2")
    with pytest.raises(ConflictError):
        ik.files.copy(source_file_path="/copies2/x.jpg", destination_path="/copies2")
    _up(ik, data, "b.jpg", "/other")
    with pytest.raises(ConflictError):
        ik.files.move(source_file_path="/other/b.jpg", destination_path="/copies")
    with pytest.raises(NotFoundError):
        ik.files.rename(file_path="/no/such.jpg", new_file_name="c.jpg")


def _job_done(ik, job_id):
    wait_until(lambda: ik.folders.job.get(job_id).status == "Completed", 30, "the bulk job")
    return ik.folders.job.get(job_id).to_dict()


def test_folders(ik, astronaut, dispatch_worker):
    """Folder copy, move and rename are jobs a worker runs (``dispatch_worker``), listed
    with the account's other jobs."""
    data = jpeg(astronaut)
    ik.folders.create(folder_name="empty", parent_folder_path="/")
    for path in ("/shop/a.jpg", "/shop/sub/b.jpg"):
        folder, name = path.rsplit("/", 1)
        _up(ik, data, name, folder)
    job = ik.folders.copy(source_folder_path="/shop", destination_path="/backup",
                          include_versions=False)
    assert _job_done(ik, job.job_id)["type"] == "COPY_FOLDER"
    assert _paths(ik) == ["/backup/shop/a.jpg", "/backup/shop/sub/b.jpg", "/shop/a.jpg",
                          "/shop/sub/b.jpg"]
    job = ik.folders.move(source_folder_path="/backup/shop", destination_path="/archive")
    _job_done(ik, job.job_id)
    job = ik.folders.rename(folder_path="/archive/shop", new_folder_name="store")
    _job_done(ik, job.job_id)
    assert _paths(ik, "/archive") == ["/archive/store/a.jpg", "/archive/store/sub/b.jpg"]
    listed = {j.jobId: j for j in dispatch_worker.pipeline.jobs("acme") if j.origin == "bulk"}
    assert job.job_id in listed and listed[job.job_id].extensions["RENAME_FOLDER"].status == (
        "success") and listed[job.job_id].extensions["RENAME_FOLDER"].output["files"] == 2
    moved = next(f.to_dict() for f in ik.assets.list(path="/archive/store/sub"))
    assert httpx.get(moved["url"]).content == data
    ik.folders.delete(folder_path="/shop")
    assert _paths(ik, "/shop") == []
    ik.folders.delete(folder_path="/empty")
    with pytest.raises(NotFoundError):
        ik.folders.delete(folder_path="/empty")
    with pytest.raises(NotFoundError):
        ik.folders.copy(source_folder_path="/nothing", destination_path="/x")


def test_bulk_delete_checks_every_id_first(ik, api, astronaut):
    base_url, keys = api
    other = ImageKit(private_key=keys.create("globex")["key"], base_url=base_url)
    mine = [_up(ik, jpeg(astronaut), f"d{i}.jpg")["fileId"] for i in range(3)]
    theirs = _up(other, jpeg(astronaut), "t.jpg")["fileId"]
    with pytest.raises(NotFoundError):
        ik.files.bulk.delete(file_ids=[*mine[:2], theirs])
    assert len(_paths(ik)) == 3 and len(_paths(other)) == 1  # nothing deleted
    done = ik.files.bulk.delete(file_ids=mine).to_dict()
    assert sorted(done["successfullyDeletedFileIds"]) == sorted(mine) and _paths(ik) == []


def test_bulk_tag_updates_are_one_transaction(ik, api, astronaut):
    base_url, keys = api
    target = _up(ik, jpeg(astronaut), "tags.jpg")["fileId"]
    other_file = _up(ik, jpeg(astronaut), "tags2.jpg")["fileId"]
    gate = threading.Barrier(20)

    def add(i):
        gate.wait(10)
        return ik.files.bulk.add_tags(file_ids=[target, other_file], tags=[f"t{i}"])

    with ThreadPoolExecutor(20) as pool:
        list(pool.map(add, range(20)))
    for fid in (target, other_file):
        assert sorted(ik.files.get(fid).to_dict()["tags"]) == sorted(f"t{i}" for i in range(20))

    half = threading.Barrier(10)

    def remove(i):
        half.wait(10)
        return ik.files.bulk.remove_tags(file_ids=[target], tags=[f"t{i}"])

    with ThreadPoolExecutor(10) as pool:
        list(pool.map(remove, range(0, 20, 2)))
    assert sorted(ik.files.get(target).to_dict()["tags"]) == sorted(
        f"t{i}" for i in range(1, 20, 2))

    # A file of another account in the call: 404, and no file changed at all.
    other = ImageKit(private_key=keys.create("globex")["key"], base_url=base_url)
    theirs = _up(other, jpeg(astronaut), "x.jpg")["fileId"]
    with pytest.raises(NotFoundError):
        ik.files.bulk.add_tags(file_ids=[other_file, theirs], tags=["new"])
    assert "new" not in ik.files.get(other_file).to_dict()["tags"]
    assert other.files.get(theirs).to_dict()["tags"] is None


def test_folders_of_files_stored_before_the_folder_index_are_backfilled(runtime, astronaut):
    files, library = runtime.files, runtime.library
    for path in ("/a/b/one.jpg", "/a/two.jpg", "/c/three.jpg", "/top.jpg"):
        folder, name = path.rsplit("/", 1)
        runtime.pipeline.add_file(jpeg(astronaut.resize((16, 16))), name, folder or "/",
                                  account="acme", useUniqueFileName=False)
    # As an earlier version left it: paths indexed, no folder index.
    runtime.kv.transact([], lambda _c: Txn(index_remove={files.folder_key("acme"): [
        "/a/", "/a/b/", "/c/"]}))
    assert library.folders_under("acme", "/") == []
    assert library.subfolders("acme", "/") == ["/a/", "/c/"]
    assert library.subfolders("acme", "/a/") == ["/a/b/"]
    assert library.backfill_folders("acme") == 0  # once
