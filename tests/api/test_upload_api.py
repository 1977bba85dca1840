"""The rest of the upload API: v2, client-side authentication (v1 signature, v2 JWT),
``transformation`` (pre, post), ``responseFields``; and the saved-extensions
documentation's two curl examples, as written there (host and key filled in)."""

from __future__ import annotations

import io
import json
import re
import shutil
import subprocess
import time
import uuid

import httpx
import jwt
import pytest
from imagekitio import BadRequestError, ImageKit
from PIL import Image

from tests.support import ROOT, jpeg, wait_until

# Every test that uses the store runs on each backend (Redis, SQLite, PostgreSQL).
ON_EVERY_STORE = True


@pytest.fixture
def acme(api):
    base_url, keys = api
    made = keys.create("acme")
    return ImageKit(private_key=made["key"], base_url=base_url), base_url, made


def _files(base_url, key):
    return httpx.get(f"{base_url}/v1/files", auth=(key, "")).json()


def test_v2_upload_through_the_sdk(acme, astronaut):
    ik, base_url, _ = acme
    up = ik.beta.v2.files.upload(file=jpeg(astronaut), file_name="v2.jpg", folder="/v2",
                                 tags=["a", "b"], response_fields=["tags"]).to_dict()
    assert up["filePath"].startswith("/v2/v2") and up["tags"] == ["a", "b"]
    assert httpx.get(up["url"], timeout=30).status_code == 200
    assert up["thumbnailUrl"] and httpx.get(up["thumbnailUrl"], timeout=30).status_code == 200


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_the_saved_extension_documentation_curl_examples(acme, api, tmp_path, astronaut):
    _, base_url, made = acme
    # The documentation's id, kept as it is when saved extensions move from elsewhere.
    _saved_with_the_documentation_id(api[1], {"name": "remove-bg"})
    (tmp_path / "image.jpg").write_bytes(jpeg(astronaut))
    # As written there: only the host (and private_key, :fileId) filled in.
    first = subprocess.run(["bash", "-c", f"""curl -sS -X POST '{base_url}/api/v2/files/upload' \\
  -u {made['key']}: \\
  -F 'file=@image.jpg' \\
  -F 'fileName=image.jpg' \\
  -F 'extensions=[{{
    "name": "saved-extension",
    "id": "ext_abc123def456"
  }}]'"""], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    answer = json.loads(first.stdout)
    assert answer["name"].startswith("image") and answer["extensionStatus"] == {
        "saved-extension:ext_abc123def456": "pending"}, answer
    file_id = answer["fileId"]
    details = f"{base_url}/v1/files/{file_id}/details"
    second = subprocess.run(["bash", "-c", f"""curl -X PATCH '{details}' \\
  -H 'Content-Type: application/json' \\
  -u {made['key']}: \\
  -d '{{
    "extensions": [{{
      "name": "saved-extension",
      "id": "ext_abc123def456"
    }}]
  }}'"""], capture_output=True, text=True, timeout=60)
    patched = json.loads(second.stdout)
    assert patched["fileId"] == file_id and patched["extensionStatus"] == {
        "saved-extension:ext_abc123def456": "pending"}, patched


def _saved_with_the_documentation_id(keys, config):
    from extensions.registry import Registry
    from worker.store.saved import SavedStore

    store = SavedStore(keys.kv, keys.settings, Registry.discover([]).contract)
    store.create("acme", "cut-out", "remove the background", config,
                 ext_id="ext_abc123def456")


def _auth_params(made, expire=None, token=None):
    ik = ImageKit(private_key=made["key"])
    return ik.helper.get_authentication_parameters(token=token, expire=expire)


def test_client_side_upload_with_the_sdks_authentication_parameters(acme, astronaut):
    _, base_url, made = acme
    params = _auth_params(made)
    form = {"fileName": "browser.jpg", "publicKey": made["publicKey"],
            "token": params["token"], "expire": str(params["expire"]),
            "signature": params["signature"]}
    files = {"file": ("browser.jpg", jpeg(astronaut), "image/jpeg")}
    ok = httpx.post(f"{base_url}/api/v1/files/upload", data=form, files=files)
    assert ok.status_code == 200, ok.text
    assert ok.json()["name"].startswith("browser")
    again = httpx.post(f"{base_url}/api/v1/files/upload", data=form, files=files)
    assert again.status_code == 401 and "used before" in again.json()["message"]
    past = _auth_params(made, expire=int(time.time()) - 5)
    late = httpx.post(f"{base_url}/api/v1/files/upload", files=files, data={
        **form, "token": past["token"], "expire": str(past["expire"]),
        "signature": past["signature"]})
    assert late.status_code == 401 and "expired" in late.json()["message"]
    fresh = _auth_params(made)
    wrong = httpx.post(f"{base_url}/api/v1/files/upload", files=files, data={
        **form, "token": fresh["token"], "expire": str(fresh["expire"]),
        "signature": "0" * 40})
    assert wrong.status_code == 401 and "signature" in wrong.json()["message"]
    nobody = httpx.post(f"{base_url}/api/v1/files/upload", files=files, data={
        **form, "publicKey": "public_nobody"})
    assert nobody.status_code == 401
    assert len(_files(base_url, made["key"])) == 1  # only the one good upload stored


def _jwt(made, fields, lifetime=600, **kw):
    now = int(time.time())
    claims = {**fields, "iat": now, "exp": now + lifetime, **kw}
    return jwt.encode(claims, made["key"], algorithm="HS256",
                      headers={"kid": made["publicKey"]})


def test_v2_client_side_upload_with_a_jwt_over_the_whole_payload(acme, astronaut):
    _, base_url, made = acme
    fields = {"fileName": "signed.jpg", "folder": "/jwt", "tags": "x,y",
              "responseFields": "tags"}
    files = {"file": ("signed.jpg", jpeg(astronaut), "image/jpeg")}
    token = _jwt(made, fields)
    ok = httpx.post(f"{base_url}/api/v2/files/upload", data={**fields, "token": token},
                    files=files)
    assert ok.status_code == 200, ok.text
    assert ok.json()["tags"] == ["x", "y"]
    reused = httpx.post(f"{base_url}/api/v2/files/upload", data={**fields, "token": token},
                        files=files)
    assert reused.status_code == 401 and "used before" in reused.json()["message"]
    tampered = httpx.post(f"{base_url}/api/v2/files/upload", files=files, data={
        **fields, "folder": "/elsewhere", "token": _jwt(made, fields)})
    assert tampered.status_code == 401 and "folder" in tampered.json()["message"]
    extra = httpx.post(f"{base_url}/api/v2/files/upload", files=files, data={
        **fields, "isPrivateFile": "true", "token": _jwt(made, fields)})
    assert extra.status_code == 401 and "isPrivateFile" in extra.json()["message"]
    expired = httpx.post(f"{base_url}/api/v2/files/upload", files=files, data={
        **fields, "token": _jwt(made, fields, lifetime=-10, iat=int(time.time()) - 100)})
    assert expired.status_code == 401 and "expired" in expired.json()["message"]
    forged = jwt.encode({**fields, "iat": int(time.time()), "exp": int(time.time()) + 60},
                        "private_" + "not-the-key" * 4, algorithm="HS256",
                        headers={"kid": made["publicKey"]})
    bad = httpx.post(f"{base_url}/api/v2/files/upload", files=files,
                     data={**fields, "token": forged})
    assert bad.status_code == 401
    assert len(_files(base_url, made["key"])) == 1


def test_pre_and_post_transformations(acme, settings, astronaut):
    ik, base_url, made = acme
    up = ik.files.upload(file=jpeg(astronaut), file_name="pre.jpg", use_unique_file_name=False,
                         transformation={"pre": "w-100,h-80", "post": [
                             {"type": "thumbnail", "value": "w-40"},
                             {"type": "transformation", "value": "e-grayscale"}]}).to_dict()
    assert (up["width"], up["height"]) == (100, 80)
    stored = httpx.get(up["url"])
    assert Image.open(io.BytesIO(stored.content)).size == (100, 80)
    from worker.store.blobs import BlobStore

    blobs = BlobStore(settings.blob_root)
    wait_until(lambda: len(list(blobs.keys(f"derived/{up['fileId']}/"))) == 2, 20,
               "the post transformations computed")
    first = httpx.get(f"{up['url']}?tr=w-40")
    assert first.headers["x-extworker-derivative"] == "stored"
    assert Image.open(io.BytesIO(first.content)).size == (40, 32)

    before = len(_files(base_url, made["key"]))
    for transformation, named in (
            ({"post": [{"type": "gif-to-video"}]}, "gif-to-video applies to GIFs"),
            ({"post": [{"type": "abs", "value": "mp4", "protocol": "hls"}]}, "abs is not"),
            ({"pre": "w-0"}, "transformation.pre: w-0"),
            ({"post": [{"type": "transformation", "value": "zz-1"}]}, "post[0].value: zz"),
            ({"later": 1}, "transformation.later")):
        with pytest.raises(BadRequestError) as err:
            ik.files.upload(file=jpeg(astronaut), file_name=f"{uuid.uuid4().hex}.jpg",
                            transformation=transformation)
        assert named in str(err.value), (transformation, str(err.value))
    assert len(_files(base_url, made["key"])) == before  # none of them stored anything


def test_response_fields_are_exactly_what_was_asked(acme, astronaut):
    """The upload document: "Comma-separated values of the fields that you want the API to
    return in the response" — tags, customCoordinates, isPrivateFile, embeddedMetadata,
    isPublished, customMetadata, metadata, selectedFieldsSchema: each asked for is there
    (through the SDK too), and none that was not."""
    ik, base_url, made = acme
    optional = {"tags", "customCoordinates", "isPrivateFile", "embeddedMetadata",
                "isPublished", "customMetadata", "metadata", "selectedFieldsSchema"}
    for asked in (["isPublished"], ["tags", "customCoordinates", "isPrivateFile"],
                  ["embeddedMetadata", "customMetadata"]):
        raw = httpx.post(f"{base_url}/api/v1/files/upload", auth=(made["key"], ""),
                         timeout=30, data={"fileName": "rf.jpg", "isPublished": "true",
                                           "responseFields": ",".join(asked)},
                         files={"file": ("rf.jpg", jpeg(astronaut))}).json()
        assert optional & set(raw) == set(asked), (asked, sorted(raw))
        sdk = ik.files.upload(file=jpeg(astronaut), file_name="rf.jpg",
                              response_fields=asked).to_dict()
        assert optional & set(sdk) == set(asked), (asked, sorted(sdk))
        v2 = ik.beta.v2.files.upload(file=jpeg(astronaut), file_name="rf.jpg",
                                     response_fields=asked).to_dict()
        assert optional & set(v2) == set(asked), (asked, sorted(v2))
    plain = ik.files.upload(file=jpeg(astronaut), file_name="rf.jpg").to_dict()
    assert not optional & set(plain), sorted(plain)  # none asked: none answered
    assert raw["customMetadata"] == {} and raw["embeddedMetadata"]["JFIFVersion"] == 1.01


def test_response_fields(acme, astronaut):
    ik, base_url, made = acme
    up = ik.files.upload(file=jpeg(astronaut), file_name="rf.jpg", tags=["t"],
                         response_fields=["tags", "metadata"]).to_dict()
    assert up["tags"] == ["t"] and up["metadata"]["width"] == 512
    assert "embeddedMetadata" not in up and "customMetadata" not in up
    assert "isPrivateFile" not in up
    full = ik.files.upload(file=jpeg(astronaut), file_name="rf2.jpg", response_fields=[
        "embeddedMetadata", "isPrivateFile"]).to_dict()
    assert "embeddedMetadata" in full and "isPrivateFile" in full
    bad = httpx.post(f"{base_url}/api/v1/files/upload", auth=(made["key"], ""),
                     data={"fileName": "x.jpg", "responseFields": "tags,nonsense"},
                     files={"file": ("x.jpg", b"x", "image/jpeg")})
    assert bad.status_code == 400 and "nonsense" in bad.json()["message"]


@pytest.mark.parametrize("extension, message", [
    ({"name": "sharpen"}, "extensions[0].name: unknown extension 'sharpen'"),
    ({"maxTags": 3}, "extensions[0].name: field required"),
    ({"name": "google-auto-tagging", "maxTags": "many"}, "extensions[0].maxTags"),
])
def test_an_unknown_or_malformed_extension_is_a_400_before_anything_is_stored(
        acme, astronaut, settings, extension, message):
    """The extensions document's rule, as the hosted API keeps it: the request that names
    an extension the service does not know (or malformed params) is refused — a 400 naming
    ``extensions[0]…`` — and nothing is stored (no record, no bytes); so is an update."""
    from worker.store.blobs import BlobStore

    ik, base_url, made = acme
    with pytest.raises(BadRequestError, match=re.escape(message)):
        ik.files.upload(file=jpeg(astronaut), file_name="x.jpg", extensions=[extension])
    assert _files(base_url, made["key"]) == []
    assert list(BlobStore(settings.blob_root).keys()) == []
    up = ik.files.upload(file=jpeg(astronaut), file_name="ok.jpg").to_dict()
    r = httpx.patch(f"{base_url}/v1/files/{up['fileId']}/details", auth=(made["key"], ""),
                    json={"extensions": [extension]})
    assert r.status_code == 400 and message in r.json()["message"], r.text


def test_urls_open_wherever_the_api_listens(settings, astronaut, tmp_path):
    """``extworker api --port P`` without ``EXTWORKER_API_URL``: the file object's ``url``
    and ``thumbnail`` name that address (they named :8080, where nothing listened)."""
    import subprocess
    import sys

    from tests.support import cli, env_for, free_port

    port = free_port()
    key = json.loads(cli(settings, "keys", "create", "acme").stdout)["key"]
    env = {k: v for k, v in env_for(settings).items() if k != "EXTWORKER_API_URL"}
    with open(tmp_path / "api.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "worker.cli", "api", "--port", str(port)],
                                env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        def up():
            try:
                return httpx.get(f"{base}/openapi.json", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(up, 60, "the API listening")
        r = httpx.post(f"{base}/api/v1/files/upload", auth=(key, ""), timeout=30,
                       data={"fileName": "a.jpg"}, files={"file": ("a.jpg", jpeg(astronaut))})
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["url"].startswith(base + "/") and got["thumbnail"].startswith(base + "/")
        assert httpx.get(got["url"], timeout=30).content == jpeg(astronaut)
        assert httpx.get(got["thumbnail"], timeout=30).status_code == 200
    finally:
        proc.terminate()
        proc.wait(30)


def test_extension_status_is_absent_when_no_extension_was_asked_for(acme, astronaut):
    """The upload document: ``extensionStatus`` is in the response of an upload that asked
    for extensions, and absent otherwise (it was ``{}``)."""
    ik, base_url, made = acme
    plain = httpx.post(f"{base_url}/api/v1/files/upload", auth=(made["key"], ""), timeout=30,
                       data={"fileName": "a.jpg"}, files={"file": ("a.jpg", jpeg(astronaut))})
    assert plain.status_code == 200 and "extensionStatus" not in plain.json(), plain.json()
    details = httpx.get(f"{base_url}/v1/files/{plain.json()['fileId']}/details",
                        auth=(made["key"], "")).json()
    assert "extensionStatus" not in details and "extensionErrors" not in details
    asked = httpx.post(f"{base_url}/api/v1/files/upload", auth=(made["key"], ""), timeout=30,
                       data={"fileName": "b.jpg", "extensions": json.dumps(
                           [{"name": "remove-bg"}])},
                       files={"file": ("b.jpg", jpeg(astronaut))})
    assert asked.json()["extensionStatus"] == {"remove-bg": "pending"}, asked.json()


def test_version_one_is_named_by_the_file_id(acme, astronaut):
    """The file object document: a new file's ``versionInfo`` is ``{"id": <fileId>, "name":
    "Version 1"}``; a later version has an id of its own, and version 1 keeps the file's."""
    ik, base_url, made = acme
    up = ik.files.upload(file=jpeg(astronaut), file_name="v.jpg", use_unique_file_name=False)
    assert (up.version_info.id, up.version_info.name) == (up.file_id, "Version 1")
    again = ik.files.upload(file=jpeg(astronaut.rotate(90)), file_name="v.jpg",
                            use_unique_file_name=False)
    assert again.file_id == up.file_id and again.version_info.name == "Version 2"
    assert again.version_info.id != up.file_id
    listed = ik.files.versions.list(up.file_id)
    assert [(v.version_info.id == up.file_id, v.version_info.name) for v in listed] == [
        (True, "Version 1"), (False, "Version 2")]
    ik.files.copy(source_file_path=up.file_path, destination_path="/copies/")
    copy = next(f for f in _files(base_url, made["key"]) if f["filePath"] == "/copies/v.jpg")
    assert copy["versionInfo"]["id"] == copy["fileId"] != up.file_id
