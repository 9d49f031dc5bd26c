"""Forward+backward time and peak memory of the segmenter on a synthetic 50k-point scene, per sparse backend.

    .venv/bin/python benchmarks/bench_models.py [--preset tiny] [--points 50000] [--voxel-size 0.05]

Each backend runs in its own subprocess so that peak memory (CPU: max RSS; CUDA: max allocated)
belongs to that backend alone. Runs on CUDA when available.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import torch


def _scene(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns (xyz (n, 3) metres, rgb (n, 3), instance (n,)): a 6 x 5 m room floor with 12 boxes."""
    rng = np.random.default_rng(seed)
    n_floor = n // 3
    xyz = [rng.uniform([0, 0, 0], [6, 5, 0.02], (n_floor, 3))]
    inst = [np.full(n_floor, -1)]
    per_box = (n - n_floor) // 12
    for i in range(12):
        c = rng.uniform([0.5, 0.5, 0.3], [5.5, 4.5, 0.6])
        s = rng.uniform(0.3, 1.0, 3)
        m = per_box if i < 11 else n - n_floor - 11 * per_box
        xyz.append(rng.uniform(c - s / 2, c + s / 2, (m, 3)))
        inst.append(np.full(m, i))
    xyz = np.concatenate(xyz).astype(np.float32)
    return xyz, rng.uniform(0, 1, xyz.shape).astype(np.float32), np.concatenate(inst)


def run_one(backend: str, preset: str, points: int, voxel_size: float, repeats: int) -> dict:
    """Returns timings (s) and peak memory (MiB) of forward and forward+backward for one backend."""
    from freepoint_bench.models.criterion import SetCriterion, targets_from_instance_ids
    from freepoint_bench.models.segmenter import TINY, InstanceSegmenter, SegmenterConfig
    from freepoint_bench.models.voxels import collate

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    base = TINY if preset == "tiny" else SegmenterConfig()
    config = base.model_copy(
        update={"backbone": base.backbone.model_copy(update={"backend": backend, "preset": preset})}
    )
    model = InstanceSegmenter(config).to(device)
    xyz, rgb, inst = _scene(points)
    batch = collate([xyz], [rgb], voxel_size).to(device)
    targets = [targets_from_instance_ids(torch.from_numpy(inst)).to(device)]
    criterion = SetCriterion()

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    losses = criterion(model(batch), targets, batch)  # warm-up (rulebooks, allocator)
    losses["loss"].backward()
    fwd, fwd_bwd = [], []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        with torch.no_grad():
            model(batch)
        sync()
        fwd.append(time.perf_counter() - t0)
        model.zero_grad()
        t0 = time.perf_counter()
        losses = criterion(model(batch), targets, batch)
        losses["loss"].backward()
        sync()
        fwd_bwd.append(time.perf_counter() - t0)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "backend": backend,
        "device": str(device),
        "voxels": int(batch.coords.shape[0]),
        "params": sum(p.numel() for p in model.parameters()),
        "forward_s": float(np.median(fwd)),
        "forward_backward_s": float(np.median(fwd_bwd)),
        "peak_mib": peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny", choices=["tiny", "14", "18", "34C"])
    parser.add_argument("--points", type=int, default=50_000)
    parser.add_argument("--voxel-size", type=float, default=0.05)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backends", default="spconv,minkowski")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one backend, print JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.preset, args.points, args.voxel_size, args.repeats)))
        return
    rows = []
    for backend in args.backends.split(","):
        cmd = [sys.executable, __file__, "--one", backend, "--preset", args.preset, "--points", str(args.points)]
        cmd += ["--voxel-size", str(args.voxel_size), "--repeats", str(args.repeats)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            reason = (proc.stderr.strip().splitlines() or ["failed"])[-1]
            rows.append({"backend": backend, "error": reason})
            continue
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(f"segmenter preset={args.preset}, {args.points} points, voxel {args.voxel_size} m, median of {args.repeats}")
    print(f"{'backend':<10} {'device':<6} {'voxels':>7} {'params':>9} {'fwd s':>7} {'fwd+bwd s':>10} {'peak MiB':>9}")
    for r in rows:
        if "error" in r:
            print(f"{r['backend']:<10} unavailable: {r['error']}")
            continue
        print(
            f"{r['backend']:<10} {r['device']:<6} {r['voxels']:>7} {r['params']:>9} {r['forward_s']:>7.3f} "
            f"{r['forward_backward_s']:>10.3f} {r['peak_mib']:>9.0f}"
        )


if __name__ == "__main__":
    main()
