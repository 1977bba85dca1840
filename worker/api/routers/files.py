"""Files: details (get, Update File Details), list, versions, embedded metadata, delete."""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations.

from typing import Annotated, Any

from fastapi import APIRouter, Query

from worker.api.deps import Account, ServicesDep
from worker.api.limits import BoundedRoute
from worker.core.errors import NotFound, PermanentError, VersionNotFound
from worker.services.jobs import new_job_id

router = APIRouter(route_class=BoundedRoute, tags=["files"])


@router.delete("/v1/files/{fileId}", status_code=204, operation_id="deleteFile")
def delete_file(acct: Account, svc: ServicesDep, fileId: str) -> None:  # noqa: N803
    if not svc.runtime.pipeline.files.delete(fileId, acct):
        raise NotFound(f"The requested file does not exist: {fileId}")


@router.get("/v1/files/{fileId}/details", operation_id="getFileDetails")
def details(acct: Account, svc: ServicesDep, fileId: str) -> dict[str, Any]:  # noqa: N803
    return svc.files.file_out(svc.files.owned(fileId, acct))


@router.get("/v1/files/{fileId}/similar", operation_id="listSimilarFiles")
def similar(acct: Account, svc: ServicesDep, fileId: str,  # noqa: N803
            limit: Annotated[int, Query(ge=1, le=100)] = 10) -> list[dict[str, Any]]:
    """Beyond the hosted API: the account's files that look most like this one, best
    first, each file object with its ``similarity`` (cosine, -1..1)."""
    found = svc.files.similar(svc.files.owned(fileId, acct), limit)
    return [{**svc.files.file_out(other), "similarity": round(score, 4)}
            for other, score in found]


@router.patch("/v1/files/{fileId}/details", operation_id="updateFileDetails")
def update(acct: Account, svc: ServicesDep, fileId: str,  # noqa: N803
           body: dict[str, Any]) -> dict[str, Any]:
    svc.files.owned(fileId, acct)
    fields = {k: body[k] for k in ("tags", "customMetadata", "description",
                                   "customCoordinates") if k in body}
    unknown = set(body) - set(fields) - {"extensions", "removeAITags", "webhookUrl"}
    if unknown:
        raise PermanentError(f"{sorted(unknown)[0]}: not a field of Update File Details")
    if not isinstance(body.get("extensions") or [], list):
        raise PermanentError("extensions: must be a list")
    svc.jobs.check_extensions(body.get("extensions") or [])
    job: dict[str, Any] = {"jobId": new_job_id(), "accountId": acct, "fileId": fileId,
                           "origin": "update", "extensions": body.get("extensions") or []}
    if fields:
        job["update"] = fields
    for k in ("removeAITags", "webhookUrl"):
        if body.get(k) is not None:
            job[k] = body[k]
    if not fields and not job["extensions"] and "removeAITags" not in job:
        return svc.files.file_out(svc.files.owned(fileId, acct))
    doc, told = svc.jobs.run_answered(job)
    return svc.files.with_status(svc.files.owned(fileId, acct), doc, told)


@router.get("/v1/files", operation_id="listFiles")
def list_files(acct: Account, svc: ServicesDep, path: str = "", tags: str | None = None,
               name: str | None = None, searchQuery: str | None = None,  # noqa: N803
               sort: str | None = None, type: str = "file",  # noqa: A002
               fileType: str = "all",  # noqa: N803
               skip: Annotated[int, Query(ge=0)] = 0,
               limit: Annotated[int, Query(ge=1, le=1000)] = 1000) -> list[dict[str, Any]]:
    return svc.files.listing(acct, path=path, tags=tags, name=name, query=searchQuery,
                             sort=sort, kind=type, file_type=fileType, skip=skip, limit=limit)


@router.get("/v1/files/{fileId}/versions", operation_id="listFileVersions")
def versions(acct: Account, svc: ServicesDep, fileId: str) -> list[dict[str, Any]]:  # noqa: N803
    record = svc.files.owned(fileId, acct)
    return [record.version_object(v.id, svc.files.urls) for v in record.versions]


@router.get("/v1/files/{fileId}/versions/{versionId}", operation_id="getFileVersion")
def version(acct: Account, svc: ServicesDep, fileId: str,  # noqa: N803
            versionId: str) -> dict[str, Any]:  # noqa: N803
    record = svc.files.owned(fileId, acct)
    if versionId not in {v.id for v in record.versions}:
        raise VersionNotFound(f"The requested file version does not exist: {versionId}")
    return record.version_object(versionId, svc.files.urls)


@router.get("/v1/files/{fileId}/metadata", operation_id="getFileMetadata")
def metadata(acct: Account, svc: ServicesDep, fileId: str) -> dict[str, Any]:  # noqa: N803
    return svc.runtime.pipeline.files.metadata(svc.files.owned(fileId, acct))
