"""The plan of a benchmark run, before any GPU hour: every cell, what it starts from, its budget, and what would stop
it, computed without training and without preparing data (only what exists on disk is read).

    plan = make_plan(expand(methods, protocols, seeds), opts, machine=detect_machine(),
                     throughput=load_throughput(path))
    plan.rows          # one PlanRow per cell: checkpoint or pretraining, fine-tuning steps, recipe, problems, notes
    plan.pretrainings  # the distinct pretraining runs the cells share (one per method, recipe and scene set)
    plan.recipes()     # the distinct recipes of the cells (RecipeSummary) and the protocols that use each
    plan.ok            # False when any cell cannot run (each reason one line in its row's problems)

Steps are counted on one device: a fine-tuning recipe's max_steps per fold where it sets one (the paper preset: 90k,
supplement A.2), else epochs × ceil(scenes / batch_size) (FreePoint: epochs1 + epochs2; a baseline with a sample
budget: the epochs it derives from its pretraining scenes, shown beside the original's iterations × batch). A masks
protocol whose split is not frozen yet counts every training scene of its groups (an upper bound: scenes that
keep no mask are left out at run time).

Throughput table (JSON; `bench.py run --plan --throughput FILE`, default benchmarks/device/throughput.json, which
the device check writes):

    {"device": "NVIDIA H100 80GB HBM3", "measured": "2025-06-01",
     "rows": [{"stage": "pretrain", "method": "freepoint", "preset": "paper", "precision": "16-mixed",
               "step_s": 0.91, "samples_per_s": 4.4, "peak_mem_gb": 38.5},
              {"stage": "finetune", "method": null, "preset": "paper", "precision": "16-mixed",
               "step_s": 0.62, "samples_per_s": 6.5, "peak_mem_gb": 22.0}]}

stage: "pretrain" or "finetune"; method: a pretext method (a finetune row may give null: the fine-tuning model is
the same whatever the method, and a row naming the method wins over it); task: a finetune row's fine-tuning task
(harness.protocol.TASKS; absent: insseg); preset: the training preset; precision:
Lightning's precision flag of that preset; step_s: seconds per optimiser step on one device at the preset's batch
size; batch (optional): that batch size, and a row of another batch does not time a step (a protocol's overrides
may change it); samples_per_s and peak_mem_gb are shown, not used. GPU-hours = steps × step_s / 3600.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from freepoint_bench.data import catalogue
from freepoint_bench.errors import CheckpointError, ConfigError, DataError
from freepoint_bench.harness.cells import fold_data
from freepoint_bench.harness.protocol import (
    DEFAULT_DROPPED,
    DEFAULT_TASK,
    TRAIN_SCENES,
    ProtocolSpec,
    load_protocol,
    load_split,
    scenes_of,
    split_path,
)
from freepoint_bench.harness.run import (
    REPO_ROOT,
    Recipe,
    RunOptions,
    Task,
    check_recipe,
    pretrain_config,
    pretrain_run_dir,
    pretraining_scenes,
    protocol_root,
    recipe,
)
from freepoint_bench.pretext.training import run_epochs
from freepoint_bench.results import result_path

DEFAULT_THROUGHPUT = REPO_ROOT / "benchmarks" / "device" / "throughput.json"
STAGES = ("pretrain", "finetune")


# ---------------------------------------------------------------------------------------------- machine, throughput


@dataclass(frozen=True)
class Machine:
    """What the machine the cells run on offers (checked: False when they run elsewhere, e.g. SLURM nodes)."""

    cuda: bool
    bf16: bool  # CUDA bf16 support (compute capability 8+)
    backends: tuple[str, ...]  # sparse-convolution backends that import
    checked: bool = True


def detect_machine() -> Machine:
    """Returns this machine's CUDA, bf16 and sparse backends."""
    import torch

    from freepoint_bench.models.sparse import available_backends

    cuda = torch.cuda.is_available()
    return Machine(cuda=cuda, bf16=cuda and torch.cuda.is_bf16_supported(), backends=tuple(available_backends()))


