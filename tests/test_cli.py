"""The CLI contract: JSON on stdout, errors on stderr with a non-zero exit; apply without Redis."""

from __future__ import annotations

import json

from PIL import Image

from tests.conftest import cli, jpeg


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
