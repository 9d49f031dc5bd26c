"""Synthetic-room benchmark: generation time per room size, and what a room holds.

    .venv/bin/python benchmarks/bench_synthetic.py [--sizes 5000 20000 100000] [--seeds 5]

Prints one table: for each num_points, the median / max seconds of generate_room over --seeds seeds
(after one warm-up), the mean number of instances and the share of points on objects (not floor, walls,
ceiling, column). The target is well under one second for a 20k-point room.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from freepoint_bench.data.classes import S3DIS_CLASS_ID  # noqa: E402
from freepoint_bench.data.synthetic import SyntheticConfig, generate_room  # noqa: E402

STRUCTURE = [S3DIS_CLASS_ID[c] for c in ("ceiling", "floor", "wall", "beam", "column")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000, 100000])
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()

    generate_room(0, SyntheticConfig(num_points=1000))  # warm-up (imports, allocator)
    header = f"{'points':>8} {'median s':>9} {'max s':>7} {'instances':>10} {'object share':>13}"
    print(header)
    print("-" * len(header))
    for size in args.sizes:
        config = SyntheticConfig(num_points=size)
        times, instances, shares = [], [], []
        for seed in range(args.seeds):
            start = time.perf_counter()
            scene = generate_room(seed, config)
            times.append(time.perf_counter() - start)
            instances.append(len(np.unique(scene.instance)))
            shares.append(float(np.mean(~np.isin(scene.semantic, STRUCTURE))))
        print(
            f"{size:>8} {statistics.median(times):>9.3f} {max(times):>7.3f} "
            f"{statistics.mean(instances):>10.1f} {100 * statistics.mean(shares):>12.1f}%"
        )


if __name__ == "__main__":
    main()