def plan_machine(elsewhere: bool = False) -> Machine:
    """Returns the machine a plan checks the cells against: this one, or unchecked when they run elsewhere (on
    SLURM's nodes: their CUDA, precision and sparse backends are not seen from here)."""
    machine = detect_machine()
    return replace(machine, checked=False) if elsewhere else machine


@dataclass(frozen=True)
class Throughput:
    """A measured throughput table (see the module docstring)."""

    device: str
    measured: str
    rows: tuple[Mapping[str, Any], ...]
    path: Path | None = None

    def step_s(self, stage: str, method: str, preset: str, precision: str,
               task: str = DEFAULT_TASK, batch: int | None = None) -> float | None:
        """Returns the measured seconds per step of (stage, method, preset, precision) and, for fine-tuning, `task`;
        None when not measured (a finetune row with method null stands for every method; one without a task is
        insseg's: a linear probe's step, with no decoder and no backbone gradient, is not timed by it). batch: the
        step's batch size; a row measured at another batch (its "batch") does not time it (the S3DIS probe rungs
        train at Pointcept's 24 where the paper preset's rows are measured at 4)."""
        found = None
        for row in self.rows:
            if (row["stage"], row["preset"], row["precision"]) != (stage, preset, precision):
                continue
            if stage == "finetune" and row.get("task", DEFAULT_TASK) != task:
                continue
            if batch is not None and row.get("batch", batch) != batch:
                continue
            if row.get("method") == method:
                return float(row["step_s"])
            if row.get("method") is None and stage == "finetune":
                found = float(row["step_s"])
        return found


def load_throughput(path: str | Path) -> Throughput:
    """Returns the throughput table in `path`; ConfigError naming the file when it is not one."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ConfigError(f"{path}: not a readable throughput table ({e}); fix it or pass another "
                          "--throughput") from None
    fix = "see the format in freepoint_bench/harness/plan.py"
    if not isinstance(doc, dict) or not isinstance(doc.get("rows"), list):
        raise ConfigError(f"{path}: a throughput table is an object with a 'rows' list; {fix}")
    for i, row in enumerate(doc["rows"]):
        ok = isinstance(row, dict) and row.get("stage") in STAGES and isinstance(row.get("preset"), str) \
            and isinstance(row.get("precision"), str) and isinstance(row.get("method", None), str | None) \
            and isinstance(row.get("step_s"), int | float) and not isinstance(row.get("step_s"), bool) \
            and math.isfinite(row["step_s"]) and row["step_s"] > 0
        if not ok:
            raise ConfigError(f"{path}: row {i} needs stage (pretrain|finetune), method (or null), preset, precision "
                              f"and step_s > 0; {fix}")
    return Throughput(str(doc.get("device", "?")), str(doc.get("measured", "?")), tuple(doc["rows"]), path)


def read_throughput(path: str | Path | None = None) -> Throughput | None:
    """Returns the throughput table in `path`, else the one the device check writes (DEFAULT_THROUGHPUT) when it
    exists, else None (GPU-hours unknown)."""
    if path is None and DEFAULT_THROUGHPUT.is_file():
        path = DEFAULT_THROUGHPUT
    return load_throughput(path) if path is not None else None


def gpu_hours(steps: int, step_s: float | None) -> float | None:
    """Returns steps × step_s / 3600 (None when the step time is unknown)."""
    return None if step_s is None else steps * step_s / 3600


# ---------------------------------------------------------------------------------------------- the plan


@dataclass
class Pretraining:
    """One pretraining run the plan needs (shared by every cell that pretrains the same way)."""

    task: Task  # the first cell that needs it (with fold: what a pretraining job computes)
    fold: int
    method: str
    preset: str
    dataset: str  # a dataset name, or TRAIN_SCENES
    scenes: int
    epochs: int
    batch_size: int
    precision: str
    run_dir: Path
    exists: bool  # the run folder is there: it is resumed, or reused when finished
    steps: int = 0
    gpu_hours: float | None = None
    # the original's budget the epochs derive from (a method's SampleBudget): "60000 iterations × 32 = 1920000
    # samples"; "" where the method counts epochs
    budget: str = ""


# the training crop of engine.data.crop_points, said beside max_points
CROP_KIND = "the points nearest a random point's vertical column"
# InferenceConfig fields a recipe shows (agnostic_label only names class-agnostic predictions)
INFERENCE_SHOWN = ("mode", "topk", "mask_threshold", "score_threshold", "min_points", "dbscan_eps", "dbscan_min_points")


@dataclass(frozen=True)
class RecipeSummary:
    """What a protocol's cells train and score with, for a reader to check before a GPU hour: (what, "field=value
    ...") lines in the configs' own field names and `--set` syntax (booleans true / false, none), so each value is
    the config's and names the key that changes it. Cells with equal summaries share one recipe."""

    lines: tuple[tuple[str, str], ...]


