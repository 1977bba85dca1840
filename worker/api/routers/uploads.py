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

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations.

import hashlib
import hmac
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile

from worker.api.deps import Credentials, ServicesDep, account_of
from worker.api.limits import BoundedRoute
from worker.core.errors import PermanentError, Unauthorized
from worker.runtime import Runtime
from worker.services.uploads import response_fields, upload_transformation

MAX_TOKEN_LIFETIME_S = 3600
router = APIRouter(route_class=BoundedRoute, tags=["upload"])


async def raw_form(request: Request) -> dict[str, Any]:
    """The form as sent (Starlette parses it once; the endpoint's fields read the same)."""
    return dict(await request.form())


RawForm = Annotated[dict[str, Any], Depends(raw_form)]


def _form_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def use_token_once(runtime: Runtime, account: str, token: str, expire: float) -> None:
    redis = runtime.redis
    assert redis is not None
    ttl = max(1, int(expire - time.time()) + 60)
    if not redis.set(runtime.settings.keys.upload_token(account, token), 1, nx=True, ex=ttl):
        raise Unauthorized("token: this token was used before (each works once)")


def client_v1(runtime: Runtime, public_key: str, token: str | None, expire: str | None,
              signature: str | None) -> str:
    found = runtime.apikeys.by_public(public_key)
    if found is None:
        raise Unauthorized("publicKey: Your account cannot be authenticated.")
    account, private = found
    for name, value in (("token", token), ("expire", expire), ("signature", signature)):
        if not value:
            raise Unauthorized(f"{name}: missing (client-side uploads send token, "
                           "expire and signature)")
    assert token and expire and signature
    if private is None:
        raise Unauthorized("publicKey: this key was created without a sealed copy and "
                       "cannot check signatures: create a new one (extworker keys create)")
    if not expire.isdigit():
        raise PermanentError("expire: a Unix timestamp in seconds")
    now = time.time()
    if int(expire) < now:
        raise Unauthorized("expire: the signature has expired")
    if int(expire) > now + MAX_TOKEN_LIFETIME_S:
        raise PermanentError("expire: must be less than 1 hour into the future")
    expected = hmac.new(private.encode(), f"{token}{expire}".encode(),
                        hashlib.sha1).hexdigest()
    if not hmac.compare_digest(expected, signature.lower()):
        raise Unauthorized("signature: does not match the token and expire")
    use_token_once(runtime, account, token, int(expire))
    return account


def client_v2(runtime: Runtime, token: str, form: dict[str, Any]) -> str:
    import jwt

    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.InvalidTokenError as e:
        raise Unauthorized(f"token: not a JWT ({e})") from None
    found = runtime.apikeys.by_public(kid) if isinstance(kid, str) else None
    if found is None:
        raise Unauthorized("token: its kid names no public key of this deployment")
    account, private = found
    if private is None:
        raise Unauthorized("token: this key was created without a sealed copy and "
                       "cannot check signatures: create a new one (extworker keys create)")
    try:
        claims = jwt.decode(token, private, algorithms=["HS256"],
                            options={"require": ["exp", "iat"]})
    except jwt.ExpiredSignatureError:
        raise Unauthorized("token: expired") from None
    except jwt.InvalidTokenError as e:
        raise Unauthorized(f"token: {e}") from None
    if claims["exp"] - claims["iat"] > MAX_TOKEN_LIFETIME_S:
        raise PermanentError("token: exp must be within 1 hour of iat")
    signed = {k: v for k, v in claims.items() if k not in ("iat", "exp")}
    sent = {k: v for k, v in form.items() if k not in ("file", "token")}
    for name in sorted(set(signed) | set(sent)):
        if name not in sent or name not in signed or \
                _form_text(signed[name]) != _form_text(sent[name]):
            raise Unauthorized(f"token: the field {name} differs from what the token "
                           "signed")
    use_token_once(runtime, account, hashlib.sha256(token.encode()).hexdigest(), claims["exp"])
    return account


def authenticate(runtime: Runtime, creds: Any, form: dict[str, Any], v2: bool) -> str:
    if creds is not None and creds.username:
        return account_of(runtime, creds)
    if v2 and form.get("token"):
        return client_v2(runtime, str(form["token"]), form)
    if form.get("publicKey"):
        return client_v1(runtime, str(form["publicKey"]), form.get("token"), form.get("expire"),
                         form.get("signature"))
    raise Unauthorized("Your request does not contain private API key.")


def endpoint(v2: bool) -> Any:
    def upload(
        creds: Credentials,
        svc: ServicesDep,
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
        acct = authenticate(svc.runtime, creds, form, v2)
        if checks:
            raise PermanentError("checks: not supported by this deployment")
        fields = response_fields(responseFields)
        pre, post = upload_transformation(transformation,
                                          svc.runtime.settings.api_max_body_bytes)
        return svc.uploads.upload(acct, file if isinstance(file, str) else file.file, pre, post,
                                  fields, webhookUrl, extensions, {
            "fileName": fileName, "useUniqueFileName": useUniqueFileName,
            "folder": folder, "isPrivateFile": isPrivateFile, "isPublished": isPublished,
            "overwriteFile": overwriteFile, "overwriteAITags": overwriteAITags,
            "overwriteTags": overwriteTags,
            "overwriteCustomMetadata": overwriteCustomMetadata, "tags": tags,
            "customCoordinates": customCoordinates, "description": description,
            "customMetadata": customMetadata})
    return upload


router.add_api_route("/api/v1/files/upload", endpoint(False), methods=["POST"],
                     operation_id="upload", summary="Upload file")
router.add_api_route("/api/v2/files/upload", endpoint(True), methods=["POST"],
                     operation_id="uploadV2", summary="Upload file V2")
