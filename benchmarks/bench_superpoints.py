"""Superpoint speed (`geometry.superpoints`, used by `predict --superpoints`) from a dev scan to ~1M points.

    .venv/bin/python benchmarks/bench_superpoints.py [--data ../shared/data/scannet-dev]
        [--fullres ../shared/data/scannet-dev-fullres] [--tiles 1,4,12] [--repeats 3]

Prints seconds per stage (normals, kNN graph, Felzenszwalb-Huttenlocher merge; median of --repeats runs
after one warm-up) and the number of superpoints for a 50k-point dev scan and for the first full-resolution
scan laid out as a grid of `--tiles` shifted copies (4: 2 x 2, 12: 4 x 3; copies 1 m apart, so no piece
spans two copies), the sizes of whole ScanNet scans and of large S3DIS rooms.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from freepoint_bench.data.readers import get_reader  # noqa: E402
from freepoint_bench.geometry.neighbours import knn_graph  # noqa: E402
from freepoint_bench.geometry.normals import estimate_normals  # noqa: E402
from freepoint_bench.geometry.superpoints import SuperpointConfig, felzenszwalb, normal_weights  # noqa: E402

DATA = ROOT / ".." / "shared" / "data"


def tiled(xyz: np.ndarray, tiles: int) -> np.ndarray:
    """Returns `tiles` copies of xyz (N, 3) on a grid in xy (ceil(sqrt(tiles)) columns), 1 m apart."""
    cols = math.ceil(math.sqrt(tiles))
    step = xyz.max(0) - xyz.min(0) + 1.0
    return np.concatenate([xyz + np.array([(t % cols) * step[0], (t // cols) * step[1], 0.0]) for t in range(tiles)])


def timed(xyz: np.ndarray, cfg: SuperpointConfig) -> tuple[dict[str, float], int]:
    """Returns ({stage: seconds}, number of superpoints), the stages of `geometry.superpoints.superpoints`."""
    t0 = time.perf_counter()
    normals = estimate_normals(xyz, cfg.normal_k)
    t1 = time.perf_counter()
    edges = knn_graph(xyz, cfg.k)
    t2 = time.perf_counter()
    ids = felzenszwalb(len(xyz), edges, normal_weights(normals, edges), cfg.threshold, cfg.min_size)
    t3 = time.perf_counter()
    return {"normals": t1 - t0, "graph": t2 - t1, "merge": t3 - t2, "total": t3 - t0}, int(ids.max()) + 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA / "scannet-dev")
    ap.add_argument("--fullres", type=Path, default=DATA / "scannet-dev-fullres")
    ap.add_argument("--tiles", default="1,4,12", help="copies of the full-resolution scan, comma-separated")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if not args.data.is_dir():
        print(f"skipped: the ScanNet dev scans are not at {args.data}; pass --data DIR (VoteNet npy layout)")
        return
    reader = get_reader("scannet-npy")
    first = reader.read_scene(args.data, reader.list_scenes(args.data)[0])
    clouds = [(f"{first.name} (dev)", first.xyz)]
    if args.fullres.is_dir():
        full = type(reader)(full_resolution=True)
        scene = full.read_scene(args.fullres, full.list_scenes(args.fullres)[0])
        for t in (int(x) for x in args.tiles.split(",") if x):
            clouds.append((f"{scene.name} full res" + (f" x{t}" if t > 1 else ""), tiled(scene.xyz, t)))
    cfg = SuperpointConfig()
    print(f"superpoints, default SuperpointConfig (k {cfg.k}, normal_k {cfg.normal_k}, threshold {cfg.threshold}, "
          f"min_size {cfg.min_size}); seconds, median of {args.repeats} after a warm-up")
    print(f"{'cloud':<30} {'points':>9} {'normals':>8} {'graph':>7} {'merge':>7} {'total':>7} {'pieces':>7} "
          f"{'kpts/s':>7}")
    for label, xyz in clouds:
        xyz = np.asarray(xyz, dtype=np.float64)
        timed(xyz, cfg)
        runs = [timed(xyz, cfg) for _ in range(args.repeats)]
        med = {k: statistics.median(r[0][k] for r in runs) for k in runs[0][0]}
        print(f"{label:<30} {len(xyz):9d} {med['normals']:8.2f} {med['graph']:7.2f} {med['merge']:7.2f} "
              f"{med['total']:7.2f} {runs[0][1]:7d} {len(xyz) / med['total'] / 1e3:7.0f}", flush=True)


if __name__ == "__main__":
    main()
