"""Experiment trackers (`--logger csv|tensorboard|wandb|mlflow`): the one place Lightning loggers are built.

    tracker = make_tracker("tensorboard")                       # ConfigError: unknown kind, package not installed
    logger = tracker.logger(stage_dir, "freepoint-scannet", "step1")    # None for csv: the stage's own CSV log
    trainer = make_trainer(preset, stage_dir, epochs, logger=logger)    # engine.trainer: CSV log + this one

Every training stage keeps its CSV log (`<stage folder>/logs/version_<n>/metrics.csv`, one version per (re)start,
engine.trainer.make_trainer); a tracker logs the same metrics a second time, for people whose tools read it. It is
never a source of truth: result records, done.json and the checkpoints' metrics come from the modules' loss
histories, and no tracker choice enters a config, a run folder's hash or a checkpoint id.

Every stage's tracker run is named by (name, version):

    pretraining   name = the run folder's name (<method>-<dataset>, <method>-<hash>), version = the stage
    fine-tuning   name = <protocol>/<method>/seed-<k>, version = fold-<f>

Where it writes: by default flat into `<stage folder>/logs/<kind>/` (a pretraining stage: `<run>/<stage>`, a
fine-tuning fold: `<cell>/work/fold-<f>`: the path already names the run, and the logs go with the stage on
--overwrite / --force; `tensorboard --logdir results` shows every cell); with a `save_dir` (--logger-dir) every
stage and cell writes into that one folder, csv and tensorboard in `<save_dir>/<name>/<version>/`.

A resumed stage continues its tracker's run: tensorboard writes another event file into the same folder, wandb
resumes the run id (`resume="allow"`; offline: another offline-run folder of that id), mlflow finds the run of that
name in its store and logs into it; csv starts `version_<n+1>` beside the earlier ones (Lightning's CSV writer would
delete a reused version's metrics.csv).
"""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities import rank_zero_only

from freepoint_bench.errors import ConfigError

KINDS = ("csv", "tensorboard", "wandb", "mlflow")
DEFAULT_KIND = "csv"
EXTRA = "pip install 'freepoint-bench[trackers]'"
PROJECT = "freepoint-bench"  # wandb project and mlflow experiment, unless WANDB_PROJECT / MLFLOW_EXPERIMENT_NAME

# the modules a kind needs (any one of them); Lightning's TensorBoardLogger writes with tensorboard or tensorboardX
_MODULES: dict[str, tuple[str, ...]] = {"csv": (), "tensorboard": ("tensorboard", "tensorboardX"),
                                        "wandb": ("wandb",), "mlflow": ("mlflow",)}


def check_kind(kind: str) -> str:
    """Returns `kind` when it names a tracker and its package is installed; ConfigError (one line) otherwise."""
    if kind not in KINDS:
        raise ConfigError(f"unknown logger {kind!r}; choose one of {', '.join(KINDS)}")
    needed = _MODULES[kind]
    if needed and not any(_importable(m) for m in needed):
        raise ConfigError(f"--logger {kind} needs the {' or '.join(needed)} package: {EXTRA}")
    return kind


