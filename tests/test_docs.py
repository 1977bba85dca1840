"""The README documents every setting."""

from pathlib import Path

from worker.core.settings import Settings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_every_setting_is_in_the_readme_table():
    missing = [n for n in Settings.model_fields if f"`EXTWORKER_{n.upper()}`" not in README]
    assert not missing, f"document these settings in README.md: {missing}"


def test_the_readme_counts_the_shipped_tag_labels():
    tags = Path(__file__).resolve().parent.parent / "extensions" / "data" / "tags.txt"
    count = sum(1 for line in tags.read_text().splitlines()
                if line.strip() and not line.startswith("#"))
    assert f"{count} everyday labels ship" in README
