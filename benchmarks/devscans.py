"""The ScanNet dev scans the quality tools train and score on: where they are, their two folds of rooms (as
protocols/ declares them), and `bench.py` commands run the way a user types them.

A tool run as a script has benchmarks/ on sys.path, so `import devscans` finds this module.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data" / "scannet-dev"
# every scannet-dev-* protocol declares the same two folds of rooms; this one holds nothing else (unit "full")
FOLD_PROTOCOL = "scannet-dev-full-masks"


@dataclass(frozen=True)
class Fold:
    """One fold of rooms: the scans trained on, the held-out scans scored, and the two sides' room names."""

    train: list[str]
    held_out: list[str]
    train_rooms: list[str]
    held_rooms: list[str]


def room_folds(names: list[str], protocol: str = FOLD_PROTOCOL) -> dict[str, Fold]:
    """Returns the two folds of `protocol` over the scans `names`: "a" trains on the rooms of its first fold
    (scene0000-0002) and scores those of its second (scene0003-0005), "b" the reverse, so every scan is scored
    once by a model that never saw its room."""
    from freepoint_bench.data.catalogue import group_of
    from freepoint_bench.harness.protocol import load_protocol

    spec = load_protocol(protocol)
    if spec.num_folds != 2:
        sys.exit(f"protocol {protocol}: {spec.num_folds} folds; the dev-scan tools need a 2-fold protocol")
    folds = {}
    for letter, index in (("a", 1), ("b", 0)):  # protocol fold i holds out its i-th group list
        train_rooms, held_rooms = spec.fold_groups(index)
        train = sorted(n for n in names if group_of(n, spec.dataset) in set(train_rooms))
        held_out = sorted(n for n in names if group_of(n, spec.dataset) in set(held_rooms))
        if not train or not held_out:
            sys.exit(
                f"fold {letter} of protocol {protocol}: no scans of rooms {train_rooms} / {held_rooms} among "
                f"{len(names)} scans; pass --data with the ScanNet dev scans"
            )
        folds[letter] = Fold(train, held_out, list(train_rooms), list(held_rooms))
    return folds


def list_scans(data: Path) -> list[str]:
    """Returns the names of the VoteNet-npy scans under `data`."""
    from freepoint_bench.data.readers import get_reader

    return get_reader("scannet-npy").list_scenes(data)


def dev_data(data: Path | None) -> Path | None:
    """Returns the VoteNet-npy scans to use: `data`, or DATA when None; None (after printing why) when the
    default is absent, so `make bench` skips cleanly without ../shared; exits when `data` is missing."""
    if data is None and not DATA.is_dir():
        print(f"skipped: the ScanNet dev scans are not at {DATA}; pass --data DIR (VoteNet npy layout)")
        return None
    data = data or DATA
    if not data.is_dir():
        sys.exit(f"{data}: ScanNet dev scans not found; pass --data DIR (VoteNet npy layout)")
    return data


def bench(*args: str) -> None:
    """Runs one `bench.py` command, echoing it; exits with its status when it fails."""
    cmd = [sys.executable, str(ROOT / "bench.py"), *args]
    print("$ bench.py " + " ".join(args), flush=True)
    done = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL)
    if done.returncode:
        sys.exit(f"command failed with status {done.returncode}: {' '.join(cmd)}")


def scene_args(names: list[str]) -> list[str]:
    """Returns `--scene NAME` for each name, as `bench.py` takes them."""
    return [a for n in names for a in ("--scene", n)]
