"""Publishers in other languages, end to end against a real ``extworker serve``.

Given an upload service that is not Python — a shell script with ``redis-cli`` alone, and
a Node.js program with the ``redis`` package from npm — when it publishes an upload of a
real photo with remove-bg and google-auto-tagging through the intake stream, then it
reads the finished file record back through Redis: a cut-out as Version 2, AITags,
embedded metadata. Bad uploads come back rejected with a readable reason.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from tests.support import ROOT, jpeg

pytestmark = pytest.mark.slow
PUBLISHERS = ROOT / "scripts" / "publishers"
EXTENSIONS = [{"name": "remove-bg"},
              {"name": "google-auto-tagging", "minConfidence": 0, "maxTags": 3}]


@pytest.fixture
def photo_url(astronaut, photo_server):
    return photo_server(jpeg(astronaut))


def shell(settings, job: dict, wait: int = 120) -> tuple[int, dict, dict | None]:
    proc = subprocess.run(
        ["bash", str(PUBLISHERS / "publish.sh"), json.dumps(job), str(wait)],
        env={**os.environ, "REDIS_URL": settings.redis_url}, capture_output=True, text=True,
        timeout=wait + 30)
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2, (proc.returncode, proc.stdout, proc.stderr)
    return proc.returncode, json.loads(lines[0]), json.loads(lines[1])


def assert_finished(doc: dict, rec: dict, settings) -> None:
    assert doc["state"] == "dispatched"
    assert {n: s["status"] for n, s in doc["extensions"].items()} == {
        "remove-bg": "success", "google-auto-tagging": "success"}
    assert rec["fileId"] == doc["fileId"] and rec["accountId"] == doc["accountId"]
    assert rec["versionInfo"]["name"] == "Version 2" and rec["mime"] == "image/png"
    assert rec["hasAlpha"] and (rec["width"], rec["height"]) == (512, 512)
    assert rec["AITags"] and all(t["source"] == "google-auto-tagging" for t in rec["AITags"])
    assert rec["embeddedMetadata"]["ColorType"] == "RGB with Alpha"  # read from the cut-out
    assert rec["extensionStatus"] == {"remove-bg": "success", "google-auto-tagging": "success"}


def test_redis_cli_publisher_url_blobkey_overwrite_update_and_rejections(
        settings, server, photo_url, astronaut):
    # 1. An upload by URL.
    code, doc, rec = shell(settings, {"jobId": "sh-url", "upload": {
        "url": photo_url, "fileName": "astronaut.jpg", "folder": "/team a"},
        "extensions": EXTENSIONS})
    assert code == 0, doc
    assert_finished(doc, rec, settings)
    assert rec["filePath"].startswith("/team_a/astronaut_")

    # 2. An upload by blobKey: the upload service wrote the bytes into shared storage.
    blob_root = Path(settings.blob_root.removeprefix("file://"))
    (blob_root / "incoming").mkdir(parents=True, exist_ok=True)
    (blob_root / "incoming" / "a.jpg").write_bytes(jpeg(astronaut))
    code, doc, rec = shell(settings, {"jobId": "sh-blob", "upload": {
        "blobKey": "incoming/a.jpg", "fileName": "a.jpg", "useUniqueFileName": False,
        "tags": "space,nasa"}, "extensions": EXTENSIONS})
    assert code == 0, doc
    assert_finished(doc, rec, settings)
    assert rec["filePath"] == "/a.jpg" and rec["tags"] == ["space", "nasa"]

    # 3. The same path again: a new version of the same file (Version 3 after the cut-out).
    code, doc2, rec2 = shell(settings, {"jobId": "sh-again", "upload": {
        "blobKey": "incoming/a.jpg", "fileName": "a.jpg", "useUniqueFileName": False}})
    assert code == 0 and rec2["fileId"] == rec["fileId"]
    assert rec2["versionInfo"]["name"] == "Version 3" and rec2["tags"] is None
    assert rec2["AITags"] is None  # overwriteAITags defaults to true

    # 4. An update from the shell.
    code, doc3, rec3 = shell(settings, {"jobId": "sh-update", "origin": "update",
                                        "fileId": rec["fileId"],
                                        "update": {"tags": ["edited"], "description": "hi"}})
    assert code == 0 and (rec3["tags"], rec3["description"]) == (["edited"], "hi")

    # 5. overwriteFile false on a taken path: rejected, nothing written.
    code, doc4, rec4 = shell(settings, {"jobId": "sh-taken", "upload": {
        "blobKey": "incoming/a.jpg", "fileName": "a.jpg", "useUniqueFileName": False,
        "overwriteFile": False}, "extensions": [{"name": "remove-bg"}]})
    assert code == 1 and doc4["state"] == "rejected" and rec4 is None
    assert doc4["error"]["code"] == "file_exists"
    assert doc4["extensions"]["remove-bg"]["status"] == "failed"

    # 6. Bad uploads: each rejected with a reason naming the field.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    bad = {
        "unreachable": ({"url": f"http://127.0.0.1:{closed}/x.jpg", "fileName": "x.jpg"},
                        "upload.url: cannot fetch"),
        "private": ({"url": "http://10.1.2.3/x.jpg", "fileName": "x.jpg"},
                    "upload.url: cannot fetch http://10.1.2.3/x.jpg"),
        "outside": ({"blobKey": "../../etc/passwd", "fileName": "x"},
                    "upload.blobKey: '../../etc/passwd' is outside"),
        "name": ({"base64": "aGk=", "fileName": ".."}, "upload.fileName"),
        "two-sources": ({"base64": "aGk=", "url": photo_url, "fileName": "x"},
                        "invalid job: upload: exactly one of url, blobKey or base64"),
    }
    for job_id, (up, reason) in bad.items():
        code, doc, rec = shell(settings, {"jobId": f"bad-{job_id}", "upload": up,
                                          "extensions": [{"name": "remove-bg"}]})
        assert code == 1 and doc["state"] == "rejected" and rec is None, doc
        assert doc["error"]["message"].startswith(reason), (job_id, doc["error"])


@pytest.fixture(scope="session")
def node_modules(tmp_path_factory) -> Path:
    """``npm install`` of the Node publisher's package.json, once (cached under .data)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are needed for the Node.js publisher test")
    target = ROOT / ".data" / "node-publisher"
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(PUBLISHERS / "package.json", target / "package.json")
    if not (target / "node_modules" / "redis").is_dir():
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=target,
                       check=True, timeout=300)
    return target


def test_node_publisher_uploads_by_url_and_by_blob_key(settings, server, photo_url, astronaut,
                                                       node_modules):
    blob_root = Path(settings.blob_root.removeprefix("file://"))
    (blob_root / "from-node").mkdir(parents=True, exist_ok=True)
    (blob_root / "from-node" / "b.jpg").write_bytes(jpeg(astronaut))
    script = node_modules / "publish.mjs"  # beside its node_modules, as a user would run it
    shutil.copy(PUBLISHERS / "publish.mjs", script)
    for source in (["--url", photo_url], ["--blob-key", "from-node/b.jpg"]):
        proc = subprocess.run(
            ["node", str(script), *source, "--file-name", "astronaut.jpg", "--folder",
             "/node", "--extensions", json.dumps(EXTENSIONS), "--account", "acme"],
            env={**os.environ, "REDIS_URL": settings.redis_url}, capture_output=True,
            text=True, timeout=180)
        assert proc.returncode == 0, (proc.stdout, proc.stderr)
        out = json.loads(proc.stdout)
        assert_finished(out["job"], out["file"], settings)
        assert out["file"]["accountId"] == "acme"
        assert out["file"]["filePath"].startswith("/node/astronaut_")
