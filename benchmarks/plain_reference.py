"""An independent plain version of FreePoint §3 (issue 18), written from the issue's description, to check
the `plain` preset of the pipeline against it stage by stage.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/plain_reference.py [--data ../shared/data/scannet-dev]
        [--sigma 0.6] [--normals cos,abs,oriented] [--runs 1] [--set key=value ...]

The description: RANSAC planes removed greedily (3 cm, up to 8 planes, each >= 5 % of the points); FPS ratio
0.5; k1 = k2 = 4; normal, xyz and rgb affinities each z-normalised over the scene's edges and averaged, plus σ;
greedy additive multicut; kNN majority vote back to all points; masks scored by their size; segments under 30
points dropped. Only open3d (segment_plane, farthest_point_down_sample, estimate_normals), scipy's cKDTree and
bioimage-cpp's GAEC are used here, nothing of freepoint_bench.freepoint or freepoint_bench.geometry; the scans
are read and scored with the project's reader and evaluator (class-agnostic ScanNet rules, min region 100).

bioimage-cpp's multicut convention: a positive edge cost attracts (checked in `check_sign_convention`), so
the cost of an edge is mean z-normalised affinity + σ: larger σ, fewer segments.

Prints, per config (this reference with each normal affinity, and the pipeline's `plain` preset): pooled AP /
AP50 / AP25, foreground points left after the planes, planes removed, segments per scene, objects recovered
at IoU 0.25 / 0.5 and object-point coverage (`tuning.diagnose`), seconds per scan.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT / ".." / "shared" / "data" / "scannet-dev"


@dataclass(frozen=True)
class PlainResult:
    """labels (N,) int64, -1 = plane / dropped; foreground (N,) bool; planes removed; segments (after the
    30-point drop); sampled points."""

    labels: np.ndarray
    foreground: np.ndarray
    num_planes: int
    num_segments: int
    num_sampled: int


def check_sign_convention() -> None:
    """Raises AssertionError unless bioimage-cpp's GAEC joins the nodes of a positive edge and cuts a negative one."""
    from bioimage_cpp.graph import UndirectedGraph
    from bioimage_cpp.graph.multicut import GreedyAdditiveMulticut, MulticutObjective

    graph = UndirectedGraph.from_unique_edges(3, np.array([[0, 1], [1, 2]], dtype=np.uint64))
    labels = GreedyAdditiveMulticut().optimize(MulticutObjective(graph, np.array([1.0, -1.0])))
    assert labels[0] == labels[1] != labels[2], f"bioimage-cpp sign convention changed: {labels}"


def _z(values: np.ndarray) -> np.ndarray:
    sd = values.std()
    return (values - values.mean()) / sd if sd > 0 else np.zeros_like(values)


