"""Console defects found walking it as a new user (issue 31), each in a real browser:
Retry replays the failed configuration; a finished job reads finished, never "-0.0" s;
messages come from the server's own flash, never the URL; Apply's refusal reads as one;
a Number field whose minValue is above its maxValue is refused (the API too)."""

from __future__ import annotations

import httpx

from tests.api.test_console import _sign_in
from tests.support import ROOT, jpeg, wait_until


def _upload(base: str, key: str, astronaut) -> str:
    up = httpx.post(f"{base}/api/v1/files/upload", auth=(key, ""),
                    data={"fileName": "a.jpg", "folder": "/d", "useUniqueFileName": "false"},
                    files={"file": ("a.jpg", jpeg(astronaut), "image/jpeg")})
    up.raise_for_status()
    return up.json()["fileId"]


def test_retry_replays_the_configuration_that_failed(api, browser, astronaut):
    base, keys = api
    key = keys.create("acme")["key"]
    file_id = _upload(base, key, astronaut)
    page = browser.new_page()
    _sign_in(page, base, key)
    page.goto(f"{base}/console/?path=/d/")
    page.locator("li.tile input[type=checkbox]").first.check()
    page.get_by_label("remove-bg").check()
    page.get_by_label("background colour").fill("zz")
    page.get_by_role("button", name="Apply").click()
    assert page.get_by_role("status").inner_text() == "Applied to 1 file."

    page.goto(f"{base}/console/jobs?state=failed&extension=remove-bg")
    page.locator("tbody tr").first.get_by_role("link").first.click()
    first = page.url
    row = page.locator("tbody tr", has_text="remove-bg")
    assert "failed" in row.inner_text() and "bg_color" in row.inner_text()
    header = page.locator("main > p").first.inner_text()
    assert "finished" in header and "dispatched" not in header, header
    assert "-0.0" not in row.inner_text()

    page.get_by_role("button", name="Retry remove-bg").click()
    assert page.url != first  # a new job …
    assert page.get_by_role("status").inner_text() == "Retrying remove-bg as a new job."
    again = page.locator("tbody tr", has_text="remove-bg")
    # … with the same options: it fails the same way, and makes no version.
    assert "failed" in again.inner_text() and "bg_color" in again.inner_text()
    versions = httpx.get(f"{base}/v1/files/{file_id}/versions", auth=(key, "")).json()
    assert len(versions) == 1


def test_messages_come_from_the_server_never_from_the_url(api, browser, astronaut):
    base, keys = api
    key = keys.create("acme")["key"]
    _upload(base, key, astronaut)
    page = browser.new_page()
    _sign_in(page, base, key)
    page.goto(f"{base}/console/?message=Your+account+is+suspended.+Call+555-0100")
    assert "suspended" not in page.content()
    assert page.get_by_role("status").count() == 0

    # Apply with nothing selected: the hint reads as a refusal, not as a success.
    page.goto(f"{base}/console/?path=/d/")
    page.get_by_role("button", name="Apply").click()
    assert page.get_by_role("alert").inner_text() == "Select files and at least one extension."
    assert page.get_by_role("status").count() == 0
    page.reload()  # said once
    assert page.get_by_role("alert").count() == 0


def test_a_number_field_whose_range_is_empty_is_refused(api, browser):
    base, keys = api
    key = keys.create("acme")["key"]
    r = httpx.post(f"{base}/v1/customMetadataFields", auth=(key, ""), json={
        "name": "size", "label": "Size", "schema": {"type": "Number", "minValue": 10,
                                                    "maxValue": 1}})
    assert r.status_code == 400 and "minValue 10 is above maxValue 1" in r.json()["message"]
    page = browser.new_page()
    _sign_in(page, base, key)
    page.goto(f"{base}/console/fields")
    page.get_by_label("Name").fill("size")
    page.get_by_label("Label").fill("Size")
    page.get_by_label("Type").select_option("Number")
    page.get_by_label("Minimum value").fill("10")
    page.get_by_label("Maximum value").fill("1")
    page.get_by_role("button", name="Save field").click()
    assert "minValue 10 is above maxValue 1" in page.locator("#minValue-error").inner_text()
    assert httpx.get(f"{base}/v1/customMetadataFields", auth=(key, "")).json() == []


