"""Delivery: the file object's ``url`` and ``thumbnail`` open; the official SDK's
``build_url`` (transformations in both forms, signed URLs) works against ``extworker api``."""

from __future__ import annotations

import io
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from imagekitio import ImageKit
from imagekitio.lib.helper import _get_signature
from PIL import Image

from tests.support import jpeg


@pytest.fixture
def client(api):
    base_url, keys = api
    made = keys.create("acme")
    return ImageKit(private_key=made["key"], base_url=base_url), f"{base_url}/acme", made


def _upload(client, data: bytes, name: str, **kw):
    return client.files.upload(file=data, file_name=name, use_unique_file_name=False,
                               **kw).to_dict()


def _image(resp: httpx.Response) -> Image.Image:
    return Image.open(io.BytesIO(resp.content))


def _derivatives(base_url: str) -> float:
    text = httpx.get(f"{base_url}/metrics").text
    m = re.search(r'^extworker_derivatives_total\{outcome="computed"\} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


def test_url_and_thumbnail_of_an_sdk_upload_open(client, astronaut):
    ik, endpoint, _ = client
    data = jpeg(astronaut)
    up = _upload(ik, data, "astronaut.jpg", folder="/sdk")
    assert up["url"] == f"{endpoint}/sdk/astronaut.jpg"
    assert up["thumbnailUrl"] == f"{endpoint}/tr:n-ik_ml_thumbnail/sdk/astronaut.jpg"
    original = httpx.get(up["url"])
    assert original.status_code == 200 and original.content == data
    h = original.headers
    assert h["content-type"] == "image/jpeg" and h["x-content-type-options"] == "nosniff"
    assert "sandbox" in h["content-security-policy"]
    assert h["etag"] == f'"{up["versionInfo"]["id"]}"' and h["last-modified"]
    assert h["cache-control"] == "public, max-age=60"
    thumb = httpx.get(up["thumbnailUrl"])
    assert thumb.status_code == 200, thumb.text
    assert max(_image(thumb).size) == 200 and thumb.headers["content-type"] == "image/jpeg"
    details = ik.files.get(up["fileId"]).to_dict()
    assert details["url"] == up["url"] and details["thumbnail"] == up["thumbnailUrl"]


def test_build_url_transformations_in_both_forms(client, api, astronaut):
    ik, endpoint, _ = client
    base_url = api[0]
    up = _upload(ik, jpeg(astronaut), "t.jpg", folder="/tr")
    before = _derivatives(base_url)
    for position in ("query", "path"):
        url = ik.helper.build_url(src=up["filePath"], url_endpoint=endpoint,
                                  transformation_position=position,
                                  transformation=[{"width": 300, "height": 200}])
        assert ("?tr=w-300,h-200" in url) == (position == "query"), url
        first = httpx.get(url)
        assert first.status_code == 200, first.text
        assert _image(first).size == (300, 200)
    # The two forms are one transformation: computed once, the second answer stored.
    assert _derivatives(base_url) - before == 1
    again = httpx.get(url)
    assert again.headers["x-extworker-derivative"] == "stored"
    assert again.content == first.content and _derivatives(base_url) - before == 1

    chain = ik.helper.build_url(src=up["filePath"], url_endpoint=endpoint, transformation=[
        {"width": 200, "aspect_ratio": "4-3"}, {"rotation": 90}, {"format": "webp",
                                                                  "quality": 50}])
    got = httpx.get(chain)
    assert got.headers["content-type"] == "image/webp"
    assert _image(got).size == (150, 200)  # 200x150, turned
    pad = httpx.get(f"{up['url']}?tr=w-300,h-100,cm-pad_resize,bg-FF0000")
    im = _image(pad).convert("RGB")
    assert im.size == (300, 100) and im.getpixel((2, 50))[0] > 240  # red padding
    gray = _image(httpx.get(f"{up['url']}?tr=e-grayscale,w-64"))
    rgb = gray.convert("RGB")
    assert all(len(set(rgb.getpixel((x, 30)))) == 1 for x in range(0, 64, 8))
    auto = httpx.get(f"{up['url']}?tr=w-100,f-auto", headers={"Accept": "image/webp,*/*"})
    assert auto.headers["content-type"] == "image/webp" and auto.headers["vary"] == "Accept"
    plain = httpx.get(f"{up['url']}?tr=w-100,f-auto", headers={"Accept": "image/jpeg"})
    assert plain.headers["content-type"] == "image/jpeg"
    fit = _image(httpx.get(f"{up['url']}?tr=w-5000,h-5000,c-at_max"))
    assert fit.size == (512, 512)  # at_max never enlarges
    force = _image(httpx.get(f"{up['url']}?tr=w-50,h-120,c-force"))
    assert force.size == (50, 120)


def test_backgrounds_by_name_and_with_opacity(client, astronaut):
    """The transformation document's background: "a standard color name (e.g. red)", an
    RGB hex code, or an RGBA code whose last two digits are the opacity, 00 to 99
    (``FFAABB50``) — and a name is the same derivative as its hex."""
    ik, _, _ = client
    up = _upload(ik, jpeg(astronaut), "bg.jpg")
    named = httpx.get(f"{up['url']}?tr=w-300,h-100,cm-pad_resize,bg-red")
    assert named.status_code == 200, named.text
    assert max(abs(a - b) for a, b in zip(_image(named).convert("RGB").getpixel((2, 50)),
                                          (255, 0, 0), strict=True)) <= 3
    same = httpx.get(f"{up['url']}?tr=w-300,h-100,cm-pad_resize,bg-FF0000")
    assert same.headers["x-extworker-derivative"] == "stored"  # bg-red's, not a second one
    half = _image(httpx.get(f"{up['url']}?tr=w-300,h-100,cm-pad_resize,bg-FFFFFF50,f-png"))
    assert half.mode == "RGBA" and half.getpixel((2, 50)) == (255, 255, 255, 129)
    clear = _image(httpx.get(f"{up['url']}?tr=w-300,h-100,cm-pad_resize,bg-00000000,f-png"))
    assert clear.getpixel((2, 50))[3] == 0
    for bad in ("bg-notacolour", "bg-FFFFFFFF", "bg-12345"):
        r = httpx.get(f"{up['url']}?tr=w-300,h-100,cm-pad_resize,{bad}")
        assert r.status_code == 400 and bad in r.json()["message"], (bad, r.text)
    # The upload document's own example: pre and post chains with a named background.
    made = ik.files.upload(file=jpeg(astronaut), file_name="ex.jpg", transformation={
        "pre": "w-300,h-200,cm-pad_resize,bg-red", "post": [
            {"type": "transformation", "value": "w-100,h-100,cm-pad_resize,bg-FFFFFF50"}]})
    assert (made.width, made.height) == (300, 200)


def test_a_bad_transformation_is_a_400_naming_it(client, astronaut):
    ik, endpoint, _ = client
    up = _upload(ik, jpeg(astronaut), "bad.jpg")
    for tr, named in (("w-0", "w-0"), ("zz-3", "zz"), ("w-300,c-sideways", "c-sideways"),
                      ("rt-45", "rt-45"), ("n-nope", "n-nope"), ("w-9000", "w-9000")):
        r = httpx.get(f"{up['url']}?tr={tr}")
        assert r.status_code == 400 and named in r.json()["message"], (tr, r.text)
    r = httpx.get(f"{endpoint}/tr:w-100,q-101/bad.jpg")
    assert r.status_code == 400 and "q-101" in r.json()["message"]
    doc = _upload(ik, b"just text", "notes.txt")
    r = httpx.get(f"{doc['url']}?tr=w-100")
    assert r.status_code == 400 and "images only" in r.json()["message"]


def test_signed_urls_of_a_private_file(client, astronaut):
    ik, endpoint, made = client
    up = _upload(ik, jpeg(astronaut), "secret.jpg", is_private_file=True)
    assert httpx.get(up["url"]).status_code == 401
    assert httpx.get(up["thumbnailUrl"]).status_code == 401
    forever = ik.helper.build_url(src=up["filePath"], url_endpoint=endpoint, signed=True)
    assert "ik-s=" in forever and "ik-t=" not in forever
    assert httpx.get(forever).status_code == 200
    soon = ik.helper.build_url(src=up["filePath"], url_endpoint=endpoint, expires_in=60,
                               transformation=[{"width": 100}])
    ok = httpx.get(soon)
    assert ok.status_code == 200 and _image(ok).size == (100, 100), ok.text
    assert ok.headers["cache-control"].startswith("private, max-age=")
    # Expired: signed exactly as the SDK signs, with an expiry in the past.
    past = int(time.time()) - 10
    unsigned = f"{endpoint}{up['filePath']}"
    sig = _get_signature(made["key"], unsigned, endpoint, past)
    expired = httpx.get(f"{unsigned}?ik-t={past}&ik-s={sig}")
    assert expired.status_code == 401 and "expired" in expired.json()["message"]
    # Tampered: another transformation under the signature, a changed expiry, a bit flipped.
    tampered = soon.replace("tr=w-100", "tr=w-400")
    assert httpx.get(tampered).status_code == 401
    t = re.search(r"ik-t=(\d+)", soon).group(1)
    assert httpx.get(soon.replace(t, str(int(t) + 1000))).status_code == 401
    flipped = forever[:-1] + ("0" if forever[-1] != "0" else "1")
    assert httpx.get(flipped).status_code == 401
    # Another account's key signs nothing of this one.
    other = ImageKit(private_key=made["key"].replace(made["key"][-5:], "AAAAA"),
                     base_url=endpoint)
    assert httpx.get(other.helper.build_url(src=up["filePath"], url_endpoint=endpoint,
                                            signed=True)).status_code == 401


def test_unpublished_files_and_other_accounts_are_not_served(client, api, astronaut):
    ik, endpoint, _ = client
    hidden = _upload(ik, jpeg(astronaut), "draft.jpg", is_published=False)
    assert httpx.get(hidden["url"]).status_code == 404
    mine = _upload(ik, jpeg(astronaut), "mine.jpg")
    other_key = api[1].create("globex")["key"]
    theirs = ImageKit(private_key=other_key, base_url=api[0])
    assert _upload(theirs, b"x" * 10, "theirs.txt")["url"].startswith(f"{api[0]}/globex/")
    assert httpx.get(f"{api[0]}/globex{mine['filePath']}").status_code == 404
    assert httpx.get(f"{endpoint}/no/such.jpg").status_code == 404


def test_ranges_conditional_requests_and_versioned_urls(client, astronaut):
    ik, endpoint, _ = client
    first = jpeg(astronaut)
    up = _upload(ik, first, "v.jpg")
    part = httpx.get(up["url"], headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == first[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(first)}"
    tail = httpx.get(up["url"], headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == first[-10:]
    beyond = httpx.get(up["url"], headers={"Range": f"bytes={len(first)}-"})
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{len(first)}"
    head = httpx.head(up["url"])
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) == len(first)
    etag = head.headers["etag"]
    assert httpx.get(up["url"], headers={"If-None-Match": etag}).status_code == 304
    assert httpx.get(up["url"], headers={"If-Modified-Since": head.headers["last-modified"]}
                     ).status_code == 304

    versions = ik.files.versions.list(up["fileId"])
    v1_url = versions[0].url
    assert "?updatedAt=" in v1_url
    v1 = httpx.get(v1_url)
    assert v1.headers["cache-control"] == "public, max-age=31536000, immutable"
    second = jpeg(astronaut.rotate(90))
    _upload(ik, second, "v.jpg")  # a new version at the same path
    assert httpx.get(up["url"]).content == second
    assert httpx.get(v1_url).content == first  # the versioned URL still names version 1
    names = [v.version_info.name for v in ik.files.versions.list(up["fileId"])]
    assert names == ["Version 1", "Version 2"]


def test_active_content_cannot_run_script_in_the_api_origin(client):
    ik, _, _ = client
    svg = (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10">'
           b'<script>alert(document.cookie)</script></svg>')
    up = _upload(ik, svg, "x.svg")
    html = _upload(ik, b"<html><script>alert(1)</script></html>", "x.html")
    for url in (up["url"], html["url"]):
        r = httpx.get(url)
        assert r.status_code == 200
        assert "sandbox" in r.headers["content-security-policy"]
        assert "script-src" not in r.headers["content-security-policy"]
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["content-disposition"] == "attachment"


def test_200_concurrent_thumbnail_requests_compute_each_once(client, api, astronaut):
    ik, _, _ = client
    base_url = api[0]
    ups = [_upload(ik, jpeg(astronaut.rotate(i * 3)), f"load-{i}.jpg", folder="/load")
           for i in range(20)]
    before = _derivatives(base_url)
    urls = [ups[i % 20]["thumbnailUrl"] for i in range(200)]
    gate = threading.Barrier(50)

    def fetch(url):
        try:
            gate.wait(5)
        except threading.BrokenBarrierError:
            pass
        return httpx.get(url, timeout=60)

    with ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(fetch, urls))
    assert {r.status_code for r in answers} == {200}
    assert _derivatives(base_url) - before == 20
    by_url: dict[str, set[bytes]] = {}
    for url, r in zip(urls, answers, strict=True):
        by_url.setdefault(url, set()).add(r.content)
    assert all(len(v) == 1 for v in by_url.values())  # every answer the same bytes


def test_deleting_a_file_removes_its_derivatives(client, api, settings, astronaut):
    ik, _, _ = client
    up = _upload(ik, jpeg(astronaut), "gone.jpg")
    assert httpx.get(up["thumbnailUrl"]).status_code == 200
    from worker.store.blobs import BlobStore

    blobs = BlobStore(settings.blob_root)
    assert list(blobs.keys(f"derived/{up['fileId']}/"))
    ik.files.delete(up["fileId"])
    assert not list(blobs.keys(f"derived/{up['fileId']}/"))
    assert httpx.get(up["thumbnailUrl"]).status_code == 404


def test_url_endpoints_and_a_public_base(runtime, astronaut):
    from worker.core.urls import Urls

    doc = runtime.pipeline.accept({"accountId": "acme", "upload": {
        "fileName": "a b.jpg", "folder": "/x", "useUniqueFileName": False,
        "base64": __import__("base64").b64encode(jpeg(astronaut)).decode()}})
    record = runtime.pipeline.get_file(doc.fileId)
    plain = Urls("http://api:8080/")
    assert plain.file(record) == "http://api:8080/acme/x/a_b.jpg"
    assert plain.thumbnail(record) == "http://api:8080/acme/tr:n-ik_ml_thumbnail/x/a_b.jpg"
    per_account = Urls("http://api:8080", "https://{account}.media.example.com")
    assert per_account.file(record) == "https://acme.media.example.com/x/a_b.jpg"
    cdn = Urls("http://api:8080", None, "https://cdn.example.com/blobs/")
    assert cdn.file(record) == f"https://cdn.example.com/blobs/{record.current.blobKey}"
    private = record.model_copy(update={"isPrivateFile": True})
    assert cdn.file(private) == "http://api:8080/acme/x/a_b.jpg"  # signed, through the API
    assert plain.version(record, record.current).startswith(plain.file(record) + "?updatedAt=")


def test_an_account_cannot_take_a_name_the_api_serves(api):
    from worker.core.errors import PermanentError

    for name in ("v1", "api", "metrics"):
        with pytest.raises(PermanentError, match="a path of the API"):
            api[1].create(name)
