"""One file (``/console/files/{id}``): its versions, similar files, jobs, details and
custom metadata, each editable."""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations.

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from worker.api.console.common import Account, Console, ConsoleDep, number
from worker.core.errors import Conflict, ExtworkerError
from worker.core.records import RecordPatch
from worker.core.urls import RASTER
from worker.services.jobs import new_job_id

router = APIRouter()
PREVIEW = "w-480"  # the versions' previews: a derivative of each version, stored once


def typed(value: str, field: Any) -> Any:
    """A form's text as the field's type wants it (the store then checks it)."""
    kind = field.schema_.type
    if kind == "Number":
        return number(value)
    if kind == "Boolean":
        return {"true": True, "false": False}.get(value, value)
    options = field.schema_.selectOptions or []
    return next((o for o in options if str(o) == value), value)


def file_view(request: Request, console: Console, acct: str, file_id: str,
              meta_errors: dict[str, str] | None = None, status_code: int = 200,
              meta_values: dict[str, Any] | None = None) -> HTMLResponse:
    """The file page; after a refused metadata save, ``meta_values`` (what was sent) fill the
    form again, the refused one with its error beside it."""
    record = console.owned(file_id, acct)
    versions = []
    for v in record.versions:
        obj = record.version_object(v.id, console.urls)
        versions.append({**obj, "url": console.signed(record, obj["url"]),
                         "image": v.mime in RASTER,
                         # a preview of that version, not its full size
                         "preview": console.signed(record, console.urls.version(
                             record, v, PREVIEW))})
    try:  # files that look like this one (the imagenet tagger's embeddings)
        alike = [{**other.file_object(console.urls), "similarity": round(score, 3),
                  "thumb": console.signed(other, console.urls.current_thumbnail(other))
                  if other.mime in RASTER else None}
                 for other, score in console.services.files.similar(record, 6)]
    except Conflict:
        alike = None  # not tagged by the imagenet tagger yet
    url = console.signed(record, console.urls.file(record))
    # What the SDKs' build_url(src=filePath) starts from (the builder adds ?tr=…).
    plain_url = console.urls.path(record.accountId, record.filePath)
    return console.page(request, "file.html", acct, status=status_code, url=url,
                plain_url=plain_url,
                f=record.file_object(console.urls), versions=versions, similar=alike,
                history=console.runtime.pipeline.jobs(acct, count=20, file_id=file_id),
                meta_fields=[f.public() for f in console.runtime.fields.all(acct).values()],
                meta_errors=meta_errors or {}, meta_values=meta_values)


@router.get("/files/{file_id}")
def file_page(request: Request, acct: Account, console: ConsoleDep, file_id: str) -> HTMLResponse:
    return file_view(request, console, acct, file_id)


@router.post("/files/{file_id}/metadata")
async def save_metadata(request: Request, acct: Account, console: ConsoleDep,
                        file_id: str) -> Response:
    form = await request.form()
    defined = console.runtime.fields.all(acct)
    values: dict[str, Any] = {}
    for name, field in defined.items():
        kind = field.schema_.type
        given = [str(v) for v in form.getlist(f"cm.{name}")]
        if kind == "MultiSelect":
            values[name] = [typed(v, field) for v in given] or None
        elif not given or given[0] == "":
            values[name] = None
        else:
            values[name] = typed(given[0], field)
    try:
        await run_in_threadpool(console.services.jobs.run, {
            "jobId": new_job_id(), "accountId": acct, "fileId": file_id,
            "origin": "update", "update": {"customMetadata": values}})
    except ExtworkerError as e:
        # "update.customMetadata.<field>: …": shown on that field.
        head = e.message.split(":", 1)[0]
        name = head.rsplit(".", 1)[-1] if head.startswith("update.customMetadata.") else ""
        return await run_in_threadpool(file_view, request, console, acct, file_id,
                                       {name or next(iter(defined), ""): e.message}, 400,
                                       values)
    return console.back(request, f"/files/{file_id}", "Metadata saved.")


@router.post("/files/{file_id}/details")
def save_details(request: Request, acct: Account, console: ConsoleDep, file_id: str,
                 tags: Annotated[str, Form()] = "",
                 description: Annotated[str, Form()] = "") -> Response:
    console.owned(file_id, acct)
    wanted = [t.strip() for t in tags.split(",") if t.strip()]
    console.runtime.library.patch_many(acct, [file_id], lambda _r: RecordPatch(
        replace_tags=wanted, set_fields={"description": description or None}))
    return console.back(request, f"/files/{file_id}", "Saved.")


@router.post("/files/{file_id}/restore/{version_id}")
def restore(request: Request, acct: Account, console: ConsoleDep, file_id: str,
            version_id: str) -> Response:
    console.runtime.library.restore(acct, file_id, version_id)
    return console.back(request, f"/files/{file_id}", "Restored as a new version.")


@router.post("/files/{file_id}/versions/{version_id}/delete")
def delete_version(request: Request, acct: Account, console: ConsoleDep, file_id: str,
                   version_id: str) -> Response:
    console.runtime.library.delete_version(acct, file_id, version_id)
    return console.back(request, f"/files/{file_id}", "Deleted the version.")


@router.post("/files/{file_id}/manage")
def manage(request: Request, acct: Account, console: ConsoleDep, file_id: str,
           action: Annotated[str, Form()], name: Annotated[str, Form()] = "",
           folder: Annotated[str, Form()] = "",
           versions: Annotated[str, Form()] = "") -> Response:
    """Rename, move, copy or delete the file (the API's library calls); a refusal is said on
    the file's page, naming what to change."""
    record = console.owned(file_id, acct)
    library, here = console.runtime.library, f"/files/{file_id}"
    try:
        if action == "rename":
            library.rename(acct, record.filePath, name.strip())
            return console.back(request, here, f"Renamed to {name.strip()}.")
        if action == "move":
            library.move(acct, record.filePath, folder or "/")
            return console.back(request, here, f"Moved to {folder or '/'}.")
        if action == "copy":
            made = library.copy(acct, record.filePath, folder or "/", bool(versions))
            return console.back(request, f"/files/{made.fileId}", f"Copied from {record.filePath}.")
        if action == "delete":
            library.delete_many(acct, [file_id])
            parent = record.filePath.rsplit("/", 1)[0] + "/"
            return console.back(request, "/?" + urlencode({"path": parent}),
                                f"Deleted {record.filePath}.")
    except ExtworkerError as e:
        return console.back(request, here, str(e), "error")
    return console.back(request, here, f"action: {action!r} is not rename, move, copy or delete",
                        "error")
