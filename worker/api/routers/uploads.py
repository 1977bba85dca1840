"""``POST /api/v1/files/upload`` and ``POST /api/v2/files/upload``: the upload API.

Authentication, either:

* the private key as HTTP Basic's user name (server-side uploads, both versions);
* v1 client-side: ``publicKey`` + ``token`` + ``expire`` + ``signature`` =
  HMAC-SHA1(private key, token + expire), what ``helper.get_authentication_parameters()``
  gives; ``expire`` within the hour; each token works once;
* v2 client-side: ``token`` a JWT (HS256 under the private key, header ``kid`` = the
  public key) whose claims are exactly the request's other fields plus ``iat``/``exp``
  (at most an hour apart) — the whole payload is signed; each token works once.

``transformation``: ``pre`` (a chain) is applied to the bytes before they are stored;
``post`` steps of type ``transformation`` and ``thumbnail`` are computed right after the
upload (delivery's derivatives: the first request finds them stored), ``gif-to-video`` makes
a GIF's MP4 (served at ``?tr=f-mp4``); ``abs`` is a 400. ``responseFields`` chooses the
optional fields of the answer.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile

from worker.api.deps import Api, Credentials, new_job_id
from worker.api.errors import ApiError
from worker.api.limits import json_field
from worker.core.video import looks_like_video
from worker.delivery.render import output_format, render
from worker.delivery.service import Target
from worker.delivery.transform import Chain, TransformError, parse

MAX_TOKEN_LIFETIME_S = 3600
OPTIONAL_FIELDS = ("tags", "customCoordinates", "isPrivateFile", "embeddedMetadata",
                   "isPublished", "customMetadata", "metadata", "selectedFieldsSchema")
# The upload document: each optional field is answered only when `responseFields` asks for
# it ("Send tags in responseFields in API request to get the value of this field").
DEFAULT_FIELDS: tuple[str, ...] = ()
CONSOLE_FIELDS = OPTIONAL_FIELDS[:6]  # the console's uploader shows them all
UNSUPPORTED_POST = ("abs",)


async def raw_form(request: Request) -> dict[str, Any]:
    """The form as sent (Starlette parses it once; the endpoint's fields read the same)."""
    return dict(await request.form())


RawForm = Annotated[dict[str, Any], Depends(raw_form)]


def _post_steps(raw: Any) -> list[Chain]:
    if not isinstance(raw, list):
        raise ApiError(400, "transformation.post: must be an array")
    chains = []
    for i, step in enumerate(raw):
        where = f"transformation.post[{i}]"
        if not isinstance(step, dict) or not isinstance(step.get("type"), str):
            raise ApiError(400, f"{where}.type: required")
        kind = step["type"]
        if kind in UNSUPPORTED_POST:
            raise ApiError(400, f"{where}.type: {kind} is not supported by this deployment")
        if kind == "gif-to-video":  # the GIF as an MP4, served at the file's ?tr=f-mp4
            value = step.get("value")
            if value is not None and not isinstance(value, str):
                raise ApiError(400, f"{where}.value: must be a transformation string")
            if value:
                raise ApiError(400, f"{where}.value: a gif-to-video takes no transformation "
                               "here (the video keeps the GIF's size)")
            chains.append(parse("f-mp4"))
            continue
        if kind not in ("transformation", "thumbnail"):
            raise ApiError(400, f"{where}.type: must be transformation, thumbnail or "
                           "gif-to-video")
        if not isinstance(step.get("value"), str) or not step["value"]:
            raise ApiError(400, f"{where}.value: a transformation (w-300,h-300) is required")
        try:
            chains.append(parse(step["value"]))
        except TransformError as e:
            raise ApiError(400, f"{where}.value: {e}") from None
    return chains


def upload_transformation(text: str | None, max_bytes: int) -> tuple[Chain | None, list[Chain]]:
    """``(pre, post)`` of the ``transformation`` field, every part checked."""
    if not text:
        return None, []
    value = json_field("transformation", text, dict, max_bytes)
    unknown = set(value) - {"pre", "post"}
    if unknown:
        raise ApiError(400, f"transformation.{sorted(unknown)[0]}: not a field (pre, post)")
    pre = None
    if value.get("pre") is not None:
        if not isinstance(value["pre"], str) or not value["pre"]:
            raise ApiError(400, "transformation.pre: a transformation (w-300,h-300)")
        try:
            pre = parse(value["pre"])
        except TransformError as e:
            raise ApiError(400, f"transformation.pre: {e}") from None
    return pre, _post_steps(value.get("post", []))


def response_fields(text: str | None) -> tuple[str, ...]:
    if text is None:
        return DEFAULT_FIELDS
    wanted = tuple(f.strip() for f in text.split(",") if f.strip())
    for name in wanted:
        if name not in OPTIONAL_FIELDS:
            raise ApiError(400, f"responseFields: {name} is not one of "
                           f"{', '.join(OPTIONAL_FIELDS)}")
    return wanted


def _form_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class Uploader:
    """An upload's bytes and fields through the job path (``Pipeline.accept``)."""

    def __init__(self, api: Api) -> None:
        self.api = api

    def upload(self, acct: str, file: UploadFile | str, pre: Chain | None, post: list[Chain],
               fields: tuple[str, ...], webhook_url: str | None, extensions: str | None,
               given: dict[str, Any]) -> dict[str, Any]:
        """One upload through the job path, as both upload routes and the console make it."""
        api, settings = self.api, self.api.settings
        job_id = new_job_id()
        up: dict[str, Any] = {k: v for k, v in given.items()
                              if v is not None and k != "customMetadata"}
        if given["customMetadata"] is not None:
            up["customMetadata"] = json_field("customMetadata", given["customMetadata"], dict,
                                              settings.api_max_body_bytes)
        # Every field is read before the file is stored: a bad one leaves no bytes behind.
        wanted = (json_field("extensions", extensions, list, settings.api_max_body_bytes)
                  if extensions else [])
        api.check_extensions(wanted)
        data: bytes | None = None
        if isinstance(file, str):
            if file.startswith(("http://", "https://")):
                if pre is not None:
                    raise ApiError(400, "transformation.pre: applies to uploaded bytes; a url "
                                   "upload is fetched by the workers (send the bytes)")
                up["url"] = file
            elif pre is None:
                up["base64"] = file
            else:
                try:
                    data = base64.b64decode(file.split(",", 1)[-1], validate=True)
                except (binascii.Error, ValueError):
                    raise ApiError(400, "file: not a URL and not base64") from None
        else:
            data = file.file.read(max(settings.upload_max_bytes, settings.video_max_bytes) + 1)
        if data is not None:
            video = looks_like_video(data[:16])
            limit = settings.video_max_bytes if video else settings.upload_max_bytes
            if len(data) > limit:
                raise ApiError(413, f"file: larger than {limit} bytes"
                               + (" (a video)" if video else
                                  f" (videos: up to {settings.video_max_bytes})"))
            if pre is not None:
                data = self._pre(data, pre)
            if any(c.format == "mp4" for c in post) and data[:6] not in (b"GIF87a", b"GIF89a"):
                raise ApiError(400, "transformation.post: gif-to-video applies to GIFs")
            key = f"incoming/{job_id}"
            api.runtime.blobs.put(key, data)
            up["blobKey"] = key
        job: dict[str, Any] = {"jobId": job_id, "accountId": acct, "upload": up,
                               "extensions": wanted}
        if webhook_url:
            job["webhookUrl"] = webhook_url
        try:
            doc, told = api.run_answered(job)
        finally:
            if "blobKey" in up:
                api.runtime.blobs.delete(up["blobKey"])  # the file keeps its own copy
        assert doc.fileId is not None
        record = api.owned(doc.fileId, acct)
        for chain in post:
            target = Target(record, record.current, chain, False, None)
            api.delivery.warm(target, output_format(chain, record.mime, False))
        out = api.with_status(record, doc, told)
        return self.shaped(out, record, fields)

    def _pre(self, data: bytes, chain: Chain) -> bytes:
        from worker.core.imaging import probe

        info = probe(data)
        if info is None:
            raise ApiError(400, "transformation.pre: applies to images only")
        try:
            return render(data, chain, output_format(chain, info.mime, False),
                          self.api.settings.max_image_pixels).data
        except TransformError as e:
            raise ApiError(400, f"transformation.pre: {e}") from None

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
            defined = self.api.runtime.fields.all(record.accountId)
            out["selectedFieldsSchema"] = {k: defined[k].public().get("schema")
                                           for k in record.customMetadata if k in defined}
        return out


def router(api: Api) -> APIRouter:
    r = APIRouter(route_class=api.route_type)
    settings, keys = api.settings, api.keys
    uploader = Uploader(api)
    redis = api.runtime.redis

    def use_token_once(account: str, token: str, expire: float) -> None:
        assert redis is not None
        ttl = max(1, int(expire - time.time()) + 60)
        if not redis.set(settings.keys.upload_token(account, token), 1, nx=True, ex=ttl):
            raise ApiError(401, "token: this token was used before (each works once)")

    def client_v1(public_key: str, token: str | None, expire: str | None,
                  signature: str | None) -> str:
        found = keys.by_public(public_key)
        if found is None:
            raise ApiError(401, "publicKey: Your account cannot be authenticated.")
        account, private = found
        for name, value in (("token", token), ("expire", expire), ("signature", signature)):
            if not value:
                raise ApiError(401, f"{name}: missing (client-side uploads send token, "
                               "expire and signature)")
        assert token and expire and signature
        if private is None:
            raise ApiError(401, "publicKey: this key was created without a sealed copy and "
                           "cannot check signatures: create a new one (extworker keys create)")
        if not expire.isdigit():
            raise ApiError(400, "expire: a Unix timestamp in seconds")
        now = time.time()
        if int(expire) < now:
            raise ApiError(401, "expire: the signature has expired")
        if int(expire) > now + MAX_TOKEN_LIFETIME_S:
            raise ApiError(400, "expire: must be less than 1 hour into the future")
        expected = hmac.new(private.encode(), f"{token}{expire}".encode(),
                            hashlib.sha1).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            raise ApiError(401, "signature: does not match the token and expire")
        use_token_once(account, token, int(expire))
        return account

    def client_v2(token: str, form: dict[str, Any]) -> str:
        import jwt

        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.InvalidTokenError as e:
            raise ApiError(401, f"token: not a JWT ({e})") from None
        found = keys.by_public(kid) if isinstance(kid, str) else None
        if found is None:
            raise ApiError(401, "token: its kid names no public key of this deployment")
        account, private = found
        if private is None:
            raise ApiError(401, "token: this key was created without a sealed copy and "
                           "cannot check signatures: create a new one (extworker keys create)")
        try:
            claims = jwt.decode(token, private, algorithms=["HS256"],
                                options={"require": ["exp", "iat"]})
        except jwt.ExpiredSignatureError:
            raise ApiError(401, "token: expired") from None
        except jwt.InvalidTokenError as e:
            raise ApiError(401, f"token: {e}") from None
        if claims["exp"] - claims["iat"] > MAX_TOKEN_LIFETIME_S:
            raise ApiError(400, "token: exp must be within 1 hour of iat")
        signed = {k: v for k, v in claims.items() if k not in ("iat", "exp")}
        sent = {k: v for k, v in form.items() if k not in ("file", "token")}
        for name in sorted(set(signed) | set(sent)):
            if name not in sent or name not in signed or \
                    _form_text(signed[name]) != _form_text(sent[name]):
                raise ApiError(401, f"token: the field {name} differs from what the token "
                               "signed")
        use_token_once(account, hashlib.sha256(token.encode()).hexdigest(), claims["exp"])
        return account

    def authenticate(creds: Any, form: dict[str, Any], v2: bool) -> str:
        if creds is not None and creds.username:
            return api.account(creds)
        if v2 and form.get("token"):
            return client_v2(str(form["token"]), form)
        if form.get("publicKey"):
            return client_v1(str(form["publicKey"]), form.get("token"), form.get("expire"),
                             form.get("signature"))
        raise ApiError(401, "Your request does not contain private API key.")

    def endpoint(v2: bool) -> Any:
        def upload(
            creds: Credentials,
            form: RawForm,
            file: Annotated[UploadFile | str, File(description="The bytes, a URL or base64.")],
            fileName: Annotated[str, Form()],  # noqa: N803 - the hosted API's field names
            useUniqueFileName: Annotated[bool, Form()] = True,  # noqa: N803
            tags: Annotated[str | None, Form()] = None,
            folder: Annotated[str, Form()] = "/",
            isPrivateFile: Annotated[bool, Form()] = False,  # noqa: N803
            isPublished: Annotated[bool, Form()] = True,  # noqa: N803
            customCoordinates: Annotated[str | None, Form()] = None,  # noqa: N803
            customMetadata: Annotated[str | None, Form()] = None,  # noqa: N803
            description: Annotated[str | None, Form()] = None,
            extensions: Annotated[str | None, Form()] = None,
            webhookUrl: Annotated[str | None, Form()] = None,  # noqa: N803
            overwriteFile: Annotated[bool, Form()] = True,  # noqa: N803
            overwriteAITags: Annotated[bool, Form()] = True,  # noqa: N803
            overwriteTags: Annotated[bool, Form()] = True,  # noqa: N803
            overwriteCustomMetadata: Annotated[bool, Form()] = True,  # noqa: N803
            transformation: Annotated[str | None, Form(
                description='JSON: {"pre": "w-300", "post": [{"type": "thumbnail", '
                '"value": "w-150"}]}')] = None,
            responseFields: Annotated[str | None, Form()] = None,  # noqa: N803
            publicKey: Annotated[str | None, Form()] = None,  # noqa: N803
            token: Annotated[str | None, Form()] = None,
            expire: Annotated[str | None, Form()] = None,
            signature: Annotated[str | None, Form()] = None,
            checks: Annotated[str | None, Form()] = None,
        ) -> dict[str, Any]:
            """Upload a file (binary, a URL or base64), with extensions and a webhook."""
            acct = authenticate(creds, form, v2)
            if checks:
                raise ApiError(400, "checks: not supported by this deployment")
            fields = response_fields(responseFields)
            pre, post = upload_transformation(transformation, settings.api_max_body_bytes)
            return uploader.upload(acct, file, pre, post, fields, webhookUrl, extensions, {
                "fileName": fileName, "useUniqueFileName": useUniqueFileName,
                "folder": folder, "isPrivateFile": isPrivateFile, "isPublished": isPublished,
                "overwriteFile": overwriteFile, "overwriteAITags": overwriteAITags,
                "overwriteTags": overwriteTags,
                "overwriteCustomMetadata": overwriteCustomMetadata, "tags": tags,
                "customCoordinates": customCoordinates, "description": description,
                "customMetadata": customMetadata})
        return upload

    r.add_api_route("/api/v1/files/upload", endpoint(False), methods=["POST"],
                    name="upload", summary="Upload file")
    r.add_api_route("/api/v2/files/upload", endpoint(True), methods=["POST"],
                    name="upload_v2", summary="Upload file V2")
    return r