def test_a_refused_metadata_value_keeps_what_was_typed(api, browser, astronaut):
    base, keys = api
    key = keys.create("acme")["key"]
    file_id = _upload(base, key, astronaut)
    for name, schema in (("brand", {"type": "Text"}), ("price", {"type": "Number",
                                                                 "minValue": 0})):
        httpx.post(f"{base}/v1/customMetadataFields", auth=(key, ""), json={
            "name": name, "label": name.title(), "schema": schema}).raise_for_status()
    page = browser.new_page()
    _sign_in(page, base, key)
    page.goto(f"{base}/console/files/{file_id}")
    page.get_by_label("Brand").fill("Acme")
    page.get_by_label("Price").fill("-5")
    page.get_by_role("button", name="Save metadata").click()
    assert "price" in page.locator("#cm-price-error").inner_text()
    assert page.get_by_label("Brand").input_value() == "Acme"  # the valid one kept
    assert page.get_by_label("Price").input_value() == "-5"  # the refused one, to correct
    got = httpx.get(f"{base}/v1/files/{file_id}/details", auth=(key, "")).json()
    assert got.get("customMetadata", {}) == {}  # nothing stored of a refused save


def test_a_quiet_accounts_webhooks_page_shows_its_deliveries(settings, rclient, api, browser):
    from webhooks.store import DeliveryStore

    base, keys = api
    key = keys.create("acme")["key"]
    store = DeliveryStore(rclient, settings.keys)
    mine = [{"id": f"msg_acme_{i}", "accountId": "acme", "createdAt": i, "fileId": "f",
             "jobId": "j", "service": "remove-bg", "status": "delivered", "attempt": 1}
            for i in range(2)]
    busy = [{"id": f"msg_busy_{i}", "accountId": "busy", "createdAt": 10 + i, "fileId": "g",
             "jobId": "k", "service": "remove-bg", "status": "delivered", "attempt": 1}
            for i in range(600)]
    for doc in mine + busy:  # the quiet account's two, then 600 newer of another's
        store.create(doc, 10 ** 12)
        rclient.zrem(store.due, doc["id"])
    page = browser.new_page()
    _sign_in(page, base, key)
    page.goto(f"{base}/console/webhooks")
    rows = page.locator("tr[data-delivery]")
    assert sorted(rows.evaluate_all("rs => rs.map(r => r.dataset.delivery)")) == [
        "msg_acme_0", "msg_acme_1"]


def test_the_grid_and_the_file_page_show_each_version_by_its_own_url(api, browser, astronaut):
    base, keys = api
    key = keys.create("acme")["key"]
    file_id = _upload(base, key, astronaut)
    page = browser.new_page()
    _sign_in(page, base, key)
    page.goto(f"{base}/console/?path=/d/")
    before = page.locator("li.tile img").first.get_attribute("src")
    assert "updatedAt=" in before
    _upload(base, key, astronaut.rotate(180))  # a new version at the same path
    page.goto(f"{base}/console/?path=/d/")
    after = page.locator("li.tile img").first.get_attribute("src")
    assert "updatedAt=" in after and after != before  # never the cached old thumbnail
    assert httpx.get(after).content != httpx.get(before).content
    assert "immutable" in httpx.get(after).headers["cache-control"]

    # The file page previews each version at a preview's size, linking the full one.
    page.goto(f"{base}/console/files/{file_id}")
    previews = page.locator("li.version img")
    assert previews.count() == 2
    shown = [previews.nth(i).get_attribute("src") for i in range(2)]
    assert all("tr:w-480" in s and "updatedAt=" in s for s in shown), shown
    full = [page.locator("li.version a").nth(i).get_attribute("href") for i in range(2)]
    assert sum(len(httpx.get(s).content) for s in shown) < \
        sum(len(httpx.get(u).content) for u in full)


