"""docs/architecture.md is the contributor's guide: every file or folder it names exists, and every public name it
says a module owns is defined there, so the lists of files to touch stay true as the code moves."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
PATH = re.compile(r"`((?:freepoint_bench|baselines|protocols|tests|benchmarks|docs)/[\w./<>-]*)`")
# | concept | `owner.py` | `name`, `name` ... | rows of the "One owner per concept" table
OWNER_ROW = re.compile(r"^\|[^|]+\|\s*`(freepoint_bench/[\w/]+\.py)`\s*\|(.*)\|\s*$")


def _named_paths(text: str) -> list[str]:
    return [p for p in PATH.findall(text) if "<" not in p]


def _defined(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def test_every_path_the_guide_names_exists():
    text = DOC.read_text(encoding="utf-8")
    paths = _named_paths(text)
    assert len(paths) > 30
    missing = [p for p in paths if not (ROOT / p.rstrip("/")).exists()]
    assert not missing, f"docs/architecture.md names paths that do not exist: {missing}"


def test_every_owner_defines_the_names_the_guide_gives_it():
    rows = [OWNER_ROW.match(line) for line in DOC.read_text(encoding="utf-8").splitlines()]
    rows = [r for r in rows if r]
    assert len(rows) >= 10
    wrong = []
    for row in rows:
        defined = _defined(ROOT / row.group(1))
        wrong += [f"{row.group(1)}: {name}" for name in re.findall(r"`([A-Za-z_]\w*)`", row.group(2))
                  if name not in defined]
    assert not wrong, f"docs/architecture.md credits names a module does not define: {wrong}"


def test_the_check_sees_a_missing_path():
    assert _named_paths("see `freepoint_bench/nowhere.py` and `baselines/<name>.py`") == ["freepoint_bench/nowhere.py"]
    assert not (ROOT / "freepoint_bench/nowhere.py").exists()
