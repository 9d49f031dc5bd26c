"""`bench.py finetune` (one method under one protocol) and `bench.py run` (the matrix, or its --plan)."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from freepoint_bench.cli.common import (
    DEFAULT_CACHE,
    CacheOpt,
    LoggerDirOpt,
    LoggerOpt,
    ProtocolsDirOpt,
    ResultsOpt,
    RootOpt,
    SplitRootOpt,
    SplitsOpt,
    console,
    fmt_pct,
    progress_bars,
    stage_bars,
    tracker_option,
    words,
)
from freepoint_bench.errors import ConfigError
from freepoint_bench.parallel import parse_shard, take_shard


def _print_cells(rows: list[tuple], title: str) -> None:
    from freepoint_bench.results import SEMANTIC_TASKS, read_result

    table = Table(title=title)
    records = {path: read_result(path) for _, status, path in rows if status in ("done", "skipped")}
    # a semantic task's cell (linear, semseg) shows its mIoU / mAcc / allAcc in the AP / AP50 / AP25 columns
    semantic = any(r.task in SEMANTIC_TASKS for r in records.values())
    metrics = ("AP|mIoU", "AP50|mAcc", "AP25|allAcc") if semantic else ("AP", "AP50", "AP25")
    for col in ("protocol", "method", "seed", "status", *metrics, "result"):
        table.add_column(col, justify="right" if col in (*metrics, "seed") else "left")
    for task, status, path in rows:
        if status in ("done", "skipped"):
            cells = [fmt_pct(v) for v in records[path].scores.values()]
        else:
            cells = ["-", "-", "-"]
        table.add_row(task.protocol, task.method, str(task.seed), status, *cells, str(path))
    console.print(table)


def _run_options(results, checkpoints, cache, protocols_dir, root, preset, overrides, pretrain_preset,
                 pretrain_overrides, pretrain_dataset, pretrain_root, force, given=None, runs=Path("runs"),
                 eval_device=None, splits=None, tracker=None, split_root=None):
    from freepoint_bench.engine.devices import resolve_device
    from freepoint_bench.freepoint.config import parse_overrides
    from freepoint_bench.harness.run import RunOptions

    if eval_device is not None:
        resolve_device(eval_device, "--eval-device")  # refused before any cell trains; each cell resolves it again
    return RunOptions(results=results, checkpoints=checkpoints, cache=cache, protocols_dir=protocols_dir, root=root,
                      preset=preset, overrides=parse_overrides(overrides or []), pretrain_preset=pretrain_preset,
                      pretrain_overrides=parse_overrides(pretrain_overrides or []),
                      pretrain_dataset=pretrain_dataset, pretrain_root=pretrain_root, given=given or {}, force=force,
                      runs=runs, eval_device=eval_device, splits=splits, tracker=tracker, split_root=split_root)


def _print_plan(tasks, opts, throughput: Path | None, elsewhere: bool) -> None:
    """Prints the plan of `tasks` (harness.plan); typer.Exit(1) when a cell cannot run."""
    from rich.markup import escape

    from freepoint_bench.harness import plan as planning

    table = planning.read_throughput(throughput)
    plan = planning.make_plan(tasks, opts, machine=planning.plan_machine(elsewhere), throughput=table)

    def hours(h: float | None, steps: int) -> str:
        return "-" if not steps else "?" if h is None else f"{h:.2f}"

    recipes = plan.recipes()
    label = {summary: f"r{i}" for i, (summary, _) in enumerate(recipes, 1)}
    cells = Table(title=f"plan: {len(plan.rows)} cells")
    for col in ("protocol", "method", "seed", "recipe", "starts from", "fine-tuning", "steps", "GPU-h", "status"):
        cells.add_column(col, justify="right" if col in ("seed", "steps", "GPU-h") else "left")
    for row in plan.rows:
        status = "[red]can not run[/]" if row.problems else "finished" if row.finished else "ready"
        cells.add_row(row.task.protocol, row.task.method, str(row.task.seed), label.get(row.recipe, "-"), row.start,
                      row.finetune, str(row.steps or "-"), hours(row.gpu_hours, row.steps), status)
    console.print(cells)
    # each recipe once (not a column per field): the values a reader checks before a GPU hour, as --set names them,
    # wrapped between fields to 120 columns at most
    for summary, protocols in recipes:
        console.print(f"recipe {label[summary]}: {escape(', '.join(protocols))}", highlight=False, soft_wrap=True)
        indent = 2 + max(len(what) for what, _ in summary.lines) + 2
        for what, text in summary.lines:
            lines = textwrap.wrap(text, width=min(console.width, 120) - indent, break_long_words=False) or [""]
            for i, line in enumerate(lines):
                head = f"  {what}".ljust(indent) if i == 0 else " " * indent
                console.print(head + escape(line), highlight=False, soft_wrap=True)
    if plan.pretrainings:
        pre = Table(title=f"pretraining runs: {len(plan.pretrainings)} (shared by the cells above)")
        for col in ("method", "preset", "data", "scenes", "budget", "epochs", "batch", "steps", "GPU-h", "run folder"):
            pre.add_column(col, justify="right" if col in ("scenes", "epochs", "batch", "steps", "GPU-h") else "left")
        for p in plan.pretrainings:
            state = "exists: resumed or reused" if p.exists else "new"
            pre.add_row(p.method, p.preset, p.dataset, str(p.scenes), p.budget or "epochs", str(p.epochs),
                        str(p.batch_size), str(p.steps), hours(p.gpu_hours, p.steps), f"{p.run_dir} ({state})")
        console.print(pre)
    for kind, lines in (("can not run", [(r, m) for r in plan.rows for m in r.problems]),
                        ("note", [(r, m) for r in plan.rows for m in r.notes if not r.finished])):
        by_line: dict[str, list[str]] = {}
        for row, line in lines:
            by_line.setdefault(line, []).append(f"{row.task.protocol}/{row.task.method}/{row.task.seed}")
        for line, where in by_line.items():
            cells_of = where[0] if len(where) == 1 else f"{len(where)} cells, e.g. {where[0]}"
            head = f"[red]{kind}[/]" if kind == "can not run" else kind
            console.print(f"{head} ({cells_of}): {escape(line)}", highlight=False, soft_wrap=True)
    if elsewhere:
        console.print("--launcher slurm: the compute nodes' CUDA, precision and sparse backends are not checked from "
                      "here")
    if table is None:
        console.print("no throughput measured; GPU-hours unknown (the device check writes "
                      f"{planning.DEFAULT_THROUGHPUT}; --throughput FILE reads another)")
    else:
        total, unknown = plan.total_gpu_hours()
        console.print(f"estimate from {table.path} ({table.device}, measured {table.measured}): {total:.1f} GPU-hours"
                      + (f" in all, {unknown} cell or pretraining steps not measured" if unknown else " in all"))
    blocked = sum(bool(r.problems) for r in plan.rows)
    if blocked:
        console.print(f"[red]{blocked} of {len(plan.rows)} cells can not run[/]")
        raise typer.Exit(1)


FtPresetOpt = Annotated[str | None, typer.Option("--preset", help="Fine-tuning preset (default: the protocol's): "
                                                                   "cpu-small or paper.")]
FtSetOpt = Annotated[list[str] | None, typer.Option("--set", help="Fine-tuning field: key=value (epochs=5, lr=…).")]
SeedsOpt = Annotated[list[int] | None, typer.Option("--seeds", help="Training seeds (repeatable or space-separated).")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Recompute finished cells (discards their results).")]
CheckpointsDirOpt = Annotated[Path, typer.Option("--checkpoints", help="Checkpoints folder with index.json.")]
RunsOpt = Annotated[Path, typer.Option("--runs", help="Work folder of pretraining runs (runs/pretrain/...).")]
EvalDeviceOpt = Annotated[str | None, typer.Option(
    "--eval-device", help="Device the evaluation scenes are predicted on: auto, cpu, cuda, cuda:<i> (default: the "
    "one fine-tuning trained on).")]


def _seeds(seeds: list[int] | None, extra: list[str] | None = None) -> list[int]:
    values = list(seeds or [])
    for word in extra or []:
        try:
            values.append(int(word))
        except ValueError:
            raise ConfigError(f"unexpected argument {word!r}; seeds are integers (--seeds 0 1 2)") from None
    negative = [v for v in values if v < 0]
    if negative:
        raise ConfigError(f"--seeds {negative[0]}: seeds are integers >= 0 (--seeds 0 1 2)")
    return values or [0]


def finetune_cmd(
    ctx: typer.Context,
    protocol: Annotated[str, typer.Option("--protocol", "-p", help="Protocol name (bench.py protocols list).")],
    checkpoint: Annotated[list[Path] | None, typer.Option(
        "--checkpoint", "-c", help="Backbone (or segmenter) checkpoint; repeat once per fold for k-fold protocols.")
    ] = None,
    method: Annotated[str | None, typer.Option(
        "--method", "-m", help="Method name (default: the checkpoint's); scratch needs no checkpoint.")] = None,
    seeds: SeedsOpt = None,
    root: RootOpt = None,
    cache: CacheOpt = DEFAULT_CACHE,
    results: ResultsOpt = Path("results"),
    checkpoints: CheckpointsDirOpt = Path("checkpoints"),
    preset: FtPresetOpt = None,
    overrides: FtSetOpt = None,
    protocols_dir: ProtocolsDirOpt = None,
    splits: SplitsOpt = None,
    split_root: SplitRootOpt = None,
    runs: RunsOpt = Path("runs"),
    force: ForceOpt = False,
    eval_device: EvalDeviceOpt = None,
    logger: LoggerOpt = "csv",
    logger_dir: LoggerDirOpt = None,
) -> None:
    """Fine-tune a pretrained backbone under a protocol, evaluate it, write result.json per seed."""
    from freepoint_bench.harness.run import Task, finetune_checkpoints, run_task

    seed_list = _seeds(seeds, ctx.args)
    method, given = finetune_checkpoints(checkpoint or [], method)
    # scratch is built from the fine-tuning model's preset (harness.run.pretrain_config), never another one
    opts = _run_options(results, checkpoints, cache, protocols_dir, root, preset, overrides, None, None, None,
                        None, force, given, runs, eval_device, splits, tracker_option(logger, logger_dir),
                        split_root)
    rows = []
    with progress_bars() as progress:
        cb = stage_bars(progress)
        for seed in seed_list:
            task = Task(protocol, method, seed)
            rows.append((task, *run_task(task, opts, progress=cb)))
    _print_cells(rows, f"finetune {method} under {protocol}")


def run_cmd(
    ctx: typer.Context,
    methods: Annotated[str, typer.Option("--methods", help="Comma-separated methods (freepoint,scratch,...).")],
    protocols: Annotated[str, typer.Option("--protocols", help="Comma-separated protocol names.")],
    seeds: SeedsOpt = None,
    root: RootOpt = None,
    cache: CacheOpt = DEFAULT_CACHE,
    results: ResultsOpt = Path("results"),
    checkpoints: CheckpointsDirOpt = Path("checkpoints"),
    checkpoint: Annotated[list[str] | None, typer.Option(
        "--checkpoint", help="method=PATH or method=ID (an id of checkpoints/index.json): use this checkpoint "
                             "instead of pretraining (repeatable; per fold: repeat the method).")] = None,
    preset: FtPresetOpt = None,
    overrides: FtSetOpt = None,
    pretrain_preset: Annotated[str | None, typer.Option(
        "--pretrain-preset", help="Pretraining preset (default: the protocol's, the one its fine-tuning preset goes "
                                  "with): cpu-small or paper.")] = None,
    pretrain_overrides: Annotated[list[str] | None, typer.Option(
        "--pretrain-set", help="Pretraining field: key=value (epochs1=3, ...).")] = None,
    pretrain_dataset: Annotated[str | None, typer.Option(
        "--pretrain-dataset", help="Pretrain on this dataset (default: the protocol's, scannet for the S3DIS ones; "
                                   "train-scenes: each protocol fold's own training scenes).")
    ] = None,
    pretrain_root: Annotated[Path | None, typer.Option(
        "--pretrain-root", help="Root folder of the pretraining dataset.")] = None,
    launcher: Annotated[str, typer.Option("--launcher", help="local (one after another) or slurm (submitit).")
                        ] = "local",
    shard_arg: Annotated[str | None, typer.Option("--shard", help="i/n: run only shard i of n (job arrays).")] = None,
    partition: Annotated[str | None, typer.Option("--partition", help="SLURM partition.")] = None,
    time_min: Annotated[int, typer.Option("--time", help="SLURM time limit per cell, minutes.")] = 24 * 60,
    gpus: Annotated[int, typer.Option("--gpus", help="SLURM GPUs per cell.")] = 1,
    cpus_per_task: Annotated[int | None, typer.Option(
        "--cpus-per-task", min=1, help="SLURM CPUs per job (default: 8 per GPU, for data loading and pseudo "
                                       "labels).")] = None,
    mem: Annotated[str, typer.Option("--mem", help="SLURM memory per job, in GB (64 or 64G).")] = "64G",
    protocols_dir: ProtocolsDirOpt = None,
    splits: SplitsOpt = None,
    split_root: SplitRootOpt = None,
    runs: RunsOpt = Path("runs"),
    force: ForceOpt = False,
    eval_device: EvalDeviceOpt = None,
    plan_only: Annotated[bool, typer.Option(
        "--plan", help="Print every cell, what it loads or pretrains, its budget and what would stop it; train and "
                       "prepare nothing (exit 1 when a cell cannot run).")] = False,
    throughput: Annotated[Path | None, typer.Option(
        "--throughput", help="Measured throughput table (JSON) for --plan's GPU-hours (default: "
                             "benchmarks/device/throughput.json when present).")] = None,
    logger: LoggerOpt = "csv",
    logger_dir: LoggerDirOpt = None,
) -> None:
    """The benchmark matrix: methods × protocols × seeds, pretraining what is missing, into the results store."""
    from freepoint_bench.engine.checkpoints import find_backbone
    from freepoint_bench.harness.run import (
        check_tasks,
        expand,
        run_task,
        slurm_resources,
        submit_slurm,
    )

    given: dict[str, list[Path]] = {}
    for item in checkpoint or []:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--checkpoint {item!r}: expected method=PATH")
        given.setdefault(name.strip(), []).append(find_backbone(path.strip(), checkpoints))
    unused = sorted(set(given) - set(words([methods])))
    if unused:
        raise ConfigError(f"--checkpoint {unused[0]}=...: {unused[0]} is not in --methods {methods}; add it there "
                          "or drop the checkpoint")
    tasks = expand(words([methods]), words([protocols]), _seeds(seeds, ctx.args))
    if shard_arg is not None:
        tasks = take_shard(tasks, *parse_shard(shard_arg))
    opts = _run_options(results, checkpoints, cache, protocols_dir, root, preset, overrides, pretrain_preset,
                        pretrain_overrides, pretrain_dataset, pretrain_root, force, given, runs, eval_device, splits,
                        tracker_option(logger, logger_dir), split_root)
    if plan_only:
        _print_plan(tasks, opts, throughput, elsewhere=launcher == "slurm")
        return
    check_tasks(tasks, opts)  # a cell that could not fine-tune is refused before the first one trains
    if launcher == "slurm":
        slurm = slurm_resources(partition, time_min, gpus, cpus_per_task, mem)
        pre_jobs, cell_jobs = submit_slurm(tasks, opts, results / "slurm", slurm)
        ids = [job.job_id for job in cell_jobs]
        console.print(f"submitted {len(pre_jobs)} pretraining jobs and {len(ids)} cell jobs "
                      f"({', '.join(ids[:5])}{' …' if len(ids) > 5 else ''}; a cell waits for its method's "
                      f"pretraining: afterok); logs in {results / 'slurm'}; rerun `bench.py report` when they finish")
        return
    if launcher != "local":
        raise ConfigError(f"unknown launcher {launcher!r}; use local or slurm")
    rows = []
    with progress_bars() as progress:
        overall = progress.add_task("cells", total=len(tasks), item="")
        cb = stage_bars(progress)
        for i, task in enumerate(tasks):
            progress.update(overall, item=f"{task.protocol} {task.method} seed {task.seed}")
            rows.append((task, *run_task(task, opts, progress=cb)))
            progress.update(overall, completed=i + 1)
    _print_cells(rows, f"benchmark run: {len(tasks)} cells")
