"""The pipeline: job → validated extensions → results → record patch + units.

Data flows one way: ``accept`` (``dispatch.Dispatcher``) turns a message into a job
document with pending slots and hands them to ``enqueue``; ``execute``
(``execute.Executor``) runs one slot and commits its outcome. ``Pipeline`` is the face
the actors, the CLI and tests use: those two steps plus reading files, jobs and usage.

The same class serves the dramatiq actors (``RedisKV``) and the Redis-less
``extworker apply`` (``LocalKV`` and an in-process queue).
"""

from __future__ import annotations

import uuid
from typing import Any

from extensions.registry import Registry
from worker.core.contract import UploadFields
from worker.core.egress import EgressPolicy
from worker.core.jobs import JobDoc, Slot
from worker.core.records import FileRecord
from worker.core.settings import Settings
from worker.models.cache import ModelCache
from worker.pipeline.dispatch import Dispatcher, Enqueue, queue_name
from worker.pipeline.execute import Executor, Notify, Observe
from worker.store import metering
from worker.store.blobs import BlobStore
from worker.store.fields import FieldStore
from worker.store.files import FileStore
from worker.store.kv import KV, Txn
from worker.store.metadata import ExifTool
from worker.store.saved import SavedStore

__all__ = ["Enqueue", "Notify", "Observe", "Pipeline"]


class Pipeline:
    def __init__(self, settings: Settings, kv: KV, blobs: BlobStore, registry: Registry,
                 models: ModelCache, files: FileStore, fields: FieldStore, saved: SavedStore,
                 exiftool: ExifTool, egress: EgressPolicy, *, enqueue: Enqueue | None = None,
                 notify: Notify | None = None, observe: Observe | None = None) -> None:
        """``enqueue`` sends a pending extension to its queue (``None``: nothing is sent —
        the caller runs ``execute`` itself); ``notify`` hands a final extension on
        (webhooks); ``observe`` hears of every extension that reaches its final state."""
        self.settings = settings
        self.kv = kv
        self.registry = registry
        self.files = files
        self.fields = fields
        self.saved = saved
        self.executor = Executor(settings, kv, blobs, registry, models, files, fields,
                                 exiftool, egress, notify, observe)
        self.dispatcher = Dispatcher(settings, kv, blobs, registry, files, saved, egress,
                                     enqueue, self.executor.hand_off)

    def queue_name(self, resource_class: str) -> str:
        return queue_name(self.settings, resource_class)

    # --- the two steps ----------------------------------------------------------

    def accept(self, raw: Any) -> JobDoc | None:
        """The dispatch step (see ``worker.pipeline.dispatch``)."""
        return self.dispatcher.accept(raw)

    def execute(self, job_id: str, slot_name: str) -> Slot | None:
        """Run one extension and commit its outcome (see ``worker.pipeline.execute``)."""
        return self.executor.execute(job_id, slot_name)

    def fail(self, job_id: str, slot_name: str, message: str, code: str) -> Slot | None:
        """End a still-pending extension as ``failed``: a time limit, retries run out."""
        return self.executor.fail(job_id, slot_name, message, code)

    # --- reading ----------------------------------------------------------------

    def file_key(self, file_id: str) -> str:
        return self.settings.keys.file(file_id)

    def add_file(
        self, data: bytes, name: str, folder: str = "/", tags: list[str] | None = None,
        account: str = "default", **fields: Any,
    ) -> FileRecord:
        """Upload ``data`` without a job (the CLI's ``files add``): the same rules and the
        same transaction as a job's ``upload``, including overwrites."""
        upload = UploadFields.model_validate({"fileName": name, "folder": folder,
                                              "tags": tags, **fields})
        prepared = self.files.prepare(upload, data, account, f"cli-{uuid.uuid4().hex}")
        return self.files.add(prepared, account)

    def get_file(self, file_id: str, account: str | None = None) -> FileRecord | None:
        return self.files.get(file_id, account)

    def get_job(self, job_id: str) -> JobDoc | None:
        raw = self.kv.get(self.settings.keys.job(job_id))
        return None if raw is None else JobDoc.model_validate(raw)

    def jobs(self, account: str, offset: int = 0, count: int = 50,
             file_id: str | None = None) -> list[JobDoc]:
        """The account's (or one file's) jobs, newest first, from the history index; jobs
        whose documents have expired (``EXTWORKER_JOB_TTL_S``) leave the index as they are
        met."""
        keys = self.settings.keys
        index = keys.file_jobs(file_id) if file_id else keys.job_index(account)
        members = self.kv.index_range(index, "", offset, count)
        docs = self.kv.get_many([keys.job(m.split("|", 1)[1]) for m in members])
        gone = [m for m, d in zip(members, docs, strict=True) if d is None]
        if gone:
            self.kv.transact([], lambda _cur: Txn(index_remove={index: gone}))
        out = [JobDoc.model_validate(d) for d in docs if d is not None]
        return [j for j in out if j.accountId == account]

    def usage(self, account: str, month: str | None = None) -> dict[str, Any]:
        month = month or metering.month_of()
        doc = self.kv.get(self.settings.keys.units(account, month)) or metering.empty_usage()
        return {"accountId": account, "month": month, **doc}
