"""Held-out AP along a segmenter training run: is it still learning, or fitting the training rooms?

    .venv/bin/python benchmarks/bench_learning_curve.py [--steps 300] [--every 100] [--sigma 0.9]
        [--targets pseudo|gt] [--set key=value ...] [--loss key=value ...] [--data ../shared/data/scannet-dev]
        [--labels runs/learning-curve/pseudo-labels] [--synthetic N] [--fold a|b]

Trains the FreePoint segmenter (step 1: σ_low pseudo masks; `--sigma 1.2` for σ_high; `--targets gt` for
the supervised reference) on the 7 scans of rooms 0000-0002 of the ScanNet dev scans with a plain loop (the
model, data, criterion and AdamW + OneCycle of `bench.py pretrain`, without Lightning, so it can stop to
score): at step 0 (the untrained model) and
every `--every` steps it predicts the 6 scans of the held-out rooms 0003-0005 and scores them
class-agnostically against the ground truth (ScanNet rules), next to the training Dice: per point and with
superpoint pooling (`predict --superpoints`), each with two diagnostics that separate mask quality from
ranking: rec50 (the fraction of ground-truth instances some mask covers at IoU >= 0.5) and orc50 (the AP50
of the same masks ranked by their true IoU, i.e. with a perfect score). The held-out scans' own base masks
(σ_low) and σ_high masks are scored the same way, as the reference rows.
`bench_pretrain_quality.py` gives the end-to-end table (both steps through `bench.py`); this script gives
the curve behind it. Pseudo labels are generated (or reused) under `--labels` with `bench.py
pseudo-labels`. `--synthetic N` adds N built-in synthetic rooms (`--dataset synthetic`, with their own pseudo
masks) to the training pool: more unlabelled scenes for the same number of steps. `--fold b` swaps the rooms
(train on 0003-0005, score 0000-0002), as in `bench_pretrain_quality.py`. Seeded: the same command prints the
same table in one environment (`bench_reproducibility.py`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from pydantic import ValidationError

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from freepoint_bench.cli import DEFAULT_CACHE, _open_store  # noqa: E402
from freepoint_bench.data.classes import SCANNET_INSTANCE_IDS  # noqa: E402
from freepoint_bench.engine.data import GroundTruthTargets, PseudoLabelTargets, collate, make_sample  # noqa: E402
from freepoint_bench.engine.module import segmenter_from_preset  # noqa: E402
from freepoint_bench.engine.presets import get_preset  # noqa: E402
from freepoint_bench.errors import ConfigError  # noqa: E402
from freepoint_bench.evaluation import Predictions, evaluate  # noqa: E402
from freepoint_bench.evaluation.instance_ap import scannet_spec  # noqa: E402
from freepoint_bench.freepoint.config import parse_overrides  # noqa: E402
from freepoint_bench.freepoint.export import pseudo_predictions  # noqa: E402
from freepoint_bench.geometry.superpoints import superpoints  # noqa: E402
from freepoint_bench.models.criterion import SetCriterion  # noqa: E402
from freepoint_bench.models.inference import predict_instances  # noqa: E402
from freepoint_bench.models.losses import LossConfig  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pretrain_quality import DATA, FOLDS, bench, dev_data, pseudo_labels  # noqa: E402  (one room split for both scripts)


def gt_masks(scene) -> np.ndarray:
    """Returns (G, N) bool: the scene's ground-truth instances of the 18 ScanNet classes with >= 100 points
    (what `scannet_spec(class_agnostic=True)` scores against)."""
    keep = np.isin(scene.semantic, SCANNET_INSTANCE_IDS) & (scene.instance >= 0)
    ids = np.unique(scene.instance[keep])
    masks = (scene.instance[None] == ids[:, None]) & keep[None]
    return masks[masks.sum(1) >= 100]


def best_iou(masks: np.ndarray, gts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Returns (best IoU of each mask with any GT (K,), best IoU of each GT with any mask (G,))."""
    if not len(masks) or not len(gts):
        return np.zeros(len(masks)), np.zeros(len(gts))
    a, b = masks.astype(np.float32), gts.astype(np.float32)
    inter = a @ b.T
    iou = inter / (a.sum(1)[:, None] + b.sum(1)[None] - inter)
    return iou.max(1), iou.max(0)


