"""Hostile input to the HTTP API is answered, not crashed on.

Given JSON nested 100,000 deep in a form field or a body, or a body streamed without a
``Content-Length`` past the limit, when it reaches ``extworker api``, then the answer is a
400 naming the field (413 for the size), the keep-alive connection it came on goes on
serving, and the log holds no traceback.
"""

from __future__ import annotations

import logging
import threading

import httpx
import pytest
import uvicorn

from tests.support import free_port, wait_until
from worker.api.app import create_app
from worker.broker.actors import build_broker
from worker.runtime import Runtime
from worker.store.apikeys import ApiKeys
from worker.store.backends.redis_kv import RedisKV

DEEP = "[" * 100_000


@pytest.fixture
def hostile_api(settings, rclient, caplog):
    """The API in a thread, uvicorn's loggers propagating (``log_config=None``) so that every
    line it logs, tracebacks included, reaches ``caplog``."""
    settings.api_max_body_bytes = 1024 * 1024
    settings.video_max_bytes = 512 * 1024  # upload routes: up to this + 1 MiB (1.5 MiB)
    runtime = Runtime(settings, broker=build_broker(settings))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(runtime), host="127.0.0.1", port=port,
                                           log_config=None))
    thread = threading.Thread(target=server.run, daemon=True)
    caplog.set_level(logging.INFO)
    thread.start()
    wait_until(lambda: server.started, 20, "the API listening", every=0.05)
    key = ApiKeys(RedisKV(rclient), settings).create("acme")["key"]
    yield f"http://127.0.0.1:{port}", key, runtime
    server.should_exit = True
    thread.join(10)


def _no_traceback(caplog) -> None:
    bad = [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()
           or r.levelno >= logging.ERROR]
    assert bad == [], [f"{r.name}: {r.getMessage()[:200]}" for r in bad]


def test_deep_json_anywhere_is_a_400_naming_the_field(hostile_api, caplog):
    base_url, key, runtime = hostile_api
    rec = runtime.pipeline.add_file(b"hello", "a.txt", account="acme")
    transports = []
    with httpx.Client(base_url=base_url, auth=(key, ""),
                      event_hooks={"request": [lambda r: transports.append(r)]}) as http:
        for field in ("extensions", "customMetadata"):
            r = http.post("/api/v1/files/upload",
                          data={"file": "aGk=", "fileName": "a.txt", field: DEEP})
            assert r.status_code == 400, r.text
            assert r.json()["message"].startswith(f"{field}[0]"), r.json()
            assert "nested deeper than 64 levels" in r.json()["message"]
            # The same keep-alive connection goes on serving.
            assert http.get("/v1/files").status_code == 200
        for path, body in ((f"/v1/files/{rec.fileId}/details", '{"tags": ' + DEEP + "}"),
                           ("/v1/files/addTags", DEEP),
                           ("/v1/saved-extensions", '{"config": {"a": ' + "[" * 70 + "}"),
                           ("/v1/customMetadataFields", "{" * 5000)):
            method = "PATCH" if "details" in path else "POST"
            r = http.request(method, path, content=body,
                             headers={"Content-Type": "application/json"})
            assert r.status_code == 400, (path, r.status_code, r.text[:300])
            assert r.json()["message"].startswith("body"), r.json()
            assert http.get("/v1/files").status_code == 200
    _no_traceback(caplog)


def test_a_streamed_body_without_a_length_is_capped(hostile_api, caplog):
    base_url, key, _ = hostile_api

    def chunks(total: int, size: int = 16 * 1024, head: bytes = b"", tail: bytes = b""):
        yield head
        sent = 0
        while sent < total:
            yield b"x" * size
            sent += size
        yield tail

    with httpx.Client(base_url=base_url, auth=(key, "")) as http:
        # Chunked transfer encoding: no Content-Length for the early check to read.
        part = (b'--zz\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\n'
                b"Content-Type: application/octet-stream\r\n\r\n")
        r = http.post("/api/v1/files/upload",
                      content=chunks(3 * 1024 * 1024, head=part, tail=b"\r\n--zz--\r\n"),
                      headers={"Content-Type": "multipart/form-data; boundary=zz"})
        assert r.status_code == 413, r.text[:300]
        assert "larger than 1572864 bytes" in r.json()["message"]
        r = http.patch("/v1/files/x/details", content=chunks(2 * 1024 * 1024),
                       headers={"Content-Type": "application/json"})
        assert r.status_code == 413, r.text[:300]
        # Under the limit, a chunked body is read as usual.
        small = http.post("/v1/files/addTags", content=iter([b'{"fileIds": ["nope"], ',
                                                            b'"tags": ["a"]}']),
                          headers={"Content-Type": "application/json"})
        assert small.status_code == 404, small.text
    _no_traceback(caplog)
