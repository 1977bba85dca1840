"""The execute step: run one extension of a job and commit its outcome.

``Executor.execute`` runs the handler and commits its record patch, its units and its
final status in **one** transaction; an extension leaves ``pending`` exactly once, so a
redelivered message neither runs twice nor charges twice. Every final state is handed
on (webhooks) — again on every redelivery, since the hand-off is idempotent.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from pydantic import BaseModel

from extensions.base import ExtensionContext, ExtensionResult
from extensions.registry import Registry
from worker.core.egress import EgressPolicy
from worker.core.errors import (
    ErrorCode,
    FileNotFound,
    PermanentError,
    QuotaExceeded,
    RetryableError,
)
from worker.core.fetch import fetch
from worker.core.imaging import probe
from worker.core.jobs import JobDoc, Slot
from worker.core.records import ErrorInfo, FileRecord, NewVersion, RecordPatch
from worker.core.settings import Settings
from worker.models.cache import ModelCache
from worker.store import metering
from worker.store.blobs import BlobStore
from worker.store.embeddings import embedding_doc
from worker.store.fields import FieldStore
from worker.store.files import FileStore
from worker.store.kv import KV, Txn
from worker.store.metadata import ExifTool

log = logging.getLogger(__name__)
# (job document, slot, file object after it) when an extension reaches its final state
Notify = Callable[[JobDoc, str, dict[str, Any] | None], None]
# (slot name, final slot, seconds since start, seconds in the handler) → metrics
Observe = Callable[[str, Slot, float, float | None], None]

# Tags of a source's embeddedMetadata that a derived version (a cut-out) carries over.
_RIGHTS_KEYS = frozenset({
    "Artist", "Copyright", "ImageDescription", "Creator", "Rights", "Description", "Title",
    "CopyrightNotice", "Byline", "CaptionAbstract", "Credit", "Source", "Headline",
    "ObjectName", "Keywords", "Subject", "UsageTerms", "WebStatement", "Marked",
})


class _Stored(NamedTuple):
    """A new version's bytes as stored (metadata written in) and what was read back."""

    key: str
    data: bytes
    embedded: dict[str, Any]


@functools.lru_cache(maxsize=1024)
def _parsed(model: type[BaseModel], config_json: str) -> BaseModel:
    """Params from a stored config, parsed once per process per distinct config
    (a saved AI-task shared by many jobs is validated once)."""
    return model.model_validate_json(config_json)