def test_names_lists_confirmations_and_the_icon(api, browser, astronaut):
    """A saved extension's status by its name; embedded lists as their items; deletes ask
    first; the page's icon is served (no 404 in the console)."""
    base, keys = api
    key = keys.create("acme")["key"]
    with open(ROOT / "tests" / "data" / "exiftool" / "IPTC.jpg", "rb") as fh:
        up = httpx.post(f"{base}/api/v1/files/upload", auth=(key, ""),
                        data={"fileName": "iptc.jpg", "folder": "/d"},
                        files={"file": ("iptc.jpg", fh.read(), "image/jpeg")}).json()
    saved = httpx.post(f"{base}/v1/saved-extensions", auth=(key, ""), json={
        "name": "my tags", "description": "",
        "config": {"name": "aws-auto-tagging", "minConfidence": 0, "maxTags": 2}})
    assert saved.status_code == 200, saved.text
    saved = saved.json()
    httpx.patch(f"{base}/v1/files/{up['fileId']}/details", auth=(key, ""), json={
        "extensions": [{"name": "saved-extension", "id": saved["id"]}]}).raise_for_status()
    page = browser.new_page()
    missing: list[str] = []
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 else None)
    _sign_in(page, base, key)
    page.goto(f"{base}/console/files/{up['fileId']}")
    extensions = page.get_by_role("region", name="Extensions").inner_text()
    assert "my tags" in extensions and saved["id"] not in extensions
    embedded = page.locator("tr", has=page.locator("th", has_text="Keywords")).first
    assert embedded.locator("td").inner_text() == "ExifTool, Test, IPTC"
    page.goto(f"{base}/console/?path=/d/")
    assert "my tags:" in page.locator("[data-status-for]").first.inner_text()
    assert httpx.get(f"{base}/console/status/{up['fileId']}",
                     cookies={c["name"]: c["value"] for c in page.context.cookies()}
                     ).json().keys() == {"my tags"}
    assert missing == [], missing  # the icon too

    page.goto(f"{base}/console/saved")
    asked: list[str] = []
    page.once("dialog", lambda d: (asked.append(d.message), d.dismiss()))
    page.get_by_role("button", name="Delete my tags").click()
    assert asked and "my tags" in asked[0]
    assert httpx.get(f"{base}/v1/saved-extensions", auth=(key, "")).json()  # kept: dismissed


def _luminance(rgb: str) -> float:
    r, g, b = (int(x) / 255 for x in rgb[rgb.index("(") + 1:rgb.index(")")].split(",")[:3])

    def lin(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b)


