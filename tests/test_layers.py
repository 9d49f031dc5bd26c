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


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _package(module_path: str) -> tuple[str, ...]:
    """Returns the package a module belongs to: freepoint_bench.<top> (a subpackage or a top-level module) or
    baselines."""
    parts = module_path.split(".")
    return tuple(parts[:2]) if parts[0] == "freepoint_bench" else tuple(parts[:1])


def _private_imports(module: str, path: Path) -> list[str]:
    """Returns "module imports target.name" for each import of another package's private name or private module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [(node.module, [a.name for a in node.names])]
        elif isinstance(node, ast.Import):
            targets = [(a.name, []) for a in node.names]
        else:
            continue
        for target, names in targets:
            if target.split(".")[0] not in ("freepoint_bench", "baselines") or _package(target) == _package(module):
                continue
            if any(_private(part) for part in target.split(".")):
                found.append(f"{module} imports {target} (a private module)")
            found.extend(f"{module} imports {target}.{name}" for name in names if _private(name))
    return found


def test_no_module_imports_another_packages_private_names():
    """DESIGN.md "one owner per concept": a name another package needs is public (no leading underscore), in a
    module whose name has none either."""
    violations = []
    for top in ("freepoint_bench", "baselines"):
        for path in sorted((ROOT / top).rglob("*.py")):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            violations.extend(_private_imports(module, path))
    assert not violations, "\n".join(violations)


def test_the_private_import_rule_sees_names_and_private_modules(tmp_path):
    source = tmp_path / "m.py"
    source.write_text(
        "from freepoint_bench.engine.presets import _one_line, get_preset\n"
        "from freepoint_bench.pretext._train import build\n"
        "import freepoint_bench.models._impl\n"
        "from freepoint_bench.harness.run import _own\n"
        "from freepoint_bench.atomic import __all__\n"
        "from . import _relative\n"
    )
    assert _private_imports("freepoint_bench.harness.cells", source) == [
        "freepoint_bench.harness.cells imports freepoint_bench.engine.presets._one_line",
        "freepoint_bench.harness.cells imports freepoint_bench.pretext._train (a private module)",
        "freepoint_bench.harness.cells imports freepoint_bench.models._impl (a private module)",
    ]
    assert _private_imports("baselines.csc", source)[-1] == "baselines.csc imports freepoint_bench.harness.run._own"
