"""The HTTP API against the hosted API's own Python SDK (``imagekitio`` from PyPI,
unmodified: only ``base_url`` and ``private_key`` set), with a real ``extworker serve``
running the extensions on real Redis.

Given an account with a private key, when existing SDK code uploads a real photo with
remove-bg + google-auto-tagging + a webhook, reads it back, updates it with a saved
extension, manages saved extensions and custom metadata fields and lists versions, then
every call succeeds, every webhook verifies with the SDK's ``webhooks.unwrap``, and the
wrong key, another account's file and bad requests are each a clean 4xx.
"""

from __future__ import annotations

import json
import time

import httpx
import pytest
from imagekitio import AuthenticationError, BadRequestError, ImageKit, NotFoundError

from tests.support import Server, jpeg, wait_until
from tests.support.receiver import Receiver
from webhooks.deliverer import Webhooks
from worker.store.apikeys import ApiKeys
from worker.store.backends.redis_kv import RedisKV

_wait = wait_until


@pytest.mark.slow
def test_the_official_sdk_works_against_extworker(settings, rclient, api, astronaut, tmp_path):
    base_url, keys = api
    key = keys.create("acme")["key"]
    client = ImageKit(private_key=key, base_url=base_url)
    recv = Receiver()
    worker = Server(settings, tmp_path / "worker.log")
    try:
        # Upload a real photo with two extensions and a webhook.
        up = client.files.upload(
            file=jpeg(astronaut), file_name="astronaut.jpg", folder="/sdk", tags=["space"],
            extensions=[{"name": "remove-bg"},
                        {"name": "google-auto-tagging", "min_confidence": 0, "max_tags": 3}],
            webhook_url=recv.url)
        assert up.file_id and up.file_path.startswith("/sdk/astronaut")
        assert up.to_dict()["extensionStatus"] == {"remove-bg": "pending",
                                                   "google-auto-tagging": "pending"}

        # Both webhooks arrive and verify with the SDK's own unwrap.
        _wait(lambda: len(recv.requests) >= 2, 120,
              "webhooks\n" + (tmp_path / "worker.log").read_text()[-2000:])
        secret = Webhooks(rclient, settings).secrets.current("acme")
        events = [client.webhooks.unwrap(r.body.decode(), headers=r.headers, key=secret)
                  .to_dict() for r in recv.requests[:2]]
        assert {(e["service"], e["status"]) for e in events} == {
            ("remove-bg", "SUCCESS"), ("google-auto-tagging", "SUCCESS")}

        # Read it back.
        got = client.files.get(up.file_id)
        assert got.version_info.name == "Version 2" and got.mime == "image/png"
        assert got.ai_tags and got.tags == ["space"]

        # Saved extensions: create, list, get, update — then use one in an update.
        ext = client.saved_extensions.create(
            name="two tags", description="tagging, two at most",
            config={"name": "aws-auto-tagging", "minConfidence": 0, "maxTags": 2})
        assert [e.id for e in client.saved_extensions.list()] == [ext.id]
        assert client.saved_extensions.get(ext.id).name == "two tags"
        assert client.saved_extensions.update(ext.id, name="renamed").name == "renamed"
        updated = client.files.update(
            up.file_id, tags=["space", "nasa"],
            extensions=[{"name": "saved-extension", "id": ext.id}])
        assert updated.tags == ["space", "nasa"]
        slot = f"saved-extension:{ext.id}"
        _wait(lambda: client.files.get(up.file_id).to_dict()["extensionStatus"].get(slot)
              == "success", 60, "the saved extension ran")
        assert any(t.source == "aws-auto-tagging" for t in client.files.get(up.file_id).ai_tags)
        client.saved_extensions.delete(ext.id)
        assert client.saved_extensions.list() == []

        # Custom metadata fields: create, list, update, delete.
        field = client.custom_metadata_fields.create(name="brand", label="Brand",
                                                     schema={"type": "Text"})
        assert [f.name for f in client.custom_metadata_fields.list()] == ["brand"]
        assert client.custom_metadata_fields.update(field.id, label="Maker").label == "Maker"
        client.files.update(up.file_id, custom_metadata={"brand": "NASA"})
        assert client.files.get(up.file_id).custom_metadata == {"brand": "NASA"}
        client.custom_metadata_fields.delete(field.id)
        assert client.custom_metadata_fields.list() == []

        # Versions.
        versions = client.files.versions.list(up.file_id)
        assert [v.version_info.name for v in versions] == ["Version 1", "Version 2"]

        # Refusals: wrong key (401), another account's file (404), a bad request (400).
        with pytest.raises(AuthenticationError):
            ImageKit(private_key="private_wrong", base_url=base_url).files.get(up.file_id)
        other = ImageKit(private_key=keys.create("other")["key"], base_url=base_url)
        with pytest.raises(NotFoundError):
            other.files.get(up.file_id)
        with pytest.raises(BadRequestError) as bad:
            client.files.update(up.file_id, custom_metadata={"nope": 1})
        assert "nope" in str(bad.value)
    finally:
        recv.close()
        worker.stop()