def diagnose(gts: list, predictions: dict[str, Predictions]) -> dict[str, float]:
    """Returns {"ap", "ap50", "ap25" (percent), "rec50", "oracle50", "size"} of predictions on the scenes
    `gts` (see `score`)."""
    spec = scannet_spec(class_agnostic=True)
    oracle, rec50, sizes = {}, [], []
    for scene in gts:
        p = predictions[scene.name]
        per_mask, per_gt = best_iou(p.masks, gt_masks(scene))
        oracle[scene.name] = Predictions(p.masks, p.labels, per_mask.astype(np.float32))
        rec50.append(float((per_gt >= 0.5).mean()) if len(per_gt) else 0.0)
        sizes.append(p.masks.sum(1).mean() if len(p.masks) else 0.0)
    r = evaluate(gts, predictions, spec)
    return dict(ap=100 * r.ap, ap50=100 * r.ap50, ap25=100 * r.ap25, rec50=float(np.mean(rec50)),
                oracle50=100 * evaluate(gts, oracle, spec).ap50, size=float(np.mean(sizes)))


@torch.no_grad()
def score(model, preset, held_out, segments) -> dict[str, dict[str, float]]:
    """Scores the model on the scenes `held_out` per point and with superpoint pooling (`segments`: name -> ids).

    Returns {"points"|"superpoints": {"ap", "ap50", "ap25" (percent), "rec50" (fraction of GT instances
    some mask covers at IoU >= 0.5), "oracle50" (AP50 with every mask scored by its best GT IoU: the AP50
    a perfect ranking of these masks would get), "size" (mean mask points)}}.
    """
    model.eval()
    results = {}
    outputs = {}
    for scene in held_out:
        batch = collate([make_sample(scene, preset, None, train=False)])["batch"]
        outputs[scene.name] = (model(batch), batch)
    for mode in ("points", "superpoints"):
        preds = {}
        for name, (out, batch) in outputs.items():
            found = predict_instances(out, batch, segments=[segments[name]] if mode == "superpoints" else None)[0]
            preds[name] = Predictions(found.masks, found.labels, found.scores)
        results[mode] = diagnose(held_out, preds)
    model.train()
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=None, help=f"VoteNet-npy scans (default: {DATA})")
    ap.add_argument("--labels", type=Path, default=ROOT / "runs" / "learning-curve" / "pseudo-labels")
    ap.add_argument("--sigma", type=float, default=0.9, help="train on the pseudo masks of this σ (0.9 or 1.2)")
    ap.add_argument("--targets", choices=["pseudo", "gt"], default="pseudo",
                    help="pseudo: FreePoint's masks; gt: the scans' ground-truth instances of the 18 ScanNet "
                         "instance classes (a supervised reference: what this model learns from 3 rooms)")
    ap.add_argument("--preset", default="cpu-small")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--every", type=int, default=100)
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="preset key=value")
    ap.add_argument("--loss", action="append", default=[], help="LossConfig key=value (models.losses)")
    ap.add_argument("--synthetic", type=int, default=0,
                    help="also train on this many built-in synthetic rooms (their own FreePoint pseudo masks; "
                         "more unlabelled scenes, no labels)")
    ap.add_argument("--fold", choices=sorted(FOLDS), default="a",
                    help="a: train on rooms 0000-0002, score 0003-0005 (default); b: the reverse")
    args = ap.parse_args()
    train_names, held_names, train_rooms, held_rooms = FOLDS[args.fold]
    data = dev_data(args.data)
    if data is None:
        return
    try:
        preset = get_preset(args.preset, **parse_overrides(args.overrides))
        loss = LossConfig(**parse_overrides(args.loss))
    except ConfigError as e:
        sys.exit(str(e))
    except ValidationError as e:
        problems = "; ".join(f"{err['loc'][0]}: {err['msg']}" for err in e.errors())
        sys.exit(f"invalid --loss: {problems}")
    # the held-out scans' own pseudo masks too: the base masks the segmenter is compared with
    pseudo_labels(data, train_names + held_names, args.labels)
    store, _ = _open_store("scannet-npy", data, ROOT / DEFAULT_CACHE, train_names + held_names)
    if args.targets == "gt":
        not_instances = sorted(set(range(int(max(SCANNET_INSTANCE_IDS)) + 2)) - set(SCANNET_INSTANCE_IDS))
        provider = GroundTruthTargets(ignore_semantic=not_instances)
    else:
        provider = PseudoLabelTargets(args.labels, args.sigma)
    scenes = {n: store.load(n) for n in train_names}
    held_out = [store.load(n) for n in held_names]
    targets = {n: provider(scenes[n]) for n in train_names}
    pool = list(train_names)
    if args.synthetic:  # extra unlabelled rooms, with their own pseudo masks whatever --targets says
        syn_root = args.labels.parent / f"synthetic-{args.synthetic}"
        syn_root.mkdir(parents=True, exist_ok=True)
        (syn_root / "synthetic.toml").write_text(f"num_scenes = {args.synthetic}\n")
        syn_labels = syn_root / "pseudo-labels"
        bench("pseudo-labels", "--dataset", "synthetic", "--root", str(syn_root), "--out", str(syn_labels))
        syn_store, syn_names = _open_store("synthetic", syn_root, ROOT / DEFAULT_CACHE)
        syn_targets = PseudoLabelTargets(syn_labels, args.sigma)
        for n in syn_names:
            scenes[n] = syn_store.load(n)
            targets[n] = syn_targets(scenes[n])
        pool += syn_names

    base = {}
    for sigma in (0.9, 1.2):
        masks = PseudoLabelTargets(args.labels, sigma)
        base[sigma] = diagnose(held_out, {s.name: pseudo_predictions(s.xyz, masks(s).instance) for s in held_out})
    print(f"superpoints of the {len(held_names)} held-out scans ...", flush=True)
    segments = {s.name: superpoints(s.xyz) for s in held_out}
    counts = [int(s.max()) + 1 for s in segments.values()]
    print(f"superpoints per held-out scan: {np.mean(counts):.0f} (min {min(counts)}, max {max(counts)})", flush=True)

    torch.manual_seed(preset.seed)
    model = segmenter_from_preset(preset)
    criterion = SetCriterion(loss)
    opt = torch.optim.AdamW(model.parameters(), lr=preset.lr, weight_decay=preset.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=preset.lr, total_steps=args.steps,
                                                pct_start=preset.onecycle_pct_start)
    rng = np.random.default_rng(preset.seed)
    rows, dice, t0 = [], [], time.perf_counter()
    rows.append((0, 0.0, float("nan"), score(model, preset, held_out, segments)))  # the untrained model
    model.train()
    for step in range(1, args.steps + 1):
        names = rng.choice(pool, min(preset.batch_size, len(pool)), replace=False)
        batch = collate([make_sample(scenes[n], preset, targets[n], rng=rng, train=True) for n in names])
        terms = criterion(model(batch["batch"]), batch["targets"], batch["batch"])
        opt.zero_grad()
        terms["loss"].backward()
        opt.step()
        sched.step()
        dice.append(float(terms["dice"]))
        if step % args.every == 0 or step == args.steps:
            r = score(model, preset, held_out, segments)
            rows.append((step, time.perf_counter() - t0, float(np.mean(dice[-args.every:])), r))
            p, sp = r["points"], r["superpoints"]
            print(f"step {step}: train Dice {rows[-1][2]:.3f}, held-out AP/AP50/AP25 {p['ap']:.1f}/{p['ap50']:.1f}/"
                  f"{p['ap25']:.1f} (superpoints {sp['ap']:.1f}/{sp['ap50']:.1f}/{sp['ap25']:.1f})", flush=True)
    what = "ground-truth instances" if args.targets == "gt" else f"σ = {args.sigma:g} pseudo masks"
    extra = f" and {args.synthetic} synthetic rooms" if args.synthetic else ""
    print(f"\n{args.preset} {' '.join(args.overrides + args.loss)}: {args.steps} steps of {preset.batch_size} scans "
          f"of rooms {train_rooms}{extra}, {what} (OneCycle, peak lr {preset.lr:g}); class-agnostic AP on the "
          f"{len(held_names)} scans of rooms {held_rooms}, per point | with superpoint pooling; rec50: fraction of GT "
          f"instances a mask covers at IoU >= 0.5; oracle50: AP50 if the masks were ranked by their true IoU")
    head = f"{'AP':>5} {'AP50':>5} {'AP25':>5} {'rec50':>5} {'orc50':>5}"
    print(f"{'step':>5} {'time s':>7} {'train Dice':>10} {head} | {head} {'mask pts':>8}")
    for step, secs, d, r in rows:
        cols = [" ".join(f"{m[k]:5.1f}" for k in ("ap", "ap50", "ap25")) + f" {m['rec50']:5.2f} {m['oracle50']:5.1f}"
                for m in (r["points"], r["superpoints"])]
        print(f"{step:5d} {secs:7.0f} {d:10.3f} {cols[0]} | {cols[1]} {r['points']['size']:8.0f}")
    for sigma, m in base.items():
        cols = " ".join(f"{m[k]:5.1f}" for k in ("ap", "ap50", "ap25")) + f" {m['rec50']:5.2f} {m['oracle50']:5.1f}"
        label = f"{'base masks' if sigma == 0.9 else 'σ_high masks'} σ={sigma:g}"
        print(f"{label:<24} {cols} | {'':33} {m['size']:8.0f}")


if __name__ == "__main__":
    main()