def _value(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, (tuple, list)):  # a TOML array as --set takes it, without spaces (words split on them)
        return "[" + ",".join(_value(v) for v in value) + "]"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _fields(config: Any, names: Sequence[str]) -> str:
    return " ".join(f"{name}={_value(getattr(config, name))}" for name in names)


def summarise_recipe(spec: ProtocolSpec, rec: Recipe, preset: str) -> RecipeSummary:
    """Returns the recipe of `spec`'s cells under `rec` (harness.run.recipe), fine-tuning preset `preset`: task,
    budget and optimiser, model and input, crop, augmentations, inference (instance tasks) and pretraining."""
    ft, train = rec.finetune, rec.finetune.train
    counted = "epochs" if ft.max_steps is None else "max_steps"  # with max_steps, epochs is not read
    budget = _fields(ft, [counted]) + " " + _fields(train, ["batch_size", "lr", "weight_decay", "schedule",
                                                             "onecycle_pct_start"])
    # the input's own fields: rgb's colour statistics (use_xyz_features is not read there)
    inputs = ["input_features", "color_mean", "color_std"] if train.input_features == "rgb" else \
        ["input_features", "use_xyz_features"]
    model = ["backbone", "voxel_size_m", *inputs]
    decoder = ["num_queries", "attention_levels", "attention_sample_sizes", "attention_mask_rule"]  # instance tasks
    crop = _fields(train, ["max_points"]) + ("" if train.max_points is None else f" ({CROP_KIND})")
    if train.crop == "cuboid":  # Mask3D's RandomCuboid, then max_points (if set) as a memory guard
        crop = _fields(train, ["crop", "crop_length_m", "crop_min_points"]) + " " + crop
    # a masks protocol's dropped masks: said where they train as background (ignored, the default, is not said, so
    # the masks and scenes protocols of one preset keep sharing one recipe)
    dropped = "" if spec.dropped == DEFAULT_DROPPED else f" dropped={spec.dropped}"
    lines = [("task", f"task={spec.task} preset={preset}{dropped}"),
             ("budget", budget),
             ("model", _fields(train, model if spec.semantic else [*model[:1], *decoder, *model[1:]])),
             ("crop", f"{crop} {_fields(train, ['max_loss_points'])}"),
             ("augment", _fields(train.augment, list(type(train.augment).model_fields)))]
    if not spec.semantic:  # the semantic tasks score per-voxel classes; InferenceConfig is not read
        shown = [f for f in INFERENCE_SHOWN if ft.inference.mode == "mask3d" or not f.startswith("dbscan")]
        sp = "" if ft.inference.superpoints is None else " superpoints=on"
        lines.append(("inference", _fields(ft.inference, shown) + sp))
    lines.append(("pretraining", f"pretrain_preset={rec.pretrain_preset} pretrain_dataset={rec.pretrain_dataset}"))
    return RecipeSummary(tuple(lines))


@dataclass
class PlanRow:
    """One cell of the plan."""

    task: Task
    start: str = ""  # the checkpoint it fine-tunes from, or what it pretrains
    finetune: str = ""  # e.g. "600 epochs × 204 scenes / batch 4" or "90000 steps × batch 4 over 20 scenes"
    recipe: RecipeSummary | None = None  # None: finished, or no recipe (see problems)
    steps: int = 0  # fine-tuning steps, every fold
    gpu_hours: float | None = None
    finished: bool = False
    pretrainings: list[Pretraining] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # each stops the cell
    notes: list[str] = field(default_factory=list)


