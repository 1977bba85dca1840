"""Files as the upload API and the media API define them: per account, by path.

Keys (all under the namespace):

* ``file:<fileId>`` — the record (``records.FileRecord``), carrying its ``accountId``;
* ``path:<accountId>:<filePath>`` — ``{"fileId"}``: a path is unique per account;
* ``files:<accountId>`` — a sorted index of the account's paths (``list``).

Every write goes through ``KV.transact``: the record, its path and the index change
together or not at all. ``upload_change`` computes what an upload does to the state it
reads (new file, new version of the file at the same path, or a refusal), with the
upload API's overwrite rules; ``update_patch`` turns Update File Details into a
``RecordPatch``. A file of another account is never returned: ``get`` answers ``None``
exactly as for a file that does not exist.
"""

from __future__ import annotations

import logging
import mimetypes
import uuid
from dataclasses import dataclass
from typing import Any

from worker.core.contract import Update, UploadFields
from worker.core.errors import (
    ErrorCode,
    FileExists,
    PathTaken,  # noqa: F401  (raised here; imported from here too)
    PermanentError,
    VersionNotFound,
)
from worker.core.imaging import ImageInfo, probe
from worker.core.records import FileRecord, NewVersion, RecordPatch, new_id, now_iso
from worker.core.settings import Settings
from worker.core.video import probe as probe_video
from worker.store import search
from worker.store.blobs import BlobStore
from worker.store.fields import FieldStore, validate_value
from worker.store.kv import DELETE, KV, Txn
from worker.store.metadata import ExifTool
from worker.store.uploads import normalise_folder, sanitize_file_name, unique_name

log = logging.getLogger(__name__)
PATH_ATTEMPTS = 10


@dataclass
class Listing:
    """What the list API asks for (``GET /v1/files``). With a ``query`` (``searchQuery``),
    ``tags`` and ``name`` have no effect, as in the hosted API."""

    query: search.Node | None = None
    path: str = ""  # a folder: its files and its subfolders'
    tags: list[str] | None = None  # any of them
    name: str | None = None
    file_type: str | None = None  # image, non-image, all
    sort: tuple[str, bool] | None = None  # search.check_sort
    skip: int = 0
    limit: int = 1000




@dataclass
class Prepared:
    """An upload whose bytes are stored and checked, ready for its transaction."""

    upload: UploadFields
    name: str  # sanitised, before any unique suffix
    folder: str  # "/a/b/"
    blob_key: str
    url: str
    custom_metadata: dict[str, Any] | None  # as checked against the account's fields
    size: int
    mime: str
    width: int | None
    height: int | None
    has_alpha: bool
    embedded: dict[str, Any]
    origin: str  # "<jobId>/upload": a redelivered job adds no second version
    video: dict[str, Any] | None = None  # duration, bitRate, videoCodec, audioCodec

    def facts(self) -> dict[str, Any]:
        return {"mime": self.mime, "width": self.width, "height": self.height,
                "hasAlpha": self.has_alpha, "size": self.size, **(self.video or {})}


