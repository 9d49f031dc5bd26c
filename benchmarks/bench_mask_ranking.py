"""Can a label-free score rank a trained segmenter's held-out masks? Each score's rank correlation with the
masks' true IoU and the AP it gives, against the perfect ranking.

    .venv/bin/python benchmarks/bench_mask_ranking.py [--fold a|b] [--step 1|2] [--run runs/pretrain-quality]
        [--data ../shared/data/scannet-dev]

Reads the run folder of `bench_pretrain_quality.py --fold F` (its step-1/2 segmenter and the held-out scans'
pseudo masks; the default folder is made by running that script when it is missing), predicts the fold's
held-out scans with superpoint pooling (`predict --superpoints`), and scores the same masks in several ways,
none using labels:
- segmenter: objectness x mask confidence (what `predict` writes);
- size, size x extent (the base masks' score, `freepoint.scoring.segment_scores`), superpoints touched;
- foreground: the fraction of the mask FreePoint keeps as foreground (not a removed plane, not a tiny piece);
- agreement with σ_low / σ_high / either: the mask's best IoU with the scan's own pseudo masks.
For each: Spearman correlation with the mask's best ground-truth IoU, class-agnostic AP / AP50 / AP25 (ScanNet
rules), and orc50, the AP50 of the same masks under a perfect ranking (the most any rescoring can give).

Measured on 2026-12-02 (2 cores), AP50 / orc50, step-2 models with superpoints. Seed 0 of `bench_pretrain_quality.py
--fold both --out runs/pq-base --seeds 0,1,2` (`--run runs/pq-base` / `runs/pq-base-b`; AMD EPYC, AVX512): fold a
(base masks 25.3): segmenter 5.9 (Spearman -0.34), size x extent 13.4, agreement with either 8.8, perfect ranking 35.6;
fold b (base masks 10.9): segmenter 5.3 (+0.05), size x extent 5.9, agreement with either 12.0 (AP25 30.6), perfect
ranking 19.2. Single runs in earlier sessions' environments: at commit 097fcf1 fold a segmenter 9.4 (-0.01), size x
extent 5.3, agreement with σ_high 13.2, perfect ranking 35.1; fold b segmenter 6.6 (-0.04), size x extent 6.9,
agreement with either 11.8 (AP25 33.3), perfect ranking 21.1; at 71065b8 fold a 5.4 (-0.11) / 25.4, fold b 5.1
(-0.09) / 21.0. The segmenter's own score does not rank its masks; a perfect ranking would beat the base masks on both
folds, no label-free score does.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from freepoint_bench.cli import DEFAULT_CACHE, _open_store  # noqa: E402
from freepoint_bench.engine.checkpoints import input_preset, load_model  # noqa: E402
from freepoint_bench.engine.data import PseudoLabelTargets, collate, make_sample  # noqa: E402
from freepoint_bench.evaluation import Predictions  # noqa: E402
from freepoint_bench.freepoint.scoring import segment_scores  # noqa: E402
from freepoint_bench.geometry.superpoints import superpoints  # noqa: E402
from freepoint_bench.models.inference import predict_instances  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_learning_curve import best_iou, diagnose, gt_masks  # noqa: E402
from bench_pretrain_quality import FOLDS, dev_data, run_dir  # noqa: E402


def agreement(masks: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Returns (K,) the best IoU of each mask (K, N) with any segment of labels (N,) (-1 = none)."""
    ids = np.unique(labels[labels >= 0])
    return best_iou(masks, labels[None] == ids[:, None])[0]


def mask_scores(scene, masks: np.ndarray, model_scores: np.ndarray, segments: np.ndarray,
                low: np.ndarray, high: np.ndarray) -> dict[str, np.ndarray]:
    """Returns {name: (K,) score} of the label-free scores of masks (K, N) on scene."""
    size = masks.sum(1).astype(np.float64)
    size_extent = np.array([segment_scores(scene.xyz, np.where(m, 0, -1))[0] for m in masks])
    agree_low, agree_high = agreement(masks, low), agreement(masks, high)
    return {
        "segmenter (objectness x confidence)": model_scores.astype(np.float64),
        "size": size,
        "size x extent (base masks' score)": size_extent,
        "superpoints touched": np.array([len(np.unique(segments[m])) for m in masks], dtype=np.float64),
        "foreground fraction": (masks & (low >= 0)[None]).sum(1) / np.maximum(size, 1),
        "agreement with σ_low masks": agree_low,
        "agreement with σ_high masks": agree_high,
        "agreement with either": np.maximum(agree_low, agree_high),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--fold", choices=sorted(FOLDS), default="a")
    ap.add_argument("--step", type=int, choices=[1, 2], default=2)
    ap.add_argument("--run", type=Path, default=None,
                    help="bench_pretrain_quality run folder (default runs/pretrain-quality, fold b: ...-b)")
    args = ap.parse_args()
    data = dev_data(args.data)
    if data is None:
        return
    run = args.run or run_dir(args.fold)
    ckpt = run / "run" / f"step{args.step}" / "segmenter.ckpt"
    if not ckpt.is_file() and args.run is None:  # the default folder: make it (`make bench` on a fresh machine)
        print(f"{ckpt} missing: running bench_pretrain_quality.py --fold {args.fold} first", flush=True)
        subprocess.run([sys.executable, str(Path(__file__).with_name("bench_pretrain_quality.py")), "--fold",
                        args.fold, "--data", str(data)], check=True)
    if not ckpt.is_file():
        sys.exit(f"{ckpt} not found; run benchmarks/bench_pretrain_quality.py --fold {args.fold} --out {run} first")
    _, held_out, _, held_rooms = FOLDS[args.fold]
    store, _ = _open_store("scannet-npy", data, ROOT / DEFAULT_CACHE, held_out)
    model, meta = load_model(ckpt)
    preset = input_preset(meta, ckpt)
    low, high = PseudoLabelTargets(run / "pseudo-held-out", 0.9), PseudoLabelTargets(run / "pseudo-held-out", 1.2)
    scenes, per_scene = [], []
    for name in held_out:
        scene = store.load(name)
        batch = collate([make_sample(scene, preset, None, train=False)])["batch"]
        segments = superpoints(scene.xyz)
        with torch.no_grad():
            found = predict_instances(model(batch), batch, segments=[segments])[0]
        true_iou = best_iou(found.masks, gt_masks(scene))[0]
        scores = mask_scores(scene, found.masks, found.scores, segments, low(scene).instance, high(scene).instance)
        scenes.append(scene)
        per_scene.append((found, true_iou, scores))
    truth = np.concatenate([t for _, t, _ in per_scene])
    print(f"step-{args.step} segmenter of fold {args.fold} ({ckpt}), with superpoints: {len(truth)} masks on the "
          f"{len(held_out)} held-out scans of rooms {held_rooms}")
    print(f"{'score':<38} {'spearman':>8} {'AP':>5} {'AP50':>5} {'AP25':>5} {'orc50':>5}")
    for key in per_scene[0][2]:
        values = np.concatenate([s[key] for _, _, s in per_scene])
        rho = spearmanr(values, truth).statistic
        preds = {sc.name: Predictions(f.masks, f.labels, s[key].astype(np.float32))
                 for sc, (f, _, s) in zip(scenes, per_scene, strict=True)}
        d = diagnose(scenes, preds)
        print(f"{key:<38} {rho:+8.2f} {d['ap']:5.1f} {d['ap50']:5.1f} {d['ap25']:5.1f} {d['oracle50']:5.1f}")


if __name__ == "__main__":
    main()
