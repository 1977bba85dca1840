"""Files: details (get, Update File Details), list, versions, embedded metadata, delete."""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations, and
# `Account` (bound to this app's key store) lives in router()'s scope.

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from worker.api.deps import Api
from worker.api.errors import ApiError
from worker.store import search
from worker.store.files import Listing


def router(api: Api) -> APIRouter:
    r = APIRouter(route_class=api.route_type)
    Account = Annotated[str, Depends(api.account)]
    pipeline, urls, library = api.pipeline, api.urls, api.runtime.library
    owned, with_status = api.owned, api.with_status
    # --- files ------------------------------------------------------------------

    @r.delete("/v1/files/{fileId}", status_code=204)
    def delete_file(acct: Account, fileId: str) -> None:  # noqa: N803
        if not pipeline.files.delete(fileId, acct):
            raise ApiError(404, f"The requested file does not exist: {fileId}")

    @r.get("/v1/files/{fileId}/details")
    def details(acct: Account, fileId: str) -> dict[str, Any]:  # noqa: N803
        return api.file_out(owned(fileId, acct))

    @r.get("/v1/files/{fileId}/similar")
    def similar(acct: Account, fileId: str,  # noqa: N803
                limit: Annotated[int, Query(ge=1, le=100)] = 10) -> list[dict[str, Any]]:
        """Beyond the hosted API: the account's files that look most like this one, best
        first, each file object with its ``similarity`` (cosine, -1..1)."""
        record = owned(fileId, acct)
        try:
            found = api.runtime.embeddings.similar(record, limit)
        except LookupError:
            raise ApiError(409, f"fileId: {fileId} has no image embedding yet: run "
                           "google-auto-tagging or aws-auto-tagging on it (the imagenet "
                           "tagger computes one)") from None
        return [{**api.file_out(other), "similarity": round(score, 4)}
                for other, score in found]

    @r.patch("/v1/files/{fileId}/details")
    def update(acct: Account, fileId: str, body: dict[str, Any]) -> dict[str, Any]:  # noqa: N803
        owned(fileId, acct)
        fields = {k: body[k] for k in ("tags", "customMetadata", "description",
                                       "customCoordinates") if k in body}
        unknown = set(body) - set(fields) - {"extensions", "removeAITags", "webhookUrl"}
        if unknown:
            raise ApiError(400, f"{sorted(unknown)[0]}: not a field of Update File Details")
        if not isinstance(body.get("extensions") or [], list):
            raise ApiError(400, "extensions: must be a list")
        api.check_extensions(body.get("extensions") or [])
        job: dict[str, Any] = {"jobId": f"api-{uuid.uuid4().hex}", "accountId": acct,
                               "fileId": fileId, "origin": "update",
                               "extensions": body.get("extensions") or []}
        if fields:
            job["update"] = fields
        for k in ("removeAITags", "webhookUrl"):
            if body.get(k) is not None:
                job[k] = body[k]
        if not fields and not job["extensions"] and "removeAITags" not in job:
            return api.file_out(owned(fileId, acct))
        doc, told = api.run_answered(job)
        return with_status(owned(fileId, acct), doc, told)

    @r.get("/v1/files")
    def list_files(acct: Account, path: str = "", tags: str | None = None,
                   name: str | None = None, searchQuery: str | None = None,  # noqa: N803
                   sort: str | None = None, type: str = "file",  # noqa: A002
                   fileType: str = "all",  # noqa: N803
                   skip: Annotated[int, Query(ge=0)] = 0,
                   limit: Annotated[int, Query(ge=1, le=1000)] = 1000) -> list[dict[str, Any]]:
        if type not in ("file", "folder", "all"):
            raise ApiError(400, f"type: {type!r} is not supported (file, folder or all; "
                           "file-version: GET /v1/files/{fileId}/versions)")
        if fileType not in ("all", "image", "non-image"):
            raise ApiError(400, f"fileType: {fileType!r} is not all, image or non-image")
        listing = Listing(
            query=search.parse(searchQuery) if searchQuery else None, path=path,
            tags=[t.strip() for t in tags.split(",") if t.strip()] if tags else None,
            name=name or None, file_type=fileType, sort=search.check_sort(sort))
        folders: list[dict[str, Any]] = []
        if type != "file" and searchQuery is None:
            folders = library.folder_objects(acct, path, name=listing.name)
        if type == "folder":
            return folders[skip:skip + limit]
        # folders first (type=all), then files: one run of skip/limit over both
        shown = folders[skip:skip + limit]
        listing.skip = max(0, skip - len(folders))
        listing.limit = limit - len(shown)
        if listing.limit == 0:
            return shown
        return shown + [api.file_out(r) for r in pipeline.files.search(acct, listing)]

    @r.get("/v1/files/{fileId}/versions")
    def versions(acct: Account, fileId: str) -> list[dict[str, Any]]:  # noqa: N803
        record = owned(fileId, acct)
        return [record.version_object(v.id, urls) for v in record.versions]

    @r.get("/v1/files/{fileId}/versions/{versionId}")
    def version(acct: Account, fileId: str, versionId: str) -> dict[str, Any]:  # noqa: N803
        record = owned(fileId, acct)
        if versionId not in {v.id for v in record.versions}:
            raise ApiError(404, f"The requested file version does not exist: {versionId}")
        return record.version_object(versionId, urls)

    @r.get("/v1/files/{fileId}/metadata")
    def metadata(acct: Account, fileId: str) -> dict[str, Any]:  # noqa: N803
        return pipeline.files.metadata(owned(fileId, acct))

    return r
