"""FreePoint's own pretext (§3.3): pseudo labels at σ_low and σ_high, then two-step segmenter training.

    method = get_method("freepoint")
    config = method.default_config("cpu-small", epochs1=2, epochs2=1)
    result = method.pretrain(store, config, Path("runs/freepoint"), names=train_names)
    result.backbone, result.segmenter   # .ckpt files under checkpoints/, listed in checkpoints/index.json
    method.default_config("paper", deep_features="csc-scannet-46cb9b80b4")  # the paper's deep-feature affinities
    # (`--pretrain-set deep_features=<id or .ckpt>`); every checkpoint records what made its pseudo labels:
    result.metadata["pseudo_label_recipe"]  # {"features", "affinities" (α), "deep_features", "solver", ...}

Step 1 trains on the over-segmented σ_low masks for `epochs1` epochs; step 2 starts from step 1's
weights and trains on the under-segmented σ_high masks for `epochs2` epochs (§3.3 "Two-step training
strategy", §4). Each step has its own AdamW + schedule. The run folder, its resume check, the provenance and
the publishing are the shared framework's (pretext.runs), each step one train_stage (pretext.training). A run
directory holds:

    out_dir/run.json                 the config and scene list (a resume must match it)
    out_dir/pseudo-labels/           cached pseudo labels (unless label_dir is given), with ready-<key>.json:
                                     rank 0's progress on them, which the other DDP ranks wait for
    out_dir/step{1,2}/lightning/     Lightning's last.ckpt (resume point of an interrupted step)
    out_dir/step{1,2}/logs/          CSV loss logs
    out_dir/step{1,2}/segmenter.ckpt the step's final weights, out_dir/step{1,2}/done.json its metrics
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, model_serializer, model_validator
from pytorch_lightning.utilities import rank_zero_only

from freepoint_bench.atomic import stable_hash, write_json
from freepoint_bench.config import apply_overrides, omit_at_default, route_bare, validated
from freepoint_bench.engine.checkpoints import find_backbone
from freepoint_bench.engine.data import PseudoLabelTargets, SceneDataModule
from freepoint_bench.engine.features import BackboneFeatures
from freepoint_bench.engine.loggers import Tracker
from freepoint_bench.engine.module import SegmenterModule
from freepoint_bench.engine.presets import TrainPreset, get_preset, preset_values
from freepoint_bench.engine.trainer import check_devices
from freepoint_bench.errors import ConfigError, DataError
from freepoint_bench.freepoint.config import PseudoLabelConfig
from freepoint_bench.freepoint.pipeline import affinity_weights, run_pseudo_labels
from freepoint_bench.models.checkpoint import load_checkpoint
from freepoint_bench.models.losses import LossConfig
from freepoint_bench.pretext.base import PretrainResult, ProgressFn
from freepoint_bench.pretext.runs import checkpoint_metadata, prepare_run, publish, run_record
from freepoint_bench.pretext.training import train_stage

log = logging.getLogger(__name__)

STEPS = ("step1", "step2")  # the run folder's stage subfolders


class FreePointConfig(BaseModel):
    """Everything that defines a FreePoint pretraining run (the resume check compares all of it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    train: TrainPreset = get_preset("cpu-small")  # training recipe (`paper`: epochs1/epochs2 = 100/10, §4)
    pseudo: PseudoLabelConfig = PseudoLabelConfig()  # pseudo-label generation (σ_low 0.9, σ_high 1.2, §4)
    loss: LossConfig = LossConfig()  # λ weights of eq. 7 (§3.3)
    # the paper's affinities include self-supervised deep features (§3.1, eq. 1 A_emb, weight pseudo.alpha_emb):
    # a backbone checkpoint whose per-point features join them, a .ckpt path or an id of the checkpoints index
    # (any method's, an imported CSC one too). None: the traditional features alone. Left out of the record at
    # None, so default configs keep their hashes, run folders and checkpoint ids.
    deep_features: str | None = None

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> dict[str, Any]:
        return omit_at_default(self, handler(self), ("deep_features",))

    @model_validator(mode="after")
    def _check(self) -> FreePointConfig:
        if self.deep_features is not None and self.pseudo.alpha_emb <= 0:
            raise ValueError("deep_features needs pseudo.alpha_emb > 0 (its weight in eq. 3)")
        return self


# The other ranks give up when rank 0 reported no pseudo-label progress for this long (a scene takes minutes)
LABEL_WAIT_S = 3600.0
# What the ranks of one launch share and another launch does not: SLURM's job, step and requeue count, torchrun's
# run id. Lightning's own launcher sets none of them (its ranks start after rank 0 has labelled).
LAUNCH_VARIABLES = ("SLURM_JOB_ID", "SLURM_STEP_ID", "SLURM_RESTART_COUNT", "TORCHELASTIC_RUN_ID",
                    "TORCHELASTIC_RESTART_COUNT")


def launch_token() -> str:
    """Returns the LAUNCH_VARIABLES set in this process as "NAME=value,..." ("" when none is)."""
    return ",".join(f"{name}={os.environ[name]}" for name in LAUNCH_VARIABLES if name in os.environ)


def labels_marker(label_dir: Path, names: list[str], pseudo: PseudoLabelConfig,
                  features_key: str | None = None) -> Path:
    """Returns label_dir/ready-<key>.json, key: a hash of the scenes, the pseudo-label config and the deep features'
    cache key when there are any (one file per label set, so runs sharing a label_dir do not read each other's)."""
    parts = [sorted(names), pseudo.model_dump(mode="json")] + ([] if features_key is None else [features_key])
    return Path(label_dir) / f"ready-{stable_hash(*parts, length=12)}.json"


def pseudo_label_recipe(config: FreePointConfig, features: BackboneFeatures | None) -> dict[str, Any]:
    """Returns what made a FreePoint run's pseudo labels, as every checkpoint of the run records it
    ("pseudo_label_recipe"): the features, the eq. 3 weights α by affinity (emb 0 without deep features; the rgb
    term also drops per scene for scenes without colours), the deep features' source (the checkpoint as named, its
    content key, method and id) or None, the multicut solver, the σ offsets, and where this differs from the
    paper (deep features in the affinities, RAMA)."""
    pseudo, deep = config.pseudo, features is not None
    source = None
    if deep:
        meta = load_checkpoint(features.checkpoint_path)[1]
        source = {"checkpoint": config.deep_features, "key": features.cache_key, "method": meta.get("method"),
                  "id": meta.get("id")}
    differences = ([] if deep else ["traditional features only; the paper adds self-supervised deep features (§3.1)"])
    if pseudo.solver != "rama":
        differences.append(f"multicut solver {pseudo.solver}; the paper runs RAMA (§3.2)")
    return {
        "features": ["xyz", "rgb", "normals"] + (["deep"] if deep else []),
        "affinities": {**affinity_weights(pseudo), **({} if deep else {"emb": 0.0})},
        "normal_affinity": pseudo.normal_affinity,
        "deep_features": source,
        "solver": pseudo.solver,
        "sigmas": list(pseudo.sigmas),
        "paper_differences": differences,
    }


def _read_marker(path: Path) -> dict | None:
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # not written yet (writes are atomic: never half a file)
    return state if isinstance(state, dict) else None


def cache_pseudo_labels(
    store: Any,
    names: list[str],
    pseudo: PseudoLabelConfig,
    label_dir: Path,
    *,
    rank: int,
    workers: int | None = 1,
    progress: ProgressFn | None = None,
    prepare: Callable[[], None] | None = None,
    timeout_s: float = LABEL_WAIT_S,
    poll_s: float = 5.0,
    features_fn: BackboneFeatures | None = None,
) -> Path:
    """Returns the marker file (labels_marker) once the pseudo labels of `names` at pseudo.sigmas are in label_dir
    (with features_fn's deep features in the affinities when given).

    Global rank 0 runs `prepare` (the run directory's checks) and run_pseudo_labels with `workers` processes,
    writing the marker's state as it goes: "running" with the scenes done, then "done" or "failed" with the error.
    Every other rank computes nothing: it waits for "done" (DataError naming the marker when rank 0 failed, or
    wrote no progress for timeout_s seconds). Under srun every rank starts this at once; Lightning's barrier in
    prepare_data would time out (30 min) long before a dataset is labelled. Across nodes label_dir must be on a
    filesystem they share. progress("pseudo-labels", done, total, info) on every rank.
    """
    marker = labels_marker(label_dir, names, pseudo, None if features_fn is None else features_fn.cache_key)
    token = launch_token()
    if rank == 0:
        state = {"launch": token, "status": "running", "done": 0, "total": len(names)}
        write_json(marker, state)
        try:
            if prepare is not None:
                prepare()

            def on_scene(record: dict) -> None:
                state["done"] += 1
                write_json(marker, state)  # the other ranks' sign that rank 0 is alive
                if progress is not None:
                    progress("pseudo-labels", state["done"], len(names), f"{record['scene']} ({record['status']})")

            run_pseudo_labels(store, names, pseudo, pseudo.sigmas, label_dir, workers=workers, progress=on_scene,
                              features_fn=features_fn)
        except BaseException as exc:
            error = (str(exc).strip().splitlines() or [""])[0]
            write_json(marker, {**state, "status": "failed", "error": f"{type(exc).__name__}: {error}"})
            raise
        write_json(marker, {**state, "status": "done"})
        return marker
    _wait_for_labels(marker, token, rank, timeout_s, poll_s, progress)
    return marker


def _wait_for_labels(marker: Path, token: str, rank: int, timeout_s: float, poll_s: float,
                     progress: ProgressFn | None) -> None:
    """Returns when rank 0 of this launch marked the labels done; DataError when it failed or went silent."""
    initial = _read_marker(marker)
    seen, since = initial, time.monotonic()
    while True:
        state = _read_marker(marker)
        # without a launch token an earlier launch's marker cannot be told apart: a "done" one still describes a
        # complete cache of these scenes, a "failed" one counts only once rank 0 has rewritten it
        ours = state is not None and (state.get("launch") == token if token else state != initial)
        if state is not None and state.get("status") == "done" and (ours or not token):
            return
        if ours and state.get("status") == "failed":
            raise DataError(f"{marker}: rank 0 failed computing the pseudo labels ({state.get('error')}); fix "
                            "that (rank 0's log has it) and start the run again")
        if state != seen:
            seen, since = state, time.monotonic()
            if ours and progress is not None:
                progress("pseudo-labels", int(state.get("done", 0)), int(state.get("total", 0)), "rank 0")
        elif time.monotonic() - since > timeout_s:
            last = "nothing" if seen is None else f"{seen.get('status')} {seen.get('done')}/{seen.get('total')}"
            raise DataError(f"{marker}: rank {rank} waited {timeout_s:.0f}s for rank 0's pseudo labels and saw no "
                            f"progress (last state: {last}); check that rank 0 runs and that this folder is on a "
                            "filesystem every node shares")
        time.sleep(poll_s)


class FreePointPretext:
    """The `freepoint` pretext method: two-step training of a Mask3D-style segmenter on pseudo masks."""

    name = "freepoint"

    # a run's shared --pretrain-set epochs=N budgets the one-stage methods only (pretext.base.applicable_overrides)
    unread_fields = {"epochs": "it trains in two steps: set epochs1 and epochs2"}

    def default_config(self, preset: str = "cpu-small", **overrides: Any) -> FreePointConfig:
        """Returns a FreePointConfig on training preset `preset`; overrides are `train.<field>`,
        `pseudo.<field>`, `loss.<field>` or a bare training field (e.g. epochs1=2)."""
        for key in overrides:
            if key in self.unread_fields:
                raise ConfigError(f"FreePoint does not read {key!r}: {self.unread_fields[key]}")
        data = {"train": preset_values(preset), "pseudo": PseudoLabelConfig().model_dump(), "loss": {}}
        what = "FreePoint config"
        return validated(FreePointConfig, apply_overrides(data, route_bare(overrides, FreePointConfig, "train"),
                                                          FreePointConfig, what), what)

    def pretrain(
        self,
        store: Any,
        config: FreePointConfig,
        out_dir: str | Path,
        *,
        names: list[str] | None = None,
        resume: bool = False,
        overwrite: bool = False,
        progress: ProgressFn | None = None,
        checkpoints_dir: str | Path = "checkpoints",
        label_dir: str | Path | None = None,
        label_workers: int | None = 1,
        label_wait_s: float = LABEL_WAIT_S,
        devices: int | str = 1,
        nodes: int = 1,
        enable_progress_bar: bool = False,
        callbacks: list | None = None,
        tracker: Tracker | None = None,
    ) -> PretrainResult:
        """Returns the backbone and segmenter checkpoints after pseudo-labelling and two-step training.

        store: a SceneStore (`.load(name)`, `.names(split)`); names default to its "train" split.
        out_dir: the run directory (see the module docstring). resume=True continues an interrupted
        run (finished steps are skipped, an interrupted step restarts from its last.ckpt); its config
        and scenes must equal the recorded ones (ConfigError names the differing fields). A directory
        holding another run needs resume=True or overwrite=True (which deletes that run's state).
        checkpoints_dir: where the final `.ckpt` files and `index.json` go. label_dir: reuse (or write)
        pseudo labels there instead of out_dir/pseudo-labels. label_workers: processes rank 0 labels with;
        label_wait_s: how long the other ranks wait on rank 0's silence (cache_pseudo_labels). callbacks: extra
        Lightning callbacks. tracker: the experiment tracker (engine.loggers) both steps log to (versions step1,
        step2 of the run folder's name).
        """
        out_dir = Path(out_dir)
        names = sorted(names if names is not None else store.names("train"))
        if not names:
            raise ConfigError("no scenes to pretrain on; check the split or the --scene selection")
        devices = check_devices(devices, nodes)  # before hours of pseudo-labelling, not after
        label_dir = Path(label_dir) if label_dir is not None else out_dir / "pseudo-labels"
        # Under DDP every rank runs this function (under srun all at once; Lightning's own launcher starts the
        # other local ranks at rank 0's first fit); only global rank 0 owns the run directory and the files and
        # computes the pseudo labels, the others wait for them (cache_pseudo_labels). DDP broadcasts rank 0's
        # weights, so only rank 0 loads step 1's weights.
        rank = rank_zero_only.rank
        is_zero = rank == 0

        def prepare() -> None:
            # every start and resume adds its code version and environment to run.json (pretext.runs.prepare_run)
            prepare_run(out_dir, run_record(self.name, config, names), resume, overwrite, stages=STEPS)

        # pseudo labels at σ_low and σ_high (cached per scene and σ: reruns skip finished scenes), with the deep
        # features of config.deep_features (computed on rank 0's GPU when it has one and labels in one process;
        # CUDA does not survive into pool workers)
        features_fn = None
        if config.deep_features is not None:
            single = label_workers == 1 and torch.cuda.is_available()
            features_fn = BackboneFeatures(find_backbone(config.deep_features, checkpoints_dir,
                                                             f"deep_features={config.deep_features}"),
                                           device="cuda" if single else "cpu")
        recipe = pseudo_label_recipe(config, features_fn)
        sigmas = config.pseudo.sigmas
        cache_pseudo_labels(store, names, config.pseudo, label_dir, rank=rank, workers=label_workers,
                            progress=progress, prepare=prepare, timeout_s=label_wait_s, features_fn=features_fn)

        step_metrics: dict[str, dict] = {}
        init: Path | None = None
        for stage, sigma, epochs in zip(STEPS, sigmas, (config.train.epochs1, config.train.epochs2), strict=True):
            module = SegmenterModule(config.train, config.loss)
            if init is not None and is_zero:
                module.load_segmenter_weights(init)
            datamodule = SceneDataModule(store, names, PseudoLabelTargets(label_dir, sigma), config.train)
            meta = {**checkpoint_metadata(self.name, store, names, config, config.train, module.segmenter,
                                          data_extra={"pseudo_labels": str(label_dir)}),
                    "pseudo_label_recipe": recipe}

            def recorded(trainer: Any, sigma: float = sigma, epochs: int = epochs,
                         datamodule: SceneDataModule = datamodule) -> dict[str, Any]:
                train_set = datamodule.train_set
                return {"sigma": sigma, "epochs": epochs, "scenes": len(train_set) if train_set is not None else None}

            step_metrics[stage] = train_stage(
                module, datamodule, out_dir / stage, epochs, meta, resume=resume, devices=devices, nodes=nodes,
                progress=progress, stage=stage, enable_progress_bar=enable_progress_bar,
                callbacks=list(callbacks or []), part="segmenter", stage_metrics=recorded, tracker=tracker)
            init = out_dir / stage / "segmenter.ckpt"
        parts = {"backbone": module.segmenter.backbone, "segmenter": module.segmenter}
        return publish({**meta, "metrics": step_metrics}, parts, Path(checkpoints_dir), write=is_zero)


