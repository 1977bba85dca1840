"""An account's files as a media library: rename, move, copy, restore and delete versions,
folders, and the bulk updates — each one transaction on the records it touches.

* Paths: a file's path key, its record and the account's path index change together; a
  destination that holds a file already is refused (``file_exists``), never overwritten.
* Versions: restoring adds a new version with the restored one's bytes (history is kept;
  ``?updatedAt=`` URLs keep naming what they named); a non-current version can be deleted,
  its bytes removed once no version refers to them.
* Copies get their own bytes (``uploads/copy-<fileId>/…``): deleting one never touches the
  other's.
* Bulk updates (``addTags``, ``removeTags``, ``removeAITags``, ``deleteByFileIds``) check
  every id first and apply to all in one transaction: a file the account does not own makes
  the call change nothing, and concurrent callers never lose each other's tags.
* Folders: every folder a file is put in, and each one the folder API makes, is in the
  account's folder index (``/a/``, ``/a/b/``) — listing subfolders costs the number of
  folders, not of files.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from typing import Any

from worker.core.errors import ErrorCode, FileExists, NotFound, PermanentError
from worker.core.records import (
    FileRecord,
    NewVersion,
    RecordPatch,
    VersionInfo,
    new_id,
    now_iso,
)
from worker.store.files import FileStore, ancestors, owned
from worker.store.kv import DELETE, Txn
from worker.store.uploads import normalise_folder, sanitize_file_name


class NotOwned(NotFound):
    """Another account's (or nobody's) file: not found."""


def _folder(path: str, field: str) -> str:
    if not isinstance(path, str) or not path:
        raise PermanentError(f"{field}: required", code=ErrorCode.INVALID_REQUEST)
    return normalise_folder(path)


class Library:
    def __init__(self, files: FileStore) -> None:
        self.files = files
        self.kv = files.kv
        self.blobs = files.blobs
        self.settings = files.settings

    # --- one file ---------------------------------------------------------------

    def _at(self, account: str, file_path: str, field: str) -> FileRecord:
        path = file_path if file_path.startswith("/") else "/" + file_path
        record = self.files.by_path(account, path)
        if record is None:
            raise NotOwned(f"{field}: no file at {path}")
        return record

    def relocate(self, account: str, file_id: str, new_path: str) -> FileRecord:
        """The file ``file_id`` at ``new_path`` (rename and move); ``file_exists`` if taken."""
        files = self.files
        fk = files.file_key(file_id)
        record = owned(self.kv.get(fk), account)
        if record is None:
            raise NotOwned(f"file not found: {file_id}")
        old_pk, new_pk = files.path_key(account, record.filePath), files.path_key(account,
                                                                                  new_path)
        index = files.index_key(account)

        def txn(cur: dict[str, Any]) -> Txn[FileRecord]:
            now = owned(cur[fk], account)
            if now is None:
                raise NotOwned(f"file not found: {file_id}")
            if now.filePath == new_path:
                return Txn(result=now)
            if cur[new_pk] is not None:
                raise FileExists(f"a file already exists at {new_path} (nothing moved)")
            moved = now.model_copy(update={"filePath": new_path,
                                           "name": new_path.rsplit("/", 1)[1],
                                           "updatedAt": now_iso()})
            writes: dict[str, Any] = {fk: moved.model_dump(mode="json"),
                                      new_pk: {"fileId": file_id}}
            if (cur[old_pk] or {}).get("fileId") == file_id:
                writes[old_pk] = DELETE
            return Txn(writes=writes, result=moved, index_add=files.placed(account, new_path),
                       index_remove={index: [now.filePath]})

        result = self.kv.transact([fk, old_pk, new_pk], txn)
        assert result is not None
        return result

    def rename(self, account: str, file_path: str, new_name: str) -> FileRecord:
        record = self._at(account, file_path, "filePath")
        if not new_name or "/" in new_name:
            raise PermanentError("newFileName: a name, without /", code=ErrorCode.INVALID_REQUEST)
        folder = record.filePath.rsplit("/", 1)[0] + "/"
        return self.relocate(account, record.fileId, folder + sanitize_file_name(new_name))

    def move(self, account: str, source_file_path: str, destination: str) -> FileRecord:
        record = self._at(account, source_file_path, "sourceFilePath")
        folder = _folder(destination, "destinationPath")
        return self.relocate(account, record.fileId, folder + record.name)

    def copy(self, account: str, source_file_path: str, destination: str,
             include_versions: bool = False) -> FileRecord:
        """A new file (its own id and bytes) at ``destination`` + the source's name."""
        source = self._at(account, source_file_path, "sourceFilePath")
        folder = _folder(destination, "destinationPath")
        return self._copy_to(account, source, folder + source.name, include_versions)

    def _copy_to(self, account: str, source: FileRecord, path: str,
                 include_versions: bool) -> FileRecord:
        files = self.files
        file_id = new_id()
        versions = source.versions if include_versions else [source.current]
        copied, written = [], []
        try:
            for n, v in enumerate(versions, 1):
                key = f"uploads/copy-{file_id}/{new_id()}/{v.blobKey.rsplit('/', 1)[-1]}"
                self.blobs.put(key, self.blobs.get(v.blobKey))
                written.append(key)
                copied.append(v.model_copy(update={
                    "id": file_id if n == 1 else new_id(), "blobKey": key, "name": f"Version {n}",
                    "origin": f"copy/{source.fileId}/{v.id}"}))
            now = now_iso()
            record = source.model_copy(update={
                "fileId": file_id, "filePath": path, "name": path.rsplit("/", 1)[1],
                "versions": copied, "createdAt": now, "updatedAt": now,
                "versionInfo": VersionInfo(id=copied[-1].id, name=copied[-1].name),
                "url": self.blobs.url(copied[-1].blobKey)}, deep=True)
            fk, pk = files.file_key(file_id), files.path_key(account, path)

            def txn(cur: dict[str, Any]) -> Txn[FileRecord]:
                if cur[pk] is not None:
                    raise FileExists(f"a file already exists at {path} (nothing copied)")
                return Txn(writes={fk: record.model_dump(mode="json"), pk: {"fileId": file_id}},
                           index_add=files.placed(account, path), result=record)

            result = self.kv.transact([fk, pk], txn)
        except Exception:
            for key in written:
                self.blobs.delete(key)
            raise
        assert result is not None
        return result

    # --- versions ---------------------------------------------------------------

    def restore(self, account: str, file_id: str, version_id: str) -> FileRecord:
        """A new current version with the bytes of ``version_id``."""
        record = self.files.get(file_id, account)
        if record is None:
            raise NotOwned(f"file not found: {file_id}")
        v = next((v for v in record.versions if v.id == version_id), None)
        if v is None:
            raise NotOwned(f"The requested file version does not exist: {version_id}")
        embedded = self.files.metadata(record, version_id) if \
            self.settings.embedded_metadata else {}
        patch = RecordPatch(new_version=NewVersion(
            blobKey=v.blobKey, url=self.blobs.url(v.blobKey), mime=v.mime, size=v.size,
            width=v.width, height=v.height, hasAlpha=v.hasAlpha,
            origin=f"restore/{version_id}/{uuid.uuid4().hex}", embeddedMetadata=embedded))
        return self._patch_one(account, file_id, patch)

    def delete_version(self, account: str, file_id: str, version_id: str) -> None:
        fk = self.files.file_key(file_id)

        def txn(cur: dict[str, Any]) -> Txn[list[str]]:
            record = owned(cur[fk], account)
            if record is None:
                raise NotOwned(f"file not found: {file_id}")
            gone = next((v for v in record.versions if v.id == version_id), None)
            if gone is None:
                raise NotOwned(f"The requested file version does not exist: {version_id}")
            if gone.id == record.versionInfo.id:
                raise PermanentError("versionId: the current version cannot be deleted "
                                     "(restore another one first)", code=ErrorCode.INVALID_REQUEST)
            kept = [v for v in record.versions if v.id != version_id]
            changed = record.model_copy(update={"versions": kept, "updatedAt": now_iso()})
            unused = [] if any(v.blobKey == gone.blobKey for v in kept) else [gone.blobKey]
            return Txn(writes={fk: changed.model_dump(mode="json")}, result=unused)

        unused = self.kv.transact([fk], txn) or []
        derived = [k for k, _ in self.blobs.keys(f"derived/{file_id}/{version_id}/")]
        for key in [*unused, *derived]:
            self.blobs.delete(key)

    # --- many files -------------------------------------------------------------

    def _patch_one(self, account: str, file_id: str, patch: RecordPatch) -> FileRecord:
        out = self.patch_many(account, [file_id], lambda _r: patch)
        return out[0]

    def patch_many(self, account: str, file_ids: list[str],
                   patch_for: Callable[[FileRecord], RecordPatch]) -> list[FileRecord]:
        """Every file patched in one transaction, or none (``NotOwned`` naming the first
        id the account does not own)."""
        keys = [self.files.file_key(i) for i in dict.fromkeys(file_ids)]

        def txn(cur: dict[str, Any]) -> Txn[list[FileRecord]]:
            records = []
            for fid, key in zip(dict.fromkeys(file_ids), keys, strict=True):
                record = owned(cur[key], account)
                if record is None:
                    raise NotOwned(f"The requested file does not exist: {fid} (no file was "
                                   "changed)")
                records.append(patch_for(record).apply(record, self.settings.max_versions))
            return Txn(writes={k: r.model_dump(mode="json") for k, r in
                               zip(keys, records, strict=True)}, result=records)

        result = self.kv.transact(keys, txn)
        assert result is not None
        return result

    def delete_many(self, account: str, file_ids: list[str]) -> list[str]:
        """Delete every file, having checked that the account owns each (else nothing)."""
        unique = list(dict.fromkeys(file_ids))
        docs = self.kv.get_many([self.files.file_key(i) for i in unique])
        for fid, doc in zip(unique, docs, strict=True):
            if owned(doc, account) is None:
                raise NotOwned(f"The requested file does not exist: {fid} (no file was "
                               "deleted)")
        return [fid for fid in unique if self.files.delete(fid, account)]

    # --- folders ----------------------------------------------------------------

    def _all(self, index: str, prefix: str) -> list[str]:
        out, offset = [], 0
        while True:
            page = self.kv.index_range(index, prefix, offset, 500)
            if not page:
                return out
            out += page
            offset += len(page)

    def paths_under(self, account: str, folder: str) -> list[str]:
        """Every file path under ``folder`` (a listing: folder operations, not pages)."""
        return self._all(self.files.index_key(account), folder)

    def folders_under(self, account: str, folder: str) -> list[str]:
        """Every folder under ``folder`` (``folder`` itself included when it is one)."""
        return self._all(self.files.folder_key(account), folder)

    def folder_objects(self, account: str, path: str = "", name: str | None = None
                       ) -> list[dict[str, Any]]:
        """The folders directly in ``path`` (the root when empty) as the list API shows
        them (``type=folder``), by name; ``name`` keeps only that one."""
        parent = "/" + path.strip("/") + "/" if path.strip("/") else "/"
        depth = parent.count("/")
        out = []
        for folder in self.folders_under(account, parent):
            if folder.count("/") != depth + 1:
                continue
            folder_name = folder.rstrip("/").rsplit("/", 1)[1]
            if name is not None and folder_name != name:
                continue
            digest = hashlib.sha256(f"{account}\0{folder}".encode()).hexdigest()[:24]
            out.append({"type": "folder", "name": folder_name, "folderId": digest,
                        "folderPath": folder.rstrip("/"), "customMetadata": {}})
        return sorted(out, key=lambda f: f["name"].encode())

    def backfill_folders(self, account: str) -> int:
        """Folders of files stored before the folder index existed: when the account has
        files but no folder at all, every file path's folders are added, once (a read of
        the path index, 500 at a time). How many folders were added."""
        files, folders = self.files.index_key(account), self.files.folder_key(account)
        if self.kv.index_range(folders, "", 0, 1) or not self.kv.index_range(files, "", 0, 1):
            return 0
        found = sorted({a for path in self._all(files, "") for a in ancestors(path)})
        for i in range(0, len(found), 500):
            batch = found[i:i + 500]
            self.kv.transact([], lambda _c, b=batch: Txn(index_add={folders: b}))
        return len(found)

    def subfolders(self, account: str, folder: str, limit: int = 500) -> list[str]:
        """The folders directly in ``folder``: read from the folder index, so the cost is
        the number of folders below it, never the number of files."""
        self.backfill_folders(account)
        depth = folder.count("/")
        out: list[str] = []
        offset = 0
        while len(out) < limit:
            page = self.kv.index_range(self.files.folder_key(account), folder, offset, 500)
            if not page:
                break
            offset += len(page)
            out += [f for f in page if f.count("/") == depth + 1]
        return out[:limit]

    def require_folder(self, account: str, path: str, field: str) -> str:
        """The folder ``path`` names, normalised; ``NotOwned`` naming ``field`` if the
        account has no such folder."""
        folder = _folder(path, field)
        if not self.exists(account, folder):
            raise NotOwned(f"{field}: no folder {folder}")
        return folder

    def exists(self, account: str, folder: str) -> bool:
        return bool(self.kv.index_range(self.files.folder_key(account), folder, 0, 1)
                    or self.kv.index_range(self.files.index_key(account), folder, 0, 1))

    def create_folder(self, account: str, name: str, parent: str) -> str:
        if not name or "/" in name.strip("/"):
            raise PermanentError("folderName: a name, without /", code=ErrorCode.INVALID_REQUEST)
        folder = _folder(_folder(parent, "parentFolderPath") + name, "folderName")
        index = self.files.folder_key(account)
        self.kv.transact([], lambda _cur: Txn(index_add={index: ancestors(folder + "x")}))
        return folder

    def delete_folder(self, account: str, folder_path: str) -> int:
        """Every file under the folder, and the folder; ``NotOwned`` if there is none."""
        folder = self.require_folder(account, folder_path, "folderPath")
        deleted = 0
        for path in self.paths_under(account, folder):
            record = self.files.by_path(account, path)
            if record is not None and self.files.delete(record.fileId, account):
                deleted += 1
        gone = self.folders_under(account, folder)
        index = self.files.folder_key(account)
        if gone:
            self.kv.transact([], lambda _cur: Txn(index_remove={index: gone}))
        return deleted

    def folder_move(self, account: str, source: str, destination: str, copy: bool,
                    include_versions: bool = False, rename_to: str | None = None) -> int:
        """Copy or move a folder (a bulk job's work; each file is one step, safe to run
        again: a file already at its destination is left as it is)."""
        src = _folder(source, "sourceFolderPath")
        if rename_to is not None:
            target = src.rstrip("/").rsplit("/", 1)[0] + "/" + sanitize_file_name(rename_to) + "/"
        else:
            dest = _folder(destination, "destinationPath")
            target = dest + src.rstrip("/").rsplit("/", 1)[1] + "/"
        if target.startswith(src):
            raise PermanentError("destinationPath: inside the folder itself",
                                 code=ErrorCode.INVALID)
        self.require_folder(account, src, "sourceFolderPath")
        folders = self.folders_under(account, src)
        index = self.files.folder_key(account)
        made = sorted({a for f in folders for a in ancestors(target + f[len(src):] + "x")}
                      | set(ancestors(target + "x")))
        self.kv.transact([], lambda _c: Txn(index_add={index: made}))
        done = 0
        for path in self.paths_under(account, src):
            new_path = target + path[len(src):]
            record = self.files.by_path(account, path)
            if record is None or self.files.by_path(account, new_path) is not None:
                continue
            if copy:
                self._copy_to(account, record, new_path, include_versions)
            else:
                self.relocate(account, record.fileId, new_path)
            done += 1
        if not copy and folders:
            self.kv.transact([], lambda _c: Txn(index_remove={index: folders}))
        return done
