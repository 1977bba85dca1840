"""What every router of the API shares: the account a request authenticates as, the
account's files, and the job path (``Pipeline.accept``) that uploads and updates take.

Built once in ``create_app`` over the process's ``Runtime`` and passed to each router.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any

from fastapi import Depends
from fastapi.routing import APIRoute
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from worker.api.errors import ApiError
from worker.broker.client import report
from worker.core.jobs import FINAL, JobDoc
from worker.core.records import FileRecord
from worker.delivery.service import Delivery
from worker.runtime import Runtime

BASIC = HTTPBasic(auto_error=False)
Credentials = Annotated[HTTPBasicCredentials | None, Depends(BASIC)]


def new_job_id() -> str:
    return f"api-{uuid.uuid4().hex}"


class Api:
    def __init__(self, runtime: Runtime, delivery: Delivery,
                 route_type: type[APIRoute] = APIRoute) -> None:
        """``route_type``: what every router's routes are (the bounded JSON decoder)."""
        self.runtime = runtime
        self.route_type = route_type
        self.settings = runtime.settings
        self.pipeline = runtime.pipeline
        self.keys = runtime.apikeys
        self.urls = runtime.settings.urls
        self.delivery = delivery

    def account(self, creds: Credentials) -> str:
        """The account of the private key sent as HTTP Basic's user name (a dependency)."""
        if creds is None or not creds.username:
            raise ApiError(401, "Your request does not contain private API key.")
        found = self.keys.account_of(creds.username)
        if found is None:
            raise ApiError(401, "Your account cannot be authenticated.")
        return found

    def owned(self, file_id: str, acct: str) -> FileRecord:
        record = self.pipeline.get_file(file_id, acct)
        if record is None:
            raise ApiError(404, f"The requested file does not exist: {file_id}")
        return record

    def file_out(self, record: FileRecord) -> dict[str, Any]:
        """The file object as the API answers it: ``extensionStatus``/``extensionErrors``
        only once an extension was asked for (the upload document's rule)."""
        out = record.file_object(self.urls)
        for name in ("extensionStatus", "extensionErrors"):
            if not out.get(name):
                out.pop(name, None)
        return out

    def with_status(self, record: FileRecord, doc: JobDoc | None,
                    told: dict[str, str] | None = None) -> dict[str, Any]:
        """The file object answered for a job: ``told`` (``run_answered``'s) when given."""
        out = self.file_out(record)
        if doc is not None and doc.extensions:
            out["extensionStatus"] = told or {n: s.status for n, s in doc.extensions.items()}
        return out

    def check_extensions(self, wanted: list[Any]) -> None:
        """An unknown or malformed extension is the caller's 400, naming it
        (``extensions[0].name: unknown extension 'x'``), before anything is stored — as the
        hosted API refuses it, rather than a `200` with a failed status."""
        contract = self.runtime.registry.contract
        for i, raw in enumerate(wanted):
            try:
                contract.parse_extension(raw, f"extensions[{i}]")
            except ValueError as e:
                raise ApiError(400, str(e)) from None

    def run_job(self, job: dict[str, Any]) -> JobDoc:
        """Accept a job as a published one would be; its refusal as a 4xx naming the field."""
        doc = self.pipeline.accept(job)
        if doc is None:
            stored = self.pipeline.get_job(job["jobId"])
            raise ApiError(400, stored.error.message if stored and stored.error
                           else "invalid request")
        if doc.state == "rejected":
            reason = doc.error.message if doc.error else "rejected"
            raise ApiError(404 if doc.error and doc.error.code == "file_not_found" else 400,
                           reason.removeprefix("invalid job: "))
        return doc

    def run_answered(self, job: dict[str, Any]) -> tuple[JobDoc, dict[str, str]]:
        """Accept ``job`` and make the hosted API's synchronous attempt: returns the job
        document and the ``extensionStatus`` to answer.

        Only the extensions the hosted service "first tries synchronously" (auto-tagging:
        ``registry.synchronous``) are waited for, up to ``EXTWORKER_API_SYNC_WAIT_S``; one
        final in time is answered here (claimed, so it gets no webhook). Every other one —
        remove-bg, descriptions, ai-tasks, a saved extension of those, one still running at
        the deadline — is answered ``pending`` and reported by its webhook."""
        wait, started = self.settings.api_sync_wait_s, time.monotonic()
        if wait and job.get("extensions"):
            job["syncUntil"] = time.time() + wait
            job["syncExtensions"] = self.runtime.registry.synchronous
        doc = self.run_job(job)
        if not any(s.sync for s in doc.extensions.values()):
            return doc, {n: "pending" for n in doc.extensions}
        deadline = started + wait
        while time.monotonic() < deadline - 0.05:
            current = self.pipeline.get_job(doc.jobId) or doc
            if all(s.status in FINAL for s in current.extensions.values() if s.sync):
                break
            time.sleep(0.02)
        doc = self.pipeline.get_job(doc.jobId) or doc
        assert self.runtime.redis is not None  # claims live in Redis
        told = report(self.runtime.redis, self.settings, self.runtime.kv, job, doc,
                      list(doc.extensions), claim=True)
        return doc, told["extensionStatus"]