class FileStore:
    def __init__(self, kv: KV, blobs: BlobStore, settings: Settings, fields: FieldStore,
                 exiftool: ExifTool) -> None:
        self.kv = kv
        self.blobs = blobs
        self.settings = settings
        self.fields = fields
        self.exiftool = exiftool

    # --- keys -----------------------------------------------------------------

    def file_key(self, file_id: str) -> str:
        return self.settings.keys.file(file_id)

    def path_key(self, account: str, file_path: str) -> str:
        return self.settings.keys.path(account, file_path)

    def index_key(self, account: str) -> str:
        return self.settings.keys.file_index(account)

    def folder_key(self, account: str) -> str:
        return self.settings.keys.folder_index(account)

    def placed(self, account: str, file_path: str) -> dict[str, list[str]]:
        """The index entries a file at ``file_path`` makes: its path, and its folders."""
        return {self.index_key(account): [file_path],
                self.folder_key(account): ancestors(file_path)}

    # --- reading --------------------------------------------------------------

    def get(self, file_id: str, account: str | None = None) -> FileRecord | None:
        """The record, or ``None`` if absent — or owned by another account than ``account``."""
        doc = self.kv.get(self.file_key(file_id))
        return owned(doc, account)

    def by_path(self, account: str, file_path: str) -> FileRecord | None:
        """The account's file at ``file_path`` (``/folder/name.jpg``), or ``None``."""
        ref = self.kv.get(self.path_key(account, file_path))
        return self.get(ref["fileId"], account) if ref else None

    def list(self, account: str, path: str = "", tag: str | None = None, skip: int = 0,
             limit: int = 100) -> list[FileRecord]:
        """The account's files in path order, in ``path`` (``/products/``) and its
        subfolders, with ``tag`` if given."""
        return self.search(account, Listing(path=path, tags=[tag] if tag else None,
                                            skip=skip, limit=limit))

    def search(self, account: str, listing: Listing) -> list[FileRecord]:
        """The list API: ``listing``'s filters and ``searchQuery`` (``worker.store.search``)
        in its order. On PostgreSQL one indexed query; on Redis and SQLite a walk over the
        account's path index (in path order it stops at the page; a sort reads every file
        of the folder)."""
        folder = search.normalise_folder(listing.path) if listing.path else ""
        extra: list[search.Node] = []
        if folder:
            extra.append(search.Cond(search.FIELDS["path"], ":", folder))
        if listing.query is None:
            if listing.tags:
                extra.append(search.Cond(search.TAGS_PARAM, "IN", tuple(listing.tags)))
            if listing.name:
                extra.append(search.Cond(search.FIELDS["name"], "=", listing.name))
        if listing.file_type and listing.file_type != "all":
            extra.append(search.Cond(search.FIELDS["fileType"], "=", listing.file_type))
        node = search.scan_filter(listing.query, extra)
        if isinstance(self.kv, search.Searchable):
            params: list[Any] = []
            where = search.to_sql(node, params) if node is not None else None
            docs = self.kv.select_files(account, where, params, search.order_sql(listing.sort),
                                        listing.skip, listing.limit)
        else:
            docs = self._scan(account, folder, node, listing)
        return [r for r in (owned(d, account) for d in docs) if r is not None]

    def _scan(self, account: str, folder: str, node: search.Node | None,
              listing: Listing) -> list[dict[str, Any]]:
        wanted = listing.skip + listing.limit
        found: list[dict[str, Any]] = []
        offset, page = 0, 500
        while listing.sort is not None or len(found) < wanted:
            paths = self.kv.index_range(self.index_key(account), folder, offset, page)
            if not paths:
                break
            offset += len(paths)
            # Two round trips a page (paths → ids → records), not two per file.
            refs = self.kv.get_many([self.path_key(account, p) for p in paths])
            ids = [ref["fileId"] for ref in refs if ref]
            for doc in self.kv.get_many([self.file_key(i) for i in ids]):
                if doc is None or doc.get("accountId", "default") != account:
                    continue
                if node is None or search.matches(node, doc):
                    found.append(doc)
        if listing.sort is not None:
            found = search.sort_docs(found, listing.sort)
        return found[listing.skip:wanted]

    def metadata(self, record: FileRecord, version_id: str | None = None) -> dict[str, Any]:
        """Embedded metadata of the current version (stored), or of an older one (read)."""
        if version_id is None or version_id == record.versionInfo.id:
            return record.embeddedMetadata
        for v in record.versions:
            if v.id == version_id:
                return self.exiftool.read(self.blobs.get(v.blobKey))
        raise VersionNotFound(f"version not found: {version_id}")

    # --- uploads --------------------------------------------------------------

    def check_custom_metadata(self, account: str, values: dict[str, Any] | None, where: str,
                              allow_null: bool = False) -> dict[str, Any] | None:
        """Values checked against the account's custom metadata fields (``where`` names
        the field in errors); ``None`` values pass only where they mean "remove"."""
        if values is None:
            return None
        defined = self.fields.all(account)
        out: dict[str, Any] = {}
        for key, value in values.items():
            field = defined.get(key)
            if field is None:
                raise PermanentError(f"{where}.{key}: no custom metadata field {key!r} in this "
                                     "account (create it first)", code=ErrorCode.INVALID_METADATA)
            if value is None and allow_null:
                out[key] = None
                continue
            out[key] = validate_value(field, value, f"{where}.{key}")
        return out

    def prepare(self, upload: UploadFields, data: bytes, account: str, job_id: str) -> Prepared:
        """Check an upload's fields against its bytes, store them, read their metadata.

        ``PermanentError`` (nothing stored) for a value the upload API refuses."""
        name = sanitize_file_name(upload.fileName)
        folder = normalise_folder(upload.folder)
        custom = self.check_custom_metadata(account, upload.customMetadata,
                                            "upload.customMetadata")
        info = probe(data)
        clip = None if info is not None else probe_video(data)
        limit = self.settings.video_max_bytes if clip else self.settings.upload_max_bytes
        if len(data) > limit:
            source = next((f"upload.{k}" for k in ("blobKey", "url", "base64")
                           if getattr(upload, k, None)), "upload")
            raise PermanentError(
                f"{source}: the file is {len(data)} bytes, above the {limit}-byte limit for "
                + ("videos" if clip else "images and other files (videos: "
                   f"{self.settings.video_max_bytes})"), code=ErrorCode.UPLOAD_TOO_LARGE)
        if clip is not None:
            info = ImageInfo(mime=clip.mime, width=clip.width, height=clip.height,
                             has_alpha=False)
        if upload.customCoordinates:
            _check_inside(upload.customCoordinates, info.width if info else None,
                          info.height if info else None, "upload.customCoordinates")
        embedded = self.exiftool.read(data) if self.settings.embedded_metadata else {}
        # Per attempt: only the attempt whose commit lands is referenced, so every other one
        # (a retry, a duplicate, a rejection) can remove its own bytes without a doubt.
        key = f"uploads/{job_id}/{uuid.uuid4().hex[:12]}/{name}"
        self.blobs.put(key, data)
        return Prepared(
            upload=upload, name=name, folder=folder, blob_key=key, url=self.blobs.url(key),
            custom_metadata=custom, size=len(data),
            mime=info.mime if info else (mimetypes.guess_type(name)[0]
                                         or "application/octet-stream"),
            width=info.width if info else None, height=info.height if info else None,
            has_alpha=info.has_alpha if info else False, embedded=embedded,
            origin=f"{job_id}/upload", video=clip.fields() if clip else None)

    def target_path(self, prepared: Prepared) -> str:
        """The path this upload writes to (a fresh unique suffix on every call)."""
        name = unique_name(prepared.name) if prepared.upload.useUniqueFileName else prepared.name
        return prepared.folder + name

    def choose_path(self, prepared: Prepared, account: str) -> tuple[str, str, str | None]:
        """``(filePath, its path key, the fileId there now or None)`` for an upload; the
        transaction re-reads the path key and ``in_txn`` raises ``PathTaken`` if it moved."""
        file_path = self.target_path(prepared)
        pk = self.path_key(account, file_path)
        ref = self.kv.get(pk)
        return file_path, pk, (ref["fileId"] if ref else None)

    def in_txn(self, cur: dict[str, Any], prepared: Prepared, account: str, file_path: str,
               file_id: str | None) -> tuple[FileRecord, Txn[None]]:
        """``upload_change`` on the state a transaction read (path key and file key)."""
        ref = cur[self.path_key(account, file_path)]
        if (ref or {}).get("fileId") != file_id or (ref and prepared.upload.useUniqueFileName):
            raise PathTaken(file_path)
        existing = owned(cur[self.file_key(file_id)], account) if file_id else None
        return self.upload_change(prepared, account, file_path, existing)

    def add(self, prepared: Prepared, account: str) -> FileRecord:
        """Store a prepared upload on its own (no job)."""
        for _ in range(PATH_ATTEMPTS):
            file_path, pk, file_id = self.choose_path(prepared, account)
            keys = [pk] + ([self.file_key(file_id)] if file_id else [])

            def txn(cur: dict[str, Any]) -> Txn[FileRecord]:
                record, t = self.in_txn(cur, prepared, account, file_path, file_id)  # noqa: B023
                return Txn(writes=t.writes, index_add=t.index_add, result=record)

            try:
                record = self.kv.transact(keys, txn)
            except PathTaken:
                continue
            except PermanentError:
                self.blobs.delete(prepared.blob_key)
                raise
            assert record is not None
            return record
        raise FileExists("upload: no free path found")

    def delete(self, file_id: str, account: str) -> bool:
        """Delete a file of ``account``: its record, its path and index entry, then the
        bytes of every version — those of the record the transaction itself read, so a
        version committed just before (a remove-bg finishing) goes too; one committed after
        finds no record, fails, and removes its own bytes. ``False`` when there is no such
        file for that account."""
        fk = self.file_key(file_id)
        record = owned(self.kv.get(fk), account)
        if record is None:
            return False
        pk = self.path_key(account, record.filePath)

        def txn(cur: dict[str, Any]) -> Txn[list[str] | None]:
            now = owned(cur[fk], account)
            if now is None:
                return Txn(result=None)
            writes: dict[str, Any] = {fk: DELETE}
            if (cur[pk] or {}).get("fileId") == file_id:
                writes[pk] = DELETE
            return Txn(writes=writes, result=[v.blobKey for v in now.versions],
                       index_remove={self.index_key(account): [now.filePath]})

        blob_keys = self.kv.transact([fk, pk], txn)
        if blob_keys is None:
            return False
        # Its derivatives too (thumbnails, transformations: delivery keeps them by fileId).
        derived = [k for k, _ in self.blobs.keys(f"derived/{file_id}/")]
        for key in [*blob_keys, *derived]:
            self.blobs.delete(key)
        return True

    def upload_change(self, prepared: Prepared, account: str, file_path: str,
                      existing: FileRecord | None) -> tuple[FileRecord, Txn[None]]:
        """The record after this upload and the writes that store it.

        ``existing`` is the file at ``file_path`` (read in the same transaction).
        Raises ``PermanentError`` when the upload API refuses: the path is taken and
        ``overwriteFile`` is false, or the file has its 100 versions."""
        up = prepared.upload
        if existing is None:
            record = self._new_record(prepared, account, file_path)
            writes: dict[str, Any] = {
                self.file_key(record.fileId): record.model_dump(mode="json"),
                self.path_key(account, file_path): {"fileId": record.fileId},
            }
            return record, Txn(writes=writes, index_add=self.placed(account, file_path))
        if not up.overwriteFile:
            raise FileExists(
                f"upload.fileName: a file already exists at {file_path} and overwriteFile is "
                "false (nothing was written)")
        record = overwrite_patch(prepared).apply(existing, self.settings.max_versions)
        return record, Txn(writes={self.file_key(record.fileId): record.model_dump(mode="json")})

    def _new_record(self, p: Prepared, account: str, file_path: str) -> FileRecord:
        # Version 1's id is the file's own (the file object document: "versionInfo": {"id":
        # <fileId>, "name": "Version 1"}); later versions get ids of their own.
        up, now = p.upload, now_iso()
        file_id = version_id = new_id()
        return FileRecord.model_validate({
            "fileId": file_id, "accountId": account, "name": file_path.rsplit("/", 1)[1],
            "filePath": file_path, "tags": up.tags or None,
            "customMetadata": p.custom_metadata or {}, "description": up.description,
            "customCoordinates": up.customCoordinates or None,
            "isPrivateFile": up.isPrivateFile, "isPublished": up.isPublished,
            "versionInfo": {"id": version_id, "name": "Version 1"},
            "url": p.url,
            "fileType": "image" if p.mime.startswith("image/") else "non-image",
            "createdAt": now, "updatedAt": now, "embeddedMetadata": p.embedded, **p.facts(),
            "versions": [{"id": version_id, "name": "Version 1", "blobKey": p.blob_key,
                          "createdAt": now, "origin": p.origin, **p.facts()}],
        })

    # --- updates --------------------------------------------------------------

    def update_patch(self, update: Update, record: FileRecord, account: str) -> RecordPatch:
        """Update File Details as a patch: fields present change, absent ones stay."""
        given = update.model_fields_set
        patch = RecordPatch()
        if "tags" in given:
            patch.replace_tags = update.tags or []
        if "customMetadata" in given and update.customMetadata is not None:
            values = self.check_custom_metadata(account, update.customMetadata,
                                                "update.customMetadata", allow_null=True) or {}
            patch.metadata_set = {k: v for k, v in values.items() if v is not None}
            patch.metadata_unset = [k for k, v in values.items() if v is None]
        if "customCoordinates" in given:
            if update.customCoordinates:
                _check_inside(update.customCoordinates, record.width, record.height,
                              "update.customCoordinates")
            patch.set_fields["customCoordinates"] = update.customCoordinates or None
        if "description" in given:
            patch.set_fields["description"] = update.description
        return patch


