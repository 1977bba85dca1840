"""Nodes that share only Redis and the bucket.

An ``extworker api`` process and two ``extworker serve`` processes, each with its own
``EXTWORKER_DATA_DIR`` — separate pods, as the chart draws them — against one Redis and a
real S3 server (moto's, on loopback), driven by the hosted API's official SDK: uploads by
bytes, by URL and by ``blobKey`` (an object another client wrote into the bucket), with
remove-bg and a tagger; an update with a saved extension; versions; webhooks. Every version's
bytes are in the bucket, and no node keeps a blob on its own disk.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import httpx
import pytest
from imagekitio import ImageKit

from tests.support import ROOT, Server, env_for, free_port, jpeg, wait_until
from tests.support.receiver import Receiver
from webhooks.deliverer import Webhooks
from worker.broker.intake import publish
from worker.store.apikeys import ApiKeys
from worker.store.backends.redis_kv import RedisKV

pytestmark = pytest.mark.slow


class Api:
    """``extworker api`` in its own process, with its own data directory."""

    def __init__(self, settings, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.fh = open(log, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "api", "--host", "127.0.0.1", "--port",
             str(self.port)], env={**env_for(settings), **env}, cwd=ROOT,
            stdout=self.fh, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}"
        wait_until(self._ready, 60, "the API listening:\n" + log.read_text(), every=0.2)

    def _ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return self.proc.poll() is not None and (_ for _ in ()).throw(
                AssertionError("the API exited"))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)
        self.fh.close()


def test_an_api_and_two_workers_sharing_only_redis_and_the_bucket(
        settings, rclient, s3_server, astronaut, photo_server, tmp_path):
    prefix = f"nodes-{uuid.uuid4().hex}"
    bucket_url = f"s3://extworker/{prefix}"
    node_dirs = {name: tmp_path / name for name in ("api", "gpu-a", "gpu-b")}
    env = {name: {"EXTWORKER_DATA_DIR": str(d), "EXTWORKER_BLOB_URL": bucket_url}
           for name, d in node_dirs.items()}
    s3 = boto3.client("s3")
    key = ApiKeys(RedisKV(rclient), settings).create("acme")["key"]
    recv = Receiver()
    photo_url = photo_server(jpeg(astronaut.resize((200, 160))))
    workers = [Server(settings, tmp_path / f"{n}.log", env=env[n]) for n in ("gpu-a", "gpu-b")]
    api = Api(settings, env["api"], tmp_path / "api.log")
    client = ImageKit(private_key=key, base_url=api.url)
    try:
        # 1. By bytes, through the API node: remove-bg and a tagger run on worker nodes.
        by_bytes = client.files.upload(
            file=jpeg(astronaut.resize((256, 256))), file_name="astronaut.jpg", folder="/nodes",
            extensions=[{"name": "remove-bg"},
                        {"name": "google-auto-tagging", "min_confidence": 0, "max_tags": 3}],
            webhook_url=recv.url)
        # 2. By URL (the upload API's `file` field holding a URL; this SDK sends bytes only):
        # a worker node fetches it.
        made = httpx.post(f"{api.url}/api/v1/files/upload", auth=(key, ""), data={
            "file": photo_url, "fileName": "shoe.jpg", "folder": "/nodes",
            "extensions": '[{"name": "remove-bg"}]', "webhookUrl": recv.url})
        assert made.status_code == 200, made.text
        url_file_id = made.json()["fileId"]
        # 3. By blobKey: an upload service wrote the object into the bucket itself.
        s3.put_object(Bucket="extworker", Key=f"{prefix}/incoming/cup.jpg",
                      Body=jpeg(astronaut.resize((128, 128))))
        publish(rclient, settings, {
            "jobId": "by-blob-key", "accountId": "acme", "webhookUrl": recv.url,
            "upload": {"blobKey": "incoming/cup.jpg", "fileName": "cup.jpg",
                       "folder": "/nodes"},
            "extensions": [{"name": "remove-bg"}]})

        wait_until(lambda: len(recv.requests) >= 4, 240,
                   "four webhooks\n" + "\n".join((tmp_path / f"{n}.log").read_text()[-1500:]
                                                 for n in ("gpu-a", "gpu-b")))
        secret = Webhooks(rclient, settings).secrets.current("acme")
        events = [client.webhooks.unwrap(r.body.decode(), headers=r.headers, key=secret)
                  .to_dict() for r in recv.requests]
        assert sorted((e["service"], e["status"]) for e in events) == [
            ("google-auto-tagging", "SUCCESS"), ("remove-bg", "SUCCESS"),
            ("remove-bg", "SUCCESS"), ("remove-bg", "SUCCESS")], events

        # useUniqueFileName (on by default) suffixes each name: keyed by the stem.
        files = {f.name.split("_")[0]: f for f in client.assets.list(path="/nodes")}
        assert set(files) == {"astronaut", "shoe", "cup"}
        for f in files.values():
            got = client.files.get(f.file_id)
            assert got.version_info.name == "Version 2" and got.mime == "image/png", got
        assert client.files.get(by_bytes.file_id).ai_tags
        assert files["shoe"].file_id == url_file_id

        # 4. The busier worker node goes away; the other runs an update with a saved
        # extension — on the current version, the cut-out a node that is gone wrote.
        ran = [(tmp_path / f"{n}.log").read_text().count('"extension finished"')
               for n in ("gpu-a", "gpu-b")]
        assert sum(ran) == 4, ran
        busy = ran.index(max(ran))
        workers[busy].stop()
        ext = client.saved_extensions.create(
            name="two tags", description="",
            config={"name": "aws-auto-tagging", "minConfidence": 0, "maxTags": 2})
        client.files.update(url_file_id, extensions=[{"name": "saved-extension",
                                                         "id": ext.id}])
        slot = f"saved-extension:{ext.id}"
        wait_until(lambda: client.files.get(url_file_id).to_dict()["extensionStatus"]
                   .get(slot) == "success", 120, "the saved extension ran")

        # 5. Versions, each readable from the bucket.
        versions = client.files.versions.list(by_bytes.file_id)
        assert [v.version_info.name for v in versions] == ["Version 1", "Version 2"]
        stored = {o["Key"].removeprefix(f"{prefix}/") for page in
                  s3.get_paginator("list_objects_v2").paginate(Bucket="extworker",
                                                               Prefix=f"{prefix}/")
                  for o in page.get("Contents", [])}
        for f in files.values():
            record = json.loads(rclient.get(settings.keys.file(f.file_id)))
            for v in record["versions"]:
                assert v["blobKey"] in stored, (v["blobKey"], sorted(stored))
        other = ("gpu-a", "gpu-b")[1 - busy]
        assert (tmp_path / f"{other}.log").read_text().count('"extension finished"') == \
            ran[1 - busy] + 1
    finally:
        api.stop()
        for w in workers:
            w.stop()
        recv.close()
    # No node keeps a blob on its own disk: the bucket holds them all.
    for name, d in node_dirs.items():
        local = [p for p in d.rglob("*") if p.is_file() and "blobs" in p.parts]
        assert local == [], (name, local)