@dataclass
class Plan:
    """Every cell of a run, the pretrainings they share, and whether all can run."""

    rows: list[PlanRow]
    pretrainings: list[Pretraining]
    throughput: Throughput | None

    @property
    def ok(self) -> bool:
        """Returns whether no cell has a problem."""
        return not any(r.problems for r in self.rows)

    def recipes(self) -> list[tuple[RecipeSummary, list[str]]]:
        """Returns each distinct recipe of the cells, in the order of their first cell, with the protocols that use
        it."""
        found: dict[RecipeSummary, list[str]] = {}
        for row in self.rows:
            if row.recipe is not None and row.task.protocol not in found.setdefault(row.recipe, []):
                found[row.recipe].append(row.task.protocol)
        return list(found.items())

    def total_gpu_hours(self) -> tuple[float, int]:
        """Returns (GPU-hours of the unfinished cells and pretrainings whose step time is measured, how many of them
        are not measured)."""
        items = [r.gpu_hours for r in self.rows if not r.finished and r.steps] + \
            [p.gpu_hours for p in self.pretrainings if p.steps]
        return sum(h for h in items if h is not None), sum(h is None for h in items)


@dataclass
class _ProtocolData:
    spec: ProtocolSpec | None = None
    names: list[str] | None = None
    store_root: Path | None = None
    split: dict[str, Any] | None = None  # None: not frozen yet (or unreadable: see problems)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _one_line(e: Exception) -> str:
    return " ".join(str(e).split())


def _list_scenes(dataset: str, root: Path | None) -> list[str]:
    entry = catalogue.get(dataset)
    if root is not None and entry.needs_root and not Path(root).exists():
        raise DataError(f"{root}: data root does not exist")
    return entry.open_reader().list_scenes(None if root is None else Path(root))


def _protocol_data(name: str, opts: RunOptions) -> _ProtocolData:
    """Returns what exists of a protocol's data and split, with the problems found (nothing is prepared)."""
    from freepoint_bench.data.open import store_dir

    out = _ProtocolData()
    try:
        out.spec = spec = load_protocol(name, opts.protocols_dir)
        root = protocol_root(spec, opts.root)
    except ConfigError as e:
        out.problems.append(_one_line(e))
        return out
    try:
        out.names = _list_scenes(spec.dataset, root)
    except (ConfigError, DataError) as e:
        out.problems.append(f"{_one_line(e)}; pass --root <your copy of {spec.dataset}>")
        return out
    out.store_root = store_dir(opts.cache, spec.dataset, root)
    split_root = opts.split_root_of(spec)
    try:
        path = split_path(spec, opts.protocols_dir, opts.splits_dir, split_root)
    except ConfigError as e:  # an official file without a folder to read it from
        out.problems.append(_one_line(e))
        return out
    if path is None:
        out.split = {}
    elif path.is_file() or spec.split_sha256 is not None or spec.official_file is not None:
        try:
            out.split = load_split(spec, opts.protocols_dir, opts.splits_dir, split_root)[0]
        except ConfigError as e:
            out.problems.append(_one_line(e))
    else:
        out.notes.append(f"split {path.name} is not frozen yet: the first cell freezes it from this copy of the data "
                         "(every result records its sha256)")
    return out


def _fold_scenes(data: _ProtocolData, fold: int) -> tuple[list[str], list[str]]:
    """Returns (training scenes, evaluation scenes) of a fold; DataError for what the data lack."""
    spec, names = data.spec, data.names
    if data.split is not None:
        fd = fold_data(spec, names, data.split, fold)
        return fd.train, fd.eval
    train_groups, eval_groups = spec.fold_groups(fold)  # a split still to freeze: the groups must be there
    missing = [g for g in [*eval_groups, *train_groups] if not scenes_of(names, [g], spec.dataset)]
    if missing:
        raise DataError(f"protocol {spec.name}: the data hold no scene of the groups {missing}; point --root at a "
                        "complete copy")
    return scenes_of(names, train_groups, spec.dataset), scenes_of(names, eval_groups, spec.dataset)


