"""The dispatch step: a message becomes a job document with one slot per extension.

``Dispatcher.accept`` validates a job, records it, marks every requested extension
``pending`` (or ``failed`` with a message naming the field) and hands each runnable
extension to ``enqueue``. An ``upload`` is read and stored first, and one transaction
writes the file (new, or a new version at the same path), the job document and the
pending statuses — or a ``rejected`` job document and nothing else. A duplicate publish
(the same ``jobId``) is a no-op.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from extensions.registry import Registry
from worker.core.contract import (
    JobEnvelope,
    SavedExtensionRef,
    extension_label,
    format_validation_error,
)
from worker.core.egress import EgressPolicy
from worker.core.errors import (
    ErrorCode,
    FileNotFound,
    NotAvailable,
    PermanentError,
    RetryableError,
    SavedExtensionNotFound,
)
from worker.core.fetch import fetch
from worker.core.jobs import JobDoc, Slot, job_member
from worker.core.records import ErrorInfo, RecordPatch, now_iso
from worker.core.settings import Settings
from worker.store.blobs import BlobStore
from worker.store.files import PATH_ATTEMPTS, FileStore, PathTaken, Prepared, owned
from worker.store.kv import KV, Txn
from worker.store.saved import SavedStore
from worker.store.uploads import read_source

log = logging.getLogger(__name__)
Enqueue = Callable[[str, str, str], None]  # (queue, jobId, slot)
HandOff = Callable[[JobDoc, str], None]  # a final slot of a job: hand it on (webhooks)


def queue_name(settings: Settings, resource_class: str) -> str:
    """The queue of an extension's resource class (``extensions``, ``default``, or its own)."""
    return {"extensions": settings.queue_extensions,
            "default": settings.queue_default}.get(resource_class, resource_class)


