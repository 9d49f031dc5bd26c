"""Evaluator speed: ScanNet-style AP over many scenes with many predictions (prints a table).

Usage: python benchmarks/bench_evaluator.py [--scenes 300] [--preds 100] [--points 50000]
Scenes have 40 GT instances of random valid classes; predictions are noisy copies of GT masks with
mostly the right labels and random scores. Reading/writing the benchmark format is timed on a few scenes.

Measured on the 2-core development VM (shared, busy), defaults (300 scenes x 100 predictions x 50k points,
1.9 GB peak, ~20 s in all): evaluate 4.5 s semantic / 4.2 s class-agnostic (~15 ms a scene, linear in
scenes, so ScanNet val's 312 scenes take about the same); benchmark format 0.10 s to write and 0.05 s to
read one scene of 100 masks (~30 s / 15 s for a whole 300-scene submission).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
from rich.console import Console
from rich.table import Table

from freepoint_bench.data.classes import SCANNET_INSTANCE_IDS
from freepoint_bench.evaluation import Predictions, evaluate, read_predictions, scannet_spec, write_predictions


def make_scene(rng: np.random.Generator, n: int, n_inst: int, n_pred: int):
    ins = np.sort(rng.integers(-1, n_inst, n))
    cls = rng.choice(SCANNET_INSTANCE_IDS, n_inst)
    sem = np.where(ins >= 0, cls[np.maximum(ins, 0)], 1)
    pick = rng.integers(0, n_inst, n_pred)
    masks = ins[None, :] == pick[:, None]
    masks ^= rng.random((n_pred, n)) < 0.002
    labels = np.where(rng.random(n_pred) < 0.8, cls[pick], rng.choice(SCANNET_INSTANCE_IDS, n_pred))
    return (sem, ins), Predictions(masks, labels, rng.random(n_pred).astype(np.float32))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--scenes", type=int, default=300)
    ap.add_argument("--preds", type=int, default=100)
    ap.add_argument("--points", type=int, default=50000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    gts, preds = [], {}
    t0 = time.perf_counter()
    for i in range(args.scenes):
        (sem, ins), p = make_scene(rng, args.points, 40, args.preds)
        gts.append((f"scene{i:04d}_00", sem, ins))
        preds[f"scene{i:04d}_00"] = p
    t_gen = time.perf_counter() - t0
    rows = []
    for agnostic in (False, True):
        t0 = time.perf_counter()
        r = evaluate(gts, preds, scannet_spec(class_agnostic=agnostic))
        rows.append(("class-agnostic" if agnostic else "semantic", time.perf_counter() - t0, r.ap))
    with tempfile.TemporaryDirectory() as tmp:
        name, p = gts[0][0], preds[gts[0][0]]
        t0 = time.perf_counter()
        for _ in range(3):
            write_predictions(tmp, name, p)
        t_write = (time.perf_counter() - t0) / 3
        t0 = time.perf_counter()
        for _ in range(3):
            read_predictions(tmp, name, args.points)
        t_read = (time.perf_counter() - t0) / 3
    table = Table(title=f"evaluator: {args.scenes} scenes × {args.preds} predictions × {args.points:,} points")
    table.add_column("step")
    table.add_column("seconds", justify="right")
    table.add_column("ms / scene", justify="right")
    table.add_column("note")
    per = 1000 / max(args.scenes, 1)
    table.add_row("generate inputs", f"{t_gen:.1f}", f"{t_gen * per:.0f}", "not part of the evaluator")
    for mode, secs, value in rows:
        table.add_row(f"evaluate ({mode})", f"{secs:.2f}", f"{secs * per:.1f}", f"AP = {100 * value:.1f}")
    table.add_row("write (benchmark format)", f"{t_write:.3f}", f"{1000 * t_write:.0f}", f"{args.preds} mask files")
    table.add_row("read (benchmark format)", f"{t_read:.3f}", f"{1000 * t_read:.0f}", "")
    Console().print(table)


if __name__ == "__main__":
    main()
