"""Folder copy, move and rename as jobs on the broker (the bulk jobs API).

``submit`` writes a job document (``origin: bulk``, one slot named by its type:
``COPY_FOLDER``, ``MOVE_FOLDER``, ``RENAME_FOLDER``) into the account's job history — so the
CLI's ``jobs`` and the console list it like every other job — and sends its message
(``Outbox.bulk``): a worker on the ``default`` queue runs it. The message is dramatiq's, so
it is durable and retried; a worker killed mid-move leaves it unacknowledged, the recovery
sweep puts it back, and ``run`` goes on where the dead one stopped: each file is one step,
and a file already at its destination is left as it is (``Library.folder_move``).

``status`` answers ``GET /v1/bulkJobs/{jobId}`` in the hosted shape: ``Pending`` until the
slot is final, then ``Completed`` (with ``error`` when it failed).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from worker.core.errors import ErrorCode, PermanentError
from worker.core.jobs import JobDoc, Slot, job_member
from worker.core.records import ErrorInfo, now_iso
from worker.core.settings import Settings
from worker.store.kv import KV, Txn
from worker.store.library import Library, NotOwned

log = logging.getLogger(__name__)
KINDS = ("COPY_FOLDER", "MOVE_FOLDER", "RENAME_FOLDER")
EXTENSION = "bulk-folder"  # the slot's `extension`: no handler, no queue of the registry's


class BulkJobs:
    def __init__(self, kv: KV, settings: Settings, library: Library,
                 send: Callable[[str], None] | None) -> None:
        """``send(jobId)`` queues a submitted job's message; ``None`` (no broker: tests, the
        embedded mode) runs it at once, in the caller."""
        self.kv = kv
        self.settings = settings
        self.library = library
        self.send = send

    def submit(self, account: str, kind: str, params: dict[str, Any]) -> str:
        """Record a bulk job of ``kind`` with ``params`` (``Library.folder_move``'s keywords)
        and queue it; its id."""
        if kind not in KINDS:
            raise ValueError(f"unknown bulk job type {kind}")
        keys = self.settings.keys
        doc = JobDoc(jobId=uuid.uuid4().hex[:24], accountId=account, origin="bulk",
                     state="dispatched",
                     extensions={kind: Slot(name=kind, extension=EXTENSION, config=params)})
        member = job_member(doc)
        jk = keys.job(doc.jobId)
        self.kv.transact([], lambda _c: Txn(
            writes={jk: doc.to_json()}, ttl={jk: self.settings.job_ttl_s},
            index_add={keys.job_index(account): [member]}))
        if self.send is None:
            self.run(doc.jobId)
        else:
            try:
                self.send(doc.jobId)
            except Exception as e:
                self.fail(doc.jobId, f"could not be queued: {type(e).__name__}: {e}")
                raise
        return doc.jobId

    def get(self, job_id: str) -> JobDoc | None:
        raw = self.kv.get(self.settings.keys.job(job_id))
        doc = None if raw is None else JobDoc.model_validate(raw)
        return doc if doc is not None and doc.origin == "bulk" else None

    def run(self, job_id: str) -> None:
        """Do the job's work (again, after a crash: each step is safe to repeat) and record
        the outcome; a slot already final is left as it is. Errors other than bad input
        propagate, so the broker retries."""
        doc = self.get(job_id)
        if doc is None:
            log.warning("bulk job %s has no document; nothing to do", job_id)
            return
        (kind, slot), = doc.extensions.items()
        if slot.status != "pending":
            return
        params = dict(slot.config or {})
        resumed = slot.output is not None  # an earlier run started it
        if not resumed:
            self._put(job_id, lambda s: setattr(s, "output", {"startedAt": now_iso()}))
        try:
            moved = self.library.folder_move(doc.accountId, **params)
        except NotOwned as e:
            if resumed and not params.get("copy"):  # the dead run moved it all, then died
                moved = 0
            else:
                self.fail(job_id, str(e), e.code)
                return
        except PermanentError as e:
            self.fail(job_id, str(e), e.code)
            return

        def done(s: Slot) -> None:
            s.output = {**(s.output or {}), "files": (s.output or {}).get("files", 0) + moved}
            s.finish("success")

        self._put(job_id, done)
        log.info("bulk job %s (%s): %d file(s)", job_id, kind, moved)

    def fail(self, job_id: str, message: str, code: str = ErrorCode.INTERNAL_ERROR) -> None:
        self._put(job_id, lambda s: s.finish("failed", error=ErrorInfo(message=message,
                                                                        code=code)))

    def status(self, account: str, job_id: str) -> dict[str, Any] | None:
        """The hosted API's bulk job status, or ``None`` (no such job of ``account``)."""
        doc = self.get(job_id)
        if doc is None or doc.accountId != account:
            return None
        (kind, slot), = doc.extensions.items()
        out: dict[str, Any] = {"jobId": job_id, "type": kind,
                               "status": "Pending" if slot.status == "pending" else "Completed"}
        if slot.output and "files" in slot.output:
            out["files"] = slot.output["files"]
        if slot.error is not None:
            out["error"] = slot.error.message
        return out

    def _put(self, job_id: str, change: Callable[[Slot], None]) -> None:
        jk = self.settings.keys.job(job_id)

        def txn(cur: dict[str, Any]) -> Txn[None]:
            raw = cur.get(jk)
            if raw is None:
                return Txn()
            doc = JobDoc.model_validate(raw)
            (slot,) = doc.extensions.values()
            if slot.status == "pending":
                change(slot)
            return Txn(writes={jk: doc.to_json()}, ttl={jk: self.settings.job_ttl_s})

        self.kv.transact([jk], txn)