def test_requests_without_a_valid_key_or_with_bad_bodies_are_clean_4xx(api):
    base_url, keys = api
    key = keys.create("acme")["key"]
    with httpx.Client(base_url=base_url) as http:
        assert http.get("/v1/files").status_code == 401
        assert http.get("/v1/files").json()["message"].startswith("Your request does not")
        assert http.get("/v1/files", auth=("private_nope", "")).status_code == 401
        ok = http.get("/v1/files", auth=(key, ""))
        assert ok.status_code == 200 and ok.json() == []
        broken = http.post("/api/v1/files/upload", auth=(key, ""),
                           headers={"Content-Type": "multipart/form-data; boundary=x"},
                           content=b"--x\r\nnot a part")
        assert 400 <= broken.status_code < 500
        missing = http.post("/api/v1/files/upload", auth=(key, ""), data={"file": "aGk="})
        assert missing.status_code == 400 and "fileName" in missing.json()["message"]
        bad_ext = http.post("/api/v1/files/upload", auth=(key, ""),
                            data={"file": "aGk=", "fileName": "a.txt", "extensions": "[{"})
        assert bad_ext.status_code == 400 and "extensions" in bad_ext.json()["message"]
        assert http.get("/v1/files/nope/details", auth=(key, "")).status_code == 404
        assert http.get("/openapi.json").json()["paths"]["/api/v1/files/upload"]
    keys.revoke("acme", keys.list("acme")[0]["id"])
    with httpx.Client(base_url=base_url) as http:
        assert http.get("/v1/files", auth=(key, "")).status_code == 401


def test_api_keys_are_stored_hashed(settings, rclient):
    keys = ApiKeys(RedisKV(rclient), settings)
    made = keys.create("acme")
    dump = b"".join(rclient.get(k) or b"" for k in rclient.keys("*"))
    assert made["key"].encode() not in dump
    assert keys.account_of(made["key"]) == "acme"
    assert json.dumps(keys.list("acme")).count(made["key"]) == 0


def test_limits_metrics_access_log_and_delete(settings, api, rclient, caplog, astronaut):
    import logging

    base_url, keys = api
    key = keys.create("acme")["key"]
    caplog.set_level(logging.INFO, logger="worker.api.access")
    with httpx.Client(base_url=base_url, auth=(key, "")) as http:
        settings.api_max_body_bytes = 100_000  # (read per request)
        settings.video_max_bytes = 50_000  # upload routes: the larger of the two
        too_big = http.post("/api/v1/files/upload", data={"fileName": "big.bin"},
                            files={"file": ("big.bin", b"x" * 1_100_001)})
        assert too_big.status_code == 413 and "larger than" in too_big.json()["message"]
        settings.upload_max_bytes = 1000  # the file itself: its kind's limit
        big_file = http.post("/api/v1/files/upload", data={"fileName": "big.bin"},
                             files={"file": ("big.bin", b"x" * 1001)})
        assert big_file.status_code == 413 and "file: larger than 1000" in big_file.json()[
            "message"]
        settings.upload_max_bytes = 25 * 1024 * 1024
        json_too_big = http.patch("/v1/files/nope/details", content=b"[" * 100_001,
                                  headers={"content-type": "application/json"})
        assert json_too_big.status_code == 413, json_too_big.text
        chunked = http.patch("/v1/files/nope/details", content=iter([b"[" * 60_000] * 2),
                             headers={"content-type": "application/json"})
        assert chunked.status_code == 413, chunked.text  # no Content-Length: counted
        settings.api_max_body_bytes = 26 * 1024 * 1024
        made = http.post("/api/v1/files/upload", data={"fileName": "a.jpg"},
                         files={"file": ("a.jpg", jpeg(astronaut.resize((32, 32))))})
        assert made.status_code == 200, made.text
        file_id = made.json()["fileId"]
        assert http.get(f"/v1/files/{file_id}/details").status_code == 200
        assert http.delete(f"/v1/files/{file_id}").status_code == 204
        assert http.get(f"/v1/files/{file_id}/details").status_code == 404
        assert http.delete(f"/v1/files/{file_id}").status_code == 404
        assert http.get("/v1/files").json() == []
        scraped = http.get("/metrics").text
    assert ('extworker_api_requests_total{method="GET",route="/v1/files/{fileId}/details",'
            'status="404"}') in scraped
    assert file_id not in scraped
    lines = [r for r in caplog.records if r.name == "worker.api.access"]
    assert any(getattr(r, "route", None) == "/v1/files/{fileId}" and r.status == 204
               for r in lines)
    assert key not in caplog.text


