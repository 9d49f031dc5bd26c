"""Confirms on a CUDA device what the CPU tests of issue 26 pin with stand-ins; one PASS / FAIL line per check.

    python benchmarks/device/confirm.py [--checks parity precision eval-device ddp-logging rama] [--points 200000]

- parity: spconv's native CUDA kernels against the CPU torch path (the same weights), submanifold kernels 1/3/5,
  regular kernels 1/2/3/5 at stride 1 and 2, the down/up pair, forward and backward (tests/models/test_sparse.py
  runs the native kernels on CPU as the stand-in).
- precision: a FreePoint pretraining step (Lmean / Lbox on) and a fine-tuning step (13 classes) of the paper preset
  on a room of --points loss points under real CUDA autocast, fp16 and bf16: finite loss and gradients, loss within
  5% of fp32's (tests/models/test_mixed_precision.py emulates CUDA autocast's cast rules on CPU).
- eval-device: a fine-tuning cell trains on the GPU and its evaluation runs there too, not on the CPU Lightning's
  teardown leaves the module on (tests/harness/test_eval_device.py).
- ddp-logging: PointContrast's paper preset for two epochs under one-GPU DDP (NCCL): every value it logs with
  sync_dist must be a CUDA tensor (tests/baselines/test_log_device.py).
- rama: RAMA (rama_py, in its worker process) against GAEC + Kernighan-Lin on kNN graphs: objectives within 1%.

Without CUDA it runs the same code on the CPU as a dry run of its logic (native kernels single-threaded, CPU
autocast, gloo); that checks the script, not the GPU. Exit status 1 when any check fails.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _close(a: torch.Tensor, b: torch.Tensor, what: str, rtol: float = 1e-4, atol: float = 1e-4) -> None:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    if not torch.allclose(a, b, rtol=rtol, atol=atol):
        raise AssertionError(f"{what}: max |diff| {(a - b).abs().max().item():.3g}")


def check_parity() -> str:
    """Returns a summary after comparing the native path on DEVICE with the torch path on the CPU."""
    import spconv.pytorch as spconv

    from freepoint_bench.models.sparse import get_backend
    from freepoint_bench.models.sparse.spconv_backend import SpconvConv

    backend = get_backend("spconv")
    g = torch.Generator().manual_seed(0)
    sites = torch.cat([torch.randint(0, 2, (3000, 1), generator=g), torch.randint(0, 40, (3000, 3), generator=g)], 1)
    coords = torch.unique(sites, dim=0).to(torch.int32)
    feats = torch.randn(len(coords), 8, generator=g)
    cases: list[tuple[str, list[torch.nn.Module]]] = []
    for k in (1, 3, 5):
        cases.append((f"subm k{k}", [backend.subm_conv(8, 16, k, f"s{k}")]))
    for k in (1, 2, 3, 5):
        for stride in (1, 2):
            conv = SpconvConv(spconv.SparseConv3d(8, 16, k, stride=stride, bias=False, indice_key=f"c{k}{stride}"),
                               8, 16, k)
            cases.append((f"conv k{k} s{stride}", [conv]))
    cases.append(("down/up", [backend.down_conv(8, 16, "d"), backend.up_conv(16, 8, "d")]))
    threads = torch.get_num_threads()
    if DEVICE.type == "cpu":
        torch.set_num_threads(1)  # spconv's CPU gather/scatter race with several threads
    try:
        for name, layers in cases:
            results = []
            for device, path in ((torch.device("cpu"), "_torch_forward"), (DEVICE, "_native_forward")):
                mods = [copy.deepcopy(m).to(device) for m in layers]
                x = feats.to(device).requires_grad_(True)
                t = backend.make_tensor(coords.to(device), x)
                for m in mods:
                    t = getattr(m, path)(t)
                out = t.features
                weights = torch.linspace(-1, 1, out.numel(), device=device).view_as(out)
                (out * weights).sum().backward()
                results.append((t.indices.cpu(), out, x.grad, [m.weight.grad for m in mods]))
            (c0, f0, g0, w0), (c1, f1, g1, w1) = results
            if not torch.equal(c0, c1):
                raise AssertionError(f"{name}: output sites differ")
            _close(f1, f0, f"{name} forward")
            _close(g1, g0, f"{name} input gradient")
            for a, b in zip(w1, w0, strict=True):
                _close(a, b, f"{name} weight gradient", rtol=1e-3, atol=1e-3)
    finally:
        torch.set_num_threads(threads)
    return f"{len(cases)} layer cases equal (forward, input and weight gradients), {len(coords)} sites"


def _room(points: int):
    from freepoint_bench.data.synthetic import SyntheticConfig, generate_room

    return generate_room(0, SyntheticConfig(num_points=points))


def _step_loss(preset, loss, num_classes: int, batch, dtype: torch.dtype | None) -> tuple[float, float]:
    """Returns (loss, gradient norm) of one forward/backward of a fresh seeded model under autocast `dtype`."""
    from freepoint_bench.engine.module import SegmenterModule

    torch.manual_seed(0)
    module = SegmenterModule(preset, loss, num_classes=num_classes).to(DEVICE)
    voxels = batch["batch"].to(DEVICE)
    targets = [t.to(DEVICE) for t in batch["targets"]]
    with torch.autocast(DEVICE.type, dtype=dtype or torch.float32, enabled=dtype is not None):
        out = module.segmenter(voxels)
        value = module.criterion(out, targets, voxels)["loss"]
    value.backward()
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))
    if not torch.isfinite(value) or not torch.isfinite(norm):
        raise AssertionError(f"non-finite loss {value.item()} or gradient norm {norm.item()}")
    return value.item(), norm.item()


def check_precision(points: int, preset_name: str) -> str:
    """Returns a summary of pretraining and fine-tuning steps at fp32, fp16 and bf16 on `points` loss points."""
    from freepoint_bench.engine.data import GroundTruthTargets, collate, make_sample
    from freepoint_bench.engine.presets import get_preset
    from freepoint_bench.models.losses import LossConfig

    scene = _room(points + points // 4)
    preset = get_preset(preset_name, max_points=None, max_loss_points=points, seed=0)
    parts = []
    for stage, num_classes, loss, targets in (
        ("pretrain", 0, LossConfig(), GroundTruthTargets()),
        ("finetune", 13, LossConfig(mean=0.0, box=0.0), GroundTruthTargets(class_agnostic=False)),
    ):
        sample = make_sample(scene, preset, targets(scene), rng=np.random.default_rng(0), train=True)
        batch = collate([sample])
        n = int(batch["batch"].point_xyz[0].shape[0])
        if n < points:
            raise AssertionError(f"{stage}: only {n} loss points (wanted {points})")
        ref, _ = _step_loss(preset, loss, num_classes, batch, None)
        for dtype in (torch.float16, torch.bfloat16):
            got, norm = _step_loss(preset, loss, num_classes, batch, dtype)
            if abs(got - ref) > 0.05 * abs(ref):
                raise AssertionError(f"{stage} {dtype}: loss {got:.4f} vs fp32 {ref:.4f}")
            parts.append(f"{stage} {str(dtype)[6:]} {got:.3f} (fp32 {ref:.3f})")
        parts[-2] = f"{n} loss points: " + parts[-2] if stage == "pretrain" else parts[-2]
    return "; ".join(parts)


def check_eval_device() -> str:
    """Returns the device a fine-tuned cell's evaluation ran on (must be the device it trained on)."""
    from freepoint_bench.data.synthetic import SyntheticConfig, generate_room
    from freepoint_bench.engine.data import GroundTruthTargets
    from freepoint_bench.harness.finetune import finetune_config, predict_scenes, train_fold

    class Store:
        def __init__(self) -> None:
            self.scenes = {f"r{i}": generate_room(i, SyntheticConfig(num_points=4000)) for i in range(2)}

        def load(self, name: str):
            return self.scenes[name]

    store = Store()
    config = finetune_config("paper", epochs=1, batch_size=2, num_workers=0, max_points=None)
    seen: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        module, device = train_fold(store, list(store.scenes), GroundTruthTargets(class_agnostic=False), config,
                                    num_classes=13, init_backbone=None, seed=0, work_dir=tmp)
        after_fit = next(module.parameters()).device
        original = module.segmenter.forward

        def forward(voxels):
            seen.append(str(voxels.coords.device))
            return original(voxels)

        module.segmenter.forward = forward
        predict_scenes(module.segmenter, store, list(store.scenes), config, list(range(13)), device=device)
    if not seen or any(d.split(":")[0] != DEVICE.type for d in seen):
        raise AssertionError(f"evaluated on {sorted(set(seen))}, trained on {DEVICE.type}")
    return f"trained on {device}, parameters on {after_fit} after fit, evaluated on {sorted(set(seen))}"


