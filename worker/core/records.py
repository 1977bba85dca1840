"""File records in the shape of the media API's file object, and atomic patches.

A record is one JSON document per file (``<ns>:file:<fileId>``). Nothing ever
writes a whole record it read earlier: every change is a ``RecordPatch`` (add
these tags, replace the AITags of this source, add this version, set this
status…) applied inside a ``KV.transact``, so several extensions finishing
on the same file at once all survive.

Versions: every version's bytes stay in blob storage; ``versions`` (internal,
not part of the file object) lists them, newest last. ``versionInfo`` names
the current one ("Version N").
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from worker.core.errors import ErrorCode, PermanentError

if TYPE_CHECKING:
    from worker.core.urls import Urls

ExtStatus = Literal["pending", "success", "failed"]


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_id() -> str:
    """A 24-hex-character id, like the media API's."""
    return uuid.uuid4().hex[:24]


class AITag(BaseModel):
    name: str
    confidence: float
    source: str


VIDEO_FIELDS = ("duration", "bitRate", "videoCodec", "audioCodec")


class VersionInfo(BaseModel):
    id: str
    name: str


class ErrorInfo(BaseModel):
    message: str
    code: str


class StoredVersion(BaseModel):
    """One version of a file's bytes (internal; not in the file object)."""

    id: str
    name: str
    blobKey: str
    mime: str
    size: int
    width: int | None = None
    height: int | None = None
    hasAlpha: bool = False
    createdAt: str
    origin: str | None = None  # "<jobId>/<extension>" that made it: redelivery dedupe


class FileRecord(BaseModel):
    """The stored document: the file object plus internal bookkeeping."""

    model_config = ConfigDict(extra="ignore")

    fileId: str
    accountId: str = "default"  # internal: whose file it is (not in the file object)
    type: Literal["file"] = "file"
    name: str
    filePath: str
    tags: list[str] | None = None
    AITags: list[AITag] | None = None
    versionInfo: VersionInfo
    customMetadata: dict[str, Any] = Field(default_factory=dict)
    description: str | None = None
    isPrivateFile: bool = False
    isPublished: bool = True
    customCoordinates: str | None = None
    embeddedMetadata: dict[str, Any] = Field(default_factory=dict)  # of the current version
    url: str
    thumbnail: str | None = None
    fileType: Literal["image", "non-image"]
    mime: str
    width: int | None = None
    height: int | None = None
    size: int
    hasAlpha: bool = False
    # Video (the file object document): seconds, bits/s, the streams' codecs; absent else.
    duration: int | None = None
    bitRate: int | None = None
    videoCodec: str | None = None
    audioCodec: str | None = None
    createdAt: str
    updatedAt: str
    extensionStatus: dict[str, ExtStatus] = Field(default_factory=dict)
    extensionErrors: dict[str, ErrorInfo] = Field(default_factory=dict)
    versions: list[StoredVersion] = Field(default_factory=list)

    def file_object(self, urls: Urls) -> dict[str, Any]:
        """The public file object (what the API answers, the CLI prints and webhooks
        carry), with the ``url`` and ``thumbnail`` clients fetch."""
        out = self.model_dump(mode="json", exclude={"versions", "accountId"})
        if self.duration is None:  # not a video: the video fields are not in its object
            for name in VIDEO_FIELDS:
                out.pop(name, None)
        out["url"], out["thumbnail"] = urls.file(self), urls.thumbnail(self)
        return out

    def version_object(self, version_id: str, urls: Urls) -> dict[str, Any]:
        """One version in the media API's shape: a file object of that version's bytes,
        with its own ``versionInfo`` and a URL that always names those bytes."""
        v = next(v for v in self.versions if v.id == version_id)
        out = self.file_object(urls)
        out.update({
            "versionInfo": {"id": v.id, "name": v.name}, "size": v.size, "mime": v.mime,
            "width": v.width, "height": v.height, "hasAlpha": v.hasAlpha,
            "fileType": "image" if v.mime.startswith("image/") else "non-image",
            "createdAt": v.createdAt, "updatedAt": v.createdAt, "url": urls.version(self, v),
            "current": v.id == self.versionInfo.id})
        if v.id != self.versionInfo.id:
            out["embeddedMetadata"] = {}  # of the current version; GET …/metadata for this one
        return out

    @property
    def current(self) -> StoredVersion:
        return self.versions[-1]


class NewVersion(BaseModel):
    blobKey: str
    url: str
    mime: str
    size: int
    width: int | None = None
    height: int | None = None
    hasAlpha: bool = False
    origin: str
    embeddedMetadata: dict[str, Any] = Field(default_factory=dict)
    duration: int | None = None  # a video's (VIDEO_FIELDS), whole seconds
    bitRate: int | None = None
    videoCodec: str | None = None
    audioCodec: str | None = None