def _contrast(fg: str, bg: str) -> float:
    hi, lo = sorted((_luminance(fg), _luminance(bg)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_every_page_fits_a_phone_and_the_nav_stays_readable(api, browser, astronaut):
    """390 px wide (a phone): no page scrolls sideways, and each nav link sits on the
    header's own dark background with WCAG AA contrast (it overflowed onto the page's light
    grey before)."""
    base, keys = api
    key = keys.create("acme")["key"]
    file_id = _upload(base, key, astronaut)
    httpx.patch(f"{base}/v1/files/{file_id}/details", auth=(key, ""), json={
        "tags": ["a-rather-long-tag-name-that-goes-on", "b"]}).raise_for_status()
    page = browser.new_page(viewport={"width": 390, "height": 844})
    _sign_in(page, base, key)
    page.goto(f"{base}/console/jobs")
    job = page.locator("tbody tr a").first.get_attribute("href")
    for path in ("/", "/?path=/d/", f"/files/{file_id}", "/upload", "/saved", "/fields",
                 "/jobs", job.split("/console", 1)[1], "/webhooks", "/usage", "/keys"):
        page.goto(f"{base}/console{path}")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{path}: {width} px wide"
        header = page.locator("header").bounding_box()
        bg = page.locator("header").evaluate("e => getComputedStyle(e).backgroundColor")
        for link in page.locator("header nav a").all():
            box = link.bounding_box()
            assert box["y"] + box["height"] <= header["y"] + header["height"] + 0.5, path
            fg = link.evaluate("e => getComputedStyle(e).color")
            assert _contrast(fg, bg) >= 4.5, (path, fg, bg)


def test_api_keys_are_created_shown_once_listed_and_revoked(api, browser):
    base, keys = api
    key = keys.create("acme")["key"]
    page = browser.new_page()
    _sign_in(page, base, key)
    page.get_by_role("link", name="API keys").click()
    assert page.locator("tbody tr").count() == 1  # the one signed in with, by its hint
    assert key not in page.content()
    page.get_by_role("button", name="Create a key").click()
    new = page.get_by_label("Private key").input_value()
    assert new.startswith("private_") and new != key
    page.get_by_role("button", name="Copy").click()
    assert page.get_by_role("button", name="Copied").count() == 1
    assert httpx.get(f"{base}/v1/files", auth=(new, "")).status_code == 200  # it works
    page.goto(f"{base}/console/keys")
    assert new not in page.content() and page.locator("tbody tr").count() == 2  # not again
    new_id = next(k["id"] for k in keys.list("acme") if new.startswith(k["hint"][:-1]))
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name=f"Revoke {new_id}").click()
    assert page.get_by_role("status").inner_text().startswith(f"Revoked {new_id}")
    assert httpx.get(f"{base}/v1/files", auth=(new, "")).status_code == 401
    assert httpx.get(f"{base}/v1/files", auth=(key, "")).status_code == 200


def test_the_library_manages_files_and_folders(api, browser, astronaut):
    """Tiles with type, dimensions and size; sort; a list view; create a folder; delete the
    selection; a file renamed, moved, copied, downloaded and deleted from its page."""
    base, keys = api
    key = keys.create("acme")["key"]
    for name, im in (("big.jpg", astronaut), ("small.jpg", astronaut.resize((64, 64)))):
        httpx.post(f"{base}/api/v1/files/upload", auth=(key, ""),
                   data={"fileName": name, "folder": "/d", "useUniqueFileName": "false"},
                   files={"file": (name, jpeg(im), "image/jpeg")}).raise_for_status()
    page = browser.new_page()
    _sign_in(page, base, key)
    page.goto(f"{base}/console/?path=/d/")
    metas = page.locator("li.tile .meta").all_inner_texts()
    assert any(m.startswith("JPEG · 512×512 · ") and m.endswith("KB") for m in metas), metas
    page.get_by_label("Sort").select_option("DESC_SIZE")
    page.get_by_role("button", name="Search").click()
    assert page.locator("li.tile a").first.inner_text() == "big.jpg"
    page.get_by_label("Sort").select_option("ASC_SIZE")
    page.get_by_role("button", name="Search").click()
    assert page.locator("li.tile a").first.inner_text() == "small.jpg"
    page.get_by_role("link", name="List view").click()
    assert "64×64" in page.locator("table.listing tbody tr").first.inner_text()

    page.get_by_label("New folder in /d/").fill("sub")
    page.get_by_role("button", name="Create folder").click()
    assert page.get_by_role("status").inner_text() == "Created /d/sub/."
    page.goto(f"{base}/console/?path=/d/")
    tree = page.get_by_role("navigation", name="Folder tree")
    assert tree.get_by_role("link", name="sub", exact=True).count() == 1  # /d/ open: its child

    page.get_by_label("Select small.jpg").check()
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Delete selected").click()
    assert page.get_by_role("status").inner_text() == "Deleted 1 file."
    assert page.locator("li.tile a", has_text="small.jpg").count() == 0

    page.locator("li.tile a", has_text="big.jpg").click()
    own = page.get_by_role("region", name="File")
    url = own.get_by_label("URL", exact=True).input_value()
    assert own.get_by_role("link", name="Download").get_attribute("href") == url
    assert httpx.get(url).content[:2] == b"\xff\xd8"
    own.get_by_label("New name").fill("renamed.jpg")
    own.get_by_role("button", name="Rename").click()
    assert page.get_by_role("status").inner_text() == "Renamed to renamed.jpg."
    own.get_by_label("Folder", exact=True).fill("/d/sub/")
    own.get_by_role("button", name="Move").click()
    assert "/d/sub/renamed.jpg" in page.locator("h1").inner_text()
    own.get_by_label("Folder", exact=True).fill("/")
    own.get_by_role("button", name="Copy", exact=True).click()
    assert page.get_by_role("status").inner_text() == "Copied from /d/sub/renamed.jpg."
    assert "/renamed.jpg" in page.locator("h1 small").inner_text()
    page.once("dialog", lambda d: d.accept())
    own.get_by_role("button", name="Delete file").click()
    assert page.get_by_role("status").inner_text() == "Deleted /renamed.jpg."
    listed = httpx.get(f"{base}/v1/files", auth=(key, "")).json()
    assert [f["filePath"] for f in listed] == ["/d/sub/renamed.jpg"]

    # A folder shows its own files; "include subfolders" shows those below it too.
    page.goto(f"{base}/console/?path=/d/")
    assert page.locator("li.tile").count() == 0
    page.get_by_label("include subfolders").check()
    page.get_by_role("button", name="Search").click()
    assert page.locator("li.tile a").all_inner_texts() == ["renamed.jpg"]
    # The tree opens down to the current folder; /d/sub/ is the current one.
    page.get_by_role("navigation", name="Folder tree").get_by_role("link", name="sub").click()
    tree = page.get_by_role("navigation", name="Folder tree")
    assert tree.locator("[aria-current=page]").get_attribute("title") == "/d/sub/"
    assert tree.locator("li[data-open]").count() == 3  # /, /d/, /d/sub/


def test_the_jobs_page_updates_live_and_pauses_when_hidden(api, browser, astronaut):
    base, keys = api
    key = keys.create("acme")["key"]
    file_id = _upload(base, key, astronaut)
    page = browser.new_page()
    _sign_in(page, base, key)
    page.goto(f"{base}/console/jobs")
    rows = page.locator("tbody tr")
    assert rows.count() == 1
    page.evaluate("window.notReloaded = true")

    def tag(t: str) -> None:
        httpx.patch(f"{base}/v1/files/{file_id}/details", auth=(key, ""),
                    json={"tags": [t]}).raise_for_status()

    tag("a")  # a second job
    wait_until(lambda: rows.count() == 2, 10, "the new job shown without a reload",
               every=0.2)
    assert page.evaluate("window.notReloaded === true")
    # Hidden: nothing is fetched, the page stays as it was; shown again: read at once.
    page.evaluate("Object.defineProperty(document, 'hidden', {value: true, configurable: true})")
    tag("b")
    page.wait_for_timeout(4500)
    assert rows.count() == 2
    page.evaluate("Object.defineProperty(document, 'hidden', {value: false, configurable: true});"
                  "document.dispatchEvent(new Event('visibilitychange'))")
    wait_until(lambda: rows.count() == 3, 5, "read again once shown", every=0.2)
    assert page.evaluate("window.notReloaded === true")


def test_the_url_builder_makes_the_sdks_url_and_previews_it(api, browser, astronaut):
    from imagekitio import ImageKit

    base, keys = api
    key = keys.create("acme")["key"]
    file_id = _upload(base, key, astronaut)
    page = browser.new_page()
    _sign_in(page, base, key)
    page.goto(f"{base}/console/files/{file_id}")
    builder = page.get_by_role("region", name="Transformation URL")
    builder.get_by_label("Width").fill("300")
    builder.get_by_label("Height").fill("200")
    builder.get_by_label("Crop").select_option("at_max")
    builder.get_by_label("Format").select_option("webp")
    builder.get_by_label("Quality").fill("80")
    built = builder.get_by_label("URL", exact=True).input_value()
    sdk = ImageKit(private_key=key).helper.build_url(
        src="/d/a.jpg", url_endpoint=f"{base}/acme", transformation=[
            {"width": 300, "height": 200, "crop": "at_max", "format": "webp", "quality": 80}])
    assert built == sdk
    preview = page.locator("img[data-url-preview]")
    wait_until(lambda: preview.get_attribute("src") == sdk and preview.evaluate(
        "i => i.complete && i.naturalWidth > 0"), 10, "the preview loaded", every=0.2)
    assert preview.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [200, 200]  # at_max
    assert httpx.get(sdk).headers["content-type"] == "image/webp"


def test_an_accounts_endpoint_is_used_when_an_upload_names_none(api, browser, astronaut):
    base, keys = api
    key = keys.create("acme")["key"]
    page = browser.new_page()
    _sign_in(page, base, key)
    page.goto(f"{base}/console/webhooks")
    page.get_by_label("Webhook URL used when an upload").fill("ftp://nope")
    page.get_by_role("button", name="Save endpoint").click()
    assert "is not an http(s) URL" in page.get_by_role("alert").inner_text()
    page.get_by_label("Webhook URL used when an upload").fill("https://hooks.example/x")
    page.get_by_role("button", name="Save endpoint").click()
    assert page.get_by_role("status").inner_text() == "Saved the endpoint."
    assert page.get_by_label("Webhook URL used when an upload").input_value() == \
        "https://hooks.example/x"

    def job_of(data: dict) -> dict:
        up = httpx.post(f"{base}/api/v1/files/upload", auth=(key, ""),
                        data={"fileName": "a.jpg", **data},
                        files={"file": ("a.jpg", jpeg(astronaut), "image/jpeg")}).json()
        page.goto(f"{base}/console/files/{up['fileId']}")
        page.get_by_role("region", name="Job history").locator("a").first.click()
        return page.locator("pre").inner_text()

    assert '"webhookUrl": "https://hooks.example/x"' in job_of({})  # the account's default
    assert '"webhookUrl": "https://own.example/y"' in job_of(
        {"webhookUrl": "https://own.example/y"})  # an upload's own wins


def test_fields_are_made_through_a_form_per_type(api, browser):
    base, keys = api
    key = keys.create("acme")["key"]
    page = browser.new_page()
    _sign_in(page, base, key)
    page.goto(f"{base}/console/fields")
    page.get_by_label("Name").fill("size")
    page.get_by_label("Label").fill("Size")
    page.get_by_label("Type").select_option("Number")
    page.get_by_label("Minimum value").fill("abc")
    page.get_by_role("button", name="Save field").click()
    assert "minValue: 'abc' is not a number" in page.locator("#minValue-error").inner_text()
    assert page.get_by_label("Label").input_value() == "Size"  # what was typed, kept
    page.get_by_label("Minimum value").fill("0")
    page.get_by_label("Maximum value").fill("99.5")
    page.get_by_role("button", name="Save field").click()
    assert page.get_by_role("status").inner_text() == "Saved field size."
    page.get_by_label("Name").fill("colour")
    page.get_by_label("Label").fill("Colour")
    page.get_by_label("Type").select_option("SingleSelect")
    page.get_by_label("Choices").fill("red, green , blue")
    page.get_by_role("button", name="Save field").click()
    got = {f["name"]: f["schema"] for f in httpx.get(
        f"{base}/v1/customMetadataFields", auth=(key, "")).json()}
    assert got == {"size": {"type": "Number", "minValue": 0, "maxValue": 99.5},
                   "colour": {"type": "SingleSelect", "selectOptions": ["red", "green", "blue"]}}
    page.goto(f"{base}/console/fields/size")  # editing shows the form filled from the schema
    assert page.get_by_label("Type").input_value() == "Number"
    assert page.get_by_label("Maximum value").input_value() == "99.5"


def test_saved_extensions_through_a_form_per_kind_or_as_json(api, browser):
    base, keys = api
    key = keys.create("acme")["key"]
    page = browser.new_page()
    _sign_in(page, base, key)
    page.goto(f"{base}/console/saved")
    page.get_by_label("Name", exact=True).fill("cut-out")
    page.get_by_label("Extension").select_option("remove-bg")
    page.get_by_label("Background colour").fill("zz")
    page.get_by_role("button", name="Save").click()
    assert "bg_color" in page.locator("#bg_color-error").inner_text()  # on its input
    page.get_by_label("Background colour").fill("FF0000")
    page.get_by_label("shadow", exact=True).check()
    page.get_by_role("button", name="Save").click()
    assert page.get_by_role("status").inner_text() == "Saved cut-out."
    # The advanced switch: the whole configuration as JSON.
    page.get_by_label("Name", exact=True).fill("described")
    page.locator("summary", has_text="Advanced").click()
    page.get_by_label("Edit as JSON").check()
    page.get_by_label("Configuration (JSON)").fill('{"name": "ai-auto-description"}')
    page.get_by_role("button", name="Save").click()
    assert page.get_by_role("status").inner_text() == "Saved described."
    got = {s["name"]: s["config"] for s in httpx.get(
        f"{base}/v1/saved-extensions", auth=(key, "")).json()}
    assert got["cut-out"]["name"] == "remove-bg"
    assert got["cut-out"]["options"]["bg_color"].lstrip("#") == "FF0000"
    assert got["cut-out"]["options"]["add_shadow"] is True
    assert got["described"] == {"name": "ai-auto-description"}
