"""Training throughput per method: step time, samples/s and peak memory of real training steps.

Printed as a table and, with --out, written as the throughput file `bench.py run --plan` reads for GPU-hours.

    .venv/bin/python benchmarks/bench_throughput.py [--data ../shared/data/scannet-dev] [--preset paper]
        [--methods freepoint pointcontrast csc depthcontrast supervised finetune] [--tasks insseg semseg linear]
        [--precisions 16-mixed bf16-mixed 32-true] [--steps 5] [--warmup 2] [--out throughput.json]

Defaults: the paper preset at those three precisions on CUDA; cpu-small at 32-true on a CPU (`make bench`).

Every row is `--steps` optimiser steps (after `--warmup` untimed ones, which hold spconv's first-call setup) of a
Lightning Trainer on one device, through the same module and data module a run uses: each baseline's own
(`build_module` / `build_data` of its pretext method, so its views, crops and batch), FreePoint's segmenter
(`freepoint`: targets are the scans' ground-truth masks, class-agnostic — the same model, loss and target shapes as
its pseudo masks, without computing them here) and the fine-tuning segmenter (`finetune`: ScanNet's 18 instance
classes on the dev scans; S3DIS's 13 differ only in the class head), one `finetune` row per fine-tuning task of the
probe ladder (`--tasks`: insseg, insseg-frozen, semseg over ScanNet's 20 segmentation classes, linear), each the
module and data of harness.finetune.task_module, what a cell of that task trains. The step time is the wall time
from one batch's start to its end with the device synchronised at both, so data loading between steps is not in it.
Peak memory: torch.cuda.max_memory_allocated on CUDA, the process' peak resident set size on CPU.

The dev scans are 50k-point ScanNet rooms: S3DIS crops have more points, so scale before trusting a fine-tuning
estimate for S3DIS (the table records points per scene). Mixed precision applies on CUDA only; on a CPU every
precision runs as 32-true and is recorded so.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pytorch_lightning as pl  # noqa: E402
from table import print_table  # noqa: E402

from freepoint_bench.atomic import write_json  # noqa: E402
from freepoint_bench.data.open import open_dataset  # noqa: E402
from freepoint_bench.engine.trainer import resolve_accelerator  # noqa: E402
from freepoint_bench.harness.protocol import TASKS  # noqa: E402

for _name in ("pytorch_lightning", "lightning.pytorch", "lightning.fabric"):  # keep the table readable
    logging.getLogger(_name).setLevel(logging.ERROR)

DATA = ROOT / ".." / "shared" / "data" / "scannet-dev"
METHODS = ["freepoint", "pointcontrast", "csc", "depthcontrast", "supervised", "finetune"]


class StepTimer(pl.Callback):
    """Records the wall time of every training batch (device synchronised at its start and end)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self._t0 = 0.0

    @staticmethod
    def _sync(module: pl.LightningModule) -> None:
        if module.device.type == "cuda":
            torch.cuda.synchronize(module.device)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._sync(pl_module)
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._sync(pl_module)
        self.times.append(time.perf_counter() - self._t0)


def _module_and_data(method: str, preset: str, precision: str, store, names: list[str], task: str = "insseg"):
    """Returns (module, datamodule, train preset) of one method (`finetune`: of fine-tuning `task`) at `preset` and
    `precision`."""
    from freepoint_bench.engine.data import GroundTruthTargets, SceneDataModule
    from freepoint_bench.engine.module import SegmenterModule
    from freepoint_bench.harness.finetune import (
        ProtocolTargets,
        SemanticTargets,
        class_vocabulary,
        finetune_config,
        segmentation_vocabulary,
        task_module,
    )
    from freepoint_bench.harness.protocol import SEMANTIC_TASKS, EvalRules
    from freepoint_bench.pretext.base import get_method

    if method == "finetune":
        config = finetune_config(preset, precision=precision)
        rules = EvalRules(classes="scannet")
        if task in SEMANTIC_TASKS:
            targets, classes = SemanticTargets(rules), segmentation_vocabulary(rules)[0]
        else:
            targets, classes = ProtocolTargets(rules), class_vocabulary(rules)[0]
        module, data = task_module(store, names, targets, config, config.train, num_classes=len(classes), task=task)
        return module, data, config.train
    if method == "freepoint":
        config = get_method("freepoint").default_config(preset, precision=precision)
        module = SegmenterModule(config.train, config.loss)
        return module, SceneDataModule(store, names, GroundTruthTargets(), config.train), config.train
    impl = get_method(method)
    config = impl.default_config(preset, precision=precision)
    if method == "supervised":  # its classes are resolved from the data before training, as its pretrain does
        from baselines.supervised import resolve_classes

        config = config.model_copy(update={"classes": resolve_classes(config, "scannet-npy", store, names)})
    return impl.build_module(config), impl.build_data(store, names, config), config.train


