"""The README (what it is, the two commands, a tour, links) and the MkDocs site under
``docs/``: it builds with ``mkdocs build --strict`` (no broken link or anchor), its settings
page is generated from the ``Settings`` model, and the facts other tests rely on are there."""

from __future__ import annotations

import re
import subprocess
import sys

import yaml

from tests.support import ROOT
from worker.core.settings import Settings

README = (ROOT / "README.md").read_text()
DOCS = ROOT / "docs"


def _nav() -> list[str]:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    return [next(iter(item.values())) for item in config["nav"]]


def test_the_readme_is_short_opens_with_the_two_commands_and_links_every_page():
    lines = README.splitlines()
    assert len(lines) <= 400, len(lines)
    block = README.split("```bash\n", 1)[1].split("```", 1)[0]
    assert [ln.split()[:2] for ln in block.strip().splitlines()] == [
        ["bash", "scripts/demo.sh"], ["bash", "scripts/test.sh"]]
    for page in _nav():
        assert f"(docs/{page})" in README, f"the README links no docs/{page}"


def test_the_site_builds_strictly_with_settings_generated_from_the_model(tmp_path):
    site = tmp_path / "site"
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict",
                           "-d", str(site)], cwd=ROOT, capture_output=True, text=True,
                          env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"},
                          timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for page in _nav():
        out = site / ("index.html" if page == "index.md" else page[:-3] + "/index.html")
        assert out.is_file(), out
    html = (site / "settings" / "index.html").read_text()
    missing = [n for n in Settings.model_fields if f"EXTWORKER_{n.upper()}" not in html]
    assert not missing, f"the settings page lacks {missing}"
    # The table is the model's: a description appears as the field states it.
    text = re.sub(r"<[^>]+>", "", html)
    assert Settings.model_fields["redis_url"].description in text
    # Every page of the folder is in the navigation (none left unreachable).
    pages = sorted(p.name for p in DOCS.glob("*.md"))
    assert pages == sorted(_nav())


def test_the_docs_count_the_shipped_tag_labels():
    tags = ROOT / "extensions" / "data" / "tags.txt"
    count = sum(1 for line in tags.read_text().splitlines()
                if line.strip() and not line.startswith("#"))
    assert f"{count} everyday labels ship" in (DOCS / "extensions.md").read_text()
