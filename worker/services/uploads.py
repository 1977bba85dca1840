"""An upload through the job path (``Pipeline.accept``), as the API's two upload routes
and the console make it: the ``transformation`` (``pre`` applied to the bytes before they
are stored, ``post`` derivatives computed right after), ``responseFields`` and the upload's
fields, each checked before any byte is stored."""

from __future__ import annotations

import base64
import binascii
from typing import Any, BinaryIO

from worker.core import jsonlimits
from worker.core.errors import PermanentError, TooLarge
from worker.core.video import looks_like_video
from worker.delivery.render import output_format, render
from worker.delivery.service import Delivery, Target
from worker.delivery.transform import Chain, TransformError, parse
from worker.runtime import Runtime
from worker.services.files import FileService
from worker.services.jobs import JobService, new_job_id

OPTIONAL_FIELDS = ("tags", "customCoordinates", "isPrivateFile", "embeddedMetadata",
                   "isPublished", "customMetadata", "metadata", "selectedFieldsSchema")
# The upload document: each optional field is answered only when `responseFields` asks for
# it ("Send tags in responseFields in API request to get the value of this field").
DEFAULT_FIELDS: tuple[str, ...] = ()
CONSOLE_FIELDS = OPTIONAL_FIELDS[:6]  # the console's uploader shows them all
UNSUPPORTED_POST = ("abs",)


def _post_steps(raw: Any) -> list[Chain]:
    if not isinstance(raw, list):
        raise PermanentError("transformation.post: must be an array")
    chains = []
    for i, step in enumerate(raw):
        where = f"transformation.post[{i}]"
        if not isinstance(step, dict) or not isinstance(step.get("type"), str):
            raise PermanentError(f"{where}.type: required")
        kind = step["type"]
        if kind in UNSUPPORTED_POST:
            raise PermanentError(f"{where}.type: {kind} is not supported by this deployment")
        if kind == "gif-to-video":  # the GIF as an MP4, served at the file's ?tr=f-mp4
            value = step.get("value")
            if value is not None and not isinstance(value, str):
                raise PermanentError(f"{where}.value: must be a transformation string")
            if value:
                raise PermanentError(f"{where}.value: a gif-to-video takes no transformation "
                               "here (the video keeps the GIF's size)")
            chains.append(parse("f-mp4"))
            continue
        if kind not in ("transformation", "thumbnail"):
            raise PermanentError(f"{where}.type: must be transformation, thumbnail or "
                           "gif-to-video")
        if not isinstance(step.get("value"), str) or not step["value"]:
            raise PermanentError(f"{where}.value: a transformation (w-300,h-300) is required")
        try:
            chains.append(parse(step["value"]))
        except TransformError as e:
            raise PermanentError(f"{where}.value: {e}") from None
    return chains


def upload_transformation(text: str | None, max_bytes: int) -> tuple[Chain | None, list[Chain]]:
    """``(pre, post)`` of the ``transformation`` field, every part checked."""
    if not text:
        return None, []
    value = jsonlimits.field("transformation", text, dict, max_bytes)
    unknown = set(value) - {"pre", "post"}
    if unknown:
        raise PermanentError(f"transformation.{sorted(unknown)[0]}: not a field (pre, post)")
    pre = None
    if value.get("pre") is not None:
        if not isinstance(value["pre"], str) or not value["pre"]:
            raise PermanentError("transformation.pre: a transformation (w-300,h-300)")
        try:
            pre = parse(value["pre"])
        except TransformError as e:
            raise PermanentError(f"transformation.pre: {e}") from None
    return pre, _post_steps(value.get("post", []))


def response_fields(text: str | None) -> tuple[str, ...]:
    if text is None:
        return DEFAULT_FIELDS
    wanted = tuple(f.strip() for f in text.split(",") if f.strip())
    for name in wanted:
        if name not in OPTIONAL_FIELDS:
            raise PermanentError(f"responseFields: {name} is not one of "
                           f"{', '.join(OPTIONAL_FIELDS)}")
    return wanted