def _steps(epochs: int, scenes: int, batch_size: int) -> int:
    return epochs * math.ceil(scenes / batch_size) if scenes else 0


def _pretrain_epochs(config: Any, scenes: int) -> int:
    # the baselines count passes over the scans in `epochs`, or derive them from a sample budget (over at least one
    # scene: a plan without data still shows a row); FreePoint trains two steps (§3.3)
    if hasattr(config, "epochs"):
        return run_epochs(config, max(scenes, 1))
    return config.train.epochs1 + config.train.epochs2


def _budget(config: Any) -> str:
    budget = getattr(config, "budget", None)
    return "" if budget is None else f"{budget.iterations} iterations × {budget.batch} = {budget.samples} samples"


def _machine_problems(train: Any, what: str, flag: str, machine: Machine) -> list[str]:
    """Returns the lines saying why `machine` cannot train the TrainPreset `train` as it asks (flag: the option
    that changes its fields, --set or --pretrain-set)."""
    if not machine.checked:
        return []
    out = []
    if train.backend not in machine.backends:
        have = ", ".join(machine.backends) or "none"
        out.append(f"{what}: sparse backend {train.backend} does not import here (importable: {have}); install it "
                   f"or {flag} backend=...")
    if train.accelerator == "gpu" and not machine.cuda:
        # the trainer would fall back to the CPU: at this preset's size that is no run at all
        out.append(f"{what}: preset {train.name} asks for a GPU (accelerator gpu, precision {train.precision}) and "
                   f"this machine has no CUDA, so it would train on the CPU; run it on a GPU machine (or {flag} "
                   "accelerator=cpu to mean it)")
    elif train.accelerator != "cpu" and machine.cuda and train.precision.startswith("bf16") and not machine.bf16:
        out.append(f"{what}: precision {train.precision} needs a GPU with bf16 (compute capability 8+); {flag} "
                   "precision=16-mixed")
    return out


