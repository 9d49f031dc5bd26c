"""Reads the results store (results/<protocol>/<method>/seed-<k>/result.json): the report only reads it, through
freepoint_bench.results."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from freepoint_bench.errors import DataError
from freepoint_bench.results import RESULT_FILE, ResultRecord, cell_of, read_result


@dataclass
class ResultsStore:
    """Every finished cell of a store (its result records), and the seed folders that hold no result.json yet
    (unfinished cells)."""

    root: Path
    runs: list[ResultRecord]
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


def load_results(root: str | os.PathLike) -> ResultsStore:
    """Returns every run under root/<protocol>/<method>/seed-<k>/result.json.

    Raises DataError when root is missing, holds no result.json, or a file disagrees with its folder
    (a result.json copied into another cell's folder would otherwise be averaged into the wrong cell).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no results store here; run `bench.py run` first or pass --results DIR")
    runs: list[ResultRecord] = []
    unfinished: list[tuple[str, str, int]] = []
    for seed_dir in sorted(root.glob("*/*/seed-*")):
        folder = cell_of(seed_dir)
        if folder is None or not seed_dir.is_dir():
            continue
        path = seed_dir / RESULT_FILE
        if not path.is_file():
            unfinished.append(folder)
            continue
        run = read_result(path)
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
