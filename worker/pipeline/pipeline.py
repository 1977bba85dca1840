"""The pipeline: job → validated extensions → results → record patch + units.

Data flows one way. ``accept`` (the dispatch step) validates a job, records
it, marks every requested extension ``pending`` (or ``failed`` with a message
naming the field) and hands each runnable extension to ``enqueue``.
``execute`` runs one extension and commits its record patch, its units and
its final status in **one** transaction. Both are idempotent: a job document
per ``jobId`` makes a duplicate publish a no-op, and an extension leaves
``pending`` exactly once, so a redelivered message neither runs twice nor
charges twice.

The same class serves the dramatiq actors (``RedisKV``) and the Redis-less
``extworker apply`` (``LocalKV`` and an in-process queue).
"""

from __future__ import annotations

import functools
import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any, NamedTuple

from pydantic import BaseModel, ValidationError

from extensions.base import ExtensionContext, ExtensionResult
from extensions.registry import Registry
from worker.core.contract import (
    JobEnvelope,
    SavedExtensionRef,
    UploadFields,
    extension_label,
    format_validation_error,
)
from worker.core.egress import EgressPolicy
from worker.core.errors import PermanentError, QuotaExceeded, RetryableError
from worker.core.fetch import fetch
from worker.core.imaging import probe
from worker.core.records import ErrorInfo, FileRecord, NewVersion, RecordPatch, now_iso
from worker.core.settings import Settings
from worker.models.catalog import ModelCache
from worker.store import metering
from worker.store.blobs import BlobStore
from worker.store.fields import FieldStore
from worker.store.files import PATH_ATTEMPTS, FileStore, PathTaken, Prepared, owned
from worker.store.kv import KV, Txn
from worker.store.metadata import ExifTool
from worker.store.saved import SavedStore
from worker.store.uploads import read_source

log = logging.getLogger(__name__)
Enqueue = Callable[[str, str, str], None]  # (queue, jobId, slot)
# (job document, slot, file object after it) when an extension reaches its final state
Notify = Callable[[dict[str, Any], str, dict[str, Any] | None], None]
# (slot name, final slot, seconds since start, seconds in the handler) → metrics
Observe = Callable[[str, dict[str, Any], float, float | None], None]


def _err(message: str, code: str) -> dict[str, str]:
    return {"message": message, "code": code}


class _Stored(NamedTuple):
    """A new version's bytes as stored (metadata written in) and what was read back."""

    key: str
    data: bytes
    embedded: dict[str, Any]


# Tags of a source's embeddedMetadata that a derived version (a cut-out) carries over.
_RIGHTS_KEYS = frozenset({
    "Artist", "Copyright", "ImageDescription", "Creator", "Rights", "Description", "Title",
    "CopyrightNotice", "Byline", "CaptionAbstract", "Credit", "Source", "Headline",
    "ObjectName", "Keywords", "Subject", "UsageTerms", "WebStatement", "Marked",
})


@functools.lru_cache(maxsize=1024)
def _parsed(model: type[BaseModel], config_json: str) -> BaseModel:
    """Params from a stored config, parsed once per process per distinct config
    (a saved AI-task shared by many jobs is validated once)."""
    return model.model_validate_json(config_json)


