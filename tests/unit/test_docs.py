"""The docs a newcomer reads (issue 29): README.md stays a five-minute read, every link in it and in docs/ resolves,
and docs/configuration.md lists every setting of pictrace.settings.Settings with its environment name and default."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from pictrace.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """The anchors GitHub makes for a Markdown page's headings."""
    found = set()
    for line in page.read_text().splitlines():
        if line.startswith("#") and not line.startswith("#!"):
            title = line.lstrip("#").strip().lower()
            title = re.sub(r"[^\w\- ]", "", title).replace(" ", "-")
            found.add(title)
    return found


def links(page: Path) -> list[str]:
    """Every link and image target of a page, outside code blocks."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return [a or b for a, b in LINK.findall(text)]


def test_the_readme_is_a_five_minute_read() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines: move depth to docs/"
    text = "\n".join(lines)
    assert "make run" in text and "make test" in text


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_link_resolves(page: Path) -> None:
    broken = []
    for target in links(page):
        if re.match(r"^[a-z]+:", target):  # http(s), mailto: not checked (no network)
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(target)
        elif anchor and resolved.suffix == ".md" and anchor.lower() not in anchors(resolved):
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: {broken}"


def test_the_configuration_doc_lists_every_setting_with_its_default() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text()
    rows = {line.split("|")[1].strip().strip("`"): line for line in doc.splitlines() if line.startswith("| `")}
    missing, wrong = [], []
    for field in dataclasses.fields(Settings):
        name = ENV_PREFIX + field.name.upper()
        row = rows.get(name)
        if row is None:
            missing.append(name)
            continue
        default = field.default if field.default is not dataclasses.MISSING else None
        cell = row.split("|")[2].strip()
        expected = "required" if default is None and field.name == "bucket" else f"`{default}`"
        if default in (None, "") and field.name != "bucket":
            expected = "(none)"
        if cell != expected:
            wrong.append(f"{name}: doc says {cell}, Settings says {expected}")
    extra = set(rows) - {ENV_PREFIX + f.name.upper() for f in dataclasses.fields(Settings)}
    assert not missing and not wrong and not extra, (missing, wrong, sorted(extra))
