"""Tags from the trained default tagger (EfficientNet-Lite0, from its PyPI wheel) on real
photos nobody here took (scikit-image's samples), through a real ``serve`` and the official
SDK: the answers a person would give."""

from __future__ import annotations

import io

import numpy as np
import pytest
import skimage.data
from imagekitio import ImageKit
from PIL import Image

from tests.pipeline.test_pipeline import run_job
from tests.support import Server, wait_until

PHOTOS = {
    # photo: (what must be among the first N tags, N)
    "chelsea": ({"cat", "domestic cat", "tabby", "tiger cat", "Egyptian cat"}, 3),
    "coffee": ({"espresso", "coffee"}, 1),
    "camera": ({"tripod"}, 3),
    "stereo_motorcycle": ({"moped", "motor scooter"}, 2),
}


def photo(name: str) -> bytes:
    a = getattr(skimage.data, name)()
    if name == "stereo_motorcycle":
        a = a[0]  # (left, right, disparity): the left view
    buf = io.BytesIO()
    Image.fromarray(a).convert("RGB").save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture
def real(settings):
    settings.tagger_google = settings.tagger_aws = "imagenet"  # the default, as shipped
    return settings


@pytest.mark.slow
def test_real_photos_get_the_tags_a_person_would_give(real, api, tmp_path):
    base_url, keys = api
    client = ImageKit(private_key=keys.create("acme")["key"], base_url=base_url)
    worker = Server(real, tmp_path / "worker.log")
    try:
        ids = {}
        for name in PHOTOS:
            up = client.files.upload(file=photo(name), file_name=f"{name}.jpg", extensions=[
                {"name": "google-auto-tagging", "minConfidence": 0, "maxTags": 10}])
            ids[name] = up.file_id
        for name, (wanted, within) in PHOTOS.items():
            tags = wait_until(lambda name=name: client.files.get(ids[name]).ai_tags, 60,
                              f"{name}'s AITags")
            first = [t.name for t in tags[:within]]
            assert wanted & set(first), (name, [(t.name, t.confidence) for t in tags])
            assert all(t.source == "google-auto-tagging" for t in tags)
    finally:
        worker.stop()


def test_a_parent_tag_is_the_sum_of_its_classes_and_thresholds_hold(real, runtime):
    """A broader tag's confidence is the probability of any class under it — the sum of
    theirs ("cat" = tabby + tiger cat + Egyptian cat + …); minConfidence and maxTags as the
    extensions document says (confidence ≥ minConfidence, at most maxTags)."""
    from extensions import loaders
    from extensions.imagenet_tagger import tag_table

    tagger = loaders.get(runtime.models, "imagenet", real.imagenet_model, real)
    image = Image.open(io.BytesIO(photo("chelsea")))
    probs, embedding = tagger.probabilities(image)
    assert abs(float(probs.sum()) - 1) < 1e-4 and embedding.shape == (1280,)
    names, members, _ = tag_table()
    cat = dict(zip(names, members, strict=True))["cat"]
    scored = dict(tagger.predict(image))
    assert abs(scored["cat"] - float(probs[cat].sum())) < 1e-6
    assert scored["cat"] >= max(scored["tabby"], scored["tiger cat"], scored["Egyptian cat"])
    assert scored["animal"] >= scored["cat"]

    rec = runtime.pipeline.add_file(photo("chelsea"), "c.jpg")
    doc = run_job(runtime, {"fileId": rec.fileId, "extensions": [
        {"name": "aws-auto-tagging", "minConfidence": 50, "maxTags": 4}]})
    slot = doc["extensions"]["aws-auto-tagging"]
    assert slot["status"] == "success" and slot["model"] == "efficientnet-lite0", slot
    tags = runtime.pipeline.get_file(rec.fileId).AITags
    assert len(tags) == 4 and all(t.confidence >= 50 for t in tags)
    expected = [(n, round(p * 100, 2)) for n, p in tagger.predict(image)
                if round(p * 100, 2) >= 50][:4]
    assert [(t.name, t.confidence) for t in tags] == expected


def test_the_model_is_the_wheels_weights_converted_once(real, runtime):
    """The ONNX that workers load gives what the ``.pth`` itself gives through torch."""
    import torch

    from extensions import loaders
    from extensions.imagenet_tagger import pixels
    from worker.models.catalog import spec
    from worker.models.efficientnet import network

    s = spec("efficientnet-lite0")
    net = network()
    net.load_state_dict(torch.load(s.path(real.models_dir), map_location="cpu",
                                   weights_only=True))
    net.eval()
    x = pixels(Image.open(io.BytesIO(photo("coffee"))))
    with torch.inference_mode():
        logits, emb = net(torch.from_numpy(x)[None])
    tagger = loaders.get(runtime.models, "imagenet", real.imagenet_model, real)
    probs, embedding = tagger.probabilities(Image.open(io.BytesIO(photo("coffee"))))
    assert np.allclose(logits.softmax(-1)[0].numpy(), probs, atol=1e-5)
    assert np.allclose(emb[0].numpy(), embedding, atol=1e-4)


