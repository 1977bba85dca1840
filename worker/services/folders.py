"""Folder copy, move and rename as bulk jobs on the broker (``worker.store.bulkjobs``): the
source checked first, then the job recorded and queued; a worker runs it (durable, retried,
resumed after a crash). What the API's ``/v1/bulkJobs`` routes and any other caller use."""

from __future__ import annotations

from typing import Any

from worker.core.errors import NotFound
from worker.runtime import Runtime


class FolderJobs:
    def __init__(self, runtime: Runtime) -> None:
        self.library, self.bulk = runtime.library, runtime.bulk

    def copy(self, acct: str, source: str, destination: str, include_versions: bool) -> str:
        self.library.require_folder(acct, source, "sourceFolderPath")
        return self.bulk.submit(acct, "COPY_FOLDER", {
            "source": source, "destination": destination, "copy": True,
            "include_versions": include_versions})

    def move(self, acct: str, source: str, destination: str) -> str:
        self.library.require_folder(acct, source, "sourceFolderPath")
        return self.bulk.submit(acct, "MOVE_FOLDER", {
            "source": source, "destination": destination, "copy": False})

    def rename(self, acct: str, folder: str, new_name: str) -> str:
        self.library.require_folder(acct, folder, "folderPath")
        return self.bulk.submit(acct, "RENAME_FOLDER", {
            "source": folder, "destination": "/", "copy": False, "rename_to": new_name})

    def status(self, acct: str, job_id: str) -> dict[str, Any]:
        doc = self.bulk.status(acct, job_id)
        if doc is None:
            raise NotFound(f"The requested job does not exist: {job_id}")
        return doc