class Pipeline:
    def __init__(
        self,
        settings: Settings,
        kv: KV,
        blobs: BlobStore,
        registry: Registry,
        models: ModelCache,
        enqueue: Enqueue | None = None,
        notify: Notify | None = None,
        observe: Observe | None = None,
    ) -> None:
        """``enqueue`` sends a pending extension to its queue (``None``: nothing is sent —
        the caller runs ``execute`` itself); ``notify`` hands a final extension on (webhooks);
        ``observe`` hears of every extension that reaches its final state (metrics)."""
        self.settings = settings
        self.kv = kv
        self.blobs = blobs
        self.registry = registry
        self.models = models
        self.enqueue = enqueue
        self.notify = notify
        self.observe = observe
        self.egress = EgressPolicy.parse(settings.egress_allowlist, settings.egress_https_only)
        self.saved = SavedStore(kv, settings, registry.contract)
        self.fields = FieldStore(kv, settings)
        self.exiftool = ExifTool(settings.exiftool)
        self.files = FileStore(kv, blobs, settings, self.fields, self.exiftool)

    # --- keys -----------------------------------------------------------------

    def job_key(self, job_id: str) -> str:
        return self.settings.keys.job(job_id)

    def file_key(self, file_id: str) -> str:
        return self.files.file_key(file_id)

    def units_key(self, account: str, month: str | None = None) -> str:
        return self.settings.keys.units(account, month or metering.month_of())

    # --- files ----------------------------------------------------------------

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

    def get_job(self, job_id: str) -> dict[str, Any] | None:
        return self.kv.get(self.job_key(job_id))

    def usage(self, account: str, month: str | None = None) -> dict[str, Any]:
        doc = self.kv.get(self.units_key(account, month)) or metering.empty_usage()
        return {"accountId": account, "month": month or metering.month_of(), **doc}

    # --- dispatch -------------------------------------------------------------

    def _plan(self, job: JobEnvelope) -> dict[str, dict[str, Any]]:
        """Validate each extension on its own: a slot per extension, pending or failed.

        A ``saved-extension`` is resolved here, for the job's account; its slot is
        named ``saved-extension:<id>`` and keeps the resolved config, so later edits
        of the saved extension never change this job.
        """
        slots: dict[str, dict[str, Any]] = {}
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
            slot: dict[str, Any] = {"name": label, "extension": label, "status": "pending",
                                    "config": None, "queue": None, "error": None, "units": 0,
                                    "output": None}
            try:
                params = contract.parse_extension(raw, f"extensions[{i}]")
                if isinstance(params, SavedExtensionRef):
                    saved = self.saved.get(job.accountId, params.id)
                    if saved is None:
                        raise LookupError(f"saved extension not found: {params.id}")
                    params = contract.parse_extension(saved["config"],
                                                      f"extensions[{i}] ({params.id})")
                    slot["saved"] = {"id": saved["id"], "updatedAt": saved["updatedAt"]}
                name = params.name  # type: ignore[attr-defined]
                handler = self.registry.get(name)
                if handler is None:
                    raise ValueError(f"extension {name!r} is not available in this deployment")
                slot["extension"] = name
                slot["config"] = params.model_dump(mode="json", by_alias=True)
                slot["queue"] = self.queue_name(handler.queue)
            except LookupError as e:
                slot.update(status="failed", error=_err(str(e), "saved_extension_not_found"),
                            finishedAt=now_iso())
            except ValueError as e:
                code = "not_available" if "not available" in str(e) else "invalid_params"
                slot.update(status="failed", error=_err(str(e), code), finishedAt=now_iso())
            slots[label] = slot
        return slots

    def queue_name(self, resource_class: str) -> str:
        return {"extensions": self.settings.queue_extensions,
                "default": self.settings.queue_default}.get(resource_class, resource_class)

    def accept(self, raw: Any) -> dict[str, Any] | None:
        """The dispatch step. Returns the job document (``None`` for an unusable message).

        An ``upload`` is read (url, blobKey or base64), checked and stored first; then one
        transaction writes the file (new, or a new version at the same path), the job
        document and the pending statuses — or a ``rejected`` job document and nothing
        else. An ``update`` is checked first and applied in that same transaction."""
        try:
            job = JobEnvelope.model_validate(raw)
        except ValidationError as e:
            message = "invalid job: " + format_validation_error(e)
            log.error("%s", message)
            job_id = raw.get("jobId") if isinstance(raw, dict) else None
            if isinstance(job_id, str) and re.fullmatch(r"[A-Za-z0-9._:\-]{1,128}", job_id):
                jk = self.job_key(job_id)
                doc = {"jobId": job_id, "state": "rejected", "error": _err(message, "invalid_job"),
                       "extensions": {}, "createdAt": now_iso()}
                self.kv.transact([jk], lambda cur: Txn(
                    writes={} if cur[jk] else {jk: doc}, ttl={jk: self.settings.job_ttl_s}))
            return None

        jk = self.job_key(job.jobId)
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
                doc = self.kv.transact([jk], lambda cur: Txn(
                    writes={} if cur[jk] else {jk: rejected}, result=cur[jk] or rejected,
                    ttl={jk: self.settings.job_ttl_s})) or rejected
                return self._dispatched(job, "rejected" if doc is rejected else "duplicate", doc)
        for _ in range(PATH_ATTEMPTS):
            try:
                outcome, doc = self._accept_txn(job, planned, prepared, update)
                break
            except PathTaken:
                continue
        else:
            raise RetryableError(f"job {job.jobId}: no free path for the upload")
        if outcome == "rejected" and prepared is not None:
            self.blobs.delete(prepared.blob_key)  # nothing half-written
        return self._dispatched(job, outcome, doc)

    def _prepare_upload(self, job: JobEnvelope) -> Prepared:
        s, upload = self.settings, job.upload
        assert upload is not None
        data = read_source(
            upload, blobs=self.blobs, max_bytes=s.upload_max_bytes,
            base64_max_bytes=s.upload_base64_max_bytes,
            fetch=lambda url, cap: fetch(url, self.egress, s.fetch_timeout_s, cap,
                                         s.fetch_deadline_s))
        return self.files.prepare(upload, data, job.accountId, job.jobId)

    def _prepare_update(self, job: JobEnvelope) -> RecordPatch:
        assert job.update is not None and job.fileId is not None
        record = self.files.get(job.fileId, job.accountId)
        if record is None:
            raise PermanentError(f"file not found: {job.fileId}", code="file_not_found")
        return self.files.update_patch(job.update, record, job.accountId)

    def _job_doc(self, job: JobEnvelope, planned: dict[str, dict[str, Any]],
                 error: PermanentError | None = None) -> dict[str, Any]:
        """A new job document; ``rejected`` with ``error`` (every extension failed with it)."""
        slots = json.loads(json.dumps(planned))  # each document owns its slots
        doc = {
            "jobId": job.jobId, "accountId": job.accountId, "fileId": job.fileId,
            "webhookUrl": str(job.webhookUrl) if job.webhookUrl else None,
            "dryRun": job.dryRun, "origin": job.origin, "removeAITags": job.removeAITags,
            "syncUntil": job.syncUntil, "state": "accepted", "createdAt": now_iso(),
            "extensions": slots,
        }
        if error is not None:
            reason = _err(str(error), error.code)
            doc.update(state="rejected", error=reason)
            for slot in slots.values():
                if slot["status"] == "pending":
                    slot.update(status="failed", error=reason, finishedAt=now_iso())
        return doc

    def _accept_txn(self, job: JobEnvelope, planned: dict[str, dict[str, Any]],
                    prepared: Prepared | None, update: RecordPatch | None,
                    ) -> tuple[str, dict[str, Any]]:
        account, jk = job.accountId, self.job_key(job.jobId)
        file_path, keys, file_id = None, [jk], job.fileId
        if prepared is not None:
            file_path, pk, file_id = self.files.choose_path(prepared, account)
            keys.append(pk)
        if file_id is not None:
            keys.append(self.file_key(file_id))

        def txn(cur: dict[str, Any]) -> Txn[tuple[str, dict[str, Any]]]:
            existing = cur[jk]
            if existing is not None:
                return Txn(result=("duplicate" if existing["state"] != "accepted" else
                                   "resume", existing))
            ttl = {jk: self.settings.job_ttl_s}
            doc = self._job_doc(job, planned)
            record = owned(cur[self.file_key(file_id)], account) if file_id else None
            upload = Txn[None]()
            try:
                if prepared is not None:
                    assert file_path is not None
                    record, upload = self.files.in_txn(cur, prepared, account, file_path,
                                                       file_id)
                    doc["fileId"] = record.fileId
                elif record is None and job.update is not None:
                    raise PermanentError(f"file not found: {job.fileId}", code="file_not_found")
                elif record is not None and update is not None:
                    record = update.apply(record, self.settings.max_versions)
            except PermanentError as e:
                rejected = self._job_doc(job, planned, error=e)
                return Txn(writes={jk: rejected}, result=("rejected", rejected), ttl=ttl)
            writes: dict[str, Any] = {**upload.writes, jk: doc}
            if record is None:  # a job naming a file that is not there (or not its account's)
                for slot in doc["extensions"].values():
                    if slot["status"] == "pending":
                        slot.update(status="failed", finishedAt=now_iso(),
                                    error=_err(f"file not found: {job.fileId}", "file_not_found"))
                doc["state"] = "dispatched"
            else:
                slots = doc["extensions"]
                patch = RecordPatch(
                    status={n: s["status"] for n, s in slots.items()},
                    errors={n: (ErrorInfo(**s["error"]) if s["error"] else None)
                            for n, s in slots.items()},
                    remove_ai_tags=job.removeAITags,
                )
                record = patch.apply(record, self.settings.max_versions)
                writes[self.file_key(record.fileId)] = record.model_dump(mode="json")
            return Txn(writes=writes, result=("new", doc), ttl=ttl, index_add=upload.index_add)

        return self.kv.transact(keys, txn)  # type: ignore[return-value]

    def _dispatched(self, job: JobEnvelope, outcome: str, doc: dict[str, Any]) -> dict[str, Any]:
        """After the accept transaction: queue the pending extensions, mark the job
        dispatched, and hand every failed extension on (webhooks)."""
        jk = self.job_key(job.jobId)
        if outcome == "duplicate":
            log.info("job %s already dispatched; duplicate ignored", job.jobId)
        elif self.enqueue is not None:
            for slot_name, slot in doc["extensions"].items():
                if slot["status"] == "pending":
                    self.enqueue(slot["queue"], job.jobId, slot_name)
        if doc["state"] == "accepted":  # (never for a duplicate)
            def done(cur: dict[str, Any]) -> Txn[dict[str, Any]]:
                d = cur[jk]
                d["state"] = "dispatched"
                return Txn(writes={jk: d}, result=d, ttl={jk: self.settings.job_ttl_s})
            doc = self.kv.transact([jk], done) or doc
        # Every time (not only the first): notify is idempotent, and this is how a
        # hand-off that failed before a redelivery still happens.
        for slot_name, slot in doc["extensions"].items():
            if slot["status"] == "failed":
                self._notify(doc, slot_name, None)
        return doc

    # --- execution ------------------------------------------------------------

    def execute(self, job_id: str, slot_name: str) -> dict[str, Any] | None:
        """Run one extension of a job and commit its outcome. Returns the slot."""
        doc = self.get_job(job_id)
        if doc is None or slot_name not in doc.get("extensions", {}):
            log.warning("job %s has no extension %s (expired or unknown)", job_id, slot_name)
            return None
        slot = doc["extensions"][slot_name]
        if slot["status"] != "pending":  # already final: a redelivered message
            record = self.get_file(doc["fileId"]) if slot["status"] == "success" else None
            self._notify(doc, slot_name, record.file_object() if record else None)
            return slot
        ext_name = slot.get("extension", slot_name)
        log.info("extension started", extra={"jobId": job_id, "fileId": doc["fileId"],
                                             "extension": slot_name})
        started = time.perf_counter()
        run_seconds: float | None = None
        handler = self.registry.get(ext_name)
        result: ExtensionResult | None = None
        stored: _Stored | None = None
        error: dict[str, str] | None = None
        units = 0
        try:
            if handler is None:
                raise PermanentError(
                    f"extension {ext_name!r} is not available in this deployment",
                    code="not_available")
            params = _parsed(handler.params_model, json.dumps(slot["config"], sort_keys=True))
            units = 0 if doc["dryRun"] else handler.units(params, self.settings)
            record = self.get_file(doc["fileId"])
            if record is None:
                raise PermanentError(f"file not found: {doc['fileId']}", code="file_not_found")
            quota = self.settings.quota_for(doc["accountId"])
            if quota is not None and units:  # early refusal; the commit checks again
                metering.check_quota(self.kv.get(self.units_key(doc["accountId"])), units, quota)
            ctx = self._context(doc, record)
            t0 = time.perf_counter()
            result = handler.run(ctx, params)
            run_seconds = time.perf_counter() - t0
            if result.new_version is not None:
                stored = self._store_version(doc, slot_name, result, record, ctx.read_source)
        except RetryableError:
            raise
        except PermanentError as e:
            error = _err(str(e), e.code)
        except Exception as e:  # a handler bug must not crash the worker or loop forever
            log.exception("extension %s of job %s crashed", slot_name, job_id)
            error = _err(f"internal error in {ext_name}: {type(e).__name__}: {e}",
                         "internal_error")
        try:
            if error is None:
                slot, changed = self._commit(doc, slot_name, result, units, None, stored)
            else:
                slot, changed = self._commit(doc, slot_name, None, 0, error)
        except RetryableError:
            raise
        except Exception as e:  # a result that cannot be recorded: failed, never retried
            log.exception("extension %s of job %s: result not recordable", slot_name, job_id)
            slot, changed = self._commit(doc, slot_name, None, 0, _err(
                f"internal error in {ext_name}: its result could not be recorded: "
                f"{type(e).__name__}: {str(e)[:300]}", "internal_error"))
        if stored is not None and slot["status"] == "failed":
            self.blobs.delete(stored.key)
        if changed and self.observe is not None:
            self.observe(slot_name, slot, time.perf_counter() - started, run_seconds)
        return slot

    def fail(self, job_id: str, slot_name: str, message: str, code: str) -> dict[str, Any] | None:
        """End a still-pending extension as ``failed`` (with its webhook): for a time limit
        or retries that ran out. A no-op for an extension already final."""
        doc = self.get_job(job_id)
        if doc is None or slot_name not in doc.get("extensions", {}):
            return None
        slot, _ = self._commit(doc, slot_name, None, 0, _err(message, code))
        return slot

    def _context(self, doc: dict[str, Any], record: FileRecord) -> ExtensionContext:
        s = self.settings
        return ExtensionContext(
            settings=s, models=self.models, job_id=doc["jobId"], account_id=doc["accountId"],
            # Cached: an extension and the version it makes read the source once.
            record=record, read_source=functools.cache(
                lambda: self.blobs.get(record.current.blobKey)),
            fetch=lambda url: fetch(url, self.egress, s.fetch_timeout_s, s.fetch_max_bytes,
                                    s.fetch_deadline_s),
            custom_fields=lambda: self.fields.all(doc["accountId"]),
        )

    def _store_version(self, doc: dict[str, Any], slot_name: str, result: ExtensionResult,
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
        key = f"{doc['fileId']}/{doc['jobId']}-{slot_name}.{result.new_version_ext}"
        self.blobs.put(key, data)
        return _Stored(key, data, embedded)

    def _commit(
        self,
        doc: dict[str, Any],
        slot_name: str,
        result: ExtensionResult | None,
        units: int,
        error: dict[str, str] | None,
        stored: _Stored | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Record patch + units + final status, atomically; at most once per slot.

        Returns the slot and whether this call was the one that finished it."""
        jk, fk = self.job_key(doc["jobId"]), self.file_key(doc["fileId"])
        uk = self.units_key(doc["accountId"])
        quota = self.settings.quota_for(doc["accountId"])
        new_version = None
        if result is not None and stored is not None:
            info = probe(stored.data)
            new_version = NewVersion(
                blobKey=stored.key, url=self.blobs.url(stored.key), size=len(stored.data),
                mime=info.mime if info else result.new_version_mime,
                width=info.width if info else None, height=info.height if info else None,
                hasAlpha=info.has_alpha if info else False,
                origin=f"{doc['jobId']}/{slot_name}", embeddedMetadata=stored.embedded)

        def txn(cur: dict[str, Any]) -> Txn[tuple[dict[str, Any], bool, Any]]:
            job, raw_record = cur[jk], cur[fk]
            if job is None or job["extensions"][slot_name]["status"] != "pending":
                return Txn(result=(job or doc, False, None))
            slot = job["extensions"][slot_name]
            writes: dict[str, Any] = {}
            outcome_error = error
            record = FileRecord.model_validate(raw_record) if raw_record else None
            if outcome_error is None and record is None:
                outcome_error = _err(f"file not found: {doc['fileId']}", "file_not_found")
            if outcome_error is None and result is not None and record is not None:
                try:
                    metering.check_quota(cur[uk], units, quota)
                    patch = result.patch.model_copy(update={
                        "status": {**result.patch.status, slot_name: "success"},
                        "errors": {**result.patch.errors, slot_name: None},
                        "new_version": new_version})
                    record = patch.apply(record, self.settings.max_versions)
                    writes[fk] = record.model_dump(mode="json")
                    if units:
                        metered = slot.get("extension", slot_name)  # saved: the base name
                        writes[uk] = metering.charged(cur[uk], metered, units)
                    slot.update(status="success", units=units, output=result.output,
                                model=result.model, device=result.device)
                except (PermanentError, QuotaExceeded) as e:
                    outcome_error = _err(str(e), e.code)
            if outcome_error is not None:
                slot.update(status="failed", error=outcome_error, units=0)
                if record is not None:
                    failed = RecordPatch(status={slot_name: "failed"},
                                         errors={slot_name: ErrorInfo(**outcome_error)})
                    writes[fk] = failed.apply(record, self.settings.max_versions).model_dump(
                        mode="json")
            slot["finishedAt"] = now_iso()
            writes[jk] = job
            ttl = {jk: self.settings.job_ttl_s}
            if uk in writes:
                ttl[uk] = 400 * 24 * 3600  # a month's counter outlives the month
            file_object = (
                FileRecord.model_validate(writes[fk]).file_object() if fk in writes else None)
            return Txn(writes=writes, result=(job, True, file_object), ttl=ttl)

        job, changed, file_object = self.kv.transact([jk, fk, uk], txn)  # type: ignore[misc]
        slot = job["extensions"][slot_name]
        if changed:
            log.info(
                "extension finished",
                extra={"jobId": doc["jobId"], "fileId": doc["fileId"], "extension": slot_name,
                       "status": slot["status"], "device": slot.get("device")},
            )
            self._notify(job, slot_name, file_object)  # the document just committed
        elif slot["status"] != "pending":
            # Already final: a redelivery, or our own commit landed before a connection
            # broke and the store retried it. Hand it on again (idempotent), never skip it.
            record = self.get_file(doc["fileId"]) if slot["status"] == "success" else None
            self._notify(job, slot_name, record.file_object() if record else None)
        return slot, changed

    def _notify(self, doc: dict[str, Any], slot_name: str, file_object: Any) -> None:
        """Hand a final state on (webhooks). ``notify`` is idempotent per (job, slot), and
        a redelivered message calls it again, so a hand-off that fails is retried, not lost."""
        if self.notify is None:
            return
        try:
            self.notify(doc, slot_name, file_object)
        except RetryableError:
            raise
        except Exception as e:
            raise RetryableError(f"hand-off of {slot_name} failed: {e}") from e
