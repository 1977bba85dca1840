"""Jobs as the API and the console make them: the extensions checked before anything is
stored, the job accepted through the pipeline (``Pipeline.accept``), and the hosted API's
synchronous attempt."""

from __future__ import annotations

import time
import uuid
from typing import Any

from worker.broker.client import report
from worker.core.errors import PermanentError, error_class
from worker.core.jobs import FINAL, JobDoc, wait_for
from worker.runtime import Runtime


def new_job_id() -> str:
    return f"api-{uuid.uuid4().hex}"


class JobService:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.pipeline = runtime.pipeline

    def check_extensions(self, wanted: list[Any]) -> None:
        """An unknown or malformed extension is the caller's 400, naming it
        (``extensions[0].name: unknown extension 'x'``), before anything is stored — as the
        hosted API refuses it, rather than a `200` with a failed status."""
        contract = self.runtime.registry.contract
        for i, raw in enumerate(wanted):
            try:
                contract.parse_extension(raw, f"extensions[{i}]")
            except ValueError as e:
                raise PermanentError(str(e)) from None

    def run(self, job: dict[str, Any]) -> JobDoc:
        """Accept a job as a published one would be; its refusal as the error of its code
        (``file_not_found``: a 404), naming the field. A job naming no ``webhookUrl`` gets
        the account's default endpoint, when it has one."""
        if not job.get("webhookUrl") and isinstance(job.get("accountId"), str):
            default = self.runtime.account_settings.webhook_url(job["accountId"])
            if default:
                job["webhookUrl"] = default
        doc = self.pipeline.accept(job)
        if doc is None:
            stored = self.pipeline.get_job(job["jobId"])
            raise PermanentError(stored.error.message if stored and stored.error
                                 else "invalid request")
        if doc.state == "rejected":
            reason = doc.error.message if doc.error else "rejected"
            raise error_class(doc.error.code if doc.error else None)(
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
        doc = self.run(job)
        if not any(s.sync for s in doc.extensions.values()):
            return doc, {n: "pending" for n in doc.extensions}
        doc = wait_for(lambda: self.pipeline.get_job(doc.jobId),
                       lambda d: all(s.status in FINAL for s in d.extensions.values()
                                     if s.sync),
                       started + wait, margin_s=0.05) or doc
        doc = self.pipeline.get_job(doc.jobId) or doc
        assert self.runtime.redis is not None  # claims live in Redis
        told = report(self.runtime.redis, self.settings, self.runtime.kv, job, doc,
                      list(doc.extensions), claim=True)
        return doc, told["extensionStatus"]
