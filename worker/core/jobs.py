"""The job document: what a job is while it runs, as stored under ``keys.job(jobId)``.

Publishers read it back (``GET extworker:job:<jobId>``), so its JSON is part of the
contract: ``to_json`` writes exactly the fields that were set (a rejected intake entry
has no ``accountId``; a slot gets ``model`` and ``device`` only once it succeeds).
Unknown fields are kept, so documents written by other versions survive a round trip.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from worker.core.errors import ErrorCode
from worker.core.records import ErrorInfo, now_iso
from worker.core.urls import epoch_ms

SlotStatus = Literal["pending", "success", "failed"]
JobState = Literal["accepted", "dispatched", "rejected"]
FINAL: frozenset[str] = frozenset({"success", "failed"})


class Slot(BaseModel):
    """One requested extension of a job: its resolved config, its queue, its outcome."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    name: str
    extension: str  # the handler's name (a saved extension's slot names its base here)
    status: SlotStatus = "pending"
    config: dict[str, Any] | None = None
    queue: str | None = None
    error: ErrorInfo | None = None
    units: int = 0
    output: dict[str, Any] | None = None
    model: str | None = None
    device: str | None = None
    finishedAt: str | None = None
    saved: dict[str, Any] | None = None  # {"id", "updatedAt"} of a saved extension
    # The extension as the job asked for it, kept when it could not be resolved (invalid
    # parameters, a saved extension gone): a retry replays exactly this.
    requested: dict[str, Any] | None = None
    # A caller waits (the job's syncUntil) and may be answered for this one: else its
    # webhook is always sent, whenever it ends.
    sync: bool = False

    def to_json(self) -> dict[str, Any]:
        """The stored form: the fields that were set, as plain values."""
        return self.model_dump(exclude_unset=True)

    def finish(self, status: SlotStatus, *, error: ErrorInfo | None = None) -> None:
        """Final: ``success`` or ``failed`` (with ``error``), stamped now."""
        self.status = status
        if error is not None:
            self.error = error
            self.units = 0
        self.finishedAt = now_iso()


class JobDoc(BaseModel):
    model_config = ConfigDict(extra="allow", validate_assignment=True)

    jobId: str
    accountId: str = "default"
    fileId: str | None = None
    webhookUrl: str | None = None
    dryRun: bool = False
    origin: str = "upload"
    removeAITags: list[str] | str | None = None
    syncUntil: float | None = None
    state: JobState
    createdAt: str = Field(default_factory=now_iso)
    error: ErrorInfo | None = None
    extensions: dict[str, Slot] = Field(default_factory=dict)

    @property
    def finished(self) -> bool:
        """Dispatched (or rejected) and every extension final."""
        return self.state in ("dispatched", "rejected") and all(
            s.status in FINAL for s in self.extensions.values())

    def to_json(self) -> dict[str, Any]:
        """The stored form: the fields that were set, as plain values."""
        return self.model_dump(exclude_unset=True)

    @classmethod
    def rejected(cls, job_id: str, message: str, code: str = ErrorCode.INVALID_JOB) -> JobDoc:
        """The document of a message that never became a job (the publisher sees why)."""
        return cls(jobId=job_id, state="rejected", error=ErrorInfo(message=message, code=code),
                   extensions={}, createdAt=now_iso())


def job_member(doc: JobDoc) -> str:
    """A job's member in the history indexes: byte order is newest first."""
    return f"{10 ** 13 - epoch_ms(doc.createdAt):013d}|{doc.jobId}"


def wait_for(read: Callable[[], JobDoc | None], done: Callable[[JobDoc], bool],
             deadline: float, poll_s: float = 0.02, margin_s: float = 0.0) -> JobDoc | None:
    """The one synchronous wait (the API's sync attempt, ``submit --wait``): read the job
    document every ``poll_s`` until ``done`` holds or ``deadline`` (``time.monotonic``)
    less ``margin_s`` — the time left for the claims and the record read — has passed.
    Returns the last document read."""
    while True:
        doc = read()
        if (doc is not None and done(doc)) or time.monotonic() >= deadline - margin_s:
            return doc
        time.sleep(poll_s)
