"""FreePoint-pretrained vs scratch under the ScanNet dev stand-in protocols, on the 13 real dev scans.

    .venv/bin/python benchmarks/transfer_scannet_dev.py                       # 20% masks, seeds 0 1 2, 2 folds
    .venv/bin/python benchmarks/transfer_scannet_dev.py --protocols scannet-dev-10pct-masks,scannet-dev-full-masks

Each cell is `bench.py run`'s: per fold, FreePoint pretrains on the fold's training rooms (labels unused,
cpu-small, --pretrain-epochs1/2), then the backbone is fine-tuned with the protocol's labels (cpu-small,
--epochs) and scored on the held-out rooms (ScanNet's 18 classes, semantic AP; the two folds' predictions
pooled). Scratch fine-tunes a seeded random backbone the same way. The table gives mean ± sd over seeds, the
per-seed difference FreePoint − scratch, a paired t-test over seeds (and over seed × fold), and the
fine-tuning throughput and peak memory. Everything lands in the results store (--results), so an interrupted
run resumes and a finished one only prints.
"""

from __future__ import annotations

import argparse
import math
import resource
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from freepoint_bench.harness.run import RunOptions, Task, expand, run_task  # noqa: E402
from freepoint_bench.results import read_result, result_path  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "scannet-dev"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--protocols", default="scannet-dev-20pct-masks")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--methods", default="freepoint,scratch")
    ap.add_argument("--epochs", type=int, default=10, help="fine-tuning epochs (cpu-small)")
    ap.add_argument("--pretrain-epochs1", type=int, default=10)
    ap.add_argument("--pretrain-epochs2", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "transfer-dev")
    args = ap.parse_args()
    if not DATA.is_dir():
        print(f"no dev scans at {DATA}; this benchmark needs ../shared/data/scannet-dev")
        return 2
    opts = RunOptions(results=args.out / "results", checkpoints=args.out / "checkpoints", cache=ROOT / "cache",
                      runs=args.out / "runs", root=DATA, overrides={"epochs": args.epochs},
                      pretrain_overrides={"epochs1": args.pretrain_epochs1, "epochs2": args.pretrain_epochs2})
    tasks = expand(args.methods.split(","), args.protocols.split(","), [int(s) for s in args.seeds.split(",")])
    t0 = time.perf_counter()
    for i, task in enumerate(tasks):
        status, path = run_task(task, opts)
        print(f"[{i + 1}/{len(tasks)}] {task.protocol} {task.method} seed {task.seed}: {status} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    print()
    print(table(tasks, opts))
    print(f"\npeak RSS of this process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    return 0


def _fmt(values: list[float]) -> str:
    v = np.array(values, dtype=float) * 100
    return f"{v.mean():.2f} ± {v.std(ddof=1) if len(v) > 1 else math.nan:.2f}"


def table(tasks: list[Task], opts: RunOptions) -> str:
    """Returns the Markdown table of the finished cells."""
    docs = {}
    for t in tasks:
        path = result_path(opts.results, t.protocol, t.method, t.seed)
        if path.is_file():
            docs[t] = read_result(path)
    lines = ["| protocol | metric | " + " | ".join(sorted({t.method for t in tasks})) +
             " | Δ freepoint − scratch (per seed) | paired t over seeds | paired t over seed × fold |",
             "|---|---|" + "---|" * (len({t.method for t in tasks}) + 3)]
    for protocol in sorted({t.protocol for t in tasks}):
        seeds = sorted({t.seed for t in tasks if t.protocol == protocol})
        for metric in ("ap", "ap50", "ap25"):
            row = [protocol, metric.upper()]
            per = {}
            for method in sorted({t.method for t in tasks}):
                vals = [docs[Task(protocol, method, s)].metrics[metric] for s in seeds
                        if Task(protocol, method, s) in docs]
                per[method] = vals
                row.append(f"{_fmt(vals)} (n={len(vals)})" if vals else "missing")
            fp, sc = per.get("freepoint", []), per.get("scratch", [])
            if len(fp) == len(sc) == len(seeds) and len(seeds) > 1:
                diff = np.array(fp) - np.array(sc)
                p = stats.ttest_rel(fp, sc).pvalue
                folds_fp = [f["metrics"][metric] for s in seeds for f in docs[Task(protocol, "freepoint", s)].folds]
                folds_sc = [f["metrics"][metric] for s in seeds for f in docs[Task(protocol, "scratch", s)].folds]
                p2 = stats.ttest_rel(folds_fp, folds_sc).pvalue
                row += [", ".join(f"{100 * d:+.2f}" for d in diff), f"p = {p:.3f}", f"p = {p2:.3f}"]
            else:
                row += ["-", "-", "-"]
            lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append("| protocol | method | fine-tune scene-epochs / s | fine-tune s per cell (2 folds) | wall s per cell "
                 "| process peak RSS MiB |")
    lines.append("|---|---|---|---|---|---|")
    for t, d in sorted(docs.items(), key=lambda kv: (kv[0].protocol, kv[0].method, kv[0].seed)):
        th = d.throughput
        lines.append(f"| {t.protocol} | {t.method} seed {t.seed} | {th['scenes_per_second']:.3f} | "
                     f"{th['train_seconds']:.0f} | {d.wall_time_s:.0f} | {th.get('peak_rss_mib', math.nan):.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
