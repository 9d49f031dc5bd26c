"""Does FreePoint's segmenter learn? Class-agnostic AP on held-out rooms: base masks vs step 1 vs step 2.

    .venv/bin/python benchmarks/bench_pretrain_quality.py [--data ../shared/data/scannet-dev]
        [--fold a|b|both] [--out runs/pretrain-quality] [--epochs1 60] [--epochs2 10] [--preset cpu-small]
        [--device cpu|cuda] [--set key=value ...] [--seeds 0,1,2]

Pretrains FreePoint (`bench.py pretrain`) on the scans of rooms 0000-0002 of the ScanNet dev scans (7 scans;
the three scene0000_* scans are one room, so rooms, not scans, are held out), predicts with the step-1 and
the step-2 segmenter on the scans of rooms 0003-0005 (6 scans; `--fold b` swaps the two; the two folds of rooms
are read from protocols/scannet-dev-full-masks.toml), writes FreePoint's
own pseudo masks (σ_low = base masks, σ_high) for those same scans, and scores all four class-agnostically
with the ScanNet rules (`bench.py evaluate --class-agnostic`). The paper's claim (§4, Table 1) is that the
trained segmenter beats its base masks: 4.1 / 7.9 / 21.0 → 10.7 / 21.4 / 37.8 AP / AP50 / AP25 on ScanNet
val.

Every step is a `bench.py` command (printed as it runs), so the table can be reproduced by hand. The run
directory is resumable: a second call with the same settings skips finished training steps, and predictions
written after their checkpoint. `--fold both` prints each fold's table and the pooled one.

`--seeds 0,1,2` trains once per seed (`pretrain --set seed=N`: weights, shuffling, crops and augmentation; seed 0
is the preset's own, in OUT; seed N in OUT-seedN) and then prints every row's mean ± sd [min, max] over the seeds:
one run of these 3-room folds says little (README, "Repeat runs").

Each segmenter is also scored with `predict --superpoints` (masks averaged within label-free superpoints).

Measured on 2026-12-02 on a 2-core AMD EPYC (torch 2.13.0+cpu, AVX512), `--fold both --out runs/pq-base --seeds
0,1,2` (cpu-small with 20k-point crops, 60 + 10 epochs; 30-40 min), AP / AP50 / AP25, mean ± sd of AP50 and AP25 over
the seeds: fold a (train rooms 0000-0002, score 0003-0005): base masks 8.0 / 25.3 / 53.4, σ_high 10.6 / 26.0 / 50.3,
step 1 0.7 / 3.9 ± 0.9 / 29.6 ± 5.4 (superpoints 1.1 / 4.9 ± 2.1 / 27.0 ± 6.9), step 2 0.9 / 2.6 ± 0.6 / 26.4 ± 3.1
(1.5 / 4.4 ± 1.3 / 27.5 ± 6.9). Fold b (the reverse): base masks 5.5 / 10.9 / 31.6, step 1 0.6 / 2.8 ± 0.8 / 25.3 ± 1.7
(2.0 / 6.3 ± 1.2 / 25.1 ± 1.8), step 2 0.5 / 2.0 ± 1.0 / 30.7 ± 5.1 (1.5 / 4.8 ± 1.2 / 30.5 ± 8.0; AP25 above the base
masks in seeds 0 and 2). Both: base masks 6.2 / 14.6 / 36.6, step 2 0.5 / 1.8 ± 0.6 / 27.5 ± 4.0 (1.3 / 4.2 ± 1.1 /
27.4 ± 6.6). Runs are bit-for-bit deterministic in one environment only (`bench_reproducibility.py`): single runs on
the machines of earlier sessions gave other segmenter rows, within about the seeds' spread (README, "Repeat runs").
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from devscans import DATA, Fold, bench, dev_data, list_scans, room_folds, scene_args  # noqa: E402

FOLDS = ("a", "b")  # two-fold cross-validation by rooms, as protocols/scannet-dev-* declare it (devscans.room_folds)


def run_dir(fold: str, base: Path | None = None) -> Path:
    """Returns the run folder of `fold` ("a", "b" or "cv" for the merged predictions of --fold both):
    base (default runs/pretrain-quality) for fold a, base-<fold> otherwise."""
    base = base or ROOT / "runs" / "pretrain-quality"
    return base if fold == "a" else base.with_name(f"{base.name}-{fold}")


def predictions_per_scene(pred_dir: Path) -> float:
    counts = [len(f.read_text().splitlines()) for f in pred_dir.glob("*.txt")]
    return sum(counts) / max(len(counts), 1)


def run_fold(fold: Fold, args, out: Path, overrides: list[str]) -> tuple[list[tuple[str, Path]], float]:
    """Pretrains on the fold's training rooms (`pretrain --set` each of overrides) and writes the benchmark-format
    predictions of every row for its held-out rooms under `out`; returns ([(row label, prediction folder)],
    training seconds)."""
    data = ["--dataset", "scannet-npy", "--root", str(args.data)]
    train, held_out = fold.train, fold.held_out
    t0 = time.perf_counter()
    sets = [a for o in overrides for a in ("--set", o)]
    bench("pretrain", "--method", "freepoint", *data, *scene_args(train), "--preset", args.preset,
          "--epochs1", str(args.epochs1), "--epochs2", str(args.epochs2), *sets,
          "--out", str(out / "run"), "--checkpoints", str(out / "checkpoints"), "--resume")
    train_s = time.perf_counter() - t0
    rows: list[tuple[str, Path]] = []
    bench("pseudo-labels", *data, *scene_args(held_out), "--out", str(out / "pseudo-held-out"),
          "--export-benchmark", str(out / "pred-pseudo"))
    rows += [("base masks (σ_low)", out / "pred-pseudo" / "sigma-0.9"),
             ("pseudo masks σ_high", out / "pred-pseudo" / "sigma-1.2")]
    for step in (1, 2):
        for pooled in (False, True):
            pred = out / f"pred-step{step}{'-superpoints' if pooled else ''}"
            ckpt = out / "run" / f"step{step}" / "segmenter.ckpt"
            if predicted(pred, ckpt, held_out):
                print(f"  {pred}: up to date (every scan predicted after {ckpt} was written)", flush=True)
            else:
                bench("predict", *data, *scene_args(held_out), "--checkpoint", str(ckpt), "--export-benchmark",
                      str(pred), "--device", args.device, *(["--superpoints"] if pooled else []))
            rows.append((f"segmenter after step {step}" + (" + superpoints" if pooled else ""), pred))
    return rows, train_s


def predicted(pred: Path, ckpt: Path, names: list[str]) -> bool:
    """True when `pred` holds every scan's benchmark file, each newer than `ckpt` (a scan's file is written
    atomically after its masks, so its presence means the scan is complete)."""
    if not ckpt.is_file():
        return False
    made = ckpt.stat().st_mtime
    return all((pred / f"{n}.txt").is_file() and (pred / f"{n}.txt").stat().st_mtime > made for n in names)


def merged(folds: list[list[tuple[str, Path]]], out: Path) -> list[tuple[str, Path]]:
    """Returns the rows of several folds with each row's prediction folders copied into one under `out`
    (the folds hold out disjoint scans, so every scan is predicted once)."""
    rows = []
    for i, (label, _) in enumerate(folds[0]):
        dest = out / f"row{i}"
        if dest.exists():
            shutil.rmtree(dest)
        for fold in folds:
            shutil.copytree(fold[i][1], dest, dirs_exist_ok=True)
        rows.append((label, dest))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=None, help=f"VoteNet-npy scans (default: {DATA})")
    ap.add_argument("--fold", choices=[*FOLDS, "both"], default="a",
                    help="a: train rooms 0000-0002, score 0003-0005 (default); b: the reverse; both: a and b, "
                         "scored together on all 13 scans (each by the fold that did not train on its room)")
    ap.add_argument("--out", type=Path, default=None,
                    help="run folder OUT (default runs/pretrain-quality; fold b: runs/pretrain-quality-b; "
                         "both: OUT, OUT-b and OUT-cv for the merged predictions)")
    ap.add_argument("--preset", default="cpu-small")
    ap.add_argument("--device", default="cpu", help="bench.py predict --device (cpu or cuda)")
    ap.add_argument("--epochs1", type=int, default=60)
    ap.add_argument("--epochs2", type=int, default=10)
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="pretrain --set key=value")
    ap.add_argument("--seeds", default="0",
                    help="training seeds, e.g. 0,1,2: one run per seed (seed 0 in OUT, seed N in OUT-seedN; with "
                         "--fold both OUT-seedN, OUT-seedN-b, OUT-seedN-cv), then each row's mean ± sd over them")
    args = ap.parse_args()
    args.data = dev_data(args.data)
    if args.data is None:  # `make bench` on a machine without ../shared
        return
    args.folds = room_folds(list_scans(args.data))
    seeds = parse_seeds(args.seeds)
    if any(o.split("=", 1)[0].strip() in ("seed", "train.seed") for o in args.overrides):
        sys.exit("--set seed=N: pass the training seeds with --seeds N[,M...] instead")
    results = {seed: [(key, evaluate_rows(args, rows, title)) for key, title, rows in seed_rows(args, seed)]
               for seed in seeds}
    if len(seeds) > 1:
        for t, (key, _) in enumerate(results[seeds[0]]):
            print_spread(f"{args.preset}, {args.epochs1} + {args.epochs2} epochs, {key}",
                         [(seed, results[seed][t][1]) for seed in seeds])


def parse_seeds(text: str) -> list[int]:
    """Returns the distinct training seeds of "0,1,2" in order; exits with a one-line message when malformed."""
    try:
        seeds = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        sys.exit(f"--seeds {text!r}: expected comma-separated integers, e.g. --seeds 0,1,2")
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        sys.exit(f"--seeds {text!r}: expected distinct integers >= 0, e.g. --seeds 0,1,2")
    return seeds


def seed_dir(base: Path | None, seed: int) -> Path | None:
    """Returns the run folder base of training seed `seed`: base itself for seed 0 (the preset's own seed, so
    earlier single-seed folders are reused), base-seed<N> otherwise."""
    if seed == 0:
        return base
    base = base or ROOT / "runs" / "pretrain-quality"
    return base.with_name(f"{base.name}-seed{seed}")


def seed_rows(args, seed: int) -> list[tuple[str, str, list[tuple[str, Path]]]]:
    """Pretrains and predicts with training seed `seed` (`pretrain --set seed=N`; none for 0); returns its
    tables [(key, title, [(row label, prediction folder)])]: the fold's, or with --fold both each fold's and
    the pooled one."""
    overrides = [*args.overrides, *([f"seed={seed}"] if seed else [])]
    head = f"FreePoint {args.preset}, {args.epochs1} + {args.epochs2} epochs, training seed {seed}"
    if args.fold == "both":
        out = seed_dir(args.out, seed)
        done = {f: run_fold(args.folds[f], args, run_dir(f, out), overrides) for f in FOLDS}
        rows = merged([done["a"][0], done["b"][0]], run_dir("cv", out))
        train_s = sum(t for _, t in done.values())
        scored = sum(len(f.held_out) for f in args.folds.values())
        a, b = args.folds["a"], args.folds["b"]
        pooled = (f"{head}, both folds: on the {len(a.train)} scans of rooms {' '.join(a.train_rooms)} (fold a) "
                  f"and the {len(b.train)} of rooms {' '.join(b.train_rooms)} (fold b), {train_s:.0f} s of training "
                  f"and pseudo labels in this call (a resumed fold counts what was left); class-agnostic AP on all "
                  f"{scored} scans, each scored by the fold that held its room out")
        return [*[(f"fold {f}", fold_title(head, f, args.folds[f], done[f][1]), done[f][0]) for f in FOLDS],
                ("both folds", pooled, rows)]
    # one fold: --out is the run folder itself (seed N: OUT-seedN); by default runs/pretrain-quality[-seedN][-b]
    out = seed_dir(args.out, seed) if args.out else run_dir(args.fold, seed_dir(None, seed))
    rows, train_s = run_fold(args.folds[args.fold], args, out, overrides)
    return [(f"fold {args.fold}", fold_title(head, args.fold, args.folds[args.fold], train_s), rows)]


def fold_title(head: str, name: str, fold: Fold, train_s: float) -> str:
    return (f"{head}, fold {name}: on {len(fold.train)} scans (rooms {' '.join(fold.train_rooms)}, {train_s:.0f} s "
            f"incl. pseudo labels); class-agnostic AP on {len(fold.held_out)} held-out scans (rooms "
            f"{' '.join(fold.held_rooms)})")


def evaluate_rows(args, rows: list[tuple[str, Path]], what: str) -> list[tuple[str, dict, float]]:
    """Scores every row (`bench.py evaluate --class-agnostic`), prints the table; returns [(label, result, masks
    per scene)]."""
    data = ["--dataset", "scannet-npy", "--root", str(args.data)]
    results = []
    for label, pred in rows:
        js = pred.parent / f"{pred.name}.eval.json"
        bench("evaluate", *data, "--predictions", str(pred), "--class-agnostic", "--json", str(js))
        results.append((label, json.loads(js.read_text()), predictions_per_scene(pred)))

    print(f"\n{what}")
    print(f"{'masks':<42} {'AP':>5} {'AP50':>5} {'AP25':>5} {'masks/scene':>11}")
    for label, r, n in results:
        print(f"{label:<42} {100 * r['ap']:5.1f} {100 * r['ap50']:5.1f} {100 * r['ap25']:5.1f} {n:11.1f}")
    return results


def print_spread(title: str, tables: list[tuple[int, list[tuple[str, dict, float]]]]) -> None:
    """Prints mean ± standard deviation (over seeds, ddof 1) and the range of every row's AP / AP50 / AP25."""
    seeds = [s for s, _ in tables]
    print(f"\n{title}, over training seeds {', '.join(map(str, seeds))}: mean ± sd [min, max] (the pseudo-mask rows "
          f"do not depend on the seed)")
    print(f"{'masks':<42} {'AP':>25} {'AP50':>25} {'AP25':>25}")
    for i, (label, _, _) in enumerate(tables[0][1]):
        cells = []
        for key in ("ap", "ap50", "ap25"):
            v = 100 * np.array([rows[i][1][key] for _, rows in tables])
            cells.append(f"{v.mean():5.1f} ± {v.std(ddof=1):4.1f} [{v.min():4.1f}, {v.max():4.1f}]")
        print(f"{label:<42} " + " ".join(f"{c:>25}" for c in cells))


if __name__ == "__main__":
    main()
