"""The media library's file calls (``worker.store.library``): versions (restore, delete),
copy, move, rename, folders (create, delete; copy, move and rename as bulk jobs with a
status endpoint), the bulk tag updates and bulk delete — each scoped to the key's account.

Bulk jobs run in the API process that accepted them, one step per file, each step safe to
run again; their status is kept in the store (``<ns>:bulkjob:<account>:<jobId>``) for a day.
An API process that dies mid-job leaves it ``Pending``: submitting it again finishes it.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations, and
# `Account` (bound to this app's key store) lives in router()'s scope.

import threading
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field

from worker.api.deps import Api
from worker.api.errors import ApiError
from worker.core.errors import PermanentError
from worker.core.records import RecordPatch
from worker.store.kv import Txn
from worker.store.library import Library

BULK_JOB_TTL_S = 24 * 3600


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CopyBody(_Body):
    sourceFilePath: str = Field(..., min_length=1, max_length=4096)
    destinationPath: str = Field(..., min_length=1, max_length=4096)
    includeFileVersions: bool = False


class MoveBody(_Body):
    sourceFilePath: str = Field(..., min_length=1, max_length=4096)
    destinationPath: str = Field(..., min_length=1, max_length=4096)


class RenameBody(_Body):
    filePath: str = Field(..., min_length=1, max_length=4096)
    newFileName: str = Field(..., min_length=1, max_length=1024)
    purgeCache: bool = False


class FolderBody(_Body):
    folderName: str = Field(..., min_length=1, max_length=1024)
    parentFolderPath: str = Field(..., min_length=1, max_length=4096)


class FolderPathBody(_Body):
    folderPath: str = Field(..., min_length=1, max_length=4096)


class FolderCopyBody(_Body):
    sourceFolderPath: str = Field(..., min_length=1, max_length=4096)
    destinationPath: str = Field(..., min_length=1, max_length=4096)
    includeVersions: bool = False


class FolderMoveBody(_Body):
    sourceFolderPath: str = Field(..., min_length=1, max_length=4096)
    destinationPath: str = Field(..., min_length=1, max_length=4096)


class FolderRenameBody(_Body):
    folderPath: str = Field(..., min_length=1, max_length=4096)
    newFolderName: str = Field(..., min_length=1, max_length=1024)
    purgeCache: bool = False


class TagsBody(_Body):
    fileIds: list[str] = Field(..., min_length=1, max_length=50)
    tags: list[str] = Field(..., min_length=1)


class AITagsBody(_Body):
    fileIds: list[str] = Field(..., min_length=1, max_length=50)
    AITags: list[str] = Field(..., min_length=1)


class FileIdsBody(_Body):
    fileIds: list[str] = Field(..., min_length=1, max_length=100)


def router(api: Api, library: Library) -> APIRouter:
    r = APIRouter(route_class=api.route_type)
    Account = Annotated[str, Depends(api.account)]
    kv, keys = library.kv, api.settings.keys

    # --- versions -----------------------------------------------------------------

    @r.put("/v1/files/{fileId}/versions/{versionId}/restore")
    def restore_version(acct: Account, fileId: str, versionId: str) -> dict[str, Any]:  # noqa: N803
        return api.file_out(library.restore(acct, fileId, versionId))

    @r.delete("/v1/files/{fileId}/versions/{versionId}", status_code=204)
    def delete_version(acct: Account, fileId: str, versionId: str) -> None:  # noqa: N803
        library.delete_version(acct, fileId, versionId)

    # --- paths ----------------------------------------------------------------------

    @r.post("/v1/files/copy", status_code=204)
    def copy_file(acct: Account, body: CopyBody) -> None:
        library.copy(acct, body.sourceFilePath, body.destinationPath, body.includeFileVersions)

    @r.post("/v1/files/move", status_code=204)
    def move_file(acct: Account, body: MoveBody) -> None:
        library.move(acct, body.sourceFilePath, body.destinationPath)

    @r.put("/v1/files/rename")
    def rename_file(acct: Account, body: RenameBody) -> dict[str, Any]:
        library.rename(acct, body.filePath, body.newFileName)
        return {}  # no CDN cache here to purge: URLs name paths, derivatives follow the file

    # --- bulk updates -----------------------------------------------------------------

    @r.post("/v1/files/addTags")
    def add_tags(acct: Account, body: TagsBody) -> dict[str, Any]:
        done = library.patch_many(acct, body.fileIds, lambda _r: RecordPatch(add_tags=body.tags))
        return {"successfullyUpdatedFileIds": [x.fileId for x in done]}

    @r.post("/v1/files/removeTags")
    def remove_tags(acct: Account, body: TagsBody) -> dict[str, Any]:
        done = library.patch_many(acct, body.fileIds,
                                  lambda _r: RecordPatch(remove_tags=body.tags))
        return {"successfullyUpdatedFileIds": [x.fileId for x in done]}

    @r.post("/v1/files/removeAITags")
    def remove_ai_tags(acct: Account, body: AITagsBody) -> dict[str, Any]:
        done = library.patch_many(acct, body.fileIds,
                                  lambda _r: RecordPatch(remove_ai_tags=body.AITags))
        return {"successfullyUpdatedFileIds": [x.fileId for x in done]}

    @r.post("/v1/files/batch/deleteByFileIds")
    def delete_many(acct: Account, body: FileIdsBody) -> dict[str, Any]:
        return {"successfullyDeletedFileIds": library.delete_many(acct, body.fileIds)}

    # --- folders ----------------------------------------------------------------------

    @r.post("/v1/folder", status_code=201)
    def create_folder(acct: Account, body: FolderBody) -> dict[str, Any]:
        library.create_folder(acct, body.folderName, body.parentFolderPath)
        return {}

    @r.delete("/v1/folder", status_code=204)
    def delete_folder(acct: Account, body: FolderPathBody) -> Response:
        library.delete_folder(acct, body.folderPath)
        return Response(status_code=204)

    def bulk_job(acct: str, kind: str, work: Any) -> dict[str, Any]:
        job_id = uuid.uuid4().hex[:24]
        key = keys.bulk_job(acct, job_id)
        doc = {"jobId": job_id, "type": kind, "status": "Pending"}

        def put(value: dict[str, Any]) -> None:
            kv.transact([key], lambda _c: Txn(writes={key: value},
                                              ttl={key: BULK_JOB_TTL_S}))

        put(doc)

        def run() -> None:
            try:
                moved = work()
                put({**doc, "status": "Completed", "files": moved})
            except PermanentError as e:
                put({**doc, "status": "Completed", "error": str(e)})
            except Exception as e:  # noqa: BLE001 - reported on the job, not lost
                put({**doc, "status": "Pending", "error": f"{type(e).__name__}: {e} "
                     "(submit the job again to finish it)"})

        threading.Thread(target=run, name=f"bulkjob-{job_id}", daemon=True).start()
        return {"jobId": job_id}

    @r.post("/v1/bulkJobs/copyFolder")
    def copy_folder(acct: Account, body: FolderCopyBody) -> dict[str, Any]:
        library.require_folder(acct, body.sourceFolderPath, "sourceFolderPath")
        return bulk_job(acct, "COPY_FOLDER", lambda: library.folder_move(
            acct, body.sourceFolderPath, body.destinationPath, copy=True,
            include_versions=body.includeVersions))

    @r.post("/v1/bulkJobs/moveFolder")
    def move_folder(acct: Account, body: FolderMoveBody) -> dict[str, Any]:
        library.require_folder(acct, body.sourceFolderPath, "sourceFolderPath")
        return bulk_job(acct, "MOVE_FOLDER", lambda: library.folder_move(
            acct, body.sourceFolderPath, body.destinationPath, copy=False))

    @r.post("/v1/bulkJobs/renameFolder")
    def rename_folder(acct: Account, body: FolderRenameBody) -> dict[str, Any]:
        library.require_folder(acct, body.folderPath, "folderPath")
        return bulk_job(acct, "RENAME_FOLDER", lambda: library.folder_move(
            acct, body.folderPath, "/", copy=False, rename_to=body.newFolderName))

    @r.get("/v1/bulkJobs/{jobId}")
    def bulk_job_status(acct: Account, jobId: str) -> dict[str, Any]:  # noqa: N803
        doc = kv.get(keys.bulk_job(acct, jobId))
        if doc is None:
            raise ApiError(404, f"The requested job does not exist: {jobId}")
        return doc

    return r