class RecordPatch(BaseModel):
    """A semantic change to one record. Fields left empty change nothing."""

    status: dict[str, ExtStatus] = Field(default_factory=dict)
    errors: dict[str, ErrorInfo | None] = Field(default_factory=dict)
    add_tags: list[str] = Field(default_factory=list)
    remove_tags: list[str] = Field(default_factory=list)
    replace_tags: list[str] | None = None  # the whole tag list ([]: none)
    remove_ai_tags: list[str] | Literal["all"] | None = None
    ai_tags: list[AITag] | None = None
    ai_tags_source: str | None = None  # replace every AITag of this source with ai_tags
    set_fields: dict[str, Any] = Field(default_factory=dict)  # description, …
    metadata_set: dict[str, Any] = Field(default_factory=dict)
    metadata_unset: list[str] = Field(default_factory=list)
    metadata_clear: bool = False  # drop every customMetadata value before metadata_set
    new_version: NewVersion | None = None

    def apply(self, record: FileRecord, max_versions: int) -> FileRecord:
        """Return the patched record; raises ``PermanentError`` if it cannot apply."""
        r = record.model_copy(deep=True)
        if self.new_version is not None:
            _add_version(r, self.new_version, max_versions)
        if self.remove_ai_tags is not None and r.AITags:
            if self.remove_ai_tags == "all":
                r.AITags = None
            else:
                drop = set(self.remove_ai_tags)
                r.AITags = [t for t in r.AITags if t.name not in drop] or None
        if self.ai_tags_source is not None:
            kept = [t for t in (r.AITags or []) if t.source != self.ai_tags_source]
            # Each source's tags stay in its tagger's order (best first; the imagenet
            # tagger puts "espresso" before "beverage"), sources in the order they ran.
            r.AITags = kept + list(self.ai_tags or []) or None
        if self.replace_tags is not None:
            r.tags = list(dict.fromkeys(self.replace_tags)) or None
        if self.add_tags or self.remove_tags:
            tags = [t for t in (r.tags or []) if t not in set(self.remove_tags)]
            tags += [t for t in dict.fromkeys(self.add_tags) if t not in tags]
            r.tags = tags or None
        if self.metadata_clear:
            r.customMetadata = {}
        for k in self.metadata_unset:
            r.customMetadata.pop(k, None)
        r.customMetadata.update(self.metadata_set)
        for k, v in self.set_fields.items():
            if k not in _SETTABLE:
                raise ValueError(f"field {k} cannot be patched")
            setattr(r, k, v)
        r.extensionStatus.update(self.status)
        for k, err in self.errors.items():
            if err is None:
                r.extensionErrors.pop(k, None)
            else:
                r.extensionErrors[k] = err
        r.updatedAt = now_iso()
        return r


_SETTABLE = {"description", "customCoordinates", "isPrivateFile", "isPublished", "thumbnail"}


def _add_version(r: FileRecord, v: NewVersion, max_versions: int) -> None:
    if any(sv.origin == v.origin for sv in r.versions):
        return  # a redelivered message already added this version
    if len(r.versions) >= max_versions:
        raise PermanentError(
            f"file {r.fileId} already has {len(r.versions)} versions (the maximum is "
            f"{max_versions}); no new version was written",
            code=ErrorCode.VERSION_LIMIT,
        )
    # One more than the highest: after a version is deleted, names stay unique.
    n = max((int(sv.name.rsplit(" ", 1)[-1]) for sv in r.versions
             if sv.name.rsplit(" ", 1)[-1].isdigit()), default=0) + 1
    sv = StoredVersion(
        id=new_id(), name=f"Version {n}", blobKey=v.blobKey, mime=v.mime, size=v.size,
        width=v.width, height=v.height, hasAlpha=v.hasAlpha, createdAt=now_iso(), origin=v.origin,
    )
    r.versions.append(sv)
    r.versionInfo = VersionInfo(id=sv.id, name=sv.name)
    r.url, r.mime, r.size = v.url, v.mime, v.size
    r.width, r.height, r.hasAlpha = v.width, v.height, v.hasAlpha
    r.fileType = "image" if v.mime.startswith("image/") else "non-image"
    r.duration, r.bitRate, r.videoCodec, r.audioCodec = (v.duration, v.bitRate,
                                                          v.videoCodec, v.audioCodec)
    r.embeddedMetadata = v.embeddedMetadata
