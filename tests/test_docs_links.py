"""Every relative markdown link and every `docs/...md` path the project mentions names a file that exists, so moving
a docs page (reference pages at docs/<name>.md, studies at docs/studies/<name>.md) cannot leave a dead link."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["README.md", "Makefile", "docs", "benchmarks", "freepoint_bench", "baselines", "tests"]
SUFFIXES = {".md", ".py", ".sh", ".toml", ""}  # "" for the Makefile
LINK = re.compile(r"\]\(([^)\s]+)\)")  # [text](target)
DOCS_PATH = re.compile(r"(?<![\w/.-])(docs/[\w./-]+?\.md)\b")
# A reference to a page its owner has not written yet: (file, path) -> who writes it. The test fails once the page
# exists, so the entry cannot outlive the gap.
KNOWN_MISSING: dict[tuple[str, str], str] = {}


def sources() -> list[Path]:
    files = []
    for name in SOURCES:
        path = ROOT / name
        if path.is_file():
            files.append(path)
        else:
            files += sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix in SUFFIXES and "__pycache__" not in p.parts
            )
    return files


def references(path: Path) -> list[tuple[str, Path]]:
    """Returns (as written, the file it names) of each relative markdown link (in .md files) and each docs/...md
    path (anywhere) of `path`."""
    text = path.read_text(encoding="utf-8", errors="replace")
    found = []
    if path.suffix == ".md":
        for target in LINK.findall(text):
            name = target.split("#", 1)[0]
            if not name or re.match(r"^[a-z]+:", name):  # an anchor on the same page, http:, mailto:
                continue
            found.append((target, (path.parent / name).resolve()))
    found += [(p, ROOT / p) for p in DOCS_PATH.findall(text)]
    return found


def test_every_link_and_docs_path_exists():
    missing, known = [], []
    for path in sources():
        if path == Path(__file__).resolve():  # its own examples
            continue
        rel = path.relative_to(ROOT).as_posix()
        for written, target in references(path):
            if not target.exists():
                (known if (rel, written) in KNOWN_MISSING else missing).append(f"{rel}: {written}")
    assert not missing, "dead links (fix the path or the page):\n" + "\n".join(missing)
    assert len(known) == len(KNOWN_MISSING), f"a known-missing page exists now; drop it from KNOWN_MISSING: {known}"


def test_the_checker_sees_a_dead_link(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("[a](gone.md#x) [b](https://x.org) [c](#here) see docs/nowhere.md and [d](page.md)\n")
    assert [(w, t.exists()) for w, t in references(page)] == [
        ("gone.md#x", False),
        ("page.md", True),
        ("docs/nowhere.md", False),
    ]


@pytest.mark.parametrize("page", ["datasets", "evaluation", "gpu", "method", "protocols-and-results", "reliability"])
def test_reference_pages_stay_where_code_and_errors_link_them(page):
    assert (ROOT / "docs" / f"{page}.md").is_file()