def _importable(module: str) -> bool:
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def make_logger(kind: str, save_dir: str | Path, name: str, version: str, nest: bool = True) -> Any:
    """Returns the Lightning logger of `kind` writing under `save_dir` for the run `name`, stage `version`.

    csv: `<save_dir>/<name>/<version>/version_<n>/metrics.csv`; tensorboard: event files in
    `<save_dir>/<name>/<version>/` (nest=False: both straight into save_dir); wandb: offline (unless WANDB_MODE
    says otherwise) under `<save_dir>/wandb/`, run id `<name>-<version>`; mlflow: `<save_dir>/mlflow.db` (SQLite;
    unless MLFLOW_TRACKING_URI names another store) and `<save_dir>/artifacts/`, run `<name>/<version>`.
    ConfigError for an unknown kind or a missing package."""
    check_kind(kind)
    save_dir = Path(save_dir)
    if kind == "csv":
        from pytorch_lightning.loggers import CSVLogger

        return CSVLogger(save_dir, name=f"{name}/{version}" if nest else "")
    if kind == "tensorboard":
        from pytorch_lightning.loggers import TensorBoardLogger

        where = (name, version) if nest else ("", "")
        return TensorBoardLogger(save_dir, *where, default_hp_metric=False)
    if kind == "wandb":
        save_dir.mkdir(parents=True, exist_ok=True)  # wandb falls back to a temporary folder when dir is missing
        # offline by default: nothing leaves the machine until `wandb sync <save_dir>/wandb/offline-run-*`
        mode = {} if os.environ.get("WANDB_MODE") else {"offline": True}
        return StageWandbLogger(name=f"{name}/{version}", save_dir=save_dir, version=run_id(name, version),
                           project=os.environ.get("WANDB_PROJECT", PROJECT), **mode)
    from pytorch_lightning.loggers import MLFlowLogger

    # a SQLite file, not MLflow's ./mlruns folder store: MLflow 3 refuses that one by default ("maintenance mode")
    save_dir.mkdir(parents=True, exist_ok=True)
    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{save_dir.resolve() / 'mlflow.db'}"
    experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME", PROJECT)
    run_name = f"{name}/{version}"
    return MLFlowLogger(experiment_name=experiment, run_name=run_name, tracking_uri=uri,
                        artifact_location=(save_dir / "artifacts").resolve().as_uri(),
                        run_id=_mlflow_run(uri, experiment, run_name))


class StageWandbLogger(WandbLogger):
    """Lightning's WandbLogger that finishes its wandb run when the stage's fit ends. Lightning's leaves it open, and
    the process's next stage (FreePoint's step 2, the next cell of `bench.py run`) would log into that run: wandb
    keeps one run per process."""

    @rank_zero_only
    def finalize(self, status: str) -> None:
        super().finalize(status)
        import wandb

        if wandb.run is not None:
            wandb.finish(exit_code=0 if status == "success" else 1)


def run_id(name: str, version: str) -> str:
    """Returns a tracker run id for (name, version): letters, digits, '_', '-' and '.' only (wandb's rule)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{name}-{version}").strip("-")


def _mlflow_run(uri: str, experiment: str, run_name: str) -> str | None:
    """Returns the id of the newest live run named `run_name` in `experiment` at `uri` (a resumed stage logs into
    it), None when there is none yet."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    escaped = run_name.replace("'", "\\'")
    runs = client.search_runs([found.experiment_id], filter_string=f"tags.`mlflow.runName` = '{escaped}'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0].info.run_id if runs else None


@dataclass(frozen=True)
class Tracker:
    """The experiment tracker a command's trainers log to beside their CSV logs, and where (picklable: SLURM jobs
    get it in RunOptions)."""

    kind: str = DEFAULT_KIND
    save_dir: Path | None = None  # one folder for every stage and cell (--logger-dir); None: each stage's own

    def logger(self, folder: str | Path, name: str, version: str) -> Any:
        """Returns the Lightning logger of one training stage whose folder is `folder` (None: csv into the stage's
        folder, which its own CSV log already is, and on every DDP rank but 0)."""
        if rank_zero_only.rank != 0:
            # Lightning's loggers write on rank 0 alone; MLflow's client would create its SQLite store on every rank
            return None
        if self.save_dir is not None:
            return make_logger(self.kind, self.save_dir, name, version)
        if self.kind == DEFAULT_KIND:
            return None
        logs = Path(folder) / "logs"  # wandb names its own sub-folder logs/wandb/
        return make_logger(self.kind, logs if self.kind == "wandb" else logs / self.kind, name, version, nest=False)


def make_tracker(kind: str = DEFAULT_KIND, save_dir: str | Path | None = None) -> Tracker:
    """Returns the Tracker of `--logger kind --logger-dir save_dir`; ConfigError (one line) for an unknown kind or
    a missing package, before anything trains."""
    return Tracker(check_kind(kind), None if save_dir is None else Path(save_dir))


def stage_logger(tracker: Tracker | None, folder: str | Path, name: str, version: str) -> Any:
    """Returns tracker.logger(folder, name, version), None without a tracker."""
    return None if tracker is None else tracker.logger(folder, name, version)