def make_plan(tasks: Sequence[Task], opts: RunOptions, *, machine: Machine,
              throughput: Throughput | None = None) -> Plan:
    """Returns the plan of `tasks` under `opts` (pure of side effects: nothing trains, nothing is prepared)."""
    from freepoint_bench.data.open import store_dir
    from freepoint_bench.harness.finetune import check_leakage
    from freepoint_bench.models.checkpoint import load_checkpoint

    protocols: dict[str, _ProtocolData] = {}
    pretrainings: dict[Path, Pretraining] = {}
    pretrain_data: dict[tuple[str, str], tuple[list[str], Path] | str] = {}  # → (names, store), or why not
    metadata: dict[Path, dict[str, Any]] = {}  # given checkpoint → its metadata
    rows = []
    for task in tasks:
        row = PlanRow(task)
        rows.append(row)
        if task.protocol not in protocols:
            protocols[task.protocol] = _protocol_data(task.protocol, opts)
        data = protocols[task.protocol]
        row.problems += data.problems
        row.notes += data.notes
        spec = data.spec
        if spec is None:
            continue
        row.finished = result_path(opts.results, spec.name, task.method, task.seed).is_file() and not opts.force
        if row.finished:
            row.start = row.finetune = "-"
            row.notes = ["finished: skipped (--force recomputes it)"]
            continue
        try:
            rec = recipe(spec, opts)
        except ConfigError as e:
            row.problems.append(_one_line(e))
            continue
        row.recipe = summarise_recipe(spec, rec, opts.preset or spec.preset)
        try:
            check_recipe(task, spec, opts)
        except (ConfigError, CheckpointError) as e:
            row.problems.append(_one_line(e))
        ft = rec.finetune
        row.problems += _machine_problems(ft.train, "fine-tuning", "--set", machine)
        folds: list[tuple[list[str], list[str]]] = []
        if data.names is not None:
            try:
                folds = [_fold_scenes(data, f) for f in range(spec.num_folds)]
            except DataError as e:
                row.problems.append(_one_line(e))
        if folds and spec.expected_eval_scenes and spec.num_folds == 1 and len(folds[0][1]) < spec.expected_eval_scenes:
            row.notes.append(f"{len(folds[0][1])} evaluation scenes, the protocol expects {spec.expected_eval_scenes}: "
                             "results will not be comparable with complete copies")
        train_counts = [len(t) for t, _ in folds]
        row.steps = sum(ft.steps(n) for n in train_counts)
        bound = "≤ " if data.split is None and spec.unit == "masks" else ""
        scenes = "/".join(str(n) for n in train_counts) or "?"
        what = "" if spec.task == DEFAULT_TASK else f"{spec.task}: "
        if ft.max_steps is None:
            row.finetune = f"{what}{ft.epochs} epochs × {bound}{scenes} scenes / batch {ft.train.batch_size}"
        else:
            per_fold = "" if len(train_counts) < 2 else " per fold"
            row.finetune = (f"{what}{ft.max_steps} steps{per_fold} × batch {ft.train.batch_size} over {bound}{scenes} "
                            "scenes")
        if throughput is not None:
            row.gpu_hours = gpu_hours(row.steps, throughput.step_s("finetune", task.method, ft.train.name,
                                                                   ft.train.precision, spec.task,
                                                                   ft.train.batch_size))
        if task.method in opts.given:
            paths = opts.given[task.method]
            row.start = "checkpoint " + ", ".join(str(p) for p in paths)
            for f, (_, eval_names) in enumerate(folds):
                path = paths[f] if len(paths) > 1 else paths[0]
                try:
                    if path not in metadata:
                        metadata[path] = load_checkpoint(path)[1]
                    check_leakage(metadata[path], eval_names, path)
                except CheckpointError as e:
                    row.problems.append(_one_line(e))
                    break
            continue
        if task.method == "scratch":
            row.start = f"random init of the fine-tuning model (seed {task.seed})"
            continue
        where = "each fold's training scenes" if rec.pretrain_dataset == TRAIN_SCENES else rec.pretrain_dataset
        row.start = f"pretrain {task.method} ({rec.pretrain_preset}, {where})"
        try:
            config = pretrain_config(task.method, rec, opts, seed=task.seed)
        except ConfigError as e:
            row.problems.append(_one_line(e))
            continue
        row.problems += _machine_problems(config.train, f"{task.method} pretraining", "--pretrain-set", machine)
        if rec.pretrain_dataset != TRAIN_SCENES:
            if rec.pretrain_root is None:
                continue  # check_recipe said so
            key = (rec.pretrain_dataset, str(rec.pretrain_root))
            if key not in pretrain_data:
                try:
                    pretrain_data[key] = (pretraining_scenes(rec.pretrain_dataset, rec.pretrain_root),
                                          store_dir(opts.cache, rec.pretrain_dataset, rec.pretrain_root))
                except (ConfigError, DataError) as e:
                    pretrain_data[key] = f"pretraining data: {_one_line(e)}"
            if isinstance(pretrain_data[key], str):
                row.problems.append(pretrain_data[key])
                continue
        for f in range(len(folds)):
            if rec.pretrain_dataset == TRAIN_SCENES:  # every training scene of the fold, labels unused
                names, store_root = scenes_of(data.names, spec.fold_groups(f)[0], spec.dataset), data.store_root
            else:
                names, store_root = pretrain_data[key]
            run_dir = pretrain_run_dir(opts.runs, task.method, config, names, store_root)
            if run_dir not in pretrainings:
                epochs = _pretrain_epochs(config, len(names))
                p = Pretraining(task, f, task.method, rec.pretrain_preset, rec.pretrain_dataset, len(names), epochs,
                                config.train.batch_size, config.train.precision, run_dir, run_dir.is_dir(),
                                budget=_budget(config))
                p.steps = _steps(epochs, len(names), p.batch_size)
                if throughput is not None:
                    p.gpu_hours = gpu_hours(p.steps, throughput.step_s("pretrain", task.method, p.preset, p.precision,
                                                                       batch=p.batch_size))
                pretrainings[run_dir] = p
            row.pretrainings.append(pretrainings[run_dir])
    return Plan(rows, list(pretrainings.values()), throughput)