class Dispatcher:
    def __init__(self, settings: Settings, kv: KV, blobs: BlobStore, registry: Registry,
                 files: FileStore, saved: SavedStore, egress: EgressPolicy,
                 enqueue: Enqueue | None, hand_off: HandOff) -> None:
        """``enqueue`` sends a pending slot to its queue (``None``: nothing is sent);
        ``hand_off`` passes on each slot that failed at dispatch."""
        self.settings = settings
        self.kv = kv
        self.blobs = blobs
        self.registry = registry
        self.files = files
        self.saved = saved
        self.egress = egress
        self.enqueue = enqueue
        self.hand_off = hand_off

    def _plan(self, job: JobEnvelope) -> dict[str, Slot]:
        """Validate each extension on its own: a slot per extension, pending or failed.

        A ``saved-extension`` is resolved here, for the job's account; its slot is
        named ``saved-extension:<id>`` and keeps the resolved config, so later edits
        of the saved extension never change this job.
        """
        slots: dict[str, Slot] = {}
        contract = self.registry.contract
        known = contract.names | frozenset(self.registry.handlers)
        for i, raw in enumerate(job.extensions):
            label = extension_label(raw, i, known)
            if label == "saved-extension" and isinstance(raw, dict) and isinstance(
                    raw.get("id"), str):
                label = f"saved-extension:{raw['id'][:128]}"
            if label in slots:
                log.warning("job %s: duplicate extension %s ignored", job.jobId, label)
                continue
            extension, config, queue = label, None, None
            saved_ref: dict[str, Any] | None = None
            error: ErrorInfo | None = None
            try:
                params = contract.parse_extension(raw, f"extensions[{i}]")
                if isinstance(params, SavedExtensionRef):
                    saved = self.saved.get(job.accountId, params.id)
                    if saved is None:
                        raise SavedExtensionNotFound(f"saved extension not found: {params.id}")
                    params = contract.parse_extension(saved["config"],
                                                      f"extensions[{i}] ({params.id})")
                    saved_ref = {"id": saved["id"], "updatedAt": saved["updatedAt"]}
                name = params.name  # type: ignore[attr-defined]
                handler = self.registry.get(name)
                if handler is None:
                    raise NotAvailable(f"extension {name!r} is not available in this deployment")
                extension, queue = name, queue_name(self.settings, handler.queue)
                config = params.model_dump(mode="json", by_alias=True)
            except (SavedExtensionNotFound, NotAvailable) as e:
                error = ErrorInfo(message=str(e), code=e.code)
            except ValueError as e:  # the contract's refusal of the parameters
                error = ErrorInfo(message=str(e), code=ErrorCode.INVALID_PARAMS)
            slot = Slot(name=label, extension=extension, status="pending", config=config,
                        queue=queue, error=None, units=0, output=None,
                        **({"saved": saved_ref} if saved_ref else {}))
            if job.syncUntil is not None:
                slot.sync = job.syncExtensions is None or extension in job.syncExtensions
            if error is not None:
                if isinstance(raw, dict):
                    slot.requested = raw
                slot.finish("failed", error=error)
            slots[label] = slot
        return slots

    def accept(self, raw: Any) -> JobDoc | None:
        """The dispatch step. Returns the job document (``None`` for an unusable message)."""
        try:
            job = JobEnvelope.model_validate(raw)
        except ValidationError as e:
            message = "invalid job: " + format_validation_error(e)
            log.error("%s", message)
            job_id = raw.get("jobId") if isinstance(raw, dict) else None
            if isinstance(job_id, str) and re.fullmatch(r"[A-Za-z0-9._:\-]{1,128}", job_id):
                jk = self.settings.keys.job(job_id)
                doc = JobDoc.rejected(job_id, message).to_json()
                self.kv.transact([jk], lambda cur: Txn(
                    writes={} if cur[jk] else {jk: doc}, ttl={jk: self.settings.job_ttl_s}))
            return None

        jk = self.settings.keys.job(job.jobId)
        planned = self._plan(job)
        prepared: Prepared | None = None
        update: RecordPatch | None = None
        if self.kv.get(jk) is None:  # (a duplicate neither fetches nor checks again)
            try:
                if job.upload is not None:
                    prepared = self._prepare_upload(job)
                elif job.update is not None:
                    update = self._prepare_update(job)
            except PermanentError as e:
                rejected = self._job_doc(job, planned, error=e)
                stored = self.kv.transact([jk], lambda cur: Txn(
                    writes={} if cur[jk] else {jk: rejected.to_json()},
                    result=cur[jk], ttl={jk: self.settings.job_ttl_s}))
                if stored is None:
                    return self._dispatched(job, "rejected", rejected)
                return self._dispatched(job, "duplicate", JobDoc.model_validate(stored))
        for _ in range(PATH_ATTEMPTS):
            try:
                outcome, doc = self._accept_txn(job, planned, prepared, update)
                break
            except PathTaken:
                continue
        else:
            if prepared is not None:  # nothing committed: the retry prepares its own
                self.blobs.delete(prepared.blob_key)
            raise RetryableError(f"job {job.jobId}: no free path for the upload")
        if outcome != "new" and prepared is not None:
            # Rejected, or another delivery of this job committed first (duplicate, resume):
            # nothing references this attempt's bytes. (After an error of unknown outcome —
            # Redis gone mid-commit — they stay: `extworker doctor` finds them if orphaned.)
            self.blobs.delete(prepared.blob_key)
        return self._dispatched(job, outcome, doc)

    def _prepare_upload(self, job: JobEnvelope) -> Prepared:
        s, upload = self.settings, job.upload
        assert upload is not None
        data = read_source(
            # The larger limit here; the file store applies each kind's own once it knows
            # whether the bytes are a video.
            upload, blobs=self.blobs, max_bytes=max(s.upload_max_bytes, s.video_max_bytes),
            base64_max_bytes=s.upload_base64_max_bytes,
            fetch=lambda url, cap: fetch(url, self.egress, s.fetch_timeout_s, cap,
                                         s.fetch_deadline_s))
        return self.files.prepare(upload, data, job.accountId, job.jobId)

    def _prepare_update(self, job: JobEnvelope) -> RecordPatch:
        assert job.update is not None and job.fileId is not None
        record = self.files.get(job.fileId, job.accountId)
        if record is None:
            raise FileNotFound(f"file not found: {job.fileId}")
        return self.files.update_patch(job.update, record, job.accountId)

    def _job_doc(self, job: JobEnvelope, planned: dict[str, Slot],
                 error: PermanentError | None = None) -> JobDoc:
        """A new job document; ``rejected`` with ``error`` (every extension failed with it)."""
        doc = JobDoc(
            jobId=job.jobId, accountId=job.accountId, fileId=job.fileId,
            webhookUrl=str(job.webhookUrl) if job.webhookUrl else None,
            dryRun=job.dryRun, origin=job.origin, removeAITags=job.removeAITags,
            syncUntil=job.syncUntil, state="accepted", createdAt=now_iso(),
            extensions={n: s.model_copy(deep=True) for n, s in planned.items()},
        )
        if error is not None:
            reason = ErrorInfo(message=str(error), code=error.code)
            doc.state, doc.error = "rejected", reason
            for slot in doc.extensions.values():
                if slot.status == "pending":
                    slot.finish("failed", error=reason)
        return doc

    def _accept_txn(self, job: JobEnvelope, planned: dict[str, Slot],
                    prepared: Prepared | None, update: RecordPatch | None,
                    ) -> tuple[str, JobDoc]:
        keys = self.settings.keys
        account, jk = job.accountId, keys.job(job.jobId)
        file_path, watched, file_id = None, [jk], job.fileId
        if prepared is not None:
            file_path, pk, file_id = self.files.choose_path(prepared, account)
            watched.append(pk)
        if file_id is not None:
            watched.append(keys.file(file_id))

        def txn(cur: dict[str, Any]) -> Txn[tuple[str, JobDoc]]:
            existing = cur[jk]
            if existing is not None:
                found = JobDoc.model_validate(existing)
                return Txn(result=("duplicate" if found.state != "accepted" else "resume",
                                   found))
            ttl = {jk: self.settings.job_ttl_s}
            doc = self._job_doc(job, planned)
            record = owned(cur[keys.file(file_id)], account) if file_id else None
            upload = Txn[None]()
            try:
                if prepared is not None:
                    assert file_path is not None
                    record, upload = self.files.in_txn(cur, prepared, account, file_path,
                                                       file_id)
                    doc.fileId = record.fileId
                elif record is None and job.update is not None:
                    raise FileNotFound(f"file not found: {job.fileId}")
                elif record is not None and update is not None:
                    record = update.apply(record, self.settings.max_versions)
            except PermanentError as e:
                rejected = self._job_doc(job, planned, error=e)
                return Txn(writes={jk: rejected.to_json()}, result=("rejected", rejected),
                           ttl=ttl)
            writes: dict[str, Any] = dict(upload.writes)
            if record is None:  # a job naming a file that is not there (or not its account's)
                missing = ErrorInfo(message=f"file not found: {job.fileId}",
                                    code=ErrorCode.FILE_NOT_FOUND)
                for slot in doc.extensions.values():
                    if slot.status == "pending":
                        slot.finish("failed", error=missing)
                doc.state = "dispatched"
            else:
                patch = RecordPatch(
                    status={n: s.status for n, s in doc.extensions.items()},
                    errors={n: s.error for n, s in doc.extensions.items()},
                    remove_ai_tags=job.removeAITags,
                )
                record = patch.apply(record, self.settings.max_versions)
                writes[keys.file(record.fileId)] = record.model_dump(mode="json")
            writes[jk] = doc.to_json()
            # The account's and the file's job history (console, `jobs`): newest first.
            member = job_member(doc)
            index_add = {**upload.index_add, keys.job_index(account): [member]}
            if doc.fileId:
                index_add[keys.file_jobs(doc.fileId)] = [member]
            return Txn(writes=writes, result=("new", doc), ttl=ttl, index_add=index_add)

        return self.kv.transact(watched, txn)  # type: ignore[return-value]

    def _dispatched(self, job: JobEnvelope, outcome: str, doc: JobDoc) -> JobDoc:
        """After the accept transaction: queue the pending extensions, mark the job
        dispatched, and hand every failed extension on (webhooks)."""
        jk = self.settings.keys.job(job.jobId)
        if outcome == "duplicate":
            log.info("job %s already dispatched; duplicate ignored", job.jobId)
        elif self.enqueue is not None:
            for slot_name, slot in doc.extensions.items():
                if slot.status == "pending":
                    assert slot.queue is not None
                    self.enqueue(slot.queue, job.jobId, slot_name)
        if doc.state == "accepted":  # (never for a duplicate)
            def done(cur: dict[str, Any]) -> Txn[JobDoc]:
                d = JobDoc.model_validate(cur[jk])
                d.state = "dispatched"
                return Txn(writes={jk: d.to_json()}, result=d,
                           ttl={jk: self.settings.job_ttl_s})
            doc = self.kv.transact([jk], done) or doc
        # Every time (not only the first): the hand-off is idempotent, and this is how a
        # hand-off that failed before a redelivery still happens.
        for slot_name, slot in doc.extensions.items():
            if slot.status == "failed":
                self.hand_off(doc, slot_name)
        return doc
