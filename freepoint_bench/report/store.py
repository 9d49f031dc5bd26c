"""Reads the results store (results/<protocol>/<method>/seed-<k>/result.json): the report only reads it."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from freepoint_bench.atomic import checksum_ok
from freepoint_bench.errors import DataError

METRICS: tuple[str, ...] = ("ap", "ap50", "ap25")
SCHEMA_VERSION = 1
_REQUIRED = ("protocol", "protocol_hash", "split_sha256", "method", "seed", "metrics")


@dataclass(frozen=True)
class RunResult:
    """One finished cell of the store: a (protocol, method, seed) run and its metrics (fractions 0..1, NaN = none)."""

    protocol: str
    method: str
    seed: int
    protocol_hash: str
    split_sha256: str
    dataset: str
    unit: str
    fraction: float
    metrics: dict[str, float]  # ap, ap50, ap25
    per_class: dict[str, dict[str, float]]  # class -> {ap, ap50, ap25}
    path: Path
    checkpoint_id: str = ""
    preset: str = ""
    eval_scenes: tuple[str, ...] = ()  # the scenes scored (all folds pooled)


@dataclass
class ResultsStore:
    """Every finished run of a store, and the seed folders that hold no result.json yet (unfinished runs)."""

    root: Path
    runs: list[RunResult]
    unfinished: list[tuple[str, str, int]] = field(default_factory=list)  # (protocol, method, seed)

    def protocols(self) -> list[str]:
        """Returns protocol names ordered by (dataset, unit, fraction, name)."""
        info: dict[str, tuple] = {}
        for r in self.runs:
            info.setdefault(r.protocol, (r.dataset, r.unit, r.fraction, r.protocol))
        return [p for p, _ in sorted(info.items(), key=lambda kv: kv[1])]

    def methods(self) -> list[str]:
        """Returns method names, scratch first, the others alphabetically."""
        names = {r.method for r in self.runs}
        return sorted(names, key=lambda m: (m != "scratch", m))


def _number(value: Any, where: str, path: Path) -> float:
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DataError(f"{path}: {where} is {value!r}, not a number; rerun this cell with `bench.py run`")
    return float(value)


def _metrics(block: Any, where: str, path: Path) -> dict[str, float]:
    if not isinstance(block, dict):
        raise DataError(f"{path}: {where} is not an object; rerun this cell with `bench.py run`")
    missing = [m for m in METRICS if m not in block]
    if missing:
        raise DataError(f"{path}: {where} lacks {', '.join(missing)}; rerun this cell with `bench.py run`")
    return {m: _number(block[m], f"{where}.{m}", path) for m in METRICS}


def read_result(path: str | os.PathLike) -> RunResult:
    """Returns the run recorded in one result.json; DataError names the file when it is unreadable or malformed."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        reason = e.msg if isinstance(e, json.JSONDecodeError) else type(e).__name__
        raise DataError(
            f"{path}: corrupt result.json ({reason}); delete it and rerun the cell with `bench.py run`"
        ) from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: corrupt result.json (not a JSON object); delete it and rerun the cell")
    if not checksum_ok(data):
        raise DataError(f"{path}: damaged result.json (content differs from its content_sha256); delete it and "
                        "rerun the cell with `bench.py run`")
    version = data.get("schema_version", SCHEMA_VERSION)
    if version != SCHEMA_VERSION:
        raise DataError(
            f"{path}: schema_version {version!r}, this report reads {SCHEMA_VERSION}; update freepoint-bench"
        )
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise DataError(f"{path}: result.json lacks {', '.join(missing)}; delete it and rerun the cell")
    seed = data["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise DataError(f"{path}: seed is {seed!r}, not an integer; delete it and rerun the cell")
    metrics = data["metrics"]
    overall = _metrics(metrics, "metrics", path)
    per_class_raw = metrics.get("per_class") or {}
    if not isinstance(per_class_raw, dict):
        raise DataError(f"{path}: metrics.per_class is not an object; delete it and rerun the cell")
    per_class = {str(c): _metrics(v, f"metrics.per_class.{c}", path) for c, v in per_class_raw.items()}
    checkpoint = data.get("checkpoint") or {}
    fraction = _number(data.get("fraction", 1.0), "fraction", path)
    return RunResult(
        protocol=str(data["protocol"]),
        method=str(data["method"]),
        seed=seed,
        protocol_hash=str(data["protocol_hash"]),
        split_sha256=str(data["split_sha256"]),
        dataset=str(data.get("dataset", "")),
        unit=str(data.get("unit", "")),
        fraction=fraction,
        metrics=overall,
        per_class=per_class,
        path=path,
        checkpoint_id=str(checkpoint.get("id", "")) if isinstance(checkpoint, dict) else "",
        preset=str(data.get("preset", "")),
        eval_scenes=tuple(sorted(str(n) for n in data.get("eval_scenes") or [])),
    )


def _seed_of(folder: Path) -> int | None:
    name = folder.name
    if not name.startswith("seed-"):
        return None
    try:
        return int(name.removeprefix("seed-"))
    except ValueError:
        return None


def load_results(root: str | os.PathLike) -> ResultsStore:
    """Returns every run under root/<protocol>/<method>/seed-<k>/result.json.

    Raises DataError when root is missing, holds no result.json, or a file disagrees with its folder
    (a result.json copied into another cell's folder would otherwise be averaged into the wrong cell).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no results store here; run `bench.py run` first or pass --results DIR")
    runs: list[RunResult] = []
    unfinished: list[tuple[str, str, int]] = []
    for seed_dir in sorted(root.glob("*/*/seed-*")):
        seed = _seed_of(seed_dir)
        if seed is None or not seed_dir.is_dir():
            continue
        protocol, method = seed_dir.parent.parent.name, seed_dir.parent.name
        path = seed_dir / "result.json"
        if not path.is_file():
            unfinished.append((protocol, method, seed))
            continue
        run = read_result(path)
        folder = (protocol, method, seed)
        recorded = (run.protocol, run.method, run.seed)
        if folder != recorded:
            raise DataError(
                f"{path}: records protocol/method/seed {'/'.join(map(str, recorded))} but lies in "
                f"{'/'.join(map(str, folder))}; move it to its own folder or delete it"
            )
        runs.append(run)
    if not runs:
        raise DataError(f"{root}: no result.json under <protocol>/<method>/seed-<k>/; run `bench.py run` first")
    return ResultsStore(root=root, runs=runs, unfinished=unfinished)
