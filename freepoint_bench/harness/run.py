"""The benchmark matrix: method × protocol × seed, each cell pretrained (when needed), fine-tuned and scored.

    opts = RunOptions(results=Path("results"), checkpoints=Path("checkpoints"))
    cells = expand(["freepoint", "scratch"], ["s3dis-10pct-masks"], [0, 1, 2])
    for task in take_shard(cells, 0, 1):          # parallel.take_shard: shard i of n for job arrays
        run_task(task, opts)                    # local, one after another

A method's checkpoint for a protocol fold comes from (in order) the user (`checkpoints={"freepoint": path}`),
or a pretraining run of the method, made once and reused by every protocol and seed that pretrains the same
way (runs/pretrain/<method>-<hash>/, resumable; its checkpoint lands in the checkpoints index). The protocol
names the recipe (`recipe`): the pretraining preset that goes with its fine-tuning preset and the dataset
pretrained on (ScanNet for the S3DIS protocols, as the paper; `train-scenes`: the fold's own training scenes,
their labels unused, which `supervised` cannot use: it needs labelled data of its own). `scratch` is a seeded
random initialisation of the fine-tuning model itself, per seed. A checkpoint of another backbone architecture
than the fine-tuning model's (a given one, or a pretraining preset the user named) is refused before anything
trains (`check_recipe`).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from freepoint_bench.atomic import open_lock, stable_hash
from freepoint_bench.data import catalogue
from freepoint_bench.data.open import open_dataset
from freepoint_bench.engine.loggers import Tracker
from freepoint_bench.errors import CheckpointError, ConfigError, DataError
from freepoint_bench.harness.cells import Cell, run_cell
from freepoint_bench.harness.finetune import (
    FINETUNE_PRESETS,
    FinetuneConfig,
    class_vocabulary,
    finetune_config,
    settings_that_fit,
)
from freepoint_bench.harness.protocol import (
    PROTOCOLS_DIR,
    TRAIN_SCENES,
    ProtocolSpec,
    freeze_split,
    frozen_splits_dir,
    load_protocol,
    scenes_of,
    split_path,
)
from freepoint_bench.pretext.base import applicable_overrides, get_method
from freepoint_bench.results import read_result, result_path

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int, str], None]
REPO_ROOT = PROTOCOLS_DIR.parent


@dataclass(frozen=True)
class Task:
    """One cell of the matrix to compute: names only (picklable, for job arrays)."""

    protocol: str
    method: str
    seed: int


@dataclass
class RunOptions:
    """Where things live and how cells are computed (shared by every task of a run)."""

    results: Path = Path("results")
    checkpoints: Path = Path("checkpoints")
    cache: Path = Path("cache")
    runs: Path = Path("runs")
    protocols_dir: Path | None = None
    splits: Path | None = None  # splits frozen from the data (default: <results>/splits; see splits_dir)
    split_root: Path | None = None  # official split files (ScanNet data-efficient tasks/...; default: the data root)
    root: Path | None = None  # the fine-tuning data (default: the protocol's default_root)
    preset: str | None = None  # fine-tuning preset (default: the protocol's)
    overrides: dict[str, Any] = field(default_factory=dict)  # fine-tuning config fields
    pretrain_preset: str | None = None  # pretraining preset (default: the protocol's recipe)
    pretrain_overrides: dict[str, Any] = field(default_factory=dict)
    pretrain_dataset: str | None = None  # pretraining data (default: the protocol's; train-scenes: the fold's own)
    pretrain_root: Path | None = None  # its root (default: the protocol's pretrain_root)
    given: dict[str, list[Path]] = field(default_factory=dict)  # method → checkpoint per fold (or one for all)
    force: bool = False
    eval_device: str | None = None  # where cells predict their evaluation scenes (None: where each fold trained)
    tracker: Tracker | None = None  # experiment tracker of every training stage (None: their CSV logs alone)

    @property
    def splits_dir(self) -> Path:
        """Returns the folder of the splits frozen from the user's data: `splits`, else ``<results>/splits``
        (beside the results that record their sha256; never the protocols folder, which ships read-only files)."""
        return frozen_splits_dir(self.results, self.splits)

    def split_root_of(self, spec: ProtocolSpec) -> Path | None:
        """Returns the folder a protocol's official split file is read under: split_root, else its data root
        (where ScanNet's download script puts tasks/)."""
        return self.split_root if self.split_root is not None else protocol_root(spec, self.root)


def expand(methods: Sequence[str], protocols: Sequence[str], seeds: Sequence[int]) -> list[Task]:
    """Returns the sorted, de-duplicated cells of methods × protocols × seeds."""
    if not methods or not protocols or not seeds:
        raise ConfigError("give at least one method, one protocol and one seed")
    return sorted({Task(p, m, int(s)) for p in protocols for m in methods for s in seeds},
                  key=lambda t: (t.protocol, t.method, t.seed))


def protocol_root(spec: ProtocolSpec, root: Path | None) -> Path | None:
    """Returns the data root of a protocol: `root`, else its default_root (relative to the repository)."""
    if root is not None:
        return Path(root)
    if spec.default_root is None:
        raise ConfigError(f"protocol {spec.name} needs --root: point it at your copy of {spec.dataset}")
    return _repo_path(spec.default_root)


def _repo_path(value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else REPO_ROOT / path


# ---------------------------------------------------------------------------------------------- the recipe


@dataclass(frozen=True)
class Recipe:
    """What the cells of a protocol train: the fine-tuning config and the pretraining that goes with it."""

    finetune: FinetuneConfig
    pretrain_preset: str  # the pretraining preset of every method but scratch
    preset_given: bool  # the user named pretrain_preset (--pretrain-preset)
    pretrain_dataset: str  # a dataset name, or TRAIN_SCENES (each fold's own training scenes)
    pretrain_root: Path | None  # None for TRAIN_SCENES (and when nobody gave one)


def recipe(spec: ProtocolSpec, opts: RunOptions) -> Recipe:
    """Returns the recipe of a protocol's cells: the user's choices (opts) over the protocol's.

    The pretraining preset is opts.pretrain_preset, else the protocol's pretrain_preset (unless opts.preset
    replaces the protocol's fine-tuning preset), else the training preset the fine-tuning preset is built on;
    the dataset opts.pretrain_dataset, else the protocol's (its pretrain_root is the default root)."""
    finetune = cell_config(spec, opts)
    if opts.pretrain_preset is not None:
        preset = opts.pretrain_preset
    elif opts.preset is None and spec.pretrain_preset is not None:
        preset = spec.pretrain_preset
    else:
        preset = FINETUNE_PRESETS[opts.preset or spec.preset]["preset"]
    dataset = opts.pretrain_dataset or spec.pretrain_dataset
    root = opts.pretrain_root
    if root is None and opts.pretrain_dataset is None and spec.pretrain_root is not None:
        root = _repo_path(spec.pretrain_root)
    return Recipe(finetune, preset, opts.pretrain_preset is not None, dataset,
                  None if dataset == TRAIN_SCENES else root)


def pretrain_config(method: str, rec: Recipe, opts: RunOptions, seed: int = 0) -> Any:
    """Returns the pretraining config of `method` under a recipe. scratch: the fine-tuning model's own preset with
    the training seed (its random initialisation); the others: the recipe's preset with opts.pretrain_overrides."""
    impl = get_method(method)
    if method == "scratch":
        train = rec.finetune.train
        return impl.default_config(train.name, **{**train.model_dump(exclude={"name"}), "seed": seed})
    kept, skipped = applicable_overrides(impl, opts.pretrain_overrides)
    for key, why in skipped.items():
        log.info("--pretrain-set %s: not applied to %s (%s)", key, method, why)
    return impl.default_config(rec.pretrain_preset, **kept)


def backbone_architecture(train: Any) -> dict[str, Any]:
    """Returns the architecture (checkpoint-metadata form, without the sparse backend, which a checkpoint may
    change) of the backbone a TrainPreset builds."""
    from freepoint_bench.engine.module import segmenter_config
    from freepoint_bench.models.backbone import architecture_of

    arch = architecture_of(segmenter_config(train).backbone)
    arch.pop("backend")
    return arch


def architecture_differences(have: Mapping[str, Any], want: Mapping[str, Any]) -> list[str]:
    """Returns "key=a here, b for fine-tuning" for every field of two backbone architectures that differs
    (the sparse backend excepted)."""
    return [f"{k}={have.get(k)!r} here, {want.get(k)!r} for fine-tuning" for k in sorted(set(have) | set(want))
            if k != "backend" and have.get(k) != want.get(k)]


@functools.lru_cache(maxsize=64)
def _checkpoint_backbone(path: str, stamp: tuple[int, int]) -> tuple[dict[str, Any], dict[str, Any]]:
    from freepoint_bench.engine.checkpoints import load_model

    model, meta = load_model(path, part="backbone")  # stamp: a rewritten file is read again
    return model.architecture(), dict(meta.get("input") or {})


def checkpoint_backbone(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Returns (the backbone architecture, the recorded input entry) of a backbone or segmenter checkpoint
    (CheckpointError when unreadable)."""
    try:
        st = Path(path).stat()
    except OSError:
        raise CheckpointError(f"checkpoint {path} does not exist; train or download it first") from None
    return _checkpoint_backbone(str(path), (st.st_mtime_ns, st.st_size))


def check_recipe(task: Task, spec: ProtocolSpec, opts: RunOptions) -> Recipe:
    """Returns the task's recipe after refusing, before anything trains, what could not fine-tune: a given
    checkpoint (CheckpointError) or a named pretraining preset (ConfigError) of another backbone architecture than
    the fine-tuning model's, a pretraining source that is missing or unusable and a deep_features checkpoint that
    is neither a file nor an index id (ConfigError)."""
    rec = recipe(spec, opts)
    want = backbone_architecture(rec.finetune.train)
    model = f"protocol {spec.name}'s fine-tuning model (preset {rec.finetune.train.name})"
    if task.method in opts.given:
        for path in opts.given[task.method]:
            architecture, inputs = checkpoint_backbone(path)
            try:
                fits = settings_that_fit(architecture, inputs, want, rec.finetune.train)
            except ConfigError as e:
                raise CheckpointError(f"checkpoint {path} ({task.method}): {e}") from None
            diffs = architecture_differences(architecture, want)
            if diffs or fits:
                what = f"holds another backbone than {model}: {'; '.join(diffs)}" if diffs else \
                    f"was trained on other input features than {model}"
                fix = " ".join(f"--set {f}" for f in fits) or "--preset / --set for the fields that differ"
                raise CheckpointError(f"checkpoint {path} ({task.method}) {what}; give a checkpoint of that "
                                      f"architecture, or make the fine-tuning model fit it: {fix}")
        return rec
    if task.method == "scratch":
        return rec  # built from the fine-tuning model's preset: always its architecture
    config = pretrain_config(task.method, rec, opts)
    deep = getattr(config, "deep_features", None)  # FreePoint's deep-feature affinities: a checkpoint that must exist
    if deep is not None:
        from freepoint_bench.engine.checkpoints import find_backbone

        find_backbone(deep, opts.checkpoints, f"{task.method}: --pretrain-set deep_features={deep}")
    diffs = architecture_differences(backbone_architecture(config.train), want)
    if diffs:
        origin = "--pretrain-preset" if rec.preset_given else f"protocol {spec.name}'s pretrain_preset"
        fix = "drop --pretrain-preset (the protocol's recipe agrees)" if rec.preset_given else \
            "give pretraining and fine-tuning the same fields (--pretrain-set / --set)"
        raise ConfigError(f"{task.method}: pretraining preset {rec.pretrain_preset} ({origin}) builds another backbone "
                          f"than {model}: {'; '.join(diffs)}; {fix}")
    if rec.pretrain_dataset == TRAIN_SCENES:
        if task.method == "supervised":
            raise ConfigError("supervised pretraining needs labelled data of its own: pass --pretrain-dataset / "
                              "--pretrain-root (e.g. scannet) or --checkpoint supervised=PATH")
        if opts.pretrain_root is not None:
            raise ConfigError(f"--pretrain-root {opts.pretrain_root}: protocol {spec.name} pretrains on its own "
                              "training scenes; name the dataset too (--pretrain-dataset scannet)")
    elif rec.pretrain_root is None:
        raise ConfigError(f"{task.method}: protocol {spec.name} pretrains on {rec.pretrain_dataset}: pass "
                          f"--pretrain-root <your copy of {rec.pretrain_dataset}> (or --pretrain-dataset "
                          f"{TRAIN_SCENES} for each fold's own training scenes, or --checkpoint {task.method}=PATH)")
    return rec


def open_protocol_data(spec: ProtocolSpec, opts: RunOptions,
                       progress: Callable[[int, int, str], None] | None = None) -> tuple[Any, list[str]]:
    """Returns (store, scene names) of the protocol's dataset (prepared into the cache when missing)."""
    root = protocol_root(spec, opts.root)
    if catalogue.get(spec.dataset).needs_root and not root.exists():
        raise DataError(f"{root}: data root of protocol {spec.name} does not exist; pass --root <your copy of "
                        f"{spec.dataset}>")
    return open_dataset(spec.dataset, root, opts.cache, progress=progress)


def ensure_split(spec: ProtocolSpec, store: Any, names: Sequence[str], protocols_dir: Path | None,
                 splits_dir: Path) -> None:
    """Freezes a protocol's split from the data into `splits_dir` when it is not frozen yet and not pinned (masks
    protocols and the synthetic stand-ins); a pinned split file must exist (load_split refuses it otherwise)."""
    if spec.official_file is not None:  # read as published (protocol.load_official), never frozen
        return
    path = split_path(spec, protocols_dir, splits_dir)
    if path is None or path.is_file() or spec.split_sha256 is not None:
        return
    log.warning("protocol %s: no frozen split yet; freezing it from this copy of the data into %s "
                "(every result records its sha256)", spec.name, path)
    freeze_from_data(spec, store, names, protocols_dir, splits_dir)


def freeze_from_data(spec: ProtocolSpec, store: Any, names: Sequence[str], protocols_dir: Path | None,
                     splits_dir: Path, progress: Callable[[int, int, str], None] | None = None) -> tuple[Path, str]:
    """Freezes a protocol's split from `names` of `store` (masks: their instances of the protocol's evaluated
    classes) into `splits_dir`; returns (path, sha256) (a pinned split is checked against the shipped file)."""
    ids, vocab = class_vocabulary(spec.eval)
    return freeze_split(spec, names=list(names), store=store, class_names=dict(zip(ids, vocab, strict=True)),
                        protocols_dir=protocols_dir, splits_dir=splits_dir, progress=progress)


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    with open_lock(path) as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # another process pretraining the same run: wait for it, then reuse it
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def check_tasks(tasks: Sequence[Task], opts: RunOptions) -> None:
    """Refuses (check_recipe's one-line errors) the first task whose recipe could not fine-tune, before any runs."""
    specs: dict[str, ProtocolSpec] = {}
    for task in tasks:
        if task.protocol not in specs:
            specs[task.protocol] = load_protocol(task.protocol, opts.protocols_dir)
        check_recipe(task, specs[task.protocol], opts)


def pretraining_scenes(dataset: str, root: Path | None) -> list[str]:
    """Returns the training-split scenes of a pretraining dataset found under root (listed, not prepared), as
    `bench.py pretrain` trains on (ScanNet: the 1201 scans of scannetv2_train.txt); DataError when there are none."""
    from freepoint_bench.data.splits import scenes_in_split

    entry = catalogue.get(dataset)
    if root is not None and entry.needs_root and not Path(root).exists():
        raise DataError(f"{root}: root of the pretraining dataset {dataset} does not exist; check --pretrain-root")
    listed = entry.open_reader().list_scenes(None if root is None else Path(root))
    names = scenes_in_split(dataset, listed, "train", root)
    if not names:
        raise DataError(f"{root}: none of the {len(listed)} {dataset} scenes there is of the train split; check "
                        "--pretrain-root")
    return names


def pretrain_runs(runs: Path | str) -> Path:
    """Returns the folder holding every pretraining run of a work folder: <runs>/pretrain."""
    return Path(runs) / "pretrain"


def pretrain_run_dir(runs: Path, method: str, config: Any, names: Sequence[str], store_root: Path | str) -> Path:
    """Returns the run folder of a pretraining: runs/pretrain/<method>-<hash of config, scenes and scene store>."""
    key = stable_hash(method, config.model_dump(mode="json"), sorted(names), str(store_root), length=10)
    return pretrain_runs(runs) / f"{method}-{key}"


def named_pretrain_run_dir(method: str, dataset: str, runs: Path | str = Path("runs")) -> Path:
    """Returns the run folder `bench.py pretrain` trains in when given no --out: runs/pretrain/<method>-<dataset>,
    one per method and dataset, which --resume continues and --overwrite discards (a `run` pretraining's folder is
    keyed by a hash of what it trains instead: pretrain_run_dir)."""
    return pretrain_runs(runs) / f"{method}-{dataset}"


def pretrain_checkpoint(method: str, store: Any, names: Sequence[str], opts: RunOptions, config: Any,
                        progress: ProgressFn | None = None) -> Path:
    """Returns the backbone checkpoint of `method` pretrained with `config` on `names` of `store` (made once,
    then reused)."""
    impl = get_method(method)
    run_dir = pretrain_run_dir(opts.runs, method, config, names, getattr(store, "root", ""))
    memo = (run_dir.resolve(), Path(opts.checkpoints).resolve())
    if memo in _PRETRAINED and _PRETRAINED[memo].is_file():
        return _PRETRAINED[memo]  # this process made or resumed it already (every seed and protocol reuses it)
    with _exclusive(run_dir.parent / f".{run_dir.name}.lock"):
        result = impl.pretrain(store, config, run_dir, names=sorted(names), resume=True,
                               checkpoints_dir=opts.checkpoints, progress=progress, tracker=opts.tracker)
    _PRETRAINED[memo] = Path(result.backbone)
    return _PRETRAINED[memo]


_PRETRAINED: dict[tuple[Path, Path], Path] = {}  # (run dir, checkpoints dir) → backbone, within one process


def fold_checkpoints(task: Task, spec: ProtocolSpec, store: Any, names: Sequence[str], opts: RunOptions,
                     progress: ProgressFn | None = None) -> tuple[Path | None, ...]:
    """Returns the checkpoint of each fold of the task's protocol (given, or pretrained on the fold's scenes)."""
    if task.method in opts.given:
        given = opts.given[task.method]
        if len(given) == 1:
            return tuple(given) * spec.num_folds
        if len(given) != spec.num_folds:
            raise ConfigError(f"{len(given)} checkpoints given for {task.method}; protocol {spec.name} has "
                              f"{spec.num_folds} folds: give one, or one per fold")
        return tuple(given)
    return tuple(fold_checkpoint(task, spec, f, opts, store, names, progress) for f in range(spec.num_folds))


def fold_checkpoint(task: Task, spec: ProtocolSpec, fold: int, opts: RunOptions, store: Any = None,
                    names: Sequence[str] | None = None, progress: ProgressFn | None = None) -> Path:
    """Returns the pretrained checkpoint of one fold of the task (pretraining it when it is not there yet).

    store / names: the protocol's data, needed only when the recipe pretrains on the fold's own training scenes
    (opened here when None)."""
    rec = check_recipe(task, spec, opts)
    config = pretrain_config(task.method, rec, opts, seed=task.seed)
    # scratch reads no data (a seeded initialisation); it records the fold's training rooms as its scenes, so it
    # never needs, nor opens, the protocol's pretraining dataset (which may not be given)
    if rec.pretrain_dataset != TRAIN_SCENES and task.method != "scratch":
        p_names = pretraining_scenes(rec.pretrain_dataset, rec.pretrain_root)
        p_store, p_names = open_dataset(rec.pretrain_dataset, rec.pretrain_root, opts.cache, names=p_names)
    else:
        if store is None or names is None:
            store, names = open_protocol_data(spec, opts)
        # the fold's training rooms, unlabelled
        p_store, p_names = store, scenes_of(names, spec.fold_groups(fold)[0], spec.dataset)
    return pretrain_checkpoint(task.method, p_store, p_names, opts, config, progress=progress)


def finetune_checkpoints(checkpoints: Sequence[Path], method: str | None) -> tuple[str, dict[str, list[Path]]]:
    """Returns (method, RunOptions.given) of `bench.py finetune`: the checkpoints (one, or one per fold) for
    `method`, by default the method they record; scratch needs none, any other method one."""
    from freepoint_bench.models.checkpoint import load_checkpoint

    checkpoint = list(checkpoints)
    given: dict[str, list[Path]] = {}
    if checkpoint:
        recorded = {load_checkpoint(c)[1].get("method") or "unknown" for c in checkpoint}
        if method is None:
            if len(recorded) != 1:
                raise ConfigError(f"the checkpoints come from several methods {sorted(recorded)}; pass --method")
            method = recorded.pop()
        given[method] = list(checkpoint)
    elif method is None:
        raise ConfigError("give --checkpoint (a pretrained backbone) or --method scratch")
    elif method != "scratch":
        raise ConfigError(f"--method {method} needs --checkpoint (pretrain it with `bench.py pretrain --method "
                          f"{method}`), or use `bench.py run`, which pretrains what is missing")
    return method, given


def run_task(task: Task, opts: RunOptions, progress: ProgressFn | None = None) -> tuple[str, Path]:
    """Computes one task into the results store; returns (status, result path) as run_cell does."""
    spec = load_protocol(task.protocol, opts.protocols_dir)
    config = check_recipe(task, spec, opts).finetune  # an architecture mismatch is refused before any data work
    store, names = open_protocol_data(spec, opts)
    ensure_split(spec, store, names, opts.protocols_dir, opts.splits_dir)
    done = result_path(opts.results, spec.name, task.method, task.seed)
    if done.is_file() and not opts.force:
        finished = read_result(done)  # a damaged result is an error, not a finished cell
        changed = [what for what, old, new in (
            ("protocol", finished.protocol_hash, spec.content_hash()),
            ("fine-tuning config", finished.config, config.model_dump(mode="json"))) if old != new]
        if changed:
            raise ConfigError(f"{done}: finished with another {' and '.join(changed)}; pass --force to recompute it, "
                              "or write to another --results folder")
        return "skipped", done  # before pretraining: a finished cell needs no checkpoint
    checkpoints = fold_checkpoints(task, spec, store, names, opts, progress)
    return run_cell(Cell(spec, task.method, task.seed, checkpoints), store, names, config, opts.results,
                    protocols_dir=opts.protocols_dir, splits_dir=opts.splits_dir, force=opts.force, progress=progress,
                    eval_device=opts.eval_device, tracker=opts.tracker, split_root=opts.split_root_of(spec))


def cell_config(spec: ProtocolSpec, opts: RunOptions) -> FinetuneConfig:
    """Returns the fine-tuning config of a protocol: its preset (or opts.preset), its overrides, then the user's."""
    return finetune_config(opts.preset or spec.preset, **{**spec.overrides, **opts.overrides})


SLURM_CPUS_PER_GPU = 8  # data-loading workers and pseudo-labelling processes per GPU job


def slurm_resources(partition: str | None, time_min: int, gpus: int, cpus_per_task: int | None,
                    mem: str) -> dict[str, Any]:
    """Returns the submitit parameters of each job (submit_slurm's `slurm`): `cpus_per_task` defaults to
    SLURM_CPUS_PER_GPU per GPU; `mem` is whole gigabytes ("64", "64G", "64GB"), ConfigError otherwise."""
    digits = mem.strip().upper().removesuffix("B").removesuffix("G")
    if not digits.isdigit() or int(digits) < 1:
        raise ConfigError(f"--mem {mem!r}: give whole gigabytes, e.g. 64 or 64G")
    return {"slurm_partition": partition, "timeout_min": time_min, "gpus_per_node": gpus,
            "cpus_per_task": cpus_per_task or SLURM_CPUS_PER_GPU * max(gpus, 1), "mem_gb": int(digits)}


def submit_slurm(tasks: Sequence[Task], opts: RunOptions, folder: Path,
                 slurm: Mapping[str, Any]) -> tuple[list[Any], list[Any]]:
    """Returns the submitit jobs (pretraining jobs, cell jobs): first one job array of the pretraining runs the
    cells need (harness.plan finds them; none is prepared or trained here), then one job per cell, in job arrays
    grouped by the pretraining jobs they wait for (SLURM dependency afterok), so that no queued cell holds a GPU
    while its method pretrains. A cell's job finds its checkpoint made and reuses it.

    slurm: submitit parameters (slurm_partition, timeout_min, gpus_per_node, cpus_per_task, mem_gb, ...); "cluster"
    picks submitit's executor ("slurm" by default when sbatch is found; "local" / "debug" run the jobs on this
    machine). ConfigError, before anything is submitted, when a cell could not run (bench.py run --plan lists why).
    """
    from freepoint_bench.harness.plan import Machine, make_plan

    try:
        import submitit
    except ImportError:
        raise ConfigError("--launcher slurm needs submitit: pip install -e '.[slurm]' (or submitit)") from None
    executor = submitit.AutoExecutor(folder=str(folder), cluster=slurm.get("cluster"))
    if executor.cluster != "slurm" and slurm.get("cluster") is None:
        raise ConfigError(f"--launcher slurm: no SLURM here (submitit found {executor.cluster!r}); run on a "
                          "cluster login node, or use --launcher local / --shard i/n")
    # the compute nodes are not this machine: their CUDA and backends are theirs to have
    plan = make_plan(tasks, opts, machine=Machine(cuda=False, bf16=False, backends=(), checked=False))
    blocked = [(row.task, problem) for row in plan.rows for problem in row.problems]
    if blocked:
        task, problem = blocked[0]
        raise ConfigError(f"{task.protocol} / {task.method} / seed {task.seed}: {problem} (nothing submitted; "
                          "`bench.py run --plan` lists every cell's problems)")
    params = {k: v for k, v in slurm.items() if k != "cluster" and v is not None}
    pre = plan.pretrainings
    executor.update_parameters(name="freepoint-bench-pretrain", slurm_additional_parameters={}, **params)
    pre_jobs = executor.map_array(_pretrain_job, [p.task for p in pre], [p.fold for p in pre],
                                  [opts] * len(pre)) if pre else []
    job_of = {p.run_dir: job.job_id for p, job in zip(pre, pre_jobs, strict=True)}
    groups: dict[tuple[str, ...], list[Task]] = {}
    for row in plan.rows:
        if row.finished:
            continue  # nothing to compute
        waits = tuple(sorted({job_of[p.run_dir] for p in row.pretrainings}))
        groups.setdefault(waits, []).append(row.task)
    cell_jobs = []
    for waits, group in sorted(groups.items()):
        extra = {"dependency": "afterok:" + ":".join(waits)} if waits else {}
        executor.update_parameters(name="freepoint-bench", slurm_additional_parameters=extra, **params)
        cell_jobs += executor.map_array(_job, group, [opts] * len(group))
    return list(pre_jobs), cell_jobs


def _pretrain_job(task: Task, fold: int, opts: RunOptions) -> str:
    return str(fold_checkpoint(task, load_protocol(task.protocol, opts.protocols_dir), fold, opts))


def _job(task: Task, opts: RunOptions) -> str:
    status, path = run_task(task, opts)
    return f"{status} {path}"
