"""An account's files as the API, the console and the CLI answer them: scoped lookup, the
file object, the list call (search, sort, folders) and similar files."""

from __future__ import annotations

from typing import Any

from worker.core.errors import Conflict, NotFound, PermanentError
from worker.core.jobs import JobDoc
from worker.core.records import FileRecord
from worker.runtime import Runtime
from worker.store import search
from worker.store.files import Listing


class FileService:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.urls = runtime.settings.urls

    def owned(self, file_id: str, acct: str) -> FileRecord:
        """The account's file, or a 404 (another account's file is not found either)."""
        record = self.runtime.pipeline.get_file(file_id, acct)
        if record is None:
            raise NotFound(f"The requested file does not exist: {file_id}")
        return record

    def file_out(self, record: FileRecord) -> dict[str, Any]:
        """The file object as the API answers it: ``extensionStatus``/``extensionErrors``
        only once an extension was asked for (the upload document's rule)."""
        out = record.file_object(self.urls)
        for name in ("extensionStatus", "extensionErrors"):
            if not out.get(name):
                out.pop(name, None)
        return out

    def with_status(self, record: FileRecord, doc: JobDoc | None,
                    told: dict[str, str] | None = None) -> dict[str, Any]:
        """The file object answered for a job: ``told`` (``run_answered``'s) when given."""
        out = self.file_out(record)
        if doc is not None and doc.extensions:
            out["extensionStatus"] = told or {n: s.status for n, s in doc.extensions.items()}
        return out

    def listing(self, acct: str, *, path: str = "", tags: str | None = None,
                name: str | None = None, query: str | None = None, sort: str | None = None,
                kind: str = "file", file_type: str = "all", skip: int = 0,
                limit: int = 1000) -> list[dict[str, Any]]:
        """``GET /v1/files`` (and ``extworker files list``): folders first (``kind`` all or
        folder), then files, one run of ``skip``/``limit`` over both."""
        if kind not in ("file", "folder", "all"):
            raise PermanentError(f"type: {kind!r} is not supported (file, folder or all; "
                                 "file-version: GET /v1/files/{fileId}/versions)")
        if file_type not in ("all", "image", "non-image"):
            raise PermanentError(f"fileType: {file_type!r} is not all, image or non-image")
        found = Listing(
            query=search.parse(query) if query else None, path=path,
            tags=[t.strip() for t in tags.split(",") if t.strip()] if tags else None,
            name=name or None, file_type=file_type, sort=search.check_sort(sort))
        folders: list[dict[str, Any]] = []
        if kind != "file" and query is None:
            folders = self.runtime.library.folder_objects(acct, path, name=found.name)
        if kind == "folder":
            return folders[skip:skip + limit]
        shown = folders[skip:skip + limit]
        found.skip = max(0, skip - len(folders))
        found.limit = limit - len(shown)
        if found.limit == 0:
            return shown
        return shown + [self.file_out(r) for r in
                        self.runtime.pipeline.files.search(acct, found)]

    def similar(self, record: FileRecord, limit: int) -> list[tuple[FileRecord, float]]:
        """The account's files that look most like ``record``, best first; a 409 before the
        imagenet tagger has computed its embedding."""
        try:
            return self.runtime.embeddings.similar(record, limit)
        except LookupError:
            raise Conflict(f"fileId: {record.fileId} has no image embedding yet: run "
                           "google-auto-tagging or aws-auto-tagging on it (the imagenet "
                           "tagger computes one)") from None