class Executor:
    def __init__(self, settings: Settings, kv: KV, blobs: BlobStore, registry: Registry,
                 models: ModelCache, files: FileStore, fields: FieldStore, exiftool: ExifTool,
                 egress: EgressPolicy, notify: Notify | None, observe: Observe | None) -> None:
        """``notify`` hands a final slot on (webhooks); ``observe`` hears of every slot
        that this process finished (metrics)."""
        self.settings = settings
        self.kv = kv
        self.blobs = blobs
        self.registry = registry
        self.models = models
        self.files = files
        self.fields = fields
        self.exiftool = exiftool
        self.egress = egress
        self.notify = notify
        self.observe = observe

    def _job(self, job_id: str) -> JobDoc | None:
        raw = self.kv.get(self.settings.keys.job(job_id))
        return None if raw is None else JobDoc.model_validate(raw)

    def execute(self, job_id: str, slot_name: str) -> Slot | None:
        """Run one extension of a job and commit its outcome. Returns the slot."""
        doc = self._job(job_id)
        if doc is None or slot_name not in doc.extensions:
            log.warning("job %s has no extension %s (expired or unknown)", job_id, slot_name)
            return None
        slot = doc.extensions[slot_name]
        if slot.status != "pending":  # already final: a redelivered message
            self.hand_off(doc, slot_name)
            return slot
        assert doc.fileId is not None  # a pending slot always has its file
        ext_name = slot.extension
        log.info("extension started", extra={"jobId": job_id, "fileId": doc.fileId,
                                             "extension": slot_name})
        started = time.perf_counter()
        run_seconds: float | None = None
        handler = self.registry.get(ext_name)
        result: ExtensionResult | None = None
        stored: _Stored | None = None
        error: ErrorInfo | None = None
        units = 0
        try:
            if handler is None:
                raise PermanentError(
                    f"extension {ext_name!r} is not available in this deployment",
                    code=ErrorCode.NOT_AVAILABLE)
            params = _parsed(handler.params_model, json.dumps(slot.config, sort_keys=True))
            units = 0 if doc.dryRun else handler.units(params, self.settings)
            record = self.files.get(doc.fileId)
            if record is None:
                raise FileNotFound(f"file not found: {doc.fileId}")
            quota = self.settings.quota_for(doc.accountId)
            if quota is not None and units:  # early refusal; the commit checks again
                metering.check_quota(self.kv.get(self._units_key(doc)), units, quota)
            ctx = self._context(doc, record)
            t0 = time.perf_counter()
            result = handler.run(ctx, params)
            run_seconds = time.perf_counter() - t0
            if result.new_version is not None:
                stored = self._store_version(doc, slot_name, result, record, ctx.read_source)
        except RetryableError:
            raise
        except PermanentError as e:
            error = ErrorInfo(message=str(e), code=e.code)
        except Exception as e:  # a handler bug must not crash the worker or loop forever
            log.exception("extension %s of job %s crashed", slot_name, job_id)
            error = ErrorInfo(message=f"internal error in {ext_name}: {type(e).__name__}: {e}",
                              code=ErrorCode.INTERNAL_ERROR)
        try:
            if error is None:
                slot, changed = self._commit(doc, slot_name, result, units, None, stored)
            else:
                slot, changed = self._commit(doc, slot_name, None, 0, error)
        except RetryableError:
            raise
        except Exception as e:  # a result that cannot be recorded: failed, never retried
            log.exception("extension %s of job %s: result not recordable", slot_name, job_id)
            slot, changed = self._commit(doc, slot_name, None, 0, ErrorInfo(
                message=f"internal error in {ext_name}: its result could not be recorded: "
                f"{type(e).__name__}: {str(e)[:300]}", code=ErrorCode.INTERNAL_ERROR))
        if stored is not None and slot.status == "failed":
            self.blobs.delete(stored.key)
        if changed and self.observe is not None:
            self.observe(slot_name, slot, time.perf_counter() - started, run_seconds)
        return slot

    def fail(self, job_id: str, slot_name: str, message: str, code: str) -> Slot | None:
        """End a still-pending extension as ``failed`` (with its webhook): for a time limit
        or retries that ran out. A no-op for an extension already final."""
        doc = self._job(job_id)
        if doc is None or slot_name not in doc.extensions:
            return None
        slot, _ = self._commit(doc, slot_name, None, 0, ErrorInfo(message=message, code=code))
        return slot

    def _units_key(self, doc: JobDoc) -> str:
        return self.settings.keys.units(doc.accountId, metering.month_of())

    def _context(self, doc: JobDoc, record: FileRecord) -> ExtensionContext:
        s = self.settings
        return ExtensionContext(
            settings=s, models=self.models, job_id=doc.jobId, account_id=doc.accountId,
            # Cached: an extension and the version it makes read the source once.
            record=record, read_source=functools.cache(
                lambda: self.blobs.get(record.current.blobKey)),
            fetch=lambda url: fetch(url, self.egress, s.fetch_timeout_s, s.fetch_max_bytes,
                                    s.fetch_deadline_s),
            custom_fields=lambda: self.fields.all(doc.accountId),
        )

    def _store_version(self, doc: JobDoc, slot_name: str, result: ExtensionResult,
                       source: FileRecord, read_source: Callable[[], bytes]) -> _Stored:
        """Store a new version's bytes: the source's rights and description metadata
        written in (when it has any), its own embedded metadata read back."""
        assert result.new_version is not None
        data = result.new_version
        if self.settings.embedded_metadata:
            if _RIGHTS_KEYS & source.embeddedMetadata.keys():
                data = self.exiftool.carry_rights(read_source(), data,
                                                  "." + result.new_version_ext)
            embedded = self.exiftool.read(data)
        else:
            embedded = {}
        # Deterministic key: a redelivered message rewrites the same object.
        key = f"{doc.fileId}/{doc.jobId}-{slot_name}.{result.new_version_ext}"
        self.blobs.put(key, data)
        return _Stored(key, data, embedded)

    def _commit(
        self,
        doc: JobDoc,
        slot_name: str,
        result: ExtensionResult | None,
        units: int,
        error: ErrorInfo | None,
        stored: _Stored | None = None,
    ) -> tuple[Slot, bool]:
        """Record patch + units + final status, atomically; at most once per slot.

        Returns the slot and whether this call was the one that finished it."""
        keys = self.settings.keys
        assert doc.fileId is not None
        jk, fk, uk = keys.job(doc.jobId), keys.file(doc.fileId), self._units_key(doc)
        quota = self.settings.quota_for(doc.accountId)
        new_version = None
        if result is not None and stored is not None:
            info = probe(stored.data)
            new_version = NewVersion(
                blobKey=stored.key, url=self.blobs.url(stored.key), size=len(stored.data),
                mime=info.mime if info else result.new_version_mime,
                width=info.width if info else None, height=info.height if info else None,
                hasAlpha=info.has_alpha if info else False,
                origin=f"{doc.jobId}/{slot_name}", embeddedMetadata=stored.embedded)

        def txn(cur: dict[str, Any]) -> Txn[tuple[JobDoc, bool, Any]]:
            raw_job, raw_record = cur[jk], cur[fk]
            job = JobDoc.model_validate(raw_job) if raw_job is not None else None
            if job is None or job.extensions[slot_name].status != "pending":
                return Txn(result=(job or doc, False, None))
            slot = job.extensions[slot_name]
            writes: dict[str, Any] = {}
            indexed: dict[str, list[str]] = {}
            outcome_error = error
            record = FileRecord.model_validate(raw_record) if raw_record else None
            if outcome_error is None and record is None:
                outcome_error = ErrorInfo(message=f"file not found: {doc.fileId}",
                                          code=ErrorCode.FILE_NOT_FOUND)
            if outcome_error is None and result is not None and record is not None:
                try:
                    metering.check_quota(cur[uk], units, quota)
                    patch = result.patch.model_copy(update={
                        "status": {**result.patch.status, slot_name: "success"},
                        "errors": {**result.patch.errors, slot_name: None},
                        "new_version": new_version})
                    record = patch.apply(record, self.settings.max_versions)
                    writes[fk] = record.model_dump(mode="json")
                    if result.embedding is not None:  # for /similar: of the current version
                        writes[keys.embedding(record.accountId, record.fileId)] = \
                            embedding_doc(record.versionInfo.id, result.model,
                                          result.embedding)
                        indexed[keys.embedding_index(record.accountId)] = [record.fileId]
                    if units:  # a saved extension is metered under its base name
                        writes[uk] = metering.charged(cur[uk], slot.extension, units)
                    slot.units, slot.output = units, result.output
                    slot.model, slot.device = result.model, result.device
                    slot.finish("success")
                except (PermanentError, QuotaExceeded) as e:
                    outcome_error = ErrorInfo(message=str(e), code=e.code)
            if outcome_error is not None:
                slot.finish("failed", error=outcome_error)
                if record is not None:
                    failed = RecordPatch(status={slot_name: "failed"},
                                         errors={slot_name: outcome_error})
                    writes[fk] = failed.apply(record, self.settings.max_versions).model_dump(
                        mode="json")
            writes[jk] = job.to_json()
            ttl = {jk: self.settings.job_ttl_s}
            if uk in writes:
                ttl[uk] = 400 * 24 * 3600  # a month's counter outlives the month
            file_object = (FileRecord.model_validate(writes[fk]).file_object(self.settings.urls)
                           if fk in writes else None)
            return Txn(writes=writes, result=(job, True, file_object), ttl=ttl,
                       index_add=indexed)

        job, changed, file_object = self.kv.transact([jk, fk, uk], txn)  # type: ignore[misc]
        slot = job.extensions[slot_name]
        if changed:
            log.info(
                "extension finished",
                extra={"jobId": doc.jobId, "fileId": doc.fileId, "extension": slot_name,
                       "status": slot.status, "device": slot.device},
            )
            self._notify(job, slot_name, file_object)  # the document just committed
        elif slot.status != "pending":
            # Already final: a redelivery, or our own commit landed before a connection
            # broke and the store retried it. Hand it on again (idempotent), never skip it.
            self.hand_off(job, slot_name)
        return slot, changed

    def hand_off(self, doc: JobDoc, slot_name: str) -> None:
        """Hand a final slot on, with the file object when it succeeded."""
        record = (self.files.get(doc.fileId) if doc.fileId and
                  doc.extensions[slot_name].status == "success" else None)
        self._notify(doc, slot_name, record.file_object(self.settings.urls) if record else None)

    def _notify(self, doc: JobDoc, slot_name: str, file_object: Any) -> None:
        """``notify`` is idempotent per (job, slot), and a redelivered message calls it
        again, so a hand-off that fails is retried, not lost."""
        if self.notify is None:
            return
        try:
            self.notify(doc, slot_name, file_object)
        except RetryableError:
            raise
        except Exception as e:
            raise RetryableError(f"hand-off of {slot_name} failed: {e}") from e
