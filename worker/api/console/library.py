"""The media library (``/console/``): a folder's files with search and filters, and
applying saved or ad-hoc extensions to the selection."""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations.

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from worker.api.console.common import PAGE, Account, ConsoleDep, base_of, number
from worker.core.errors import ExtworkerError
from worker.core.urls import RASTER
from worker.services.jobs import new_job_id
from worker.store import search
from worker.store.files import Listing

router = APIRouter()
# The library's sorts (the list API's `sort`): label of each.
SORTS = {"ASC_NAME": "name", "DESC_CREATED": "newest", "ASC_CREATED": "oldest",
         "DESC_SIZE": "largest", "ASC_SIZE": "smallest"}


def folder_tree(console: ConsoleDep, acct: str, folder: str) -> list[dict[str, Any]]:
    """The folder tree down to ``folder``: each open folder (the root, the current one and
    those between) with its children; the rest closed, their children read only when opened
    (lazily: a folder's subfolders come from the folder index, never from its files)."""
    chain = ["/"]
    for part in folder.strip("/").split("/") if folder != "/" else []:
        chain.append(chain[-1] + part + "/")

    def node(path: str, depth: int) -> dict[str, Any]:
        is_open = depth < len(chain) and chain[depth] == path
        children = ([node(c, depth + 1) for c in console.runtime.library.subfolders(acct, path)]
                    if is_open else [])
        name = path.rstrip("/").rsplit("/", 1)[-1] or "/"
        return {"path": path, "name": name, "open": is_open, "current": path == folder,
                "children": children}

    return [node("/", 0)]


def size_text(size: int) -> str:
    """Bytes as a person reads them: 512 B, 48 KB, 3.1 MB."""
    for unit, step in (("GB", 1024 ** 3), ("MB", 1024 ** 2), ("KB", 1024)):
        if size >= step:
            value = size / step
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{size} B"


@router.get("")
@router.get("/")
def library_page(request: Request, acct: Account, console: ConsoleDep, path: str = "/", q: str = "",
                 tag: str = "", aitag: str = "", page_no: int = 1, sort: str = "",
                 view: str = "grid", sub: str = "") -> HTMLResponse:
    page_no = max(1, int(request.query_params.get("page", page_no) or 1))
    folder = path if path.endswith("/") else path + "/"
    # The list API's search: on PostgreSQL indexed; on Redis/SQLite a walk in path
    # order that stops at the page (see the README's "Search").
    conds: list[search.Node] = []
    # The folder's own files; with "include subfolders", everything below it. Without any
    # subfolder the two are the same, and the listing stays the store's plain range (page
    # 1,000 of 100,000 files in 32 ms, not a walk that reads every record before it).
    if not sub and console.runtime.library.subfolders(acct, folder, limit=1):
        conds.append(search.Cond(search.FIELDS["path"], "=", folder))
    if q:
        conds.append(search.Cond(search.FIELDS["name"], "HAS", q))
    if aitag:
        conds.append(search.Cond(search.FIELDS["AITags.name"], "HAS", aitag))
    if tag.strip():
        conds.append(search.Cond(search.TAGS_PARAM, "IN", (tag.strip(),)))
    sort = sort if sort in SORTS else ""
    view = "list" if view == "list" else "grid"
    page_files = console.runtime.files.search(acct, Listing(
        query=search.scan_filter(None, conds), path=folder, skip=(page_no - 1) * PAGE,
        limit=PAGE + 1, sort=search.check_sort(sort) if sort else None))
    shown, more = page_files[:PAGE], len(page_files) > PAGE
    params = {"path": folder, "q": q, "tag": tag, "aitag": aitag, "sort": sort, "view": view,
              "sub": sub}
    here = "/?" + urlencode({**params, "page": page_no})
    return console.page(request, "library.html", acct, path=folder, q=q, tag=tag, aitag=aitag,
                tree=folder_tree(console, acct, folder), here=here, sort=sort, sorts=SORTS,
                view=view, sub=sub,
                other_view=base_of(request) + "/?" + urlencode(
                    {**params, "view": "grid" if view == "list" else "list"}),
                saved=console.runtime.saved.list(acct), page=page_no, more=more,
                prev=base_of(request) + "/?" + urlencode({**params, "page": page_no - 1}),
                next=base_of(request) + "/?" + urlencode({**params, "page": page_no + 1}),
                files=[{**rec.file_object(console.urls), "thumb": console.signed(
                    rec, console.urls.current_thumbnail(rec)) if rec.mime in RASTER else None,
                    "size_text": size_text(rec.size), "format": rec.mime.split("/")[-1].upper()}
                    for rec in shown])