def plain_labels(xyz: np.ndarray, rgb: np.ndarray, sigma: float = 0.6, *, normals: str = "cos",
                 seed: int = 0) -> PlainResult:
    """Returns the plain version's labels of one scan: xyz (N, 3) metres, rgb (N, 3) (any scale).

    normals: the normal affinity, "cos" = n_i . n_j of open3d's unoriented normals (eq. 1 as written),
    "abs" = |n_i . n_j|, "oriented" = n_i . n_j after orienting each normal towards the scan's centroid.
    """
    import open3d as o3d
    from bioimage_cpp.graph import UndirectedGraph
    from bioimage_cpp.graph.multicut import GreedyAdditiveMulticut, MulticutObjective
    from scipy.spatial import cKDTree

    xyz = np.asarray(xyz, dtype=np.float64)
    rgb = np.asarray(rgb, dtype=np.float64)
    n = len(xyz)
    o3d.utility.random.seed(seed)
    # 1. Greedy RANSAC planes: fit on what is left, remove its inliers, stop below 5 % of all points.
    left = np.arange(n)
    num_planes = 0
    for _ in range(8):
        if len(left) < 3:
            break
        cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(xyz[left]))
        _, inliers = cloud.segment_plane(distance_threshold=0.03, ransac_n=3, num_iterations=1000)
        if len(inliers) < 0.05 * n:
            break
        keep = np.ones(len(left), bool)
        keep[np.asarray(inliers, dtype=np.int64)] = False
        left = left[keep]
        num_planes += 1
    foreground = np.zeros(n, bool)
    foreground[left] = True
    out = np.full(n, -1, np.int64)
    if len(left) < 5:
        return PlainResult(out, foreground, num_planes, 0, 0)
    # 2. FPS to half of the foreground; map the samples back to scan indices through a kd-tree (exact hits).
    fg_cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(xyz[left]))
    sampled_cloud = fg_cloud.farthest_point_down_sample(len(left) // 2)
    sxyz = np.asarray(sampled_cloud.points)
    tree_fg = cKDTree(xyz[left])
    _, pos = tree_fg.query(sxyz)
    sidx = left[pos]
    m = len(sidx)
    # 3. Normals of the samples (open3d defaults: 30 nearest neighbours, not oriented).
    sampled_cloud.estimate_normals()
    nrm = np.asarray(sampled_cloud.normals)
    if normals == "oriented":
        flip = np.einsum("ij,ij->i", nrm, xyz.mean(0) - sxyz) < 0
        nrm[flip] *= -1
    # 4. kNN graph, k1 = 4 (each sample to its 4 nearest other samples), edges once.
    tree = cKDTree(sxyz)
    _, nb = tree.query(sxyz, k=5)
    src = np.repeat(np.arange(m), 4)
    dst = nb[:, 1:].ravel()
    uv = np.unique(np.sort(np.stack([src, dst], 1), axis=1), axis=0)
    uv = uv[uv[:, 0] != uv[:, 1]]
    u, v = uv[:, 0], uv[:, 1]
    cos = (nrm[u] * nrm[v]).sum(1)
    a_norm = np.abs(cos) if normals == "abs" else cos
    a_xyz = -np.linalg.norm(sxyz[u] - sxyz[v], axis=1)
    a_rgb = -np.linalg.norm(rgb[sidx[u]] - rgb[sidx[v]], axis=1)
    cost = (_z(a_norm) + _z(a_xyz) + _z(a_rgb)) / 3 + sigma
    # 5. GAEC (positive attracts).
    graph = UndirectedGraph.from_unique_edges(m, uv.astype(np.uint64))
    node = np.asarray(GreedyAdditiveMulticut().optimize(MulticutObjective(graph, cost)), dtype=np.int64)
    # 6. Majority vote of the k2 = 4 nearest samples for every foreground point (ties: nearest).
    _, vote = tree.query(xyz[left], k=4)
    nl = node[vote]
    counts = (nl[:, :, None] == nl[:, None, :]).sum(2)
    out[left] = nl[np.arange(len(nl)), counts.argmax(1)]
    # 7. Segments under 30 points dropped, ids renumbered.
    ids, inv, sizes = np.unique(out[left], return_inverse=True, return_counts=True)
    big = sizes >= 30
    new = np.full(len(ids), -1, np.int64)
    new[big] = np.arange(int(big.sum()))
    out[left] = new[inv]
    return PlainResult(out, foreground, num_planes, int(big.sum()), m)


def size_scores(labels: np.ndarray) -> np.ndarray:
    """Returns each segment's point count as its score (masks scored by their size)."""
    k = int(labels.max()) + 1 if (labels >= 0).any() else 0
    return np.bincount(labels[labels >= 0], minlength=k).astype(np.float64)


def _row(name, scenes, labels, fg, planes, seconds) -> list[str]:
    from freepoint_bench.evaluation import evaluate, predictions_from_labels
    from freepoint_bench.tuning.diagnose import diagnose
    from freepoint_bench.tuning.objective import evaluation_spec_for

    spec = evaluation_spec_for("scannet-npy")
    preds = {s.name: predictions_from_labels(labels[s.name], size_scores(labels[s.name])) for s in scenes}
    ev = evaluate(list(scenes), preds, spec)
    d = diagnose(scenes, labels, spec)
    return [name, f"{100 * ev.ap:.1f} / {100 * ev.ap50:.1f} / {100 * ev.ap25:.1f}",
            f"{np.mean(fg):.0f}", f"{np.mean(planes):.1f}", f"{d.segments_per_scene:.1f}",
            f"{d.recovered25} / {d.recovered50} of {d.objects}", f"{100 * d.coverage:.0f}",
            f"{np.median(seconds):.2f}"]


def main() -> None:
    from freepoint_bench.data.readers import get_reader
    from freepoint_bench.freepoint.config import PseudoLabelConfig
    from freepoint_bench.freepoint.pipeline import generate_pseudo_labels, remove_background

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--sigma", type=float, default=0.6)
    ap.add_argument("--normals", default="cos,abs,oriented", help="comma-separated normal affinities to run")
    ap.add_argument("--runs", type=int, default=1,
                    help="runs of the reference (open3d seed = run) and of the preset (seed = run)")
    ap.add_argument("--set", nargs="*", default=[], help="overrides of the plain preset, key=value (e.g. "
                    "normal_affinity=cos)")
    args = ap.parse_args()
    if not args.data.is_dir():
        sys.exit(f"{args.data} not found; pass --data <folder of ScanNet *_vert.npy>")
    check_sign_convention()
    reader = get_reader("scannet-npy")
    scenes = [reader.read_scene(args.data, name) for name in reader.list_scenes(args.data)]
    rows = []
    for mode in [m for m in args.normals.split(",") if m]:
        for run in range(args.runs):
            labels, fg, planes, secs = {}, [], [], []
            for s in scenes:
                t0 = time.perf_counter()
                r = plain_labels(s.xyz, s.rgb, args.sigma, normals=mode, seed=run)
                secs.append(time.perf_counter() - t0)
                labels[s.name] = r.labels
                fg.append(r.foreground.sum())
                planes.append(r.num_planes)
            rows.append(_row(f"reference, normals {mode}, run {run}", scenes, labels, fg, planes, secs))
            print(f"  {rows[-1]}", file=sys.stderr, flush=True)
    for run in range(args.runs):
        config = PseudoLabelConfig.preset("plain", [*args.set, f"seed={run}"])
        labels, fg, planes, secs = {}, [], [], []
        for s in scenes:
            r = generate_pseudo_labels(s, config, sigmas=(args.sigma,))
            labels[s.name] = r.labels[args.sigma]
            fg.append(r.foreground.sum())
            planes.append(len(remove_background(s, config).planes))
            secs.append(r.timings["total"])
        name = " ".join(["preset plain", *args.set]) + f", seed {run}"
        rows.append(_row(name, scenes, labels, fg, planes, secs))
    header = ["config", "AP / AP50 / AP25", "fg points", "planes", "segments/scene", "recovered 25 / 50",
              "coverage %", "s/scan"]
    widths = [max(len(x) for x in col) for col in zip(header, *rows, strict=True)]
    print(f"\nPlain version of §3 on {len(scenes)} dev scans at σ {args.sigma} (masks scored by size)")
    for row in [header, ["-" * w for w in widths], *rows]:
        print("  ".join(x.ljust(w) for x, w in zip(row, widths, strict=True)))



if __name__ == "__main__":
    main()
