"""The unsupervised leaderboard: class-agnostic instance segmentation read from evaluation JSONs.

Two shapes are read: `bench.py evaluate --class-agnostic --json F` (one result; the row is named after
the file, `eval-` prefix dropped) and `bench.py pseudo-labels --compare ... --compare-json F` (a list of
rows: FreePoint at each σ and the classical clusterings, each named by its method).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from freepoint_bench.errors import DataError
from freepoint_bench.results import METRICS, compare_rows


@dataclass(frozen=True)
class EvalRow:
    """One measured class-agnostic result (fractions 0..1, NaN = none) and the file it came from."""

    name: str
    ap: float
    ap50: float
    ap25: float
    num_scenes: int | None
    dataset: str
    path: Path

    def metric(self, name: str) -> float:
        return {"ap": self.ap, "ap50": self.ap50, "ap25": self.ap25}[name]


def _value(v, path: Path, what: str) -> float:
    if v is None:
        return math.nan
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise DataError(f"{path}: {what} is {v!r}, not a number; rewrite it with `bench.py evaluate --json`")
    return float(v)


def _row(obj: dict, name: str, path: Path) -> EvalRow:
    missing = [m for m in METRICS if m not in obj]
    if missing:
        raise DataError(f"{path}: {name} lacks {', '.join(missing)}; rewrite it with `bench.py evaluate --json`")
    n = obj.get("num_scenes")
    return EvalRow(
        name=name,
        ap=_value(obj["ap"], path, f"{name}.ap"),
        ap50=_value(obj["ap50"], path, f"{name}.ap50"),
        ap25=_value(obj["ap25"], path, f"{name}.ap25"),
        num_scenes=n if isinstance(n, int) and not isinstance(n, bool) else None,
        dataset=str(obj.get("dataset") or obj.get("spec") or ""),
        path=path,
    )


def read_evaluation(path: str | os.PathLike) -> list[EvalRow]:
    """Returns the rows of one evaluation JSON; DataError names the file when it is not a class-agnostic one."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        reason = e.msg if isinstance(e, json.JSONDecodeError) else type(e).__name__
        raise DataError(
            f"{path}: unreadable evaluation JSON ({reason}); rewrite it with `bench.py evaluate --json`"
        ) from None
    compared = compare_rows(data)
    if compared is not None:  # --compare-json
        rows = []
        for i, row in enumerate(compared):
            if not isinstance(row, dict) or not isinstance(row.get("method"), str):
                raise DataError(f"{path}: rows[{i}] has no method name; rewrite it with `--compare-json`")
            rows.append(_row(row, row["method"], path))
        return rows
    if not isinstance(data, dict):
        raise DataError(
            f"{path}: not an evaluation JSON (expected an object); write one with `bench.py evaluate --json`"
        )
    if data.get("class_agnostic") is False:
        raise DataError(
            f"{path}: a semantic evaluation; the unsupervised leaderboard takes class-agnostic ones "
            "(`bench.py evaluate --class-agnostic --json`)"
        )
    return [_row(data, path.stem.removeprefix("eval-"), path)]


def read_evaluations(paths: list[str | os.PathLike]) -> list[EvalRow]:
    """Returns the rows of every JSON given (a folder stands for its *.json files, sorted)."""
    rows: list[EvalRow] = []
    for p in map(Path, paths):
        if p.is_dir():
            files = sorted(p.glob("*.json"))
            if not files:
                raise DataError(f"{p}: no *.json evaluations in this folder; pass the files or another folder")
        elif p.is_file():
            files = [p]
        else:
            raise DataError(f"{p}: evaluation JSON not found; write it with `bench.py evaluate --json {p}`")
        for f in files:
            rows.extend(read_evaluation(f))
    return rows