def bench(method: str, preset: str, precision: str, store, names: list[str], steps: int, warmup: int,
          task: str = "insseg") -> dict:
    """Returns one throughput row: the median step of `steps` timed training steps after `warmup` (`task`: the
    fine-tuning task of a `finetune` row, ignored for the pretext methods)."""
    torch.manual_seed(0)
    module, data, train = _module_and_data(method, preset, precision, store, names, task)
    accelerator = resolve_accelerator(train)
    used = train.precision if accelerator == "gpu" else "32-true"
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = pl.Trainer(accelerator=accelerator, devices=1, precision=used, max_steps=warmup + steps,
                             max_epochs=10_000, logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, callbacks=[timer],
                             default_root_dir=tmp, num_sanity_val_steps=0)
        trainer.fit(module, data)
    timed = timer.times[warmup:]
    if not timed:
        raise SystemExit(f"{method}: no step after {warmup} warm-up steps; give fewer --warmup or more scenes")
    step = statistics.median(timed)
    if accelerator == "gpu":
        peak_gb = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: kilobytes
    row = {
        "stage": "finetune" if method == "finetune" else "pretrain",
        "method": None if method == "finetune" else method,  # the fine-tuning model is every method's (harness.plan)
        "preset": preset,
        "precision": used,
        "device": torch.cuda.get_device_name(0) if accelerator == "gpu" else "cpu",
        "batch": train.batch_size,
        "step_s": step,
        "samples_per_s": train.batch_size / step,
        "peak_mem_gb": peak_gb,
        "steps": len(timed),
    }
    if method == "finetune":
        row["task"] = task  # harness.plan reads a row without one as insseg's
    return row


def document(rows: list[dict], data: Path) -> dict:
    """Returns the throughput table of `rows` in the format harness.plan.load_throughput reads."""
    return {"device": rows[0]["device"] if rows else "", "measured": datetime.date.today().isoformat(),
            "data": str(data), "rows": rows}


def print_rows(rows: list[dict]) -> None:
    header = ["stage", "method", "task", "preset", "precision", "batch", "step s", "samples/s", "peak GB"]
    body = [[r["stage"], r["method"] or "(any)", r.get("task", "-"), r["preset"], r["precision"], str(r["batch"]),
             f"{r['step_s']:.3f}", f"{r['samples_per_s']:.2f}", f"{r['peak_mem_gb']:.2f}"] for r in rows]
    print_table(header, body)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help=f"ScanNet npy scans (default: {DATA})")
    parser.add_argument("--scenes", type=int, default=8, help="scenes the loaders draw from")
    cuda = torch.cuda.is_available()
    parser.add_argument("--preset", default="paper" if cuda else "cpu-small",
                        help="training preset of every method (default: paper on CUDA, cpu-small on a CPU)")
    parser.add_argument("--methods", nargs="*", default=METHODS, help=f"of {' '.join(METHODS)}")
    # on a CPU every precision runs as 32-true (mixed precision is CUDA's here): one row per method is the table
    parser.add_argument("--precisions", nargs="*",
                        default=["16-mixed", "bf16-mixed", "32-true"] if cuda else ["32-true"])
    parser.add_argument("--tasks", nargs="*", default=list(TASKS),
                        help=f"fine-tuning tasks timed as `finetune` rows, of {' '.join(TASKS)}")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per row")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--out", type=Path, default=None, help="write the rows as a throughput JSON here")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.methods) - set(METHODS))
    if unknown:
        raise SystemExit(f"--methods {unknown[0]}: choose of {' '.join(METHODS)}")
    unknown = sorted(set(args.tasks) - set(TASKS))
    if unknown:
        raise SystemExit(f"--tasks {unknown[0]}: choose of {' '.join(TASKS)}")
    if args.data is None and not DATA.is_dir():  # `make bench` on a machine without ../shared
        print(f"skipped: the ScanNet dev scans are not at {DATA}; pass --data DIR (VoteNet npy layout)")
        return
    args.data = args.data or DATA
    if not args.data.is_dir():
        raise SystemExit(f"{args.data}: no ScanNet npy scans there; pass --data")
    with tempfile.TemporaryDirectory() as cache:
        store, names = open_dataset("scannet-npy", args.data, cache)
        names = names[: args.scenes]
        print(f"throughput of the {args.preset} preset on {len(names)} scans of {args.data}; median of "
              f"{args.steps} steps after {args.warmup} warm-up\n")
        rows = []
        # precision-major: under a time limit the first precision (the preset's own, by default) is complete
        for precision in args.precisions:
            for method, task in [(m, t) for m in args.methods for t in (args.tasks if m == "finetune" else [""])]:
                rows.append(bench(method, args.preset, precision, store, names, args.steps, args.warmup, task))
                print(f"  {method}{' ' + task if task else ''} {precision}: {rows[-1]['step_s']:.3f} s/step",
                      flush=True)
                if args.out is not None:  # after every row: a run cut short keeps what it measured
                    write_json(args.out, document(rows, args.data))
    print()
    print_rows(rows)
    if args.out is not None:
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
