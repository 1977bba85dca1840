"""The media library's file calls (``worker.store.library``): versions (restore, delete),
copy, move, rename, folders (create, delete; copy, move and rename as bulk jobs with a
status endpoint), the bulk tag updates and bulk delete — each scoped to the key's account.

Bulk jobs are jobs on the broker (``worker.store.bulkjobs``): the API records and queues
them, a worker runs them (durable, retried, resumed after a crash), and they are listed with
the account's other jobs.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations.

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from worker.api.deps import Account, LibraryDep, ServicesDep
from worker.api.limits import BoundedRoute
from worker.core.records import RecordPatch

router = APIRouter(route_class=BoundedRoute, tags=["media library"])


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


# --- versions -----------------------------------------------------------------


@router.put("/v1/files/{fileId}/versions/{versionId}/restore", operation_id="restoreVersion")
def restore_version(acct: Account, library: LibraryDep, svc: ServicesDep,
                    fileId: str, versionId: str) -> dict[str, Any]:  # noqa: N803
    return svc.files.file_out(library.restore(acct, fileId, versionId))


@router.delete("/v1/files/{fileId}/versions/{versionId}", status_code=204,
                operation_id="deleteVersion")
def delete_version(acct: Account, library: LibraryDep, fileId: str, versionId: str) -> None:  # noqa: N803
    library.delete_version(acct, fileId, versionId)


# --- paths ----------------------------------------------------------------------


@router.post("/v1/files/copy", status_code=204, operation_id="copyFile")
def copy_file(acct: Account, library: LibraryDep, body: CopyBody) -> None:
    library.copy(acct, body.sourceFilePath, body.destinationPath, body.includeFileVersions)


@router.post("/v1/files/move", status_code=204, operation_id="moveFile")
def move_file(acct: Account, library: LibraryDep, body: MoveBody) -> None:
    library.move(acct, body.sourceFilePath, body.destinationPath)


@router.put("/v1/files/rename", operation_id="renameFile")
def rename_file(acct: Account, library: LibraryDep, body: RenameBody) -> dict[str, Any]:
    library.rename(acct, body.filePath, body.newFileName)
    return {}  # no CDN cache here to purge: URLs name paths, derivatives follow the file


# --- bulk updates -----------------------------------------------------------------


@router.post("/v1/files/addTags", operation_id="addTags")
def add_tags(acct: Account, library: LibraryDep, body: TagsBody) -> dict[str, Any]:
    done = library.patch_many(acct, body.fileIds,
                                      lambda _r: RecordPatch(add_tags=body.tags))
    return {"successfullyUpdatedFileIds": [x.fileId for x in done]}


@router.post("/v1/files/removeTags", operation_id="removeTags")
def remove_tags(acct: Account, library: LibraryDep, body: TagsBody) -> dict[str, Any]:
    done = library.patch_many(acct, body.fileIds,
                                      lambda _r: RecordPatch(remove_tags=body.tags))
    return {"successfullyUpdatedFileIds": [x.fileId for x in done]}


@router.post("/v1/files/removeAITags", operation_id="removeAiTags")
def remove_ai_tags(acct: Account, library: LibraryDep, body: AITagsBody) -> dict[str, Any]:
    done = library.patch_many(acct, body.fileIds,
                                      lambda _r: RecordPatch(remove_ai_tags=body.AITags))
    return {"successfullyUpdatedFileIds": [x.fileId for x in done]}


@router.post("/v1/files/batch/deleteByFileIds", operation_id="deleteMany")
def delete_many(acct: Account, library: LibraryDep, body: FileIdsBody) -> dict[str, Any]:
    return {"successfullyDeletedFileIds": library.delete_many(acct, body.fileIds)}


# --- folders ----------------------------------------------------------------------


@router.post("/v1/folder", status_code=201, operation_id="createFolder")
def create_folder(acct: Account, library: LibraryDep, body: FolderBody) -> dict[str, Any]:
    library.create_folder(acct, body.folderName, body.parentFolderPath)
    return {}


@router.delete("/v1/folder", status_code=204, operation_id="deleteFolder")
def delete_folder(acct: Account, library: LibraryDep, body: FolderPathBody) -> Response:
    library.delete_folder(acct, body.folderPath)
    return Response(status_code=204)


@router.post("/v1/bulkJobs/copyFolder", operation_id="copyFolder")
def copy_folder(acct: Account, svc: ServicesDep, body: FolderCopyBody) -> dict[str, Any]:
    return {"jobId": svc.folders.copy(acct, body.sourceFolderPath, body.destinationPath,
                                      body.includeVersions)}


@router.post("/v1/bulkJobs/moveFolder", operation_id="moveFolder")
def move_folder(acct: Account, svc: ServicesDep, body: FolderMoveBody) -> dict[str, Any]:
    return {"jobId": svc.folders.move(acct, body.sourceFolderPath, body.destinationPath)}


@router.post("/v1/bulkJobs/renameFolder", operation_id="renameFolder")
def rename_folder(acct: Account, svc: ServicesDep, body: FolderRenameBody) -> dict[str, Any]:
    return {"jobId": svc.folders.rename(acct, body.folderPath, body.newFolderName)}


@router.get("/v1/bulkJobs/{jobId}", operation_id="bulkJobStatus")
def bulk_job_status(acct: Account, svc: ServicesDep, jobId: str) -> dict[str, Any]:  # noqa: N803
    return svc.folders.status(acct, jobId)
