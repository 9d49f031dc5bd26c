"""FreePoint's own pretext (§3.3): pseudo labels at σ_low and σ_high, then two-step segmenter training.

    method = get_method("freepoint")
    config = method.default_config("cpu-small", epochs1=2, epochs2=1)
    result = method.pretrain(store, config, Path("runs/freepoint"), names=train_names)
    result.backbone, result.segmenter   # .ckpt files under checkpoints/, listed in checkpoints/index.json

Step 1 trains on the over-segmented σ_low masks for `epochs1` epochs; step 2 starts from step 1's
weights and trains on the under-segmented σ_high masks for `epochs2` epochs (§3.3 "Two-step training
strategy", §4). Each step has its own AdamW + schedule. A run directory holds:

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
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict
from pytorch_lightning.utilities import rank_zero_only

from freepoint_bench.atomic import stable_hash, write_json
from freepoint_bench.config import validation_message
from freepoint_bench.engine.checkpoints import (
    code_version,
    data_description,
    environment,
    input_metadata,
    publish_checkpoints,
    save_model_checkpoint,
)
from freepoint_bench.engine.data import PseudoLabelTargets, SceneDataModule
from freepoint_bench.engine.module import SegmenterModule
from freepoint_bench.engine.presets import TrainPreset, get_preset
from freepoint_bench.engine.trainer import check_devices, fit, last_checkpoint, make_trainer
from freepoint_bench.errors import ConfigError, DataError
from freepoint_bench.freepoint.config import PseudoLabelConfig
from freepoint_bench.freepoint.pipeline import run_pseudo_labels
from freepoint_bench.models.losses import LossConfig
from freepoint_bench.pretext.base import PretrainResult, ProgressFn

log = logging.getLogger(__name__)

RUN_FILE = "run.json"


class FreePointConfig(BaseModel):
    """Everything that defines a FreePoint pretraining run (the resume check compares all of it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    train: TrainPreset = get_preset("cpu-small")  # training recipe (`paper`: epochs1/epochs2 = 100/10, §4)
    pseudo: PseudoLabelConfig = PseudoLabelConfig()  # pseudo-label generation (σ_low 0.9, σ_high 1.2, §4)
    loss: LossConfig = LossConfig()  # λ weights of eq. 7 (§3.3)


# The other ranks give up when rank 0 reported no pseudo-label progress for this long (a scene takes minutes)
LABEL_WAIT_S = 3600.0
# What the ranks of one launch share and another launch does not: SLURM's job, step and requeue count, torchrun's
# run id. Lightning's own launcher sets none of them (its ranks start after rank 0 has labelled).
LAUNCH_VARIABLES = ("SLURM_JOB_ID", "SLURM_STEP_ID", "SLURM_RESTART_COUNT", "TORCHELASTIC_RUN_ID",
                    "TORCHELASTIC_RESTART_COUNT")


def launch_token() -> str:
    """Returns the LAUNCH_VARIABLES set in this process as "NAME=value,..." ("" when none is)."""
    return ",".join(f"{name}={os.environ[name]}" for name in LAUNCH_VARIABLES if name in os.environ)


def labels_marker(label_dir: Path, names: list[str], pseudo: PseudoLabelConfig) -> Path:
    """Returns label_dir/ready-<key>.json, key: a hash of the scenes and the pseudo-label config (one file per
    label set, so runs sharing a label_dir do not read each other's)."""
    key = stable_hash(sorted(names), pseudo.model_dump(mode="json"), length=12)
    return Path(label_dir) / f"ready-{key}.json"


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
) -> Path:
    """Returns the marker file (labels_marker) once the pseudo labels of `names` at pseudo.sigmas are in label_dir.

    Global rank 0 runs `prepare` (the run directory's checks) and run_pseudo_labels with `workers` processes,
    writing the marker's state as it goes: "running" with the scenes done, then "done" or "failed" with the error.
    Every other rank computes nothing: it waits for "done" (DataError naming the marker when rank 0 failed, or
    wrote no progress for timeout_s seconds). Under srun every rank starts this at once; Lightning's barrier in
    prepare_data would time out (30 min) long before a dataset is labelled. Across nodes label_dir must be on a
    filesystem they share. progress("pseudo-labels", done, total, info) on every rank.
    """
    marker = labels_marker(label_dir, names, pseudo)
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

            run_pseudo_labels(store, names, pseudo, pseudo.sigmas, label_dir, workers=workers, progress=on_scene)
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

    def default_config(self, preset: str = "cpu-small", **overrides: Any) -> FreePointConfig:
        """Returns a FreePointConfig on training preset `preset`; overrides are `train.<field>`,
        `pseudo.<field>`, `loss.<field>` or a bare training field (e.g. epochs1=2)."""
        groups: dict[str, dict] = {"train": {}, "pseudo": {}, "loss": {}}
        for key, value in overrides.items():
            head, _, tail = key.partition(".")
            if head in groups and tail:
                groups[head][tail] = value
            else:
                groups["train"][key] = value
        train = get_preset(preset, **groups["train"])
        pseudo = PseudoLabelConfig().with_overrides(groups["pseudo"])
        try:
            loss = LossConfig(**groups["loss"])
        except ConfigError:
            raise
        except Exception as e:
            raise ConfigError(f"invalid loss config {groups['loss']}: {validation_message(e)}") from None
        return FreePointConfig(train=train, pseudo=pseudo, loss=loss)

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
        Lightning callbacks.
        """
        out_dir = Path(out_dir)
        names = sorted(names if names is not None else store.names("train"))
        if not names:
            raise ConfigError("no scenes to pretrain on; check the split or the --scene selection")
        devices = check_devices(devices, nodes)  # before hours of pseudo-labelling, not after
        label_dir = Path(label_dir) if label_dir is not None else out_dir / "pseudo-labels"
        run = {"method": self.name, "config": config.model_dump(mode="json"), "scenes": names}
        # Under DDP every rank runs this function (under srun all at once; Lightning's own launcher starts the
        # other local ranks at rank 0's first fit); only global rank 0 owns the run directory and the files and
        # computes the pseudo labels, the others wait for them (cache_pseudo_labels). DDP broadcasts rank 0's
        # weights, so only rank 0 loads step 1's weights.
        rank = rank_zero_only.rank
        is_zero = rank == 0

        def prepare() -> None:
            versions = self._check_run_dir(out_dir, run, resume, overwrite)
            # every start and resume adds its code version (not compared: a resume may run newer code, it
            # is warned about and recorded, since finished steps keep the weights the older code trained)
            # with the environment (packages, CPU SIMD level, GPU): runs reproduce bit for bit in one only
            write_json(out_dir / RUN_FILE, {**run, CODE_VERSIONS: [*versions, {**code_version(),
                                                                             "environment": environment()}]})

        # pseudo labels at σ_low and σ_high (cached per scene and σ: reruns skip finished scenes)
        sigmas = config.pseudo.sigmas
        cache_pseudo_labels(store, names, config.pseudo, label_dir, rank=rank, workers=label_workers,
                            progress=progress, prepare=prepare, timeout_s=label_wait_s)

        step_metrics: dict[str, dict] = {}
        init: Path | None = None
        module: SegmenterModule | None = None
        steps = ((1, sigmas[0], config.train.epochs1), (2, sigmas[1], config.train.epochs2))
        for step, sigma, epochs in steps:
            step_dir = out_dir / f"step{step}"
            weights = step_dir / "segmenter.ckpt"
            done_file = step_dir / "done.json"
            if resume and done_file.is_file() and weights.is_file():
                step_metrics[f"step{step}"] = _read_json(done_file)
                log.info("step %d already finished in %s; skipping it", step, step_dir)
                init = weights
                continue
            module = SegmenterModule(config.train, config.loss)
            if init is not None and is_zero:
                module.load_segmenter_weights(init)
            provider = PseudoLabelTargets(label_dir, sigma)
            datamodule = SceneDataModule(store, names, provider, config.train)
            ckpt = last_checkpoint(step_dir) if resume else None
            if ckpt is not None:
                log.info("step %d: resuming from %s", step, ckpt)
            extra = list(callbacks or [])
            if progress is not None:
                extra.append(module.progress_callback(progress, f"step{step}", epochs))
            trainer = make_trainer(config.train, step_dir, epochs, devices=devices, nodes=nodes,
                                   enable_progress_bar=enable_progress_bar, callbacks=extra)
            fit(trainer, module, datamodule, ckpt_path=ckpt)
            metrics = {
                "sigma": sigma,
                "epochs": epochs,
                "scenes": len(datamodule.train_set) if datamodule.train_set is not None else None,
                **module.loss_summary(),
            }
            if trainer.is_global_zero:
                meta = self._metadata(store, names, config, module, {f"step{step}": metrics}, label_dir)
                save_model_checkpoint(weights, module.segmenter, meta)
                write_json(done_file, metrics)
            step_metrics[f"step{step}"] = metrics
            init = weights

        if module is None:  # both steps were already done: rebuild the final model from step 2's weights
            module = SegmenterModule(config.train, config.loss)
            module.load_segmenter_weights(init)
        return self._publish(store, names, config, module, step_metrics, label_dir, Path(checkpoints_dir),
                             write=is_zero)

    # ------------------------------------------------------------------------------------------ helpers

    def _check_run_dir(self, out_dir: Path, run: dict, resume: bool, overwrite: bool) -> list[dict]:
        """Returns the code versions recorded by the earlier starts of the run being resumed ([] otherwise)."""
        run_file = out_dir / RUN_FILE
        if not run_file.is_file():
            return []
        if resume:
            old = _read_json(run_file)
            versions = list(old.pop(CODE_VERSIONS, []))
            diffs = _differences(old, run)
            if diffs:
                raise ConfigError(
                    f"{run_file}: cannot resume, the run was started with different settings: "
                    + "; ".join(diffs) + ". Use the original settings, or overwrite / another out dir"
                )
            now = code_version()
            earlier = {(v.get("git_commit"), v.get("git_dirty")) for v in versions}
            if versions and (earlier != {(now["git_commit"], now["git_dirty"])} or now["git_dirty"]):
                shown = ", ".join(f"{(c or 'unknown')[:10]}{' (dirty)' if d else ''}" for c, d in sorted(
                    earlier, key=str))
                log.warning("%s: resuming a run started with code %s using code %s%s; its finished steps keep "
                            "the weights the earlier code trained (overwrite to train everything with this code)",
                            run_file, shown, (now["git_commit"] or "unknown")[:10],
                            " (dirty)" if now["git_dirty"] else "")
            changed = _environment_changes([v["environment"] for v in versions if "environment" in v], environment())
            if changed:
                log.warning("%s: resuming in another environment (%s); finished steps keep the weights trained "
                            "there, and runs reproduce bit for bit only in one environment", run_file, changed)
            return versions
        if not overwrite:
            raise ConfigError(
                f"{out_dir} already holds a pretraining run; pass resume (--resume) to continue it, "
                "overwrite (--overwrite) to start again, or choose another out dir"
            )
        for sub in ("step1", "step2"):
            shutil.rmtree(out_dir / sub, ignore_errors=True)
        run_file.unlink()
        return []

    def _metadata(self, store: Any, names: list[str], config: FreePointConfig, module: SegmenterModule,
                  metrics: dict, label_dir: Path) -> dict:
        return {
            "method": self.name,
            "config": config.model_dump(mode="json"),
            "data": {**data_description(store, names), "pseudo_labels": str(label_dir)},
            "architecture": module.architecture(),
            "backend": config.train.backend,
            "input": input_metadata(config.train),
            "metrics": metrics,
            "code_version": code_version(),
            "environment": environment(),
        }

    def _publish(self, store: Any, names: list[str], config: FreePointConfig, module: SegmenterModule,
                 metrics: dict, label_dir: Path, checkpoints_dir: Path, write: bool = True) -> PretrainResult:
        meta = self._metadata(store, names, config, module, metrics, label_dir)
        digest = stable_hash(meta["config"], meta["data"], length=10)
        run_id = f"{self.name}-{meta['data']['dataset']}-{digest}"
        meta["id"] = run_id
        backbone = checkpoints_dir / f"{run_id}-backbone.ckpt"
        segmenter = checkpoints_dir / f"{run_id}-segmenter.ckpt"
        parts = {"backbone": (backbone, module.segmenter.backbone), "segmenter": (segmenter, module.segmenter)}
        if write:
            meta, written = publish_checkpoints(checkpoints_dir, run_id, meta, parts)
            log.info("%s %s and %s", "wrote" if written else "kept", backbone, segmenter)
        return PretrainResult(method=self.name, backbone=backbone, segmenter=segmenter, metadata=meta)


CODE_VERSIONS = "code_versions"  # run.json: the code version of every start and resume of the run


def _environment_changes(earlier: list[dict], now: dict) -> str:
    """Returns "key: old -> new, ..." of what differs between the last of the earlier environments and now
    (the platform string aside: a kernel update does not change floating point); "" when nothing does."""
    if not earlier:
        return ""

    def flat(env: dict) -> dict:
        return {**{k: v for k, v in env.items() if k not in ("packages", "platform")}, **env.get("packages", {})}

    old, new = flat(earlier[-1]), flat(now)
    return ", ".join(f"{k}: {old.get(k)} -> {new.get(k)}" for k in sorted(set(old) | set(new))
                     if old.get(k) != new.get(k))


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(f"{path}: unreadable run record ({e}); delete the run dir to restart") from None


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def _differences(old: dict, new: dict) -> list[str]:
    """Returns "field: old → new" for every differing dotted field (scene lists summarised)."""
    diffs = []
    if old.get("scenes") != new.get("scenes"):
        a, b = set(old.get("scenes", [])), set(new.get("scenes", []))
        diffs.append(f"scenes: {len(a - b)} removed, {len(b - a)} added")
    fo = _flatten({k: v for k, v in old.items() if k != "scenes"})
    fn = _flatten({k: v for k, v in new.items() if k != "scenes"})
    for key in sorted(set(fo) | set(fn)):
        if fo.get(key, "<unset>") != fn.get(key, "<unset>"):
            diffs.append(f"{key}: {fo.get(key, '<unset>')!r} → {fn.get(key, '<unset>')!r}")
    return diffs
