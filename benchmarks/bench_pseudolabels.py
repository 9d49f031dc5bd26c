"""Pseudo-label benchmark: per-stage speed, GAEC vs GAEC+KL, and class-agnostic quality on ScanNet dev scans.

    .venv/bin/python benchmarks/bench_pseudolabels.py [--data ../shared/data/scannet-dev]
        [--fullres ../shared/data/scannet-dev-fullres] [--repeats 3] [--skip-quality] [--set key=value ...]
    .venv/bin/python benchmarks/bench_pseudolabels.py --cv [--folds k]     # the cross-validated table only
    .venv/bin/python benchmarks/bench_pseudolabels.py --rules              # object points stripped per rule

Prints three tables:
1. seconds per stage (median of --repeats runs after one warm-up) on a 50k-point scan and a full-resolution
   scan, traditional features, default config (σ_low and σ_high both solved);
2. GAEC vs GAEC+KL: multicut seconds and objective (sum of cut-edge costs, lower is better) at σ_low;
3. quality on every dev scan: FreePoint σ_low / σ_high vs DBSCAN, K-Means, Birch, HDBSCAN on the same
   foreground — class-agnostic ScanNet AP / AP50 / AP25, segments per scene, seconds per scene.
Quality uses `freepoint_bench.evaluation` when it is installed, else a minimal ScanNet-style evaluator
defined below (the table says which).

--cv prints the cross-validated table (docs/pseudo-labels.md): leave one dev room out (or --folds k), for
the defaults, the plain preset, one-at-a-time swaps of their differences and DBSCAN, the held-out AP50 per
fold of each config as it is ("fixed") and with σ_low chosen on the training rooms from SIGMA_GRID
("σ tuned"), mean ± sd over folds, pooled AP50 / AP25, and seconds per 50k-point scan (median of 3 runs,
σ_low and σ_high). --timing prints only those seconds, for every scan, and the wall time of `bench.py
pseudo-labels` end to end (run it on a quiet machine: it is a budget check).
--rules prints, per background rule, the object points it strips on the synthetic
probe room and on the dev scans.
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

from freepoint_bench.data.classes import SCANNET_INSTANCE_IDS  # noqa: E402
from freepoint_bench.data.readers import get_reader  # noqa: E402
from freepoint_bench.freepoint.affinities import combine_affinities, multicut_costs  # noqa: E402
from freepoint_bench.freepoint.classical import CLASSICAL_METHODS, classical_segments  # noqa: E402
from freepoint_bench.freepoint.config import PseudoLabelConfig  # noqa: E402
from freepoint_bench.freepoint.multicut import get_solver  # noqa: E402
from freepoint_bench.freepoint.pipeline import affinity_weights, build_scene_graph, generate_pseudo_labels  # noqa: E402
from freepoint_bench.freepoint.scoring import segment_scores  # noqa: E402

DATA = ROOT / ".." / "shared" / "data"
STAGES = ("planes", "fps", "features", "graph", "affinities", "multicut", "vote", "total")


def _table(title: str, header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)))


def bench_speed(scenes, config: PseudoLabelConfig, repeats: int) -> None:
    rows = []
    for label, scene in scenes:
        generate_pseudo_labels(scene, config)  # warm-up (imports, open3d, caches)
        runs = [generate_pseudo_labels(scene, config) for _ in range(repeats)]
        med = {k: statistics.median(r.timings[k] for r in runs) for k in STAGES}
        r = runs[0]
        rows.append(
            [label, f"{scene.num_points}", f"{int(r.foreground.sum())}", f"{r.num_sampled}", f"{r.num_edges}"]
            + [f"{med[k]:.3f}" for k in STAGES]
        )
    header = ["scan", "points", "fg", "sampled", "edges"] + [f"{k} s" for k in STAGES]
    _table(
        f"Per-stage seconds (median of {repeats}; solver {config.solver}; σ {config.sigmas})", header, rows
    )


def bench_solvers(scenes, config: PseudoLabelConfig) -> None:
    rows = []
    for label, scene in scenes:
        graph = build_scene_graph(scene, config)  # the pipeline's own graph, so the costs are the ones it solves
        costs = multicut_costs(combine_affinities(graph.raw, affinity_weights(config)), config.sigma_low)
        for name in ("gaec", "gaec-kl"):
            res = get_solver(name).solve(graph.num_sampled, graph.edges, costs)
            rows.append(
                [
                    label,
                    name,
                    f"{graph.num_sampled}",
                    f"{len(graph.edges)}",
                    f"{res.seconds:.3f}",
                    f"{res.objective:.1f}",
                    f"{res.labels.max() + 1}",
                ]
            )
    header = ["scan", "solver", "nodes", "edges", "seconds", "objective", "segments"]
    _table("Multicut backends at σ_low (objective = sum of cut-edge costs, lower is better)", header, rows)


# ---------------------------------------------------------------------------------------------------------
# Class-agnostic evaluation.
# ---------------------------------------------------------------------------------------------------------

MIN_REGION = 100  # ScanNet benchmark: instances / predictions under 100 points are ignored
THRESHOLDS = np.append(np.arange(0.5, 0.95, 0.05), 0.25)


def _fallback_matches(scene, labels: np.ndarray, scores: np.ndarray) -> dict[float, tuple[list, int]]:
    """ScanNet-style matching, all 18 instance classes as one class; unmatched predictions lying mostly
    on void (unannotated, wall, floor, other classes, tiny instances) are not false positives."""
    valid = np.isin(scene.semantic, SCANNET_INSTANCE_IDS) & (scene.instance >= 0)
    _, gt_inv = np.unique(scene.instance[valid], return_inverse=True)
    gt = np.full(scene.num_points, -1)
    gt[valid] = gt_inv
    g = int(gt.max()) + 1
    gt_sizes = np.bincount(gt[gt >= 0], minlength=g)
    big = gt_sizes >= MIN_REGION
    void = (gt < 0) | ~big[np.clip(gt, 0, None)]
    p = int(labels.max()) + 1 if (labels >= 0).any() else 0
    sizes = np.bincount(labels[labels >= 0], minlength=p)
    both = (labels >= 0) & (gt >= 0)
    inter = np.bincount(labels[both] * g + gt[both], minlength=p * g).reshape(p, g)
    iou = inter / np.maximum(sizes[:, None] + gt_sizes[None, :] - inter, 1)
    on_void = np.bincount(labels[(labels >= 0) & void], minlength=p)
    out = {}
    for th in THRESHOLDS:
        recs, matched = [], np.zeros(g, bool)
        for j in np.argsort(-scores, kind="stable"):
            if sizes[j] < MIN_REGION:
                continue
            cand = np.flatnonzero((iou[j] > th) & big)
            if len(cand):
                best = cand[np.argmax(iou[j, cand])]
                recs.append((scores[j], 0 if matched[best] else 1))
                matched[best] = True
            elif on_void[j] / sizes[j] <= th:
                recs.append((scores[j], 0))
        out[th] = (recs, int(big.sum()))
    return out


def _fallback_ap(matches: list[dict]) -> dict[str, float]:
    ap = {}
    for th in THRESHOLDS:
        recs = [r for m in matches for r in m[th][0]]
        num_gt = sum(m[th][1] for m in matches)
        if not recs or num_gt == 0:
            ap[th] = 0.0
            continue
        arr = np.array(recs, dtype=float)
        arr = arr[np.argsort(-arr[:, 0], kind="stable")]
        tp = np.cumsum(arr[:, 1])
        precision = tp / np.arange(1, len(arr) + 1)
        recall = tp / num_gt
        mrec = np.r_[0, recall, 1]
        mpre = np.maximum.accumulate(np.r_[0, precision, 0][::-1])[::-1]
        idx = np.flatnonzero(mrec[1:] != mrec[:-1])
        ap[th] = float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))
    return {
        "AP": 100 * float(np.mean([ap[t] for t in THRESHOLDS[:-1]])),
        "AP50": 100 * ap[THRESHOLDS[0]],
        "AP25": 100 * ap[0.25],
    }


def evaluate_labels(scenes, all_labels) -> tuple[dict[str, float], str]:
    """Returns (AP/AP50/AP25 in %, evaluator name) of per-scene segment labels, class-agnostic."""
    try:
        from freepoint_bench.evaluation import evaluate, predictions_from_labels, scannet_spec
    except ImportError:
        matches = [
            _fallback_matches(s, lab, segment_scores(s.xyz, lab))
            for s, lab in zip(scenes, all_labels, strict=True)
        ]
        return _fallback_ap(matches), "bench fallback evaluator"
    preds = {
        s.name: predictions_from_labels(lab, segment_scores(s.xyz, lab))
        for s, lab in zip(scenes, all_labels, strict=True)
    }
    gt = {s.name: s for s in scenes}
    result = evaluate(gt, preds, scannet_spec(class_agnostic=True))
    get = result.get if isinstance(result, dict) else lambda k: getattr(result, k.lower())
    return {k: 100 * float(get(k)) for k in ("AP", "AP50", "AP25")}, "freepoint_bench.evaluation"


def bench_quality(scenes, config: PseudoLabelConfig, methods: tuple[str, ...]) -> None:
    rows, evaluator = [], ""
    results = []
    t0 = time.perf_counter()
    for s in scenes:
        results.append(generate_pseudo_labels(s, config))
    fp_seconds = (time.perf_counter() - t0) / len(scenes)
    for name, sigma in (("FreePoint σ_low", config.sigma_low), ("FreePoint σ_high", config.sigma_high)):
        labels = [r.labels[sigma] for r in results]
        metrics, evaluator = evaluate_labels(scenes, labels)
        segs = np.mean([lab.max() + 1 for lab in labels])
        rows.append(
            [
                f"{name} ({sigma})",
                *(f"{metrics[k]:.1f}" for k in ("AP", "AP50", "AP25")),
                f"{segs:.1f}",
                f"{fp_seconds:.2f} (both σ)",
            ]
        )
    for method in methods:
        t0 = time.perf_counter()
        labels = [
            classical_segments(s, method, config, foreground=r.foreground)
            for s, r in zip(scenes, results, strict=True)
        ]
        secs = (time.perf_counter() - t0) / len(scenes)
        metrics, evaluator = evaluate_labels(scenes, labels)
        segs = np.mean([lab.max() + 1 for lab in labels])
        rows.append(
            [
                method,
                *(f"{metrics[k]:.1f}" for k in ("AP", "AP50", "AP25")),
                f"{segs:.1f}",
                f"{secs:.2f} (+planes)",
            ]
        )
    header = ["method", "AP", "AP50", "AP25", "segments/scene", "s/scene"]
    _table(
        f"Class-agnostic quality on {len(scenes)} ScanNet dev scans ({evaluator}; scores: segment_scores)",
        header,
        rows,
    )
    print(
        "paper (ScanNet val, 312 scans): base masks 4.1/7.9/21.0, DBSCAN 3.3/3.6/13.4, K-Means 2.7/3.4/12.2,"
        " Birch 2.4/7.5/12.2"
    )


# ---------------------------------------------------------------------------------------------------------
# Cross-validated table and background rules (issue 18).
# ---------------------------------------------------------------------------------------------------------

SIGMA_GRID = (0.4, 0.6, 0.8, 0.9, 1.0, 1.2, 1.4)
PLAIN_PLANES = ("plane_distance_threshold", "plane_min_fraction", "plane_min_points", "plane_ransac_iterations",
                "plane_grid_size")
PLAIN_ALPHAS = ("alpha_emb", "alpha_norm", "alpha_xyz", "alpha_rgb")


def cv_rows() -> list[tuple[str, PseudoLabelConfig]]:
    """Returns (row name, config): defaults, plain, and each difference between them swapped alone."""
    from freepoint_bench.freepoint.config import PRESETS

    plain = PRESETS["plain"]
    default, plain_cfg = PseudoLabelConfig(), PseudoLabelConfig.preset("plain")
    pick = lambda keys: {k: plain[k] for k in keys}  # noqa: E731
    back = lambda keys: {k: getattr(default, k) for k in keys}  # noqa: E731
    return [
        ("defaults", default),
        ("defaults + plain planes", default.with_overrides(pick(PLAIN_PLANES))),
        ("defaults + averaged α", default.with_overrides(pick(PLAIN_ALPHAS))),
        ("defaults + size score", default.with_overrides({"mask_score": "size"})),
        ("defaults + min segment 30", default.with_overrides({"min_segment_size": 30})),
        ("defaults + plane rules", default.with_overrides({"plane_rules": True})),
        ("defaults + |cos| normals", default.with_overrides({"normal_affinity": "abs"})),
        ("defaults + superpoints", default.with_overrides({"superpoints": True})),
        ("plain", plain_cfg),
        ("plain + default planes", plain_cfg.with_overrides(back(PLAIN_PLANES))),
        ("plain + size-extent score", plain_cfg.with_overrides({"mask_score": "size-extent"})),
        ("plain + plane rules", plain_cfg.with_overrides({"plane_rules": True})),
        ("plain + oriented cos normals", plain_cfg.with_overrides({"normal_affinity": "cos"})),
        ("plain + superpoints", plain_cfg.with_overrides({"superpoints": True})),
    ]


def _fmt_scores(c) -> list[str]:
    return [" ".join(f"{100 * v:.1f}" for v in c.per_fold), f"{100 * c.mean:.1f} ± {100 * c.sd:.1f}",
            f"{100 * c.pooled['ap50']:.1f} / {100 * c.pooled['ap25']:.1f}"]


def bench_cv(scenes, folds_k: int | None) -> None:
    from freepoint_bench.tuning.crossval import cross_validate, room_folds
    from freepoint_bench.tuning.objective import evaluation_spec_for, score_pseudo_masks
    from freepoint_bench.tuning.study import TuneConfig

    spec = evaluation_spec_for("scannet-npy")
    folds = room_folds([s.name for s in scenes], folds_k)
    tune = TuneConfig(alphas=(), tune_sigma_low=True, sigma_low_grid=SIGMA_GRID, sampler="grid", prune=False)
    rows = []
    for name, config in cv_rows():
        t0 = time.perf_counter()
        cv = cross_validate(scenes, config, tune, folds, evaluation_spec=spec, refit=False)
        generate_pseudo_labels(scenes[0], config)  # warm-up
        secs = statistics.median(generate_pseudo_labels(scenes[0], config).timings["total"] for _ in range(3))
        sigmas = ",".join(f"{p['sigma_low']:g}" for p in cv.fold_params)
        rows.append([name, f"fixed σ {config.sigma_low:g}", *_fmt_scores(cv.fixed), f"{secs:.2f}"])
        rows.append(["", f"σ tuned ({sigmas})", *_fmt_scores(cv.tuned), ""])
        print(f"  {name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    # DBSCAN on the defaults' foreground, scored on the same held-out folds (nothing to tune on training rooms).
    base = PseudoLabelConfig()
    by_name = {s.name: s for s in scenes}
    labels = {s.name: classical_segments(s, "dbscan", base) for s in scenes}
    per_fold = [score_pseudo_masks([by_name[n] for n in held], labels, spec).ap50 for _, held in folds]
    pooled = score_pseudo_masks(scenes, labels, spec)
    rows.append(["DBSCAN (eps 0.05)", "fixed", " ".join(f"{100 * v:.1f}" for v in per_fold),
                 f"{100 * np.mean(per_fold):.1f} ± {100 * np.std(per_fold, ddof=1):.1f}",
                 f"{100 * pooled.ap50:.1f} / {100 * pooled.ap25:.1f}", "-"])
    rooms = " ".join(room for _, held in folds for room in sorted({h[:9] for h in held}))
    header = ["config", "σ_low", f"held-out AP50 per fold ({rooms})", "mean ± sd", "pooled AP50 / AP25", "s/scan"]
    _table(f"Cross-validated by room on {len(scenes)} ScanNet dev scans ({len(folds)} folds; σ grid {SIGMA_GRID})",
           header, rows)


def bench_timing(scenes, root: Path) -> None:
    """Seconds per 50k-point scan: in process for every --cv config, then `bench.py pseudo-labels` end to end."""
    import os
    import shutil
    import subprocess
    import tempfile

    rows = []
    for name, config in cv_rows():
        generate_pseudo_labels(scenes[0], config)  # warm-up
        per = [statistics.median(generate_pseudo_labels(s, config).timings["total"] for _ in range(3)) for s in scenes]
        rows.append([name, f"{statistics.median(per):.3f}", f"{max(per):.3f}"])
    load = os.getloadavg()[0]
    _table(f"In-process seconds per scan, σ_low and σ_high ({len(scenes)} dev scans, median of 3 each; "
           f"load average {load:.2f}, {os.cpu_count()} cores)", ["config", "median", "max"], rows)
    rows = []
    for workers in (1, 2):
        tmp = Path(tempfile.mkdtemp(prefix="bench-pl-"))
        try:
            cmd = [sys.executable, str(ROOT / "bench.py"), "pseudo-labels", "-d", "scannet-npy", "-r", str(root),
                   "--cache", str(tmp / "cache"), "--out", str(tmp / "out"), "--workers", str(workers)]
            subprocess.run(cmd, check=True, capture_output=True)  # builds the scene cache
            shutil.rmtree(tmp / "out")
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            wall = time.perf_counter() - t0
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        rows.append([str(workers), f"{wall:.2f}", f"{wall / len(scenes):.3f}"])
    _table(f"`bench.py pseudo-labels` end to end on {len(scenes)} scans (process start, cached scene read, both σ, "
           f"atomic writes; load average {os.getloadavg()[0]:.2f})", ["workers", "wall s", "s/scan"], rows)


def bench_rules(scenes) -> None:
    from freepoint_bench.freepoint.pipeline import remove_background
    from freepoint_bench.freepoint.probes import support_probe_scene
    from freepoint_bench.geometry.planes import RULES

    probe = support_probe_scene(0)
    parts = probe.meta["parts"]
    for name, cfg in (("defaults + rules", PseudoLabelConfig(plane_rules=True)), ("defaults", PseudoLabelConfig())):
        seg = remove_background(probe, cfg)
        rows = []
        for i, part in parts.items():
            m = probe.instance == i
            counts = np.bincount(seg.removed_by[m], minlength=len(RULES))
            rows.append([part, f"{m.sum()}", *(f"{c}" for c in counts[1:]), f"{100 * seg.foreground[m].mean():.0f}"])
        _table(f"Synthetic probe room, {name}: points stripped per rule", ["part", "points", *RULES[1:], "kept %"],
               rows)
    rows = []
    obj = [np.isin(s.semantic, SCANNET_INSTANCE_IDS) & (s.instance >= 0) for s in scenes]
    for name, cfg in (("defaults", PseudoLabelConfig()), ("defaults + rules", PseudoLabelConfig(plane_rules=True)),
                      ("plain", PseudoLabelConfig.preset("plain")),
                      ("plain + rules", PseudoLabelConfig.preset("plain", {"plane_rules": True}))):
        counts = np.zeros(len(RULES), np.int64)
        total = 0
        for s, o in zip(scenes, obj, strict=True):
            counts += np.bincount(remove_background(s, cfg).removed_by[o], minlength=len(RULES))
            total += int(o.sum())
        rows.append([name, f"{total}", *(f"{100 * c / total:.1f}" for c in counts[1:])])
    _table(f"ScanNet dev scans ({len(scenes)}): % of object points (18 instance classes) stripped per rule",
           ["config", "object points", *RULES[1:]], rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA / "scannet-dev")
    ap.add_argument("--fullres", type=Path, default=DATA / "scannet-dev-fullres")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-quality", action="store_true")
    ap.add_argument("--methods", default=",".join(CLASSICAL_METHODS))
    ap.add_argument("--set", nargs="*", default=[], help="config overrides key=value")
    ap.add_argument("--cv", action="store_true", help="only the cross-validated table (docs/pseudo-labels.md)")
    ap.add_argument("--folds", type=int, default=None, help="with --cv: k folds of rooms (default one per room)")
    ap.add_argument("--rules", action="store_true", help="only the object points stripped per background rule")
    ap.add_argument("--timing", action="store_true", help="only seconds per scan, per --cv config and end to end")
    args = ap.parse_args()
    config = PseudoLabelConfig().with_overrides(args.set)
    if not args.data.is_dir():
        sys.exit(f"{args.data} not found; pass --data <folder of ScanNet *_vert.npy>")
    reader = get_reader("scannet-npy")
    names = reader.list_scenes(args.data)
    scenes = [reader.read_scene(args.data, n) for n in names]
    if args.timing:
        bench_timing(scenes, args.data)
        return
    if args.cv or args.rules:
        if args.rules:
            bench_rules(scenes)
        if args.cv:
            bench_cv(scenes, args.folds)
        return
    speed = [(f"{scenes[0].name} (50k)", scenes[0])]
    if args.fullres.is_dir():
        full = type(reader)(full_resolution=True)
        fnames = full.list_scenes(args.fullres)
        if fnames:
            s = full.read_scene(args.fullres, fnames[0])
            speed.append((f"{s.name} (full res)", s))
    bench_speed(speed, config, args.repeats)
    bench_solvers(speed, config)
    if not args.skip_quality:
        methods = tuple(m for m in args.methods.split(",") if m)
        bench_quality(scenes, config, methods)


if __name__ == "__main__":
    main()
