"""Jobs (``/console/jobs``): the account's jobs with filters, one job's document and
timings, and retrying a failed extension."""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations.

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from worker.api.console.common import PAGE, SCAN_LIMIT, Account, Console, ConsoleDep, base_of
from worker.core.errors import NotFound, PermanentError
from worker.services.jobs import new_job_id

router = APIRouter()


@router.get("/jobs")
def jobs_page(request: Request, acct: Account, console: ConsoleDep, state: str = "",
              extension: str = "", hours: int | None = None) -> HTMLResponse:
    page_no = max(1, int(request.query_params.get("page") or 1))
    since = (datetime.now(UTC).timestamp() - hours * 3600) if hours else None
    shown, offset, wanted = [], 0, page_no * PAGE + 1
    while len(shown) < wanted and offset < SCAN_LIMIT * page_no:
        batch = console.runtime.pipeline.jobs(acct, offset=offset, count=200)
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
    return console.page(request, "jobs.html", acct, jobs=shown[(page_no - 1) * PAGE:page_no * PAGE],
                state=state, extension=extension, hours=hours, page=page_no,
                more=len(shown) > page_no * PAGE,
                prev=base_of(request) + "/jobs?" + urlencode({**params, "page": page_no - 1}),
                next=base_of(request) + "/jobs?" + urlencode({**params, "page": page_no + 1}))


def my_job(console: Console, acct: str, job_id: str) -> Any:
    job = console.runtime.pipeline.get_job(job_id)
    if job is None or job.accountId != acct:
        raise NotFound(f"no job {job_id}")
    return job


@router.get("/jobs/{job_id}")
def job_page(request: Request, acct: Account, console: ConsoleDep, job_id: str) -> HTMLResponse:
    job = my_job(console, acct, job_id)
    started = datetime.fromisoformat(job.createdAt.replace("Z", "+00:00"))
    # Seconds from the job's creation to each slot's end; never below 0 (a slot refused at
    # dispatch is stamped before the document that holds it).
    seconds = {n: max(0.0, round((datetime.fromisoformat(sl.finishedAt.replace("Z", "+00:00"))
                                  - started).total_seconds(), 2))
               for n, sl in job.extensions.items() if sl.finishedAt}
    return console.page(request, "job.html", acct, job=job, seconds=seconds,
                document=json.dumps(job.to_json(), indent=2, default=str))


@router.post("/jobs/{job_id}/retry/{slot}")
def retry(request: Request, acct: Account, console: ConsoleDep, job_id: str, slot: str) -> Response:
    job = my_job(console, acct, job_id)
    sl = job.extensions.get(slot)
    if sl is None or sl.status != "failed" or not job.fileId:
        raise PermanentError(f"{slot}: only a failed extension of a file can be retried")
    # The job's own configuration: the extension as it was asked for when it could not be
    # resolved (it then fails again, visibly), else the saved extension or the resolved one.
    if sl.requested is not None:
        ext = sl.requested
    elif sl.saved:
        ext = {"name": "saved-extension", "id": sl.saved["id"]}
    else:
        ext = {"name": sl.extension, **(sl.config or {})}
    again = {"jobId": new_job_id(), "accountId": acct, "fileId": job.fileId,
             "origin": "update", "extensions": [ext]}
    if job.webhookUrl:
        again["webhookUrl"] = job.webhookUrl
    doc = console.services.jobs.run(again)
    return console.back(request, f"/jobs/{doc.jobId}", f"Retrying {slot} as a new job.")
