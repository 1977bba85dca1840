"""Image embeddings per file, and the files most like one (beyond the hosted service).

The ``imagenet`` tagger computes, with its tags, the 1,280-d embedding of the file's current
version; the extension's commit writes it beside the record (``keys.embedding``, in the same
transaction, with the account's index of them). A document holds the version it describes,
the model, and the vector as base64 float32 (5 KB) — the same on every store engine.
``similar`` reads the account's embeddings through that index and ranks them by cosine
similarity (a brute-force scan); an embedding whose version is no longer the file's current
one, or whose file is gone, is skipped.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from worker.core.records import FileRecord
from worker.core.settings import Settings
from worker.store.kv import KV


def embedding_doc(version_id: str, model: str | None, vector: list[float]) -> dict[str, Any]:
    return {"versionId": version_id, "model": model,
            "vector": base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()}


def _vector(doc: dict[str, Any]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(doc["vector"]), dtype="<f4")


class Embeddings:
    def __init__(self, kv: KV, settings: Settings) -> None:
        self.kv = kv
        self.keys = settings.keys

    def of(self, record: FileRecord) -> np.ndarray | None:
        """The embedding of ``record``'s current version, if one was computed."""
        doc = self.kv.get(self.keys.embedding(record.accountId, record.fileId))
        if doc is None or doc.get("versionId") != record.versionInfo.id:
            return None
        return _vector(doc)

    def _all(self, account: str, page: int = 1000) -> Any:
        """``(fileId, document)`` of every embedding of the account (its index, in pages)."""
        index, offset = self.keys.embedding_index(account), 0
        while True:
            ids = self.kv.index_range(index, "", offset, page)
            if not ids:
                return
            docs = self.kv.get_many([self.keys.embedding(account, f) for f in ids])
            yield from ((f, d) for f, d in zip(ids, docs, strict=True) if d is not None)
            offset += len(ids)

    def similar(self, record: FileRecord, limit: int) -> list[tuple[FileRecord, float]]:
        """``(record, cosine similarity)`` of the account's files most like ``record``, best
        first (itself left out); ``LookupError`` when ``record`` has no embedding."""
        mine = self.of(record)
        if mine is None:
            raise LookupError(record.fileId)
        ids, vectors, versions = [], [], []
        for file_id, doc in self._all(record.accountId):
            if file_id == record.fileId or not isinstance(doc, dict) or "vector" not in doc:
                continue
            vector = _vector(doc)
            if vector.shape != mine.shape:  # another model's
                continue
            ids.append(file_id)
            vectors.append(vector)
            versions.append(doc.get("versionId"))
        if not ids:
            return []
        scores = np.stack(vectors) @ mine
        out: list[tuple[FileRecord, float]] = []
        order = np.argsort(-scores)
        for start in range(0, len(order), max(limit, 1) * 2):
            chunk = [int(i) for i in order[start:start + max(limit, 1) * 2]]
            files = self.kv.get_many([self.keys.file(ids[i]) for i in chunk])
            for i, raw in zip(chunk, files, strict=True):
                # Still the file's current version, and the file is still there.
                if raw is not None and raw.get("versionInfo", {}).get("id") == versions[i]:
                    out.append((FileRecord.model_validate(raw), float(scores[i])))
                if len(out) >= limit:
                    return out
        return out