class Uploader:
    """An upload's bytes and fields through the job path (``Pipeline.accept``)."""

    def __init__(self, runtime: Runtime, delivery: Delivery, files: FileService,
                 jobs: JobService) -> None:
        self.runtime, self.delivery, self.files, self.jobs = runtime, delivery, files, jobs
        self.settings = runtime.settings

    def upload(self, acct: str, file: BinaryIO | str, pre: Chain | None, post: list[Chain],
               fields: tuple[str, ...], webhook_url: str | None, extensions: str | None,
               given: dict[str, Any]) -> dict[str, Any]:
        """One upload through the job path, as both upload routes and the console make it."""
        settings = self.settings
        job_id = new_job_id()
        up: dict[str, Any] = {k: v for k, v in given.items()
                              if v is not None and k != "customMetadata"}
        if given["customMetadata"] is not None:
            up["customMetadata"] = jsonlimits.field("customMetadata", given["customMetadata"], dict,
                                              settings.api_max_body_bytes)
        # Every field is read before the file is stored: a bad one leaves no bytes behind.
        wanted = (jsonlimits.field("extensions", extensions, list, settings.api_max_body_bytes)
                  if extensions else [])
        self.jobs.check_extensions(wanted)
        data: bytes | None = None
        if isinstance(file, str):
            if file.startswith(("http://", "https://")):
                if pre is not None:
                    raise PermanentError("transformation.pre: applies to uploaded bytes; a url "
                                   "upload is fetched by the workers (send the bytes)")
                up["url"] = file
            elif pre is None:
                up["base64"] = file
            else:
                try:
                    data = base64.b64decode(file.split(",", 1)[-1], validate=True)
                except (binascii.Error, ValueError):
                    raise PermanentError("file: not a URL and not base64") from None
        else:
            data = file.read(max(settings.upload_max_bytes, settings.video_max_bytes) + 1)
        if data is not None:
            video = looks_like_video(data[:16])
            limit = settings.video_max_bytes if video else settings.upload_max_bytes
            if len(data) > limit:
                raise TooLarge(f"file: larger than {limit} bytes"
                               + (" (a video)" if video else
                                  f" (videos: up to {settings.video_max_bytes})"))
            if pre is not None:
                data = self._pre(data, pre)
            if any(c.format == "mp4" for c in post) and data[:6] not in (b"GIF87a", b"GIF89a"):
                raise PermanentError("transformation.post: gif-to-video applies to GIFs")
            key = f"incoming/{job_id}"
            self.runtime.blobs.put(key, data)
            up["blobKey"] = key
        job: dict[str, Any] = {"jobId": job_id, "accountId": acct, "upload": up,
                               "extensions": wanted}
        if webhook_url:
            job["webhookUrl"] = webhook_url
        try:
            doc, told = self.jobs.run_answered(job)
        finally:
            if "blobKey" in up:
                self.runtime.blobs.delete(up["blobKey"])  # the file keeps its own copy
        assert doc.fileId is not None
        record = self.files.owned(doc.fileId, acct)
        for chain in post:
            target = Target(record, record.current, chain, False, None)
            self.delivery.warm(target, output_format(chain, record.mime, False))
        out = self.files.with_status(record, doc, told)
        return self.shaped(out, record, fields)

    def _pre(self, data: bytes, chain: Chain) -> bytes:
        from worker.core.imaging import probe

        info = probe(data)
        if info is None:
            raise PermanentError("transformation.pre: applies to images only")
        try:
            return render(data, chain, output_format(chain, info.mime, False),
                          self.settings.max_image_pixels).data
        except TransformError as e:
            raise PermanentError(f"transformation.pre: {e}") from None

    def shaped(self, out: dict[str, Any], record: Any, fields: tuple[str, ...]
               ) -> dict[str, Any]:
        out["thumbnailUrl"] = out.get("thumbnail")
        for name in OPTIONAL_FIELDS:
            if name not in fields:
                out.pop(name, None)
        if "metadata" in fields:
            out["metadata"] = {"height": record.height, "width": record.width,
                               "size": record.size, "format": record.mime.split("/")[-1],
                               "hasTransparency": record.hasAlpha,
                               "exif": record.embeddedMetadata}
        if "selectedFieldsSchema" in fields:
            defined = self.runtime.fields.all(record.accountId)
            out["selectedFieldsSchema"] = {k: defined[k].public().get("schema")
                                           for k in record.customMetadata if k in defined}
        return out