@router.post("/delete")
def delete_selected(request: Request, acct: Account, console: ConsoleDep,
                    fileId: Annotated[list[str] | None, Form()] = None,  # noqa: N803
                    back_to: Annotated[str, Form(alias="back")] = "/") -> Response:
    """The selection deleted, all or none (one the account does not own: nothing)."""
    to = back_to if back_to.startswith("/") else "/"
    if not fileId:
        return console.back(request, to, "Select the files to delete.", "error")
    done = console.runtime.library.delete_many(acct, fileId)
    return console.back(request, to, f"Deleted {len(done)} file{'' if len(done) == 1 else 's'}.")


@router.post("/folders")
def create_folder(request: Request, acct: Account, console: ConsoleDep,
                  name: Annotated[str, Form()], parent: Annotated[str, Form()] = "/") -> Response:
    try:
        made = console.runtime.library.create_folder(acct, name.strip(), parent or "/")
    except ExtworkerError as e:
        return console.back(request, "/?" + urlencode({"path": parent or "/"}), str(e), "error")
    return console.back(request, "/?" + urlencode({"path": made}), f"Created {made}.")


@router.post("/apply")
def apply_saved(request: Request, acct: Account, console: ConsoleDep,
                fileId: Annotated[list[str] | None, Form()] = None,  # noqa: N803
                saved_ids: Annotated[list[str] | None, Form(alias="saved")] = None,
                adhoc: Annotated[list[str] | None, Form()] = None,
                rb_shadow: Annotated[str, Form()] = "", rb_semi: Annotated[str, Form()] = "",
                rb_bg: Annotated[str, Form()] = "", t_min: Annotated[str, Form()] = "70",
                t_max: Annotated[str, Form()] = "5",
                back_to: Annotated[str, Form(alias="back")] = "/",
                webhookUrl: Annotated[str, Form()] = "") -> Response:  # noqa: N803
    extensions: list[dict[str, Any]] = [{"name": "saved-extension", "id": s}
                                        for s in saved_ids or []]
    for name in adhoc or []:
        if name == "remove-bg":
            options: dict[str, Any] = {"add_shadow": bool(rb_shadow),
                                       "semitransparency": bool(rb_semi)}
            if rb_bg.strip():
                options["bg_color"] = rb_bg.strip()
            extensions.append({"name": name, "options": options})
        elif name.endswith("-auto-tagging"):
            extensions.append({"name": name, "minConfidence": number(t_min),
                               "maxTags": number(t_max)})
        else:
            extensions.append({"name": name})
    to = back_to if back_to.startswith("/") else "/"
    if not fileId or not extensions:
        return console.back(request, to, "Select files and at least one extension.", "error")
    for fid in fileId:
        console.owned(fid, acct)
    for fid in fileId:
        job = {"jobId": new_job_id(), "accountId": acct, "fileId": fid,
               "origin": "update", "extensions": extensions}
        if webhookUrl:
            job["webhookUrl"] = webhookUrl
        try:
            console.services.jobs.run(job)
        except ExtworkerError as e:  # the contract's refusal, naming the parameter
            return console.back(request, to, f"Not applied: {e.message}", "error")
    count = len(fileId)
    return console.back(request, to, f"Applied to {count} file{'' if count == 1 else 's'}.")


@router.get("/status/{file_id}")
def status(acct: Account, console: ConsoleDep, file_id: str) -> JSONResponse:
    names = console.extension_names(acct)  # a saved extension by its name
    return JSONResponse({names.get(n, n): st
                         for n, st in console.owned(file_id, acct).extensionStatus.items()})
