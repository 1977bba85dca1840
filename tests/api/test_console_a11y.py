"""Every console page, at 1366 px and at 390 px, under axe-core (the npm package, vendored
in ``tests/data/axe``): no serious or critical violation; no sideways scroll; a screenshot of
each page at each width in ``.data/artifacts/console/``."""

from __future__ import annotations

import httpx

from tests.api.test_console import _sign_in
from tests.support import ROOT, jpeg

AXE = ROOT / "tests" / "data" / "axe" / "axe.min.js"
ARTEFACTS = ROOT / ".data" / "artifacts" / "console"
SERIOUS = """async () => (await axe.run(document, {resultTypes: ["violations"]})).violations
  .filter(v => v.impact === "serious" || v.impact === "critical")
  .map(v => v.id + " (" + v.impact + "): " + v.nodes.slice(0, 3)
       .map(n => n.target.join(" ")).join(", "))"""


def test_every_page_passes_axe_at_both_widths(api, browser, astronaut):
    base, keys = api
    key = keys.create("acme")["key"]
    up = httpx.post(f"{base}/api/v1/files/upload", auth=(key, ""),
                    data={"fileName": "a.jpg", "folder": "/d"},
                    files={"file": ("a.jpg", jpeg(astronaut), "image/jpeg")}).json()
    httpx.post(f"{base}/v1/customMetadataFields", auth=(key, ""), json={
        "name": "brand", "label": "Brand", "schema": {"type": "Text"}}).raise_for_status()
    httpx.patch(f"{base}/v1/files/{up['fileId']}/details", auth=(key, ""), json={
        "tags": ["x"], "customMetadata": {"brand": "Acme"}}).raise_for_status()
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    found: dict[str, list[str]] = {}
    for width, height in ((1366, 900), (390, 844)):
        # axe is injected as a script: the console's CSP (script-src 'self') would refuse
        # it, so this context bypasses the CSP (the pages themselves are unchanged).
        context = browser.new_context(viewport={"width": width, "height": height},
                                      bypass_csp=True)
        page = context.new_page()
        page.goto(f"{base}/console/login")
        page.add_script_tag(path=str(AXE))
        found[f"login@{width}"] = page.evaluate(SERIOUS)
        page.screenshot(path=str(ARTEFACTS / f"login-{width}.png"), full_page=True)
        _sign_in(page, base, key)
        page.goto(f"{base}/console/jobs")
        job = page.locator("tbody tr a").first.get_attribute("href").split("/console", 1)[1]
        for name, path in (("library", "/?path=/d/"), ("library-list", "/?path=/d/&view=list"),
                           ("file", f"/files/{up['fileId']}"), ("upload", "/upload"),
                           ("saved", "/saved"), ("fields", "/fields"), ("jobs", "/jobs"),
                           ("job", job), ("webhooks", "/webhooks"), ("usage", "/usage"),
                           ("keys", "/keys")):
            page.goto(f"{base}/console{path}")
            page.add_script_tag(path=str(AXE))
            found[f"{name}@{width}"] = page.evaluate(SERIOUS)
            scroll = page.evaluate("document.documentElement.scrollWidth")
            if scroll > width:
                found[f"{name}@{width}"].append(f"{scroll} px wide")
            page.screenshot(path=str(ARTEFACTS / f"{name}-{width}.png"), full_page=True)
        context.close()
    bad = {page: v for page, v in found.items() if v}
    assert bad == {}, bad


def test_the_keyboard_alone_reaches_every_control(api, browser, astronaut):
    """Tab from the top of each page: every visible link, button and input gets the focus
    (none skipped, none unreachable), in a sequence that ends back at the start."""
    base, keys = api
    key = keys.create("acme")["key"]
    up = httpx.post(f"{base}/api/v1/files/upload", auth=(key, ""),
                    data={"fileName": "a.jpg", "folder": "/d"},
                    files={"file": ("a.jpg", jpeg(astronaut), "image/jpeg")}).json()
    page = browser.new_page(viewport={"width": 1366, "height": 900})
    _sign_in(page, base, key)
    mark = """() => { let n = 0; for (const e of document.querySelectorAll(
        'a[href], button, input:not([type=hidden]), select, textarea, summary')) {
        if (e.checkVisibility({visibilityProperty: true}) && !e.disabled) {
          e.dataset.kb = String(n++); } } return n; }"""
    for path in ("/?path=/d/", f"/files/{up['fileId']}", "/upload", "/saved", "/fields",
                 "/jobs", "/webhooks", "/usage", "/keys"):
        page.goto(f"{base}/console{path}")
        total = page.evaluate(mark)
        reached = set()
        for _ in range(total + 5):
            page.keyboard.press("Tab")
            kb = page.evaluate("document.activeElement && document.activeElement.dataset.kb")
            if kb is not None:
                reached.add(int(kb))
        missed = sorted(set(range(total)) - reached)
        assert not missed, (path, [page.evaluate(
            f"document.querySelector('[data-kb=\"{m}\"]').outerHTML.slice(0, 120)")
            for m in missed])
