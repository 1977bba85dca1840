"""The console (``/console``): the hosted dashboard's flows over the same services the API
routes call — the media library, upload with saved extensions, a file's versions and
details, saved extensions, webhooks, usage — server-rendered (Jinja2, autoescaped) with one
small script of our own; every asset ships in the package (works air-gapped).

One module per page; what they share is ``common`` (the ``Console`` built once per app, the
session's account as a dependency), the two form-edited collections go through ``crud``.

Safety: sign-in with an account's private key, then a session cookie (``session``); every
page and action scoped to that account (another account's file is a 404); unsafe methods
only from the console's own origin; answers carry a CSP that allows only the console's own
script and style, and images from the delivery origins.
"""

from __future__ import annotations

from fastapi import APIRouter

from worker.api.console import (
    fields,
    files,
    jobs,
    keys,
    library,
    saved,
    signin,
    upload,
    usage,
    webhooks,
)
from worker.api.console.common import Console

__all__ = ["Console", "router"]

router = APIRouter()
for page in (signin, library, files, fields, upload, saved, jobs, webhooks, usage, keys):
    router.include_router(page.router, prefix="/console", include_in_schema=False)