def ancestors(file_path: str) -> list[str]:
    """``/a/b/c.jpg`` → ``["/a/", "/a/b/"]``."""
    parts = file_path.strip("/").split("/")[:-1]
    return ["/" + "/".join(parts[:i]) + "/" for i in range(1, len(parts) + 1)]


def owned(doc: dict[str, Any] | None, account: str | None) -> FileRecord | None:
    """A stored record, if it belongs to ``account`` (any account when ``None``)."""
    if doc is None:
        return None
    record = FileRecord.model_validate(doc)
    if account is not None and record.accountId != account:
        return None
    return record


def overwrite_patch(p: Prepared) -> RecordPatch:
    """A new version at an existing path, with the upload API's overwrite rules."""
    up = p.upload
    patch = RecordPatch(
        new_version=NewVersion(blobKey=p.blob_key, url=p.url, origin=p.origin,
                               embeddedMetadata=p.embedded, **p.facts()),
        remove_ai_tags="all" if up.overwriteAITags else None,
        set_fields={"isPrivateFile": up.isPrivateFile, "isPublished": up.isPublished,
                    # "If this field is not specified and the file is overwritten, then
                    # customCoordinates will be removed."
                    "customCoordinates": up.customCoordinates or None},
    )
    if up.tags is not None:
        patch.replace_tags = up.tags
    elif up.overwriteTags:
        patch.replace_tags = []
    if p.custom_metadata is not None:
        patch.metadata_clear, patch.metadata_set = True, dict(p.custom_metadata)
    elif up.overwriteCustomMetadata:
        patch.metadata_clear = True
    if up.description is not None:  # not documented for overwrites: kept unless given
        patch.set_fields["description"] = up.description
    return patch


def _check_inside(coords: str, width: int | None, height: int | None, where: str) -> None:
    x, y, w, h = (int(v) for v in coords.split(","))
    if width is None or height is None:
        raise PermanentError(f"{where}: only images have custom coordinates",
                             code=ErrorCode.INVALID_UPLOAD)
    if x + w > width or y + h > height:
        raise PermanentError(
            f"{where}: the area {coords} reaches beyond the {width}x{height} image",
            code=ErrorCode.INVALID_UPLOAD)
