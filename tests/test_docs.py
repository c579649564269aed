"""The newcomer's story: a short README that opens with the two commands, and documentation whose
links lead somewhere."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from helpers import ROOT

README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS, ROOT / "benchmarks" / "README.md"]
MAX_README_LINES = 250


def links(page: Path) -> list[str]:
    """Every link target in a Markdown page (inline links and images; not code spans or blocks)."""
    targets = []
    for token in MarkdownIt().parse(page.read_text(encoding="utf-8")):
        for child in token.children or ():
            if child.type == "link_open":
                targets.append(child.attrGet("href"))
            elif child.type == "image":
                targets.append(child.attrGet("src"))
    return targets


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces as hyphens."""
    tokens = MarkdownIt().parse(page.read_text(encoding="utf-8"))
    slugs: set[str] = set()
    for opening, inline in zip(tokens, tokens[1:]):
        if opening.type == "heading_open":
            text = "".join(child.content for child in inline.children or ())
            slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
            n = 0
            while (candidate := slug if n == 0 else f"{slug}-{n}") in slugs:
                n += 1
            slugs.add(candidate)
    return slugs


def broken_links(page: Path) -> list[str]:
    """The relative links of a page that lead to no file, or to no heading of a Markdown page."""
    broken = []
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: ...
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target} (no such heading)")
    return broken


def test_the_readme_fits_a_five_minute_read():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines; move detail to docs/"


def test_the_readme_opens_with_the_command_that_serves_the_app_and_the_one_that_tests_it():
    text = README.read_text(encoding="utf-8")
    first_block = re.search(r"```sh\n(.*?)```", text, re.S)
    assert first_block and text.index(first_block.group(0)) < text.index("\n## ")
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines()]
    assert commands[:2] == ["make run", "make test"]
    assert "http://localhost:5000" in first_block.group(1)


def test_the_readme_says_it_is_a_decision_aid_before_anything_else():
    text = README.read_text(encoding="utf-8")
    assert text.index("A decision aid, not a diagnosis") < text.index("\n## ")


def test_the_readme_leads_each_reader_to_their_page():
    targets = {target.partition("#")[0] for target in links(README)}
    assert {f"docs/{page.name}" for page in DOCS} <= targets
    for name in ("model", "pacs", "operations", "performance", "architecture"):
        assert (ROOT / "docs" / f"{name}.md").is_file()


def test_operations_has_a_security_section():
    assert "security" in anchors(ROOT / "docs" / "operations.md")


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_leads_to_a_file_and_heading_that_exist(page):
    assert links(page), f"{page.name} links nowhere"
    assert broken_links(page) == []


def test_a_broken_link_is_noticed(tmp_path):
    (tmp_path / "there.md").write_text("# A heading\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text("[ok](there.md#a-heading) [gone](missing.md) [wrong](there.md#elsewhere) "
                    "[web](https://example.org/x) `[code](missing-too.md)`\n", encoding="utf-8")
    assert broken_links(page) == ["missing.md (no such file)", "there.md#elsewhere (no such heading)"]
