"""Upload (``/console/upload``): files from the picker, a folder, tags and saved
extensions, through the same upload service as the API."""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations.

import json
import uuid
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, Response

from worker.api.console.common import Account, ConsoleDep
from worker.core.errors import ExtworkerError
from worker.services.uploads import CONSOLE_FIELDS

router = APIRouter()


@router.get("/upload")
def upload_form(request: Request, acct: Account, console: ConsoleDep) -> HTMLResponse:
    return console.page(request, "upload.html", acct,
                        saved=console.runtime.saved.list(acct), results=None)


@router.post("/upload")
def upload(request: Request, acct: Account, console: ConsoleDep,
           uploads: Annotated[list[UploadFile], File(alias="files")],
           folder: Annotated[str, Form()] = "/", tags: Annotated[str, Form()] = "",
           webhookUrl: Annotated[str, Form()] = "",  # noqa: N803
           saved_ids: Annotated[list[str] | None, Form(alias="saved")] = None
           ) -> Response:
    extensions = json.dumps([{"name": "saved-extension", "id": s}
                             for s in saved_ids or []])
    results = []
    names = console.extension_names(acct)  # a saved extension by its name
    for up in uploads:
        name = up.filename or f"upload-{uuid.uuid4().hex[:8]}"
        try:
            out = console.services.uploads.upload(
                acct, up.file, None, [], CONSOLE_FIELDS, webhookUrl or None, extensions, {
                "fileName": name, "useUniqueFileName": True, "folder": folder or "/",
                "isPrivateFile": False, "isPublished": True, "overwriteFile": True,
                "overwriteAITags": True, "overwriteTags": True,
                "overwriteCustomMetadata": True, "tags": tags or None,
                "customCoordinates": None, "description": None, "customMetadata": None})
            results.append({"fileId": out["fileId"], "name": out["name"],
                            "extensionStatus": {names.get(n, n): st for n, st in
                                                out.get("extensionStatus", {}).items()}})
        except ExtworkerError as e:
            results.append({"fileId": None, "name": name,
                            "error": str(e)})
    if request.headers.get("x-console-upload") == "1":  # the page's script, per file
        return JSONResponse(results)
    return console.page(request, "upload.html", acct,
                        saved=console.runtime.saved.list(acct), results=results)