def check_ddp_logging() -> str:
    """Returns a summary after two epochs of PointContrast under one-device DDP (NCCL on CUDA, gloo on CPU)."""
    import pytorch_lightning as pl

    from freepoint_bench.data.open import open_dataset
    from freepoint_bench.pretext.base import get_method

    impl = get_method("pointcontrast")
    config = impl.default_config("paper", epochs=2, **{"train.batch_size": 2, "train.num_workers": 0})
    with tempfile.TemporaryDirectory() as tmp:
        store, names = open_dataset("synthetic", None, Path(tmp) / "cache")
        names = names[:4]
        module, data = impl.build_module(config), impl.build_data(store, names, config)
        trainer = pl.Trainer(accelerator="gpu" if DEVICE.type == "cuda" else "cpu", devices=1, strategy="ddp",
                             max_epochs=2, limit_train_batches=2, logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, default_root_dir=tmp,
                             precision="16-mixed" if DEVICE.type == "cuda" else "32-true")
        trainer.fit(module, data)
        logged = {k: float(v) for k, v in trainer.callback_metrics.items()}
    return f"2 epochs under DDP ({'nccl' if DEVICE.type == 'cuda' else 'gloo'}); logged {sorted(logged)}"


def check_rama() -> str:
    """Returns RAMA's and GAEC+KL's objectives on kNN graphs (RAMA within 1% of GAEC+KL, or better)."""
    from scipy.spatial import cKDTree

    from freepoint_bench.freepoint.multicut import GaecKlSolver, RamaSolver

    if not RamaSolver.available():
        raise AssertionError("rama_py is not importable")
    rng = np.random.default_rng(0)
    parts = []
    for nodes in (20_000, 200_000):
        xyz = rng.random((nodes, 3))
        _, nn = cKDTree(xyz).query(xyz, k=5)
        edges = np.unique(np.sort(np.stack([np.repeat(np.arange(nodes), 4), nn[:, 1:].ravel()], 1), 1), axis=0)
        costs = rng.normal(0.3, 1.0, len(edges))
        t = time.perf_counter()
        rama = RamaSolver().solve(nodes, edges, costs)
        t_rama = time.perf_counter() - t
        t = time.perf_counter()
        gaec = GaecKlSolver().solve(nodes, edges, costs)
        t_gaec = time.perf_counter() - t
        # objectives are minimised; positive cost attracts, so both are negative for good cuts
        if rama.objective > gaec.objective + 0.01 * abs(gaec.objective):
            raise AssertionError(f"{nodes} nodes: RAMA {rama.objective:.1f} worse than GAEC+KL {gaec.objective:.1f}")
        parts.append(f"{nodes} nodes: RAMA {rama.objective:.0f} in {t_rama:.2f} s, GAEC+KL {gaec.objective:.0f} "
                     f"in {t_gaec:.2f} s")
    return "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    names = ["parity", "precision", "eval-device", "ddp-logging", "rama"]
    parser.add_argument("--checks", nargs="*", default=names, choices=names)
    parser.add_argument("--points", type=int, default=200_000, help="loss points of the precision check")
    parser.add_argument("--preset", default="paper", help="preset of the precision check (cpu-small: a CPU dry run)")
    args = parser.parse_args(argv)
    checks: dict[str, Callable[[], str]] = {
        "parity": check_parity,
        "precision": lambda: check_precision(args.points, args.preset),
        "eval-device": check_eval_device,
        "ddp-logging": check_ddp_logging,
        "rama": check_rama,
    }
    print(f"device: {torch.cuda.get_device_name(0) if DEVICE.type == 'cuda' else 'cpu (dry run of the logic)'}")
    failed = 0
    for name in args.checks:
        t = time.perf_counter()
        try:
            summary = checks[name]()
            status = "PASS"
        except Exception as exc:  # noqa: BLE001 - every failure is reported and counted, the next check runs
            status, summary = "FAIL", f"{type(exc).__name__}: {exc}"
            traceback.print_exc()
            failed += 1
        print(f"{status} {name} ({time.perf_counter() - t:.1f} s): {summary}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
