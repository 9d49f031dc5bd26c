"""Training throughput benchmark: scenes/s and peak memory of segmenter training steps.

    .venv/bin/python benchmarks/bench_training.py [--data ../shared/data/scannet-dev] [--points 50000]
        [--scenes 4] [--steps 5] [--warmup 1] [--backends spconv minkowski] [--presets cpu-small paper]
        [--precisions 32-true 16-mixed bf16-mixed]

For each training preset x sparse backend (every backend that imports here; default presets: cpu-small,
plus paper when CUDA is available) it times full optimiser steps (data already voxelised; forward,
Hungarian matching + eq. 7 loss, backward, AdamW) on batches of `--points`-point scenes, and separately
the per-scene data preparation (augmentation, voxelisation, targets). Scenes are the real ScanNet dev
scans under --data when present (randomly subsampled to --points), otherwise synthetic rooms.

Columns: voxels per scene, data prep ms/scene, step seconds (median over --steps after --warmup),
training scenes/s (batch size / median step), and peak memory: GPU max allocated on CUDA, else the
process' peak resident set size (a high-water mark over the whole run, so it only grows down a table).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from table import print_table  # noqa: E402

from freepoint_bench.data.scene import Scene  # noqa: E402
from freepoint_bench.engine.data import GroundTruthTargets, collate, make_sample  # noqa: E402
from freepoint_bench.engine.module import SegmenterModule  # noqa: E402
from freepoint_bench.engine.presets import get_preset  # noqa: E402
from freepoint_bench.models.losses import LossConfig  # noqa: E402
from freepoint_bench.models.sparse import available_backends  # noqa: E402

DATA = ROOT / ".." / "shared" / "data" / "scannet-dev"


def _subsample(scene: Scene, points: int, seed: int) -> Scene:
    if scene.num_points <= points:
        return scene
    idx = np.sort(np.random.default_rng(seed).choice(scene.num_points, points, replace=False))
    return scene.subset(idx)


def load_scenes(data: Path, count: int, points: int) -> tuple[list[Scene], str]:
    """Returns `count` scenes of ≤ `points` points and a description of where they came from."""
    if data.is_dir():
        from freepoint_bench.data.readers import get_reader

        reader = get_reader("scannet-npy")
        names = reader.list_scenes(data)[:count]
        if names:
            scenes = [_subsample(reader.read_scene(data, n), points, i) for i, n in enumerate(names)]
            return scenes, f"ScanNet dev scans ({data.resolve()}), subsampled to {points:,} points"
    from freepoint_bench.data.synthetic import SyntheticConfig, generate_room

    config = SyntheticConfig(num_points=points)
    return [generate_room(seed, config) for seed in range(count)], f"synthetic rooms of {points:,} points"


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def bench(preset_name: str, backend: str, scenes: list[Scene], steps: int, warmup: int,
          device: torch.device, precision: str | None = None) -> dict:
    """Returns the timings of `steps` training steps of one preset on one backend (at `precision`, a
    Lightning precision flag; None: the preset's own; mixed precision applies on CUDA only)."""
    preset = get_preset(preset_name, backend=backend, **({"precision": precision} if precision else {}))
    targets = GroundTruthTargets()
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    samples = [make_sample(s, preset, targets(s), rng=rng, train=True) for s in scenes]
    prep_ms = 1000 * (time.perf_counter() - t0) / len(scenes)
    bs = min(preset.batch_size, len(samples))
    batches = [collate([samples[(i * bs + j) % len(samples)] for j in range(bs)]) for i in range(len(samples))]

    module = SegmenterModule(preset, LossConfig()).to(device)
    optimizer = torch.optim.AdamW(module.parameters(), lr=preset.lr, weight_decay=preset.weight_decay)
    use_amp = device.type == "cuda" and preset.precision in ("16-mixed", "bf16-mixed")
    amp_dtype = torch.bfloat16 if preset.precision == "bf16-mixed" else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for i in range(warmup + steps):
        batch = batches[i % len(batches)]
        voxels = batch["batch"].to(device)
        tgts = [t.to(device) for t in batch["targets"]]
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
            out = module.segmenter(voxels)
            loss = module.criterion(out, tgts, voxels)["loss"]
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - t)
    step = statistics.median(times)
    return {
        "preset": preset_name,
        "backend": backend,
        "device": device.type,
        "precision": preset.precision if use_amp else "32-true",
        "batch": bs,
        "voxels": int(np.mean([len(s["coords"]) for s in samples])),
        "prep_ms": prep_ms,
        "step_s": step,
        "scenes_per_s": bs / step,
        "peak_mb": _peak_memory_mb(device),
    }


def print_rows(rows: list[dict]) -> None:
    header = ["preset", "backend", "device", "precision", "batch", "voxels/scene", "prep ms/scene", "step s",
              "scenes/s", "peak MB"]
    body = [[r["preset"], r["backend"], r["device"], r["precision"], str(r["batch"]), f"{r['voxels']:,}",
             f"{r['prep_ms']:.0f}", f"{r['step_s']:.2f}", f"{r['scenes_per_s']:.2f}", f"{r['peak_mb']:,.0f}"]
            for r in rows]
    print_table(header, body)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA, help="ScanNet npy dev scans (synthetic if absent)")
    parser.add_argument("--points", type=int, default=50_000, help="points per scene")
    parser.add_argument("--scenes", type=int, default=4, help="distinct scenes")
    parser.add_argument("--steps", type=int, default=5, help="timed optimiser steps")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--backends", nargs="*", default=None, help="default: every importable backend")
    parser.add_argument("--presets", nargs="*", default=None, help="default: cpu-small (+ paper on CUDA)")
    parser.add_argument("--precisions", nargs="*", default=None,
                        help="Lightning precision flags to time, e.g. 32-true 16-mixed bf16-mixed (default: each "
                             "preset's own; mixed ones apply on CUDA only)")
    args = parser.parse_args(argv)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    presets = args.presets or (["cpu-small", "paper"] if device.type == "cuda" else ["cpu-small"])
    backends = args.backends or available_backends()
    scenes, source = load_scenes(args.data, args.scenes, args.points)
    print(f"training throughput on {device} ({torch.get_num_threads()} CPU threads); {len(scenes)} {source}")
    print(f"median of {args.steps} steps after {args.warmup} warm-up; backends available: {available_backends()}\n")
    precisions = args.precisions or [None]
    rows = [bench(p, b, scenes, args.steps, args.warmup, device, precision)
            for p in presets for b in backends for precision in precisions]
    print_rows(rows)


if __name__ == "__main__":
    main()