@pytest.fixture
def sync_settings(settings):
    settings.api_sync_wait_s = 30
    return settings


@pytest.fixture
def sync_api(sync_settings, api):
    return api


@pytest.mark.slow
def test_only_auto_tagging_is_answered_synchronously(settings, sync_api, astronaut, tmp_path):
    """The extensions document: "background removal is always asynchronous"; auto-tagging
    "is first tried synchronously" and, when it succeeds, its result and ``AITags`` are in
    the upload (and update) response. Both run here inside the wait: auto-tagging is
    answered ``success`` with its AITags and gets no webhook; remove-bg (and a saved
    extension of it) is ``pending`` in the response and reported by its webhook, once."""
    base_url, keys = sync_api
    client = ImageKit(private_key=keys.create("acme")["key"], base_url=base_url)
    saved = client.saved_extensions.create(name="cut", description="bg",
                                           config={"name": "remove-bg"})
    recv = Receiver()
    worker = Server(settings, tmp_path / "worker.log")
    tagging = {"name": "google-auto-tagging", "minConfidence": 0, "maxTags": 3}
    try:
        t0 = time.monotonic()
        # remove.bg's own options travel as the hosted API passes them on, and are honoured.
        cut = {"name": "remove-bg", "options": {"format": "webp", "size": "preview",
                                                "bg_colour": "green"}}
        up = client.files.upload(file=jpeg(astronaut.resize((640, 640))), file_name="a.jpg",
                                 extensions=[cut, tagging,
                                             {"name": "saved-extension", "id": saved.id}],
                                 webhook_url=recv.url).to_dict()
        answered_s = time.monotonic() - t0
        assert up["extensionStatus"] == {"remove-bg": "pending", "google-auto-tagging":
                                         "success", f"saved-extension:{saved.id}": "pending"}
        assert [t["source"] for t in up["AITags"]] == ["google-auto-tagging"] * 3
        assert answered_s < settings.api_sync_wait_s  # it returned once tagging was done
        wait_until(lambda: len(recv.requests) >= 2, 60, "the two remove-bg webhooks")
        time.sleep(1.5)
        services = sorted(json.loads(r.body)["service"] for r in recv.requests)
        assert services == ["remove-bg", f"saved-extension:{saved.id}"]
        assert all(json.loads(r.body)["status"] == "SUCCESS" for r in recv.requests)
        webp = next(json.loads(r.body)["fileObject"] for r in recv.requests
                    if json.loads(r.body)["service"] == "remove-bg")
        assert webp["mime"] == "image/webp" and webp["width"] * webp["height"] <= 250_000
        with pytest.raises(BadRequestError, match=r"extensions\[0\]\.options\.format: zip"):
            client.files.upload(file=jpeg(astronaut), file_name="z.jpg", extensions=[
                {"name": "remove-bg", "options": {"format": "zip"}}])
        # Update File Details follows the same rule.
        out = client.files.update(up["fileId"], extensions=[
            {"name": "aws-auto-tagging", "minConfidence": 0, "maxTags": 2}]).to_dict()
        assert out["extensionStatus"] == {"aws-auto-tagging": "success"}
        assert {t["source"] for t in out["AITags"]} == {"google-auto-tagging",
                                                        "aws-auto-tagging"}
        time.sleep(2)
        assert len(recv.requests) == 2  # tagging was answered: no webhook
    finally:
        recv.close()
        worker.stop()


@pytest.mark.slow
def test_a_remove_bg_alone_is_answered_at_once(settings, sync_api, astronaut, tmp_path):
    """Nothing the hosted service tries synchronously was asked for: the upload does not
    wait at all, and remove-bg's result comes by webhook even though it ends in the wait."""
    base_url, keys = sync_api
    client = ImageKit(private_key=keys.create("acme")["key"], base_url=base_url)
    recv = Receiver()
    worker = Server(settings, tmp_path / "worker.log")
    try:
        t0 = time.monotonic()
        up = client.files.upload(file=jpeg(astronaut.resize((64, 64))), file_name="a.jpg",
                                 extensions=[{"name": "remove-bg"}], webhook_url=recv.url)
        assert time.monotonic() - t0 < 5  # the wait is 30 s
        assert up.to_dict()["extensionStatus"] == {"remove-bg": "pending"}
        wait_until(lambda: recv.requests, 60, "remove-bg's webhook")
        body = json.loads(recv.requests[0].body)
        assert (body["service"], body["status"]) == ("remove-bg", "SUCCESS")
        assert body["fileObject"]["versionInfo"]["name"] == "Version 2"
    finally:
        recv.close()
        worker.stop()
