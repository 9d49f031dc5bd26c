"""Device->host syncs per training step of the segmenter, per component (backbone, decoder, criterion, backward).

    .venv/bin/python benchmarks/bench_host_syncs.py [--points 20000] [--scenes 2] [--queries 100]
                                                   [--backbone tiny] [--voxel-size 0.05]

Every sync stalls the host until the device has drained its queue, so a step with hundreds of them runs at
the host's pace. On CUDA the syncs are counted by PyTorch itself (torch.cuda.set_sync_debug_mode("warn"):
one warning per synchronising call). On a CPU nothing waits, so the script counts the calls that would sync
on CUDA, through a TorchFunctionMode (`HostSyncCounter`): .item() / .tolist() / .cpu(), int() / float() /
bool() of a tensor, nonzero / argwhere / masked_select / unique / bincount, repeat_interleave without
output_size, indexing with a bool mask, and .to("cpu") unless non-blocking. A call the mode hands on as a
whole (a Python functional) is one call: syncs inside it are not seen. Host->device copies of index arrays
are not counted on a CPU. The decoder is Mask3D's (its default: 100 queries, 3 passes over 4 levels = 12
steps whose predictions the criterion matches); the defaults run on a CPU in well under a minute.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections import Counter
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from freepoint_bench.models.criterion import SetCriterion, targets_from_instance_ids  # noqa: E402
from freepoint_bench.models.decoder import DecoderConfig  # noqa: E402
from freepoint_bench.models.segmenter import TINY, InstanceSegmenter, SegmenterConfig  # noqa: E402
from freepoint_bench.models.voxels import collate  # noqa: E402

_READS = frozenset({
    "item", "tolist", "cpu", "__int__", "__float__", "__bool__", "__index__", "nonzero", "argwhere",
    "masked_select", "unique", "unique_consecutive", "bincount",
})


class HostSyncCounter(TorchFunctionMode):
    """Counts, by name, the calls that read a device tensor's values on the host (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in _READS:
            self.counts[name] += 1
        elif name == "repeat_interleave" and kwargs.get("output_size") is None and _is_tensor(args[1:2]):
            self.counts[name] += 1
        elif name in ("__getitem__", "__setitem__") and _has_bool_index(args[1]):
            self.counts[f"bool {name.strip('_')}"] += 1
        elif name == "to" and not kwargs.get("non_blocking", False) and _to_cpu(args[1:], kwargs):
            self.counts["to cpu"] += 1
        return func(*args, **kwargs)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _is_tensor(xs: tuple) -> bool:
    return bool(xs) and isinstance(xs[0], torch.Tensor)


def _has_bool_index(index: object) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(p, torch.Tensor) and p.dtype == torch.bool for p in parts)


def _to_cpu(args: tuple, kwargs: dict) -> bool:
    targets = [*args, kwargs.get("device")]
    return any((isinstance(t, str) and t == "cpu") or (isinstance(t, torch.device) and t.type == "cpu")
               for t in targets)


@contextmanager
def count_syncs(device: torch.device):
    """Yields a Counter filled, on exit, with the syncs of the block (by kind on a CPU, in all on CUDA)."""
    counts: Counter[str] = Counter()
    if device.type == "cuda":
        torch.cuda.synchronize()
        previous = torch.cuda.get_sync_debug_mode()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                yield counts
            finally:
                torch.cuda.set_sync_debug_mode(previous)
        counts["cuda syncs"] = sum("synchronizing" in str(w.message) for w in caught)
    else:
        with HostSyncCounter() as counter:
            yield counts
        counts.update(counter.counts)


def _scene(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns (xyz (n, 3) metres, rgb (n, 3), instance (n,)): a 6 x 5 m floor with 10 boxes."""
    rng = np.random.default_rng(seed)
    floor = n // 3
    xyz, inst = [rng.uniform([0, 0, 0], [6, 5, 0.02], (floor, 3))], [np.full(floor, -1)]
    sizes = np.diff(np.linspace(0, n - floor, 11).astype(int))
    for i, m in enumerate(sizes):
        c = rng.uniform([0.5, 0.5, 0.3], [5.5, 4.5, 0.6])
        xyz.append(rng.uniform(c - 0.3, c + 0.3, (m, 3)))
        inst.append(np.full(m, i))
    xyz = np.concatenate(xyz).astype(np.float32)
    return xyz, rng.uniform(0, 1, xyz.shape).astype(np.float32), np.concatenate(inst)


def step_syncs(points: int, scenes: int, queries: int, backbone: str, voxel_size: float,
               device: torch.device, sample_sizes: tuple[int, ...] | None = None) -> dict[str, Counter[str]]:
    """Returns the syncs of one training step (forward, loss, backward) per component; sample_sizes: the decoder's
    training-time attention samples per level (DecoderConfig.sample_sizes: Mask3D's sampling rule)."""
    torch.manual_seed(0)
    config = SegmenterConfig(backbone=TINY.backbone.model_copy(update={"preset": backbone}),
                             decoder=DecoderConfig(num_queries=queries, sample_sizes=sample_sizes))
    model = InstanceSegmenter(config).to(device)
    data = [_scene(points, seed) for seed in range(scenes)]
    batch = collate([d[0] for d in data], [d[1] for d in data], voxel_size).to(device)
    targets = [targets_from_instance_ids(torch.from_numpy(d[2])).to(device) for d in data]
    criterion = SetCriterion()
    result = {}

    def run(name: str, fn: Callable):
        with count_syncs(device) as counts:
            out = fn()
        result[name] = counts
        return out

    features = run("backbone", lambda: model.backbone(batch.coords, batch.feats))
    decoded = run("decoder", lambda: model.decoder(features))
    losses = run("criterion", lambda: criterion(decoded, targets, batch))
    run("backward", lambda: losses["loss"].backward())
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=20_000, help="points per scene")
    parser.add_argument("--scenes", type=int, default=2, help="scenes per batch")
    parser.add_argument("--queries", type=int, default=100, help="decoder queries (Mask3D / the paper: 100)")
    parser.add_argument("--backbone", default="tiny", help="backbone preset (tiny, 14A, 34C ...)")
    parser.add_argument("--voxel-size", type=float, default=0.05, help="metres")
    parser.add_argument("--sample-sizes", default=None,
                        help="the decoder's attention samples per level in training, e.g. 800,3200,12800,51200 "
                             "(Mask3D's sizes for strides 8-1; default: every voxel)")
    args = parser.parse_args(argv)
    sizes = None if args.sample_sizes is None else tuple(int(v) for v in args.sample_sizes.split(","))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    counts = step_syncs(args.points, args.scenes, args.queries, args.backbone, args.voxel_size, device, sizes)
    steps = DecoderConfig().num_decoders * len(DecoderConfig().levels)
    print(f"host syncs per training step on {device.type}: {args.scenes} scenes x {args.points} points, "
          f"{args.queries} queries, {steps} decoder steps, backbone {args.backbone}, attention samples "
          f"{'every voxel' if sizes is None else sizes}")
    print(f"{'component':<10} {'syncs':>6}  by kind")
    for name, c in counts.items():
        kinds = ", ".join(f"{k} {v}" for k, v in c.most_common())
        print(f"{name:<10} {sum(c.values()):>6}  {kinds}")
    print(f"{'step':<10} {sum(sum(c.values()) for c in counts.values()):>6}")


if __name__ == "__main__":
    main()
