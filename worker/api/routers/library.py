"""The media library's file calls (``worker.store.library``): versions (restore, delete),
copy, move, rename, folders (create, delete; copy, move and rename as bulk jobs with a
status endpoint), the bulk tag updates and bulk delete — each scoped to the key's account.

Bulk jobs are jobs on the broker (``worker.store.bulkjobs``): the API records and queues
them, a worker runs them (durable, retried, resumed after a crash), and they are listed with
the account's other jobs.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations, and
# `Account` (bound to this app's key store) lives in router()'s scope.

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field

from worker.api.deps import Api
from worker.api.errors import ApiError
from worker.core.records import RecordPatch
from worker.store.bulkjobs import BulkJobs
from worker.store.library import Library


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


def router(api: Api, library: Library, bulk: BulkJobs) -> APIRouter:
    r = APIRouter(route_class=api.route_type)
    Account = Annotated[str, Depends(api.account)]

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

    @r.post("/v1/bulkJobs/copyFolder")
    def copy_folder(acct: Account, body: FolderCopyBody) -> dict[str, Any]:
        library.require_folder(acct, body.sourceFolderPath, "sourceFolderPath")
        return {"jobId": bulk.submit(acct, "COPY_FOLDER", {
            "source": body.sourceFolderPath, "destination": body.destinationPath,
            "copy": True, "include_versions": body.includeVersions})}

    @r.post("/v1/bulkJobs/moveFolder")
    def move_folder(acct: Account, body: FolderMoveBody) -> dict[str, Any]:
        library.require_folder(acct, body.sourceFolderPath, "sourceFolderPath")
        return {"jobId": bulk.submit(acct, "MOVE_FOLDER", {
            "source": body.sourceFolderPath, "destination": body.destinationPath,
            "copy": False})}

    @r.post("/v1/bulkJobs/renameFolder")
    def rename_folder(acct: Account, body: FolderRenameBody) -> dict[str, Any]:
        library.require_folder(acct, body.folderPath, "folderPath")
        return {"jobId": bulk.submit(acct, "RENAME_FOLDER", {
            "source": body.folderPath, "destination": "/", "copy": False,
            "rename_to": body.newFolderName})}

    @r.get("/v1/bulkJobs/{jobId}")
    def bulk_job_status(acct: Account, jobId: str) -> dict[str, Any]:  # noqa: N803
        doc = bulk.status(acct, jobId)
        if doc is None:
            raise ApiError(404, f"The requested job does not exist: {jobId}")
        return doc

    return r

