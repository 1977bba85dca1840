"""The console in a real browser: Playwright driving Debian's Chromium against a real
``extworker api`` (and, for the extensions, a real ``extworker serve``) on real Redis.

Screenshots of every page go to ``.data/artifacts/console/`` (the run's artefacts)."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from tests.support import ROOT, Server, jpeg, wait_until
from tests.support.receiver import Receiver, Reply

CHROMIUM = "/usr/bin/chromium"
ARTEFACTS = ROOT / ".data" / "artifacts" / "console"



def _shot(page, name):
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTEFACTS / f"{name}.png"), full_page=True)


def _photos(tmp_path, astronaut):
    out = []
    for i, angle in enumerate((0, 90, 180)):
        path = tmp_path / f"photo-{i}.jpg"
        path.write_bytes(jpeg(astronaut.rotate(angle)))
        out.append(str(path))
    return out


def _loaded(images) -> bool:
    """Every image decoded by the browser (read as DOM properties: the console's CSP
    allows no eval, so no page-side predicate)."""
    handles = images.element_handles()
    return bool(handles) and all(h.get_property("complete").json_value()
                                 and h.get_property("naturalWidth").json_value() > 0
                                 for h in handles)


def _sign_in(page, base, key):
    page.goto(f"{base}/console/")
    assert page.url.endswith("/console/login")  # not signed in: the sign-in form
    page.get_by_label("Private API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/console/")


def test_console_library_file_saved_extensions_and_safety(api, browser, tmp_path, astronaut):
    base, keys = api
    key = keys.create("acme")["key"]
    other = keys.create("globex")["key"]
    theirs = httpx.post(f"{base}/api/v1/files/upload", auth=(other, ""),
                        data={"fileName": "theirs.jpg"},
                        files={"file": ("theirs.jpg", jpeg(astronaut), "image/jpeg")}).json()
    page = browser.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

    # A wrong key: refused, said so.
    page.goto(f"{base}/console/login")
    page.get_by_label("Private API key").fill("private_wrong")
    page.get_by_role("button", name="Sign in").click()
    assert "does not sign in" in page.get_by_role("alert").inner_text()
    _shot(page, "login")
    _sign_in(page, base, key)
    cookie = next(c for c in page.context.cookies() if c["name"] == "extworker_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and key not in cookie["value"]

    # Saved extensions: a bad configuration is named on its field; a good one is listed.
    page.goto(f"{base}/console/saved")
    page.get_by_label("Name").fill("tags")
    page.get_by_label("Extension").select_option("google-auto-tagging")
    page.get_by_label("Most tags").fill("many")
    page.get_by_role("button", name="Save").click()
    assert "maxTags" in page.locator("#maxTags-error").inner_text()  # on its input
    page.get_by_label("Extension").select_option("aws-auto-tagging")
    page.get_by_label("Minimum confidence").fill("0")
    page.get_by_label("Most tags").fill("3")
    page.get_by_role("button", name="Save").click()
    assert page.get_by_role("status").inner_text() == "Saved tags."
    saved_id = page.locator("td code").first.inner_text()
    assert saved_id.startswith("ext_")
    _shot(page, "saved-extensions")

    # Upload three real photos with the saved extension chosen under Settings.
    page.goto(f"{base}/console/upload")
    page.get_by_label("Files (or drop them here)").set_input_files(_photos(tmp_path, astronaut))
    page.get_by_label("Folder").fill("/console")
    page.get_by_label("tags", exact=True).check()
    page.get_by_role("button", name="Upload").click()
    # One request per file, each with its progress bar, results linking to each file.
    results = page.locator("ul.results li")
    wait_until(lambda: page.locator("ul.results li a").count() == 3, 20, "three uploads")
    assert page.locator("ul.results progress").count() == 3
    assert {b.get_attribute("value") for b in page.locator("ul.results progress").all()} \
        == {"100"}
    assert all("tags: pending" in results.nth(i).inner_text()  # the saved one, by name
               for i in range(3))
    _shot(page, "upload")

    # The library: the folder, three thumbnails that load, search by name.
    page.goto(f"{base}/console/?path=/console/")
    tiles = page.locator("li.tile")
    assert tiles.count() == 3
    wait_until(lambda: _loaded(page.locator("li.tile img")), 20, "the thumbnails")
    _shot(page, "library")
    page.get_by_label("Name").fill("photo-1")
    page.get_by_role("button", name="Search").click()
    assert page.locator("li.tile").count() == 1
    page.goto(f"{base}/console/")
    tree = page.get_by_role("navigation", name="Folder tree")
    assert tree.get_by_role("link", name="console", exact=True).count() == 1

    # A file: its versions and details; a tag with <script> is text, never run.
    page.goto(f"{base}/console/?path=/console/")
    page.locator("li.tile a").first.click()
    page.wait_for_url("**/console/files/*")
    file_url = page.url
    page.get_by_label("Tags (comma-separated)").fill("red, <script>alert(1)</script>")
    page.get_by_role("button", name="Save").click()
    assert page.locator("li.tag").nth(1).inner_text() == "<script>alert(1)</script>"
    assert dialogs == []
    _shot(page, "file")

    # Custom metadata: a field made on its page (a bad schema named), then the file's form
    # built from it; a value the schema refuses is shown on that field.
    page.goto(f"{base}/console/fields")
    page.get_by_label("Name").fill("price")
    page.get_by_label("Label").fill("Price")
    page.locator("summary", has_text="Advanced").click()  # the schema as JSON
    page.get_by_label("Edit as JSON").check()
    page.get_by_label("Schema (JSON)").fill('{"type": "Money"}')
    page.get_by_role("button", name="Save field").click()
    assert "type" in page.get_by_role("alert").inner_text()
    page.get_by_label("Schema (JSON)").fill('{"type": "Number", "minValue": 0}')
    page.get_by_role("button", name="Save field").click()
    assert page.get_by_role("status").inner_text() == "Saved field price."
    page.goto(file_url)
    page.get_by_label("Price").fill("-5")
    page.get_by_role("button", name="Save metadata").click()
    assert "price" in page.locator("#cm-price-error").inner_text()
    page.get_by_label("Price").fill("12.5")
    page.get_by_role("button", name="Save metadata").click()
    assert page.get_by_role("status").inner_text() == "Metadata saved."
    assert page.get_by_label("Price").input_value() == "12.5"

    # Select all three → Apply saved extensions.
    page.goto(f"{base}/console/?path=/console/")
    page.get_by_label("Select all").check()
    page.get_by_label("Apply saved extensions").select_option(saved_id)
    page.get_by_role("button", name="Apply").click()
    assert page.get_by_role("status").inner_text() == "Applied to 3 files."

    # Ad-hoc extensions on one file; a parameter out of range fails, named, on the file page.
    page.goto(f"{base}/console/?path=/console/")
    assert not page.get_by_label("Select all").is_checked()
    page.locator("li.tile input[type=checkbox]").first.check()
    page.get_by_label("aws-auto-tagging").check()
    page.get_by_label("maxTags").fill("99")
    page.get_by_role("button", name="Apply").click()  # the browser holds it: max is 30
    assert page.locator("#t-max:invalid").count() == 1
    # …and sent anyway, the extension fails naming the parameter (on the file page).
    sent = httpx.post(f"{base}/console/apply", cookies={"extworker_console": cookie["value"]},
                      headers={"Sec-Fetch-Site": "same-origin"}, data={
                          "fileId": file_url.rsplit("/", 1)[1], "adhoc": "aws-auto-tagging",
                          "t_max": "99", "back": "/"})
    assert sent.status_code == 303
    page.goto(file_url)
    row = page.get_by_role("region", name="Extensions").locator("tr", has_text="aws-auto")
    assert "failed" in row.inner_text() and "maxTags" in row.inner_text()
    page.goto(f"{base}/console/?path=/console/")
    page.locator("li.tile input[type=checkbox]").first.check()
    page.get_by_label("aws-auto-tagging").check()
    page.get_by_label("maxTags").fill("3")
    page.get_by_role("button", name="Apply").click()
    assert page.get_by_role("status").inner_text() == "Applied to 1 file."
    page.goto(file_url)
    assert "pending" in page.get_by_role("region", name="Extensions").locator(
        "tr", has_text="aws-auto").inner_text()

    # Jobs: the uploads and the apply are there, newest first; a failed extension's error,
    # and Retry (a new job); the file's own history.
    file_id = file_url.rsplit("/", 1)[1]
    httpx.patch(f"{base}/v1/files/{file_id}/details", auth=(key, ""), json={
        "extensions": [{"name": "saved-extension", "id": "ext_gone"}]}).raise_for_status()
    page.goto(f"{base}/console/jobs?state=failed&extension=ext_gone")
    rows = page.locator("tbody tr")
    assert rows.count() == 1 and "saved-extension:ext_gone: failed" in rows.first.inner_text()
    rows.first.get_by_role("link").first.click()
    assert "saved_extension_not_found" in page.content()
    _shot(page, "job")
    page.get_by_role("button", name="Retry saved-extension:ext_gone").click()
    assert page.get_by_role("status").inner_text() == \
        "Retrying saved-extension:ext_gone as a new job."
    page.goto(f"{base}/console/jobs")
    # uploads, applies, the metadata update, two ad-hoc runs, the failing update, the retry
    assert page.locator("tbody tr").count() == 3 + 3 + 1 + 2 + 2
    _shot(page, "jobs")
    page.goto(file_url)
    assert page.get_by_role("region", name="Job history").locator("tr").count() == 7

    # Another account's file by URL: 404. A cross-site POST with the session: refused.
    assert page.goto(f"{base}/console/files/{theirs['fileId']}").status == 404
    jar = {"extworker_console": cookie["value"]}
    forged = httpx.post(f"{base}/console/saved/{saved_id}/delete", cookies=jar,
                        headers={"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"})
    assert forged.status_code == 403
    assert httpx.post(f"{base}/console/saved/{saved_id}/delete", cookies=jar,
                      headers={"Origin": "https://evil.example"}).status_code == 403
    page.goto(f"{base}/console/saved")
    assert saved_id in page.content()  # still there

    for name in ("webhooks", "usage"):
        assert page.goto(f"{base}/console/{name}").status == 200
        _shot(page, name)
    page.goto(file_url)
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/console/login")
    assert httpx.get(f"{base}/console/", cookies=jar, follow_redirects=False
                     ).status_code == 303  # the session is gone server-side too


@pytest.mark.slow
def test_console_watch_extensions_and_redeliver_webhooks(settings, api, browser, tmp_path,
                                                         astronaut):
    settings.webhook_delays_s = [0, 1]  # two attempts, a second apart: exhausted quickly
    base, keys = api
    key = keys.create("acme")["key"]
    httpx.post(f"{base}/v1/saved-extensions", auth=(key, ""), json={
        "name": "cut-out", "description": "remove the background",
        "config": {"name": "remove-bg"}}).raise_for_status()
    failing = {"on": True}  # until told otherwise
    recv = Receiver(lambda n: Reply(500) if failing["on"] else Reply())
    worker = Server(settings, tmp_path / "worker.log",
                    env={"EXTWORKER_WEBHOOK_DELAYS_S": "[0, 1]"})
    try:
        page = browser.new_page()
        _sign_in(page, base, key)
        page.goto(f"{base}/console/upload")
        page.get_by_label("Files (or drop them here)").set_input_files(
            _photos(tmp_path, astronaut))
        page.get_by_label("Folder").fill("/cut")
        page.get_by_label("Webhook URL (optional)").fill(recv.url)
        page.get_by_label("cut-out").check()
        page.get_by_role("button", name="Upload").click()
        # Live status, without a reload, until each is final.
        statuses = page.locator("[data-status-for]")
        wait_until(lambda: statuses.count() == 3 and all(
            "success" in t for t in statuses.all_inner_texts()), 180,
            "every extension final, shown without a reload")
        page.locator("ul.results a").first.click()
        versions = page.locator("li.version img")
        assert versions.count() == 2  # the cut-out beside its original
        wait_until(lambda: _loaded(versions), 20, "both versions shown")
        _shot(page, "file-cut-out")
        # Usage: the month's units, and today's bar of the chart per day.
        page.goto(f"{base}/console/usage")
        assert "Units used: 390" in page.locator("main p").first.inner_text()
        today = datetime.now(UTC).strftime("%Y-%m-%d")
        assert page.locator("rect.day title", has_text=f"{today}: 390 units").count() == 1
        _shot(page, "usage")
        # The receiver fails: every delivery ends exhausted; redeliver all → delivered.
        wait_until(lambda: len(recv.requests) >= 6, 60, "two attempts of three deliveries")
        page.goto(f"{base}/console/webhooks")
        wait_until(lambda: page.reload() and page.locator("td.delivery-status").all_inner_texts()
                   == ["exhausted"] * 3, 60, "exhausted deliveries")
        _shot(page, "webhooks")
        failing["on"] = False
        page.once("dialog", lambda d: d.accept())
        page.get_by_role("button", name="Redeliver all exhausted").click()
        assert "Redelivering 3" in page.get_by_role("status").inner_text()
        wait_until(lambda: page.reload() and page.locator("td.delivery-status").all_inner_texts()
                   == ["delivered"] * 3, 60, "delivered after redelivery")
        # One delivery again, on its own: a new series under the same webhook-id.
        first_id = page.locator("tr[data-delivery]").first.get_attribute("data-delivery")
        page.locator("tr[data-delivery]").first.get_by_role("button", name="Redeliver").click()
        assert page.get_by_role("status").inner_text() == f"Redelivering {first_id}."
        wait_until(lambda: len([r for r in recv.requests if {
            k.lower(): v for k, v in r.headers.items()}.get("webhook-id") == first_id]) >= 4,
            30, "the single redelivery (2 failed, 1 after all, 1 now)")
        # A delivery's own page: its payload as sent, every attempt's answer, its file.
        page.get_by_role("link", name=first_id).click()
        assert first_id in page.locator("h1").inner_text()
        payload = page.get_by_role("region", name="Payload").inner_text()
        assert '"status": "SUCCESS"' in payload and '"fileObject"' in payload
        attempts = page.get_by_role("region", name="Attempts").locator("tbody tr")
        assert attempts.count() >= 3 and "500" in attempts.first.inner_text()
        assert page.get_by_role("link", name="the file").count() == 1
        page.goto(f"{base}/console/webhooks")
        # The signing secret: masked, copyable, rotated (after a confirmation).
        assert page.locator("#secret").get_attribute("type") == "password"
        before = page.locator("#secret").input_value()
        page.once("dialog", lambda d: d.accept())
        page.get_by_role("button", name="Rotate").click()
        assert "Rotated" in page.get_by_role("status").inner_text()
        assert page.locator("#secret").input_value() not in ("", before)
    finally:
        worker.stop()
        recv.close()


def test_console_behind_a_url_prefix(settings, rclient, astronaut):
    """An ingress serving the API under /media, stripping the prefix on the way in
    (uvicorn --root-path /media): every link, form, asset and cookie of the console carries
    the prefix. The requests below are what the ingress forwards (no prefix)."""
    import threading

    import uvicorn

    from tests.support import free_port
    from worker.api.app import create_app
    from worker.broker.actors import build_broker
    from worker.runtime import Runtime

    port = free_port()
    settings.api_url = f"http://127.0.0.1:{port}/media"
    runtime = Runtime(settings, broker=build_broker(settings))
    server = uvicorn.Server(uvicorn.Config(create_app(runtime), host="127.0.0.1", port=port,
                                           root_path="/media", log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 20, "the API listening", every=0.05)
    try:
        key = runtime.apikeys.create("acme")["key"]
        base = f"http://127.0.0.1:{port}/media"  # what clients see
        forwarded = f"http://127.0.0.1:{port}"  # what the ingress sends on
        http = httpx.Client(base_url=forwarded, headers={"Sec-Fetch-Site": "same-origin"})
        login = http.get("/console/")
        assert login.status_code == 303 and login.headers["location"] == "/media/console/login"
        form = http.get("/console/login").text
        assert 'action="/media/console/login"' in form
        assert 'href="/media/console/static/console.css"' in form
        assert http.get("/console/static/console.js").status_code == 200
        signed = http.post("/console/login", data={"key": key})
        assert signed.status_code == 303 and signed.headers["location"] == "/media/console/"
        assert "Path=/media/console" in signed.headers["set-cookie"]
        # (the browser sends it under /media/console; the forwarded request has no prefix)
        http.cookies.set("extworker_console", signed.cookies["extworker_console"])
        up = httpx.post(f"{forwarded}/api/v1/files/upload", auth=(key, ""), data={
            "fileName": "p.jpg"}, files={"file": ("p.jpg", jpeg(astronaut), "image/jpeg")}).json()
        assert up["thumbnailUrl"].startswith(f"{base}/acme/tr:")
        assert httpx.get(up["thumbnailUrl"].replace(base, forwarded)).status_code == 200
        library = http.get("/console/").text
        assert f'href="/media/console/files/{up["fileId"]}"' in library
        assert f'src="{base}/acme/tr:n-ik_ml_thumbnail/' in library
    finally:
        server.should_exit = True
        thread.join(10)
