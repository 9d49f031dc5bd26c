"""The architecture checks itself: no module imports against the dependency order of DESIGN.md."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Higher numbers may import lower ones (and their own layer), never the reverse.
LAYERS = {
    "errors": 0,
    "results": 0,  # the result record (DESIGN.md): harness writes it, report reads it
    "atomic": 0,
    "config": 0,
    "parallel": 0,
    "data": 1,
    "geometry": 1,
    "models": 2,
    "freepoint": 2,
    "evaluation": 2,
    "pretext": 3,
    "engine": 3,
    "harness": 4,
    "report": 4,
    "tuning": 4,
    "cli": 5,
    "__main__": 5,
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _layer_of(module_path: str) -> tuple[str, int] | None:
    parts = module_path.split(".")
    if parts[0] != "freepoint_bench" or len(parts) < 2:
        return None
    top = parts[1]
    return top, LAYERS.get(top, -1)


def test_every_subpackage_has_a_layer():
    pkg = ROOT / "freepoint_bench"
    tops = {p.stem if p.is_file() else p.name for p in pkg.iterdir() if not p.name.startswith("_")}
    tops -= {"py"}
    unknown = {t for t in tops if t not in LAYERS and not t.endswith(".pyc")}
    assert not unknown, f"add these to LAYERS in tests/test_layers.py: {sorted(unknown)}"


def test_imports_follow_the_dependency_order():
    violations = []
    for path in sorted((ROOT / "freepoint_bench").rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        module = ".".join(rel.parts)
        own = _layer_of(module)
        if own is None:
            continue
        for imported in _imports(path):
            if imported.startswith("baselines"):
                violations.append(f"{module} imports {imported} (use the entry-point registry)")
                continue
            other = _layer_of(imported)
            if other is None or other[0] == own[0]:
                continue
            if other[1] > own[1]:
                violations.append(f"{module} (layer {own[1]}) imports {imported} (layer {other[1]})")
    assert not violations, "\n".join(violations)


def test_baselines_do_not_import_the_cli():
    for path in sorted((ROOT / "baselines").rglob("*.py")):
        for imported in _imports(path):
            assert not imported.startswith("freepoint_bench.cli"), f"{path} imports the CLI"