def test_similar_images_find_the_mirror_image_first(real, runtime, api):
    """Beyond the hosted service: ``GET /v1/files/{id}/similar`` ranks the account's files
    by their embeddings (computed with the tags): chelsea's mirror image is chelsea's
    nearest; coffee is not."""
    import httpx
    from PIL import ImageOps

    base_url, keys = api
    key = keys.create("default")["key"]
    chelsea = Image.open(io.BytesIO(photo("chelsea")))
    buf = io.BytesIO()
    ImageOps.mirror(chelsea).save(buf, "JPEG", quality=90)
    ids = {}
    for name, data in (("chelsea", photo("chelsea")), ("mirror", buf.getvalue()),
                       ("coffee", photo("coffee")), ("camera", photo("camera")),
                       ("stereo_motorcycle", photo("stereo_motorcycle"))):
        rec = runtime.pipeline.add_file(data, f"{name}.jpg")
        doc = run_job(runtime, {"fileId": rec.fileId, "extensions": [
            {"name": "google-auto-tagging", "minConfidence": 0, "maxTags": 5}]})
        assert doc["extensions"]["google-auto-tagging"]["status"] == "success"
        ids[name] = rec.fileId
    names = {v: k for k, v in ids.items()}
    got = httpx.get(f"{base_url}/v1/files/{ids['chelsea']}/similar", params={"limit": 4},
                    auth=(key, ""), timeout=30)
    assert got.status_code == 200, got.text
    ranked = [(names[f["fileId"]], f["similarity"]) for f in got.json()]
    assert ranked[0][0] == "mirror" and ranked[0][1] > 0.9, ranked  # coffee is not
    assert len(ranked) == 4 and "chelsea" not in [n for n, _ in ranked]  # itself left out
    assert [s for _, s in ranked] == sorted((s for _, s in ranked), reverse=True)
    assert ranked[0][1] - ranked[1][1] > 0.1, ranked  # and by a margin
    # A new version that was not tagged has no embedding yet: a clear 409, not a stale one.
    plain = runtime.pipeline.add_file(photo("camera"), "untagged.jpg")
    none = httpx.get(f"{base_url}/v1/files/{plain.fileId}/similar", auth=(key, ""),
                     timeout=30)
    assert none.status_code == 409 and "google-auto-tagging" in none.json()["message"]


def test_the_console_file_page_shows_the_similar_files(real, runtime, api):
    """The console's file page has a "Similar" strip: the files that look most like this
    one, nearest first, each a thumbnail that loads and links to its page."""
    from PIL import ImageOps
    from playwright.sync_api import sync_playwright

    from tests.api.test_console import CHROMIUM, _loaded, _shot, _sign_in

    base, keys = api
    key = keys.create("default")["key"]
    buf = io.BytesIO()
    ImageOps.mirror(Image.open(io.BytesIO(photo("chelsea")))).save(buf, "JPEG", quality=90)
    ids = {}
    for name, data in (("chelsea", photo("chelsea")), ("mirror", buf.getvalue()),
                       ("coffee", photo("coffee")), ("untagged", photo("camera"))):
        rec = runtime.pipeline.add_file(data, f"{name}.jpg")
        ids[name] = rec.fileId
        if name != "untagged":
            run_job(runtime, {"fileId": rec.fileId, "extensions": [
                {"name": "aws-auto-tagging", "minConfidence": 0, "maxTags": 3}]})
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            _sign_in(page, base, key)
            page.goto(f"{base}/console/files/{ids['chelsea']}")
            strip = page.get_by_role("region", name="Similar files")
            links = strip.locator("li.tile a")
            assert links.count() == 2  # the mirror and coffee; the untagged file is not
            assert links.first.inner_text().strip().startswith("mirror")
            wait_until(lambda: _loaded(strip.locator("img")), 20, "the similar thumbnails")
            _shot(page, "file-similar")
            links.first.click()
            page.wait_for_url(f"{base}/console/files/{ids['mirror']}")
            page.goto(f"{base}/console/files/{ids['untagged']}")
            assert "Run auto-tagging" in page.get_by_role(
                "region", name="Similar files").inner_text()
        finally:
            browser.close()
