"""Do the contrastive baselines learn? PointContrast, CSC and DepthContrast on the ScanNet dev scans, cpu-small.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/pretext_baselines.py [--data ../shared/data/scannet-dev]
        [--methods pointcontrast,csc,depthcontrast] [--epochs 5] [--out runs/pretext-baselines]
        [--probe-pairs 2] [--probe-points 256] [--probe-crops 8] [--set key=value ...]
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/pretext_baselines.py --identity-check 3 [--set key=value ...]

Each method pretrains (its `cpu-small` preset, `--epochs` epochs) on the 7 scans of rooms 0000-0002 in a child
process of its own, so its peak memory (max RSS, training included, probe excluded) is its own. Then a probe on
the 6 scans of rooms 0003-0005, which no method saw, with the published backbone in eval mode and, for
comparison, the same backbone at its seeded initialisation (what `scratch` publishes):

- PointContrast / CSC: correspondence retrieval. `--probe-pairs` held-out view pairs per scan (the method's own
  view generator, a fixed probe seed); per pair `--probe-points` matched voxels; a hit when a voxel's nearest
  feature (cosine) among the sampled voxels of the other view is its own match. Chance = 1 / probe-points.
- DepthContrast: instance discrimination. `--probe-crops` crops per held-out scan, each augmented twice; the
  embedding is the global max-pool of the backbone's features (the MoCo head is not published); a hit when a
  crop's first augmentation is nearest its own second one among all crops'. Chance = 1 / (crops x scans).

--identity-check VIEWS trains nothing: at DepthContrast's initialisation, with all 7 training scans in one
batch and VIEWS seeded views each, it counts the queries whose own key is the nearest of the 7 keys (head
embedding, and the pooled backbone without the head; chance 1 in 7). It asks whether the MoCo targets carry
scene identity to bootstrap from.

The table: loss of the first and the last epoch (DepthContrast's first epochs compare keys against the queue's
random initial keys, an easy task, so its loss rises while the queue fills: the minimum after the queue is full is
shown too), probe accuracy trained vs initial vs chance, training throughput (scenes per second, view
generation included) and peak memory. Exit status 1 when a method's probe is not above its initial backbone's.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT / ".." / "shared" / "data" / "scannet-dev"
TRAIN = ["scene0000_00", "scene0000_01", "scene0000_02", "scene0001_00", "scene0001_01", "scene0002_00",
         "scene0002_01"]
HELD_OUT = ["scene0003_00", "scene0003_01", "scene0003_02", "scene0004_00", "scene0005_00", "scene0005_01"]
METHODS = ["pointcontrast", "csc", "depthcontrast"]
PROBE_SEED = 12345  # views of the probe: never a training seed


class MemoryStore:
    """The dev scans read once into memory, with the SceneStore reading API."""

    def __init__(self, data: Path, names: list[str]) -> None:
        from freepoint_bench.data.readers import get_reader

        reader = get_reader("scannet-npy")
        self.root = data
        self.scenes = {name: reader.read_scene(data, name) for name in names}

    def names(self, split: str | None = None) -> list[str]:
        return sorted(self.scenes)

    def load(self, name: str):
        return self.scenes[name]

    def info(self, name: str) -> dict:
        return {"dataset": "scannet"}


def backbone_features(backbone, coords: np.ndarray, feats: np.ndarray):
    """Returns (M, C) L2-normalised features of one voxelised view (eval mode, no gradients)."""
    import torch
    import torch.nn.functional as F

    c = torch.from_numpy(np.concatenate([np.zeros((len(coords), 1), np.int32), coords], axis=1))
    with torch.no_grad():
        return F.normalize(backbone(c, torch.from_numpy(feats)).feats, dim=1)


def retrieval_accuracy(backbone, config, store: MemoryStore, pairs: int, points: int) -> tuple[float, int]:
    """Returns (share of sampled matched voxels whose nearest feature in the other view is their match, trials)."""
    from baselines._pairs import PairDataset

    dataset = PairDataset(store, store.names(), config.train.with_(seed=PROBE_SEED), config.views, mode="scene",
                          use_rgb=config.use_rgb)
    rng = np.random.default_rng(PROBE_SEED)
    hits = trials = 0
    for epoch in range(pairs):
        for index in range(len(dataset)):
            sample = dataset[(epoch, index)]
            m = sample["matches"]
            if len(m) < points:
                continue
            m = m[rng.choice(len(m), points, replace=False)]
            fa = backbone_features(backbone, sample["a_coords"], sample["a_feats"])[m[:, 0]]
            fb = backbone_features(backbone, sample["b_coords"], sample["b_feats"])[m[:, 1]]
            hits += int(((fa @ fb.T).argmax(dim=1) == _arange(points)).sum())
            trials += points
    return hits / max(trials, 1), trials


def _arange(n: int):
    import torch

    return torch.arange(n)


def instance_accuracy(backbone, config, store: MemoryStore, crops: int) -> tuple[float, int]:
    """Returns (share of crops whose first augmentation's pooled feature is nearest their second's, crops)."""
    import torch
    import torch.nn.functional as F

    from baselines._pairs import PairDataset

    dataset = PairDataset(store, store.names(), config.train.with_(seed=PROBE_SEED), config.views, mode="same",
                          use_rgb=config.use_rgb)
    pooled = {"a": [], "b": []}
    for epoch in range(crops):
        for index in range(len(dataset)):
            sample = dataset[(epoch, index)]
            for key in ("a", "b"):
                f = backbone_features(backbone, sample[f"{key}_coords"], sample[f"{key}_feats"])
                pooled[key].append(F.normalize(f.max(dim=0).values, dim=0))
    a, b = torch.stack(pooled["a"]), torch.stack(pooled["b"])
    hits = int(((a @ b.T).argmax(dim=1) == torch.arange(len(a))).sum())
    return hits / len(a), len(a)


def initial_identity(overrides: dict[str, Any], store: MemoryStore, views: int) -> dict[str, Any]:
    """Returns how often, at DepthContrast's seeded initialisation, a scene's key (its other augmentation, key
    encoder) is the nearest of all scenes' keys to its query: all of `store`'s scans in one batch (train mode,
    as in training_step), `views` seeded views each; for the head embedding and for the pooled backbone, with
    the mean gap cos(own key) - max cos(other keys) of the head embedding."""
    import torch
    from torch import nn

    from baselines._pairs import collate_pairs
    from baselines.depthcontrast import DepthContrastModule
    from freepoint_bench.pretext.base import get_method

    method = get_method("depthcontrast")
    config = method.default_config("cpu-small", **overrides)
    dataset = method.build_data(store, store.names(), config).train_set
    module = DepthContrastModule(config).train()
    hits = {"head": 0, "pool": 0}
    gaps = []
    with torch.no_grad():
        for epoch in range(views):
            batch = collate_pairs([dataset[(epoch, i)] for i in range(len(dataset))])
            n = batch["num_scenes"]
            for key, head, key_head in (("head", module.head, module.key_head), ("pool", nn.Identity(), nn.Identity())):
                q = module.embed(module.backbone, head, batch["a_coords"], batch["a_feats"], n)
                k = module.embed(module.key_backbone, key_head, batch["b_coords"], batch["b_feats"], n)
                sim = q @ k.T
                hits[key] += int((sim.argmax(dim=1) == torch.arange(n)).sum())
                if key == "head":
                    others = sim.masked_fill(torch.eye(n, dtype=torch.bool), float("-inf")).max(dim=1).values
                    gaps.append(float((sim.diagonal() - others).mean()))
    n = len(dataset)
    return {"queries": views * n, "chance": views, "head": hits["head"], "pool": hits["pool"],
            "gap": sum(gaps) / len(gaps)}


def worker(args: argparse.Namespace) -> None:
    """Trains one method, probes it, writes its JSON result (run in a child process by main)."""
    from baselines._train import build_backbone
    from freepoint_bench.engine.checkpoints import load_model
    from freepoint_bench.freepoint.config import parse_overrides
    from freepoint_bench.pretext.base import get_method

    name = args.worker
    method = get_method(name)
    config = method.default_config("cpu-small", epochs=args.epochs, **parse_overrides(args.set or []))
    train = MemoryStore(args.data, TRAIN)
    t0 = time.perf_counter()
    result = method.pretrain(train, config, args.out / name, names=TRAIN, overwrite=True,
                             checkpoints_dir=args.out / "checkpoints")
    seconds = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    metrics = result.metadata["metrics"]["train"]
    held = MemoryStore(args.data, HELD_OUT)
    trained, _ = load_model(result.backbone, part="backbone")
    initial = build_backbone(config.train).eval()
    if name == "depthcontrast":
        probe = "instance discrimination"
        acc, n = instance_accuracy(trained, config, held, args.probe_crops)
        acc0, _ = instance_accuracy(initial, config, held, args.probe_crops)
        chance = 1.0 / n
    else:
        probe = "correspondence retrieval"
        acc, n = retrieval_accuracy(trained, config, held, args.probe_pairs, args.probe_points)
        acc0, _ = retrieval_accuracy(initial, config, held, args.probe_pairs, args.probe_points)
        chance = 1.0 / args.probe_points
    history = metrics["loss_history"]
    out = {
        "method": name, "epochs": args.epochs, "scenes": len(TRAIN), "steps": metrics["steps"],
        "loss_history": history, "train_seconds": seconds,
        "scenes_per_s": args.epochs * len(TRAIN) / seconds, "peak_mb": peak_mb,
        "probe": probe, "probe_trials": n, "accuracy": acc, "accuracy_initial": acc0, "chance": chance,
        "checkpoint": str(result.backbone),
    }
    (args.out / f"{name}.json").write_text(json.dumps(out, indent=1))


def row(r: dict[str, Any], queue_epochs: int) -> list[str]:
    h = r["loss_history"]
    loss = f"{h[0]:.3f} → {h[-1]:.3f}"
    if r["method"] == "depthcontrast" and len(h) > queue_epochs:
        loss += f" (min after queue fill {min(h[queue_epochs:]):.3f})"
    return [r["method"], loss, r["probe"], f"{100 * r['accuracy']:.1f}%", f"{100 * r['accuracy_initial']:.1f}%",
            f"{100 * r['chance']:.1f}% (n={r['probe_trials']})", f"{r['scenes_per_s']:.2f}", f"{r['peak_mb']:.0f}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "pretext-baselines")
    parser.add_argument("--probe-pairs", type=int, default=2)
    parser.add_argument("--probe-points", type=int, default=256)
    parser.add_argument("--probe-crops", type=int, default=8)
    parser.add_argument("--set", action="append", help="config override key=value for every method")
    parser.add_argument("--identity-check", type=int, metavar="VIEWS", default=0,
                        help="instead: DepthContrast's initial own-key hits over the training scans, VIEWS views each")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.data is None and not DATA.is_dir():
        print(f"skipped: the ScanNet dev scans are not at {DATA}; pass --data DIR (VoteNet npy layout)")
        return 0
    args.data = (args.data or DATA).resolve()
    if not args.data.is_dir():
        sys.exit(f"{args.data}: ScanNet dev scans not found; pass --data DIR (VoteNet npy layout)")
    args.out.mkdir(parents=True, exist_ok=True)
    if args.worker:
        worker(args)
        return 0
    if args.identity_check:
        from freepoint_bench.freepoint.config import parse_overrides

        r = initial_identity(parse_overrides(args.set or []), MemoryStore(args.data, TRAIN), args.identity_check)
        print("| overrides | own key nearest: head embedding | pooled backbone | chance | gap |")
        print("|---|---|---|---|---|")
        print(f"| {' '.join(args.set or []) or 'defaults'} | {r['head']} of {r['queries']} | {r['pool']} of "
              f"{r['queries']} | {r['chance']} of {r['queries']} | {r['gap']:+.4f} |")
        return 0
    results = []
    for name in args.methods.split(","):
        cmd = [sys.executable, __file__, "--worker", name, "--data", str(args.data), "--out", str(args.out),
               "--epochs", str(args.epochs), "--probe-pairs", str(args.probe_pairs), "--probe-points",
               str(args.probe_points), "--probe-crops", str(args.probe_crops),
               *[a for s in args.set or [] for a in ("--set", s)]]
        print(f"$ {name}: training {args.epochs} epochs on {len(TRAIN)} scans, probing {len(HELD_OUT)}", flush=True)
        done = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode:
            sys.exit(f"{name} failed with status {done.returncode}:\n{done.stderr[-3000:]}")
        results.append(json.loads((args.out / f"{name}.json").read_text()))
    from baselines.depthcontrast import PRESETS

    queue, keys_per_epoch = PRESETS["cpu-small"]["queue_size"], len(TRAIN)
    queue_epochs = math.ceil(queue / keys_per_epoch)
    header = ["method", "loss epoch 1 → last", "probe (held-out rooms)", "trained", "initial", "chance",
              "scenes/s", "peak MB"]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for r in results:
        print("| " + " | ".join(row(r, queue_epochs)) + " |")
    return 0 if all(r["accuracy"] > r["accuracy_initial"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
