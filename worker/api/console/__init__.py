"""The console (``/console``): the hosted dashboard's flows over the same services the API
routes call — the media library, upload with saved extensions, a file's versions and
details, saved extensions, webhooks, usage — server-rendered (Jinja2, autoescaped) with one
small script of our own; every asset ships in the package (works air-gapped).

Safety: sign-in with an account's private key, then a session cookie (``session``); every
page and action scoped to that account (another account's file is a 404); unsafe methods
only from the console's own origin; answers carry a CSP that allows only the console's own
script and style, and images from the delivery origins.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations.

import json
import re
import uuid
from datetime import UTC, datetime
from importlib import resources
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from worker.api.console.session import COOKIE, TTL_S, Sessions, same_origin
from worker.api.deps import Api, new_job_id
from worker.api.errors import ApiError
from worker.api.routers.uploads import CONSOLE_FIELDS, Uploader
from worker.core.errors import PermanentError
from worker.core.records import FileRecord, RecordPatch
from worker.core.urls import RASTER
from worker.delivery.service import NO_EXPIRY, signature
from worker.store import search
from worker.store.files import Listing
from worker.store.library import Library

PAGE = 48
SCAN_LIMIT = 5000  # records a search reads at most per page asked for
_STATIC = {"console.css": "text/css", "console.js": "text/javascript"}


def _number(text: str) -> Any:
    try:
        value = float(text)
    except ValueError:
        return text  # the contract (or the field store) names it and says why
    return int(value) if value.is_integer() else value


def _typed(value: str, field: Any) -> Any:
    """A form's text as the field's type wants it (the store then checks it)."""
    kind = field.schema_.type
    if kind == "Number":
        return _number(value)
    if kind == "Boolean":
        return {"true": True, "false": False}.get(value, value)
    options = field.schema_.selectOptions or []
    return next((o for o in options if str(o) == value), value)


class SignIn(Exception):
    """Not signed in: pages redirect to the sign-in form."""


def router(api: Api, library: Library, webhooks: Any) -> APIRouter:
    r = APIRouter(prefix="/console", include_in_schema=False)
    assert api.runtime.redis is not None
    sessions = Sessions(api.runtime.redis, api.settings.keys)
    env = Environment(loader=PackageLoader("worker.api.console", "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True))
    uploader = Uploader(api)
    files, saved, keys = api.runtime.files, api.runtime.saved, api.keys

    def base_of(request: Request) -> str:
        return request.scope.get("root_path", "").rstrip("/") + "/console"

    def csp() -> str:
        origins = {urlsplit(api.urls.endpoint("x")).netloc}
        if api.urls.public_url_base:
            origins.add(urlsplit(api.urls.public_url_base).netloc)
        imgs = " ".join(f"http://{o} https://{o}" for o in sorted(origins))
        return (f"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' "
                f"data: {imgs}; connect-src 'self'; form-action 'self'; frame-ancestors "
                "'none'; base-uri 'none'")

    def page(request: Request, name: str, account: str | None, status: int = 200,
             **ctx: Any) -> HTMLResponse:
        html = env.get_template(name).render(base=base_of(request), account=account,
                                             message=request.query_params.get("message"),
                                             **ctx)
        return HTMLResponse(html, status_code=status, headers={
            "Content-Security-Policy": csp(), "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "same-origin", "Cache-Control": "no-store"})

    def back(request: Request, to: str, message: str | None = None) -> RedirectResponse:
        target = base_of(request) + to
        if message:
            target += ("&" if "?" in target else "?") + urlencode({"message": message})
        return RedirectResponse(target, status_code=303)

    def account(request: Request) -> str:
        """The session's account (a dependency); unsafe methods from elsewhere: 403."""
        if request.method not in ("GET", "HEAD") and not same_origin(
                request.headers, request.headers.get("host", "")):
            raise ApiError(403, "cross-site request refused")
        found = sessions.account(request.cookies.get(COOKIE))
        if found is None:
            raise SignIn()
        return found

    Account = Annotated[str, Depends(account)]

    def signed(record: FileRecord, url: str) -> str:
        """``url`` as the SDKs sign it, for a private file the console shows its owner."""
        if not record.isPrivateFile:
            return url
        endpoint = api.urls.endpoint(record.accountId)
        signing = keys.signing_keys(record.accountId)
        if not signing or not url.startswith(endpoint + "/"):
            return url
        sig = signature(signing[0], url[len(endpoint) + 1:], NO_EXPIRY)
        return url + ("&" if "?" in url else "?") + f"ik-s={sig}"

    def owned(file_id: str, acct: str) -> FileRecord:
        record = files.get(file_id, acct)
        if record is None:
            raise ApiError(404, f"The requested file does not exist: {file_id}")
        return record

    # --- sign-in ------------------------------------------------------------------

    @r.get("/login")
    def login_form(request: Request) -> HTMLResponse:
        return page(request, "login.html", None)

    @r.post("/login")
    def login(request: Request, key: Annotated[str, Form()]) -> Response:
        if not same_origin(request.headers, request.headers.get("host", "")):
            raise ApiError(403, "cross-site request refused")
        acct = keys.account_of(key.strip())
        if acct is None:
            return page(request, "login.html", None, status=401,
                        error="That key does not sign in to any account.")
        response = back(request, "/")
        secure = request.url.scheme == "https" or \
            request.headers.get("x-forwarded-proto") == "https"
        response.set_cookie(COOKIE, sessions.start(acct), max_age=TTL_S, httponly=True,
                            samesite="lax", secure=secure, path=base_of(request))
        return response

    @r.post("/logout")
    def logout(request: Request, acct: Account) -> Response:
        sessions.end(request.cookies.get(COOKIE))
        response = back(request, "/login")
        response.delete_cookie(COOKIE, path=base_of(request))
        return response

    @r.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in _STATIC:
            raise ApiError(404, "no such asset")
        data = resources.files("worker.api.console").joinpath("static", name).read_bytes()
        return Response(data, media_type=_STATIC[name],
                        headers={"Cache-Control": "public, max-age=3600"})

    # --- the media library -----------------------------------------------------------

    @r.get("")
    @r.get("/")
    def library_page(request: Request, acct: Account, path: str = "/", q: str = "",
                     tag: str = "", aitag: str = "", page_no: int = 1) -> HTMLResponse:
        page_no = max(1, int(request.query_params.get("page", page_no) or 1))
        folder = path if path.endswith("/") else path + "/"
        # The list API's search: on PostgreSQL indexed; on Redis/SQLite a walk in path
        # order that stops at the page (see the README's "Search").
        conds: list[search.Node] = []
        if q:
            conds.append(search.Cond(search.FIELDS["name"], "HAS", q))
        if aitag:
            conds.append(search.Cond(search.FIELDS["AITags.name"], "HAS", aitag))
        if tag.strip():
            conds.append(search.Cond(search.TAGS_PARAM, "IN", (tag.strip(),)))
        page_files = files.search(acct, Listing(query=search.scan_filter(None, conds),
                                                path=folder, skip=(page_no - 1) * PAGE,
                                                limit=PAGE + 1))
        shown, more = page_files[:PAGE], len(page_files) > PAGE
        sub = library.subfolders(acct, folder)
        params = {"path": folder, "q": q, "tag": tag, "aitag": aitag}
        here = "/?" + urlencode({**params, "page": page_no})
        return page(request, "library.html", acct, path=folder, q=q, tag=tag, aitag=aitag,
                    folders=sub, here=here,
                    parent=(folder.rstrip("/").rsplit("/", 1)[0] + "/") if folder != "/"
                    else None,
                    saved=saved.list(acct), page=page_no, more=more,
                    prev=base_of(request) + "/?" + urlencode({**params, "page": page_no - 1}),
                    next=base_of(request) + "/?" + urlencode({**params, "page": page_no + 1}),
                    files=[{**rec.file_object(api.urls), "thumb": signed(
                        rec, api.urls.thumbnail(rec)) if rec.mime in RASTER else None}
                        for rec in shown])

    @r.post("/apply")
    def apply_saved(request: Request, acct: Account,
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
                extensions.append({"name": name, "minConfidence": _number(t_min),
                                   "maxTags": _number(t_max)})
            else:
                extensions.append({"name": name})
        if not fileId or not extensions:
            return back(request, back_to if back_to.startswith("/") else "/",
                        "Select files and at least one extension.")
        for fid in fileId:
            owned(fid, acct)
        for fid in fileId:
            job = {"jobId": new_job_id(), "accountId": acct, "fileId": fid,
                   "origin": "update", "extensions": extensions}
            if webhookUrl:
                job["webhookUrl"] = webhookUrl
            try:
                api.run_job(job)
            except ApiError as e:  # the contract's refusal, naming the parameter
                return back(request, back_to if back_to.startswith("/") else "/",
                            f"Not applied: {e.message}")
        return back(request, back_to if back_to.startswith("/") else "/",
                    f"Applied to {len(fileId)} files.")

    @r.get("/status/{file_id}")
    def status(acct: Account, file_id: str) -> JSONResponse:
        return JSONResponse(owned(file_id, acct).extensionStatus)

    # --- one file -----------------------------------------------------------------------

    def file_view(request: Request, acct: str, file_id: str,
                  meta_errors: dict[str, str] | None = None, status_code: int = 200
                  ) -> HTMLResponse:
        record = owned(file_id, acct)
        versions = []
        for v in record.versions:
            obj = record.version_object(v.id, api.urls)
            versions.append({**obj, "url": signed(record, obj["url"]),
                             "image": v.mime in RASTER})
        try:  # files that look like this one (the imagenet tagger's embeddings)
            alike = [{**other.file_object(api.urls), "similarity": round(score, 3),
                      "thumb": signed(other, api.urls.thumbnail(other))
                      if other.mime in RASTER else None}
                     for other, score in api.runtime.embeddings.similar(record, 6)]
        except LookupError:
            alike = None  # not tagged by the imagenet tagger yet
        return page(request, "file.html", acct, status=status_code,
                    f=record.file_object(api.urls), versions=versions, similar=alike,
                    history=api.pipeline.jobs(acct, count=20, file_id=file_id),
                    meta_fields=[f.public() for f in api.runtime.fields.all(acct).values()],
                    meta_errors=meta_errors or {})

    @r.get("/files/{file_id}")
    def file_page(request: Request, acct: Account, file_id: str) -> HTMLResponse:
        return file_view(request, acct, file_id)

    @r.post("/files/{file_id}/metadata")
    async def save_metadata(request: Request, acct: Account, file_id: str) -> Response:
        form = await request.form()
        defined = api.runtime.fields.all(acct)
        values: dict[str, Any] = {}
        for name, field in defined.items():
            kind = field.schema_.type
            given = [str(v) for v in form.getlist(f"cm.{name}")]
            if kind == "MultiSelect":
                values[name] = [_typed(v, field) for v in given] or None
            elif not given or given[0] == "":
                values[name] = None
            else:
                values[name] = _typed(given[0], field)
        try:
            await run_in_threadpool(api.run_job, {
                "jobId": new_job_id(), "accountId": acct, "fileId": file_id,
                "origin": "update", "update": {"customMetadata": values}})
        except ApiError as e:
            # "update.customMetadata.<field>: …": shown on that field.
            head = e.message.split(":", 1)[0]
            name = head.rsplit(".", 1)[-1] if head.startswith("update.customMetadata.") else ""
            return await run_in_threadpool(file_view, request, acct, file_id,
                                           {name or next(iter(defined), ""): e.message}, 400)
        return back(request, f"/files/{file_id}", "Metadata saved.")

    @r.post("/files/{file_id}/details")
    def save_details(request: Request, acct: Account, file_id: str,
                     tags: Annotated[str, Form()] = "",
                     description: Annotated[str, Form()] = "") -> Response:
        owned(file_id, acct)
        wanted = [t.strip() for t in tags.split(",") if t.strip()]
        library.patch_many(acct, [file_id], lambda _r: RecordPatch(
            replace_tags=wanted, set_fields={"description": description or None}))
        return back(request, f"/files/{file_id}", "Saved.")

    @r.post("/files/{file_id}/restore/{version_id}")
    def restore(request: Request, acct: Account, file_id: str, version_id: str) -> Response:
        library.restore(acct, file_id, version_id)
        return back(request, f"/files/{file_id}", "Restored as a new version.")

    # --- custom metadata fields ---------------------------------------------------------------

    fields_store = api.runtime.fields

    def fields_page(request: Request, acct: str, editing: dict[str, Any] | None = None,
                    form: dict[str, str] | None = None, error: str | None = None,
                    status_code: int = 200) -> HTMLResponse:
        form = form or ({"name": editing["name"], "label": editing["label"],
                         "schema": json.dumps(editing["schema"])} if editing
                        else {"name": "", "label": "", "schema": '{"type": "Text"}'})
        return page(request, "fields.html", acct, status=status_code,
                    fields=[f.public() for f in fields_store.all(acct).values()],
                    editing=editing, form=form, form_error=error)

    def _schema(text: str) -> Any:
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise PermanentError(f"schema: not JSON ({e.msg}, line {e.lineno})") from None

    @r.get("/fields")
    def fields_list(request: Request, acct: Account) -> HTMLResponse:
        return fields_page(request, acct)

    @r.post("/fields")
    def fields_create(request: Request, acct: Account, name: Annotated[str, Form()],
                      label: Annotated[str, Form()],
                      schema_text: Annotated[str, Form(alias="schema")]) -> Response:
        form = {"name": name, "label": label, "schema": schema_text}
        try:
            fields_store.create(acct, {"name": name, "label": label,
                                       "schema": _schema(schema_text)})
        except (PermanentError, ValueError) as e:
            return fields_page(request, acct, form=form, error=str(e), status_code=400)
        return back(request, "/fields", f"Saved field {name}.")

    @r.get("/fields/{name}")
    def fields_edit(request: Request, acct: Account, name: str) -> HTMLResponse:
        found = fields_store.all(acct).get(name)
        if found is None:
            raise ApiError(404, f"custom metadata field not found: {name}")
        return fields_page(request, acct, editing=found.public())

    @r.post("/fields/{name}")
    def fields_update(request: Request, acct: Account, name: str,
                      label: Annotated[str, Form()],
                      schema_text: Annotated[str, Form(alias="schema")]) -> Response:
        found = fields_store.all(acct).get(name)
        if found is None:
            raise ApiError(404, f"custom metadata field not found: {name}")
        try:
            fields_store.update(acct, name, label=label, schema=_schema(schema_text))
        except (PermanentError, ValueError) as e:
            return fields_page(request, acct, editing=found.public(), error=str(e),
                               form={"name": name, "label": label, "schema": schema_text},
                               status_code=400)
        return back(request, "/fields", f"Saved field {name}.")

    @r.post("/fields/{name}/delete")
    def fields_delete(request: Request, acct: Account, name: str) -> Response:
        if not fields_store.delete(acct, name):
            raise ApiError(404, f"custom metadata field not found: {name}")
        return back(request, "/fields", "Deleted.")

    # --- upload -------------------------------------------------------------------------

    @r.get("/upload")
    def upload_form(request: Request, acct: Account) -> HTMLResponse:
        return page(request, "upload.html", acct, saved=saved.list(acct), results=None)

    @r.post("/upload")
    def upload(request: Request, acct: Account,
               uploads: Annotated[list[UploadFile], File(alias="files")],
               folder: Annotated[str, Form()] = "/", tags: Annotated[str, Form()] = "",
               webhookUrl: Annotated[str, Form()] = "",  # noqa: N803
               saved_ids: Annotated[list[str] | None, Form(alias="saved")] = None
               ) -> Response:
        extensions = json.dumps([{"name": "saved-extension", "id": s}
                                 for s in saved_ids or []])
        results = []
        for up in uploads:
            name = up.filename or f"upload-{uuid.uuid4().hex[:8]}"
            try:
                out = uploader.upload(acct, up, None, [], CONSOLE_FIELDS, webhookUrl or None,
                                      extensions, {
                    "fileName": name, "useUniqueFileName": True, "folder": folder or "/",
                    "isPrivateFile": False, "isPublished": True, "overwriteFile": True,
                    "overwriteAITags": True, "overwriteTags": True,
                    "overwriteCustomMetadata": True, "tags": tags or None,
                    "customCoordinates": None, "description": None, "customMetadata": None})
                results.append({"fileId": out["fileId"], "name": out["name"],
                                "extensionStatus": out.get("extensionStatus", {})})
            except (ApiError, PermanentError) as e:
                results.append({"fileId": None, "name": name,
                                "error": getattr(e, "message", str(e))})
        if request.headers.get("x-console-upload") == "1":  # the page's script, per file
            return JSONResponse(results)
        return page(request, "upload.html", acct, saved=saved.list(acct), results=results)

    # --- saved extensions -----------------------------------------------------------------

    def saved_page(request: Request, acct: str, editing: dict[str, Any] | None = None,
                   form: dict[str, str] | None = None, error: str | None = None,
                   status_code: int = 200) -> HTMLResponse:
        form = form or ({"name": editing["name"], "description": editing["description"],
                         "config": json.dumps(editing["config"], indent=2)} if editing
                        else {"name": "", "description": "", "config": ""})
        return page(request, "saved.html", acct, status=status_code, saved=saved.list(acct),
                    editing=editing, form=form, form_error=error)

    @r.get("/saved")
    def saved_list(request: Request, acct: Account) -> HTMLResponse:
        return saved_page(request, acct)

    def _config(text: str) -> Any:
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise PermanentError(f"config: not JSON ({e.msg}, line {e.lineno})") from None

    @r.post("/saved")
    def saved_create(request: Request, acct: Account, name: Annotated[str, Form()],
                     config: Annotated[str, Form()],
                     description: Annotated[str, Form()] = "") -> Response:
        form = {"name": name, "description": description, "config": config}
        try:
            saved.create(acct, name, description, _config(config))
        except PermanentError as e:
            return saved_page(request, acct, form=form, error=str(e), status_code=400)
        return back(request, "/saved", f"Saved {name}.")

    @r.get("/saved/{ext_id}")
    def saved_edit(request: Request, acct: Account, ext_id: str) -> HTMLResponse:
        item = saved.get(acct, ext_id)
        if item is None:
            raise ApiError(404, f"saved extension not found: {ext_id}")
        return saved_page(request, acct, editing=item)

    @r.post("/saved/{ext_id}")
    def saved_update(request: Request, acct: Account, ext_id: str,
                     name: Annotated[str, Form()], config: Annotated[str, Form()],
                     description: Annotated[str, Form()] = "") -> Response:
        item = saved.get(acct, ext_id)
        if item is None:
            raise ApiError(404, f"saved extension not found: {ext_id}")
        try:
            saved.update(acct, ext_id, name=name, description=description,
                         config=_config(config))
        except PermanentError as e:
            return saved_page(request, acct, editing=item, error=str(e), status_code=400,
                              form={"name": name, "description": description,
                                    "config": config})
        return back(request, "/saved", f"Saved {name}.")

    @r.post("/saved/{ext_id}/delete")
    def saved_delete(request: Request, acct: Account, ext_id: str) -> Response:
        if not saved.delete(acct, ext_id):
            raise ApiError(404, f"saved extension not found: {ext_id}")
        return back(request, "/saved", "Deleted.")

    # --- jobs -------------------------------------------------------------------------------

    @r.get("/jobs")
    def jobs_page(request: Request, acct: Account, state: str = "", extension: str = "",
                  hours: int | None = None) -> HTMLResponse:
        page_no = max(1, int(request.query_params.get("page") or 1))
        since = (datetime.now(UTC).timestamp() - hours * 3600) if hours else None
        shown, offset, wanted = [], 0, page_no * PAGE + 1
        while len(shown) < wanted and offset < SCAN_LIMIT * page_no:
            batch = api.pipeline.jobs(acct, offset=offset, count=200)
            if not batch:
                break
            offset += 200
            for j in batch:
                if since is not None and datetime.fromisoformat(
                        j.createdAt.replace("Z", "+00:00")).timestamp() < since:
                    offset = SCAN_LIMIT * page_no  # newest first: nothing older is wanted
                    break
                if extension and not any(extension in n for n in j.extensions):
                    continue
                if state and not any(sl.status == state for sl in j.extensions.values()):
                    continue
                shown.append(j)
        params = {"state": state, "extension": extension, "hours": hours or ""}
        return page(request, "jobs.html", acct, jobs=shown[(page_no - 1) * PAGE:page_no * PAGE],
                    state=state, extension=extension, hours=hours, page=page_no,
                    more=len(shown) > page_no * PAGE,
                    prev=base_of(request) + "/jobs?" + urlencode({**params, "page": page_no - 1}),
                    next=base_of(request) + "/jobs?" + urlencode({**params, "page": page_no + 1}))

    def my_job(acct: str, job_id: str) -> Any:
        job = api.pipeline.get_job(job_id)
        if job is None or job.accountId != acct:
            raise ApiError(404, f"no job {job_id}")
        return job

    @r.get("/jobs/{job_id}")
    def job_page(request: Request, acct: Account, job_id: str) -> HTMLResponse:
        job = my_job(acct, job_id)
        started = datetime.fromisoformat(job.createdAt.replace("Z", "+00:00"))
        seconds = {n: round((datetime.fromisoformat(sl.finishedAt.replace("Z", "+00:00"))
                             - started).total_seconds(), 2)
                   for n, sl in job.extensions.items() if sl.finishedAt}
        return page(request, "job.html", acct, job=job, seconds=seconds,
                    document=json.dumps(job.to_json(), indent=2, default=str))

    @r.post("/jobs/{job_id}/retry/{slot}")
    def retry(request: Request, acct: Account, job_id: str, slot: str) -> Response:
        job = my_job(acct, job_id)
        sl = job.extensions.get(slot)
        if sl is None or sl.status != "failed" or not job.fileId:
            raise ApiError(400, f"{slot}: only a failed extension of a file can be retried")
        ext = ({"name": "saved-extension", "id": sl.saved["id"]} if sl.saved
               else {"name": sl.extension, **(sl.config or {})})
        again = {"jobId": new_job_id(), "accountId": acct, "fileId": job.fileId,
                 "origin": "update", "extensions": [ext]}
        if job.webhookUrl:
            again["webhookUrl"] = job.webhookUrl
        doc = api.run_job(again)
        return back(request, f"/jobs/{doc.jobId}", f"Retrying {slot} as a new job.")

    # --- webhooks ---------------------------------------------------------------------------

    def mine(acct: str, status: str | None = None) -> list[dict[str, Any]]:
        out = []
        for d in webhooks.store.list(status=status, limit=500):
            if d.get("accountId") != acct:
                continue
            if d.get("status") == "pending" and d.get("nextAt"):
                d["next"] = datetime.fromtimestamp(d["nextAt"] / 1000, UTC).isoformat(
                    timespec="seconds")
            out.append(d)
        return out

    @r.get("/webhooks")
    def webhooks_page(request: Request, acct: Account) -> HTMLResponse:
        return page(request, "webhooks.html", acct, deliveries=mine(acct)[:200],
                    secret=webhooks.secrets.current(acct))

    @r.post("/webhooks/{delivery_id}/redeliver")
    def redeliver(request: Request, acct: Account, delivery_id: str) -> Response:
        doc = webhooks.store.get(delivery_id)
        if doc is None or doc.get("accountId") != acct:
            raise ApiError(404, f"no delivery {delivery_id}")
        webhooks.redeliver(delivery_id)
        return back(request, "/webhooks", f"Redelivering {delivery_id}.")

    @r.post("/webhooks/redeliver-exhausted")
    def redeliver_exhausted(request: Request, acct: Account) -> Response:
        done = 0
        for d in mine(acct, "exhausted"):
            webhooks.redeliver(d["id"])
            done += 1
        return back(request, "/webhooks", f"Redelivering {done} exhausted deliveries.")

    @r.post("/webhooks/rotate")
    def rotate(request: Request, acct: Account) -> Response:
        webhooks.secrets.rotate(acct)
        return back(request, "/webhooks", "Rotated: the previous secret stays valid for the "
                    "grace period.")

    # --- usage ------------------------------------------------------------------------------

    @r.get("/usage")
    def usage(request: Request, acct: Account) -> HTMLResponse:
        month = request.query_params.get("month")
        if month is not None and not re.match(r"^\d{4}-(0[1-9]|1[0-2])$", month):
            month = None
        used = api.pipeline.usage(acct, month)
        per = sorted((used.get("extensions") or {}).items(), key=lambda kv: -kv[1])
        year, mon = (int(x) for x in used["month"].split("-"))
        last = (datetime(year + mon // 12, mon % 12 + 1, 1) - datetime(year, mon, 1)).days
        by_day = used.get("days") or {}
        days = [{"day": f"{d:02d}", "total": sum(by_day.get(f"{d:02d}", {}).values()),
                 "extensions": sorted(by_day.get(f"{d:02d}", {}).items())}
                for d in range(1, last + 1)]
        return page(request, "usage.html", acct, month=used.get("month", month or ""),
                    days=days, day_top=max([d["total"] for d in days] or [1]) or 1,
                    usage=used, per_extension=per, top=max([v for _, v in per] or [1]),
                    quota=api.settings.quota_for(acct))

    return r
