"""One benchmark cell (protocol × checkpoint × seed) computed into the results store, atomically and resumably.

    results/<protocol>/<method>/seed-<k>/result.json    the finished cell (a ResultRecord of results.py)
    results/<protocol>/<method>/seed-<k>/cell.json      what the cell is computed from (a resume must match)
    results/<protocol>/<method>/seed-<k>/work/fold-<f>/ Lightning's last.ckpt and logs of fold f's fine-tune,
                                                        fold.json + predictions.npz once the fold is scored (its
                                                        resume checkpoints are then deleted)
    results/<protocol>/<method>/seed-<k>/.lock          held while a process computes the cell

A finished cell is skipped unless force; an interrupted one resumes from its last training checkpoint (and
finished folds are not redone). Several processes on one store never compute a cell twice: the one holding
the cell's lock computes it, the others report it busy and move on.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import logging
import resource
import shutil
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from freepoint_bench.atomic import checksum_ok, open_lock, save_npz, with_checksum, write_json
from freepoint_bench.data import catalogue
from freepoint_bench.engine.checkpoints import code_version, environment
from freepoint_bench.engine.devices import resolve_device
from freepoint_bench.engine.loggers import Tracker, stage_logger
from freepoint_bench.errors import ConfigError, DataError
from freepoint_bench.harness.finetune import (
    FinetuneConfig,
    ProtocolTargets,
    SemanticTargets,
    check_leakage,
    class_vocabulary,
    eval_spec,
    pack_predictions,
    pack_semantic,
    predict_scenes,
    predict_semantic_scenes,
    score,
    score_semantic,
    segmentation_vocabulary,
    train_fold,
    unpack_predictions,
    unpack_semantic,
)
from freepoint_bench.harness.protocol import ProtocolSpec, load_split, scenes_of, sha256_file
from freepoint_bench.results import RESULT_FILE, UNKNOWN_DATASET, ResultRecord, cell_folder, read_result, write_result

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int, str], None]


@dataclass(frozen=True)
class Cell:
    """One unit of benchmark work: a protocol, a method's checkpoint per fold, a training seed."""

    protocol: ProtocolSpec
    method: str
    seed: int
    checkpoints: tuple[Path | None, ...]  # one per fold (None: random initialisation, no checkpoint)

    def dir(self, results: str | Path) -> Path:
        """Returns the cell's folder in the results store."""
        return cell_folder(results, self.protocol.name, self.method, self.seed)


def drop_resume_checkpoints(work: Path) -> None:
    """Deletes a scored fold's Lightning resume checkpoints (work/lightning/*.ckpt): nothing reads them once
    fold.json and predictions.npz are written, and at the paper preset each holds 34C with its AdamW state (~450 MB;
    the README's 72 cells would keep ~33 GB). Its logs stay."""
    for path in (work / "lightning").glob("*.ckpt"):
        path.unlink(missing_ok=True)  # last.ckpt is a link to the newest epoch file: both go


@contextlib.contextmanager
def cell_lock(cell_dir: Path) -> Iterator[bool]:
    """Yields True while this process holds the cell's lock, False when another process holds it."""
    with open_lock(cell_dir / ".lock") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------------------------- the data of a fold


@dataclass(frozen=True)
class FoldData:
    """The scenes of one fold: labelled training scenes (after the unit's selection) and evaluation scenes."""

    fold: int
    train: list[str]
    eval: list[str]
    kept_masks: dict[str, list[str]] | None  # masks unit: scene → kept instance names
    num_masks: int | None
    num_masks_total: int | None
    kept_points: dict[str, Any] | None = None  # points unit: scene → labelled vertex indices (official file)


def fold_data(spec: ProtocolSpec, names: Sequence[str], split: Mapping[str, Any], fold: int) -> FoldData:
    """Returns the training / evaluation scenes of `fold` among `names` (the dataset's scenes), after the
    protocol's selection. DataError when the data lack the evaluation groups or selected training scenes."""
    train_groups, eval_groups = spec.fold_groups(fold)
    eval_names = scenes_of(names, eval_groups, spec.dataset)
    if not eval_names:
        raise DataError(f"protocol {spec.name}: the data hold no scene of the evaluation groups {eval_groups}; "
                        "point --root at a copy that includes them")
    if spec.expected_eval_scenes and len(eval_names) < spec.expected_eval_scenes and spec.num_folds == 1:
        log.warning("protocol %s: %d evaluation scenes in the data, the protocol expects %d; results will not be "
                    "comparable with complete copies", spec.name, len(eval_names), spec.expected_eval_scenes)
    pool = scenes_of(names, train_groups, spec.dataset)
    missing_groups = sorted(set(train_groups) - {g for g in train_groups if scenes_of(names, [g], spec.dataset)})
    if missing_groups:
        raise DataError(f"protocol {spec.name}: the data hold no scene of the training groups {missing_groups}; "
                        "point --root at a complete copy")
    kept = points = None
    num_masks = total = None
    if spec.unit == "full":
        train = pool
    elif spec.unit == "points":
        listed = split["points"]
        train = [n for n in pool if n in listed]
        in_groups = set(scenes_of(listed, train_groups, spec.dataset))
        absent = sorted(s for s in in_groups if s not in set(pool))
        if absent:
            raise DataError(f"protocol {spec.name}: {len(absent)} scenes of the official points file are not in the "
                            f"data (e.g. {absent[0]}); point --root at a complete copy")
        points = {n: listed[n] for n in train}
    elif spec.unit == "scenes":
        chosen = set(split["train_scenes"])
        train = [n for n in pool if n in chosen]
        in_groups = set(scenes_of(chosen, train_groups, spec.dataset))
        absent = sorted(s for s in chosen if s in in_groups and s not in set(pool))
        if absent:
            raise DataError(f"protocol {spec.name}: {len(absent)} selected training scenes are not in the data "
                            f"(e.g. {absent[0]}); point --root at a complete copy")
    else:
        masks = split["masks"]
        train = [n for n in pool if masks.get(n)]
        in_groups = set(scenes_of(masks, train_groups, spec.dataset))
        absent = sorted(s for s in masks if s not in set(names) and s in in_groups)
        if absent:
            raise DataError(f"protocol {spec.name}: {len(absent)} scenes of the frozen mask selection are not in the "
                            f"data (e.g. {absent[0]}); freeze the split from this copy or use the copy it came from")
        kept = {n: list(masks[n]) for n in train}
        num_masks = sum(len(v) for v in kept.values())
        total = None
    if not train:
        raise DataError(f"protocol {spec.name}, fold {fold}: no labelled training scene is left after the selection")
    return FoldData(fold, train, eval_names, kept, num_masks, total, points)


# ---------------------------------------------------------------------------------------------- the cell


def _cell_record(cell: Cell, config: FinetuneConfig, split_sha: str, ckpts: list[dict]) -> dict[str, Any]:
    # the weights identify a checkpoint here, not the file's bytes (see _checkpoint_info)
    return {"protocol": cell.protocol.name, "protocol_hash": cell.protocol.content_hash(), "split_sha256": split_sha,
            "method": cell.method, "seed": cell.seed,
            "checkpoints": [{k: c[k] for k in ("weights_sha256", "method")} for c in ckpts],
            "config": config.model_dump(mode="json")}


def _checkpoint_info(path: Path | None, method: str) -> dict[str, Any]:
    """Returns {"path", "sha256" (of the file), "weights_sha256" (of the tensors alone: a re-published checkpoint
    with a new timestamp has other file bytes but the same weights), "id", "method", "pretrain_dataset" (the
    dataset its metadata says it was pretrained on; "" for one that saw no scene, scratch's random initialisation;
    "unknown" where it names none: the report compares it)}."""
    if path is None:
        return {"path": None, "sha256": None, "weights_sha256": None, "id": None, "method": method}
    from freepoint_bench.models.checkpoint import load_checkpoint, weights_sha256

    state, meta = load_checkpoint(path)
    data = meta.get("data") or {}
    # no scene, and not for want of a list (an import without --scenes-file records scenes_known false)
    untrained = data.get("scenes") == [] and data.get("scenes_known", True)
    return {"path": str(path), "sha256": sha256_file(path), "weights_sha256": weights_sha256(state),
            "id": meta.get("id"), "method": meta.get("method"),
            "pretrain_dataset": "" if untrained else str(data.get("dataset") or UNKNOWN_DATASET)}


def _layout(store: Any, names: Sequence[str], dataset: str) -> str:
    """Returns the catalogue entry whose reader read the scenes when it is another layout of `dataset` (the scenes'
    meta["dataset"], catalogue `layout_of`), else ''."""
    read_as = store.load(names[0]).meta.get("dataset", dataset) if names else dataset
    return "" if catalogue.canonical(read_as) == catalogue.canonical(dataset) else read_as


def run_cell(cell: Cell, store: Any, names: Sequence[str], config: FinetuneConfig, results: str | Path, *,
             protocols_dir: str | Path | None = None, splits_dir: str | Path | None = None, force: bool = False,
             progress: ProgressFn | None = None, eval_device: str | None = None,
             tracker: Tracker | None = None, split_root: str | Path | None = None) -> tuple[str, Path]:
    """Computes one cell into the results store; returns (status, result path).

    status: "done" (computed now), "skipped" (already finished), "busy" (another process holds its lock).
    eval_device: where the evaluation scenes are predicted (auto, cpu, cuda, cuda:<i>); None: on the device
    each fold trained on. protocols_dir / splits_dir / split_root: where the split file is read
    (protocol.load_split; split_root: an official file's folder).
    tracker: the experiment tracker each fold's training logs to (engine.loggers; run <protocol>/<method>/seed-<k>,
    version fold-<f>), beside its CSV log.
    """
    spec = cell.protocol
    # a GPU this machine lacks is refused before anything trains
    predict_on = None if eval_device is None else resolve_device(eval_device, "--eval-device")
    if len(cell.checkpoints) != spec.num_folds:
        raise ConfigError(f"protocol {spec.name} has {spec.num_folds} fold(s); give one checkpoint per fold, "
                          f"not {len(cell.checkpoints)}")
    cell_dir = cell.dir(results)
    out = cell_dir / RESULT_FILE
    with cell_lock(cell_dir) as mine:
        if not mine:
            log.info("%s is being computed by another process; skipping it", cell_dir)
            return "busy", out
        if out.is_file() and not force:
            read_result(out)  # a damaged result is an error, not a finished cell
            return "skipped", out
        split, split_sha = load_split(spec, protocols_dir, splits_dir, split_root)
        ckpts = [_checkpoint_info(p, cell.method) for p in cell.checkpoints]
        record = _cell_record(cell, config, split_sha, ckpts)
        record_file = cell_dir / "cell.json"
        if force:
            shutil.rmtree(cell_dir / "work", ignore_errors=True)
            out.unlink(missing_ok=True)
        elif record_file.is_file() and (old := _read_work_json(record_file)) is None:
            shutil.rmtree(cell_dir / "work", ignore_errors=True)  # what it recorded is unknown: start again
        elif record_file.is_file():
            if old != json.loads(json.dumps(record)):
                diffs = sorted(k for k in set(old) | set(record) if old.get(k) != json.loads(json.dumps(record)).get(k))
                raise ConfigError(f"{cell_dir}: holds an interrupted run with other settings ({', '.join(diffs)}); "
                                  "pass --force to discard it and start again")
        write_json(record_file, record)
        t0 = time.perf_counter()
        task = _TaskSteps(spec)
        cell_name = f"{spec.name}/{cell.method}/seed-{cell.seed}"
        folds, pooled, train_seconds, train_steps = [], {}, 0.0, 0
        for f in range(spec.num_folds):
            data = fold_data(spec, names, split, f)
            ckpt = cell.checkpoints[f]
            if ckpt is not None:
                from freepoint_bench.models.checkpoint import load_checkpoint

                check_leakage(load_checkpoint(ckpt)[1], data.eval, ckpt)
            work = cell_dir / "work" / f"fold-{f}"
            fold_file, pred_file = work / "fold.json", work / "predictions.npz"
            finished = _finished_fold(fold_file, pred_file, task.unpack)
            if finished is not None:
                fold_doc, preds = finished
            else:
                stage = f"fold {f}" if spec.num_folds > 1 else "finetune"
                t_train = time.perf_counter()
                targets = task.targets(data.kept_masks, data.kept_points)
                module, trained_on = train_fold(store, data.train, targets, config,
                                                num_classes=len(task.class_ids), init_backbone=ckpt,
                                                seed=cell.seed, work_dir=work, progress=progress,
                                                stage=f"{stage}: train", task=spec.task,
                                                logger=stage_logger(tracker, work, cell_name, f"fold-{f}"))
                seconds = time.perf_counter() - t_train
                preds = task.predict(module.segmenter, store, data.eval, config, progress, stage=f"{stage}: predict",
                                     device=trained_on if predict_on is None else predict_on)
                fold_doc = {"fold": f, "eval_scenes": data.eval, "train_scenes": data.train,
                            "num_train_masks": data.num_masks, "metrics": task.score(store, preds),
                            # the passes made: a max_steps budget (the paper's 90k steps) sets them, not epochs
                            "train_seconds": seconds, "epochs": config.epochs_for(len(data.train)),
                            "losses": module.loss_summary()["loss_history"]}
                save_npz(pred_file, **task.pack(preds))
                write_json(fold_file, with_checksum(fold_doc))
                drop_resume_checkpoints(work)
            folds.append(fold_doc)
            pooled.update(preds)
            train_seconds += fold_doc["train_seconds"]
            train_steps += len(fold_doc["train_scenes"]) * fold_doc["epochs"]
        metrics = task.score(store, pooled) if spec.num_folds > 1 else folds[0]["metrics"]
        result = ResultRecord(
            protocol=spec.name,
            task=spec.task,
            protocol_hash=record["protocol_hash"],
            dataset=spec.dataset,
            layout=_layout(store, sorted(pooled), spec.dataset),
            unit=spec.unit,
            fraction=spec.fraction,
            dropped=spec.dropped,
            split_sha256=split_sha,
            method=cell.method,
            seed=cell.seed,
            checkpoint=ckpts[0] if len(ckpts) == 1 else {**ckpts[0], "per_fold": ckpts},
            preset=config.train.name,
            config=record["config"],
            metrics=metrics,
            folds=[{k: v for k, v in fd.items() if k not in ("train_scenes",)} for fd in folds],
            eval_scenes=tuple(sorted(pooled)),
            num_train_scenes=sum(len(fd["train_scenes"]) for fd in folds),
            num_train_masks=None if folds[0]["num_train_masks"] is None
            else sum(fd["num_train_masks"] for fd in folds),
            num_masks_total=split.get("candidates") if spec.unit == "masks" else None,
            throughput={"train_scene_epochs": train_steps, "train_seconds": train_seconds,
                        "scenes_per_second": train_steps / train_seconds if train_seconds > 0 else None,
                        # the process's peak so far (it may include earlier cells or pretraining)
                        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024},
            code_version=code_version(),
            environment=environment(),
            wall_time_s=time.perf_counter() - t0,
            finished=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        )
        write_result(out, result)
        return "done", out


def _read_work_json(path: Path) -> dict[str, Any] | None:
    """Returns a cell's work record (cell.json, fold.json), None (with a warning) when it is unreadable or damaged."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        doc = e
    if not isinstance(doc, dict) or not checksum_ok(doc):
        log.warning("%s: unreadable or damaged (%s); recomputing what it recorded", path,
                    doc if isinstance(doc, Exception) else "content differs from its content_sha256")
        return None
    return doc


def _finished_fold(fold_file: Path, pred_file: Path,
                   unpack: Callable[[Mapping[str, np.ndarray]], dict] = unpack_predictions
                   ) -> tuple[dict[str, Any], dict] | None:
    """Returns (fold.json, predictions (`unpack` of predictions.npz)) of a scored fold; None when either is missing,
    unreadable or damaged."""
    if not (fold_file.is_file() and pred_file.is_file()):
        return None
    doc = _read_work_json(fold_file)
    if doc is None:
        return None
    try:
        with np.load(pred_file, allow_pickle=False) as z:
            return doc, unpack({k: z[k] for k in z.files})
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        log.warning("%s: unreadable predictions (%s); scoring the fold again", pred_file, e)
        return None


class _TaskSteps:
    """What a protocol's task trains on, predicts, scores and stores: instances (insseg, insseg-frozen) or per-point
    classes (semseg, linear)."""

    def __init__(self, spec: ProtocolSpec) -> None:
        self.rules, self.semantic, self.dropped = spec.eval, spec.semantic, spec.dropped
        if self.semantic:
            self.class_ids, _ = segmentation_vocabulary(spec.eval)
        else:
            self.class_ids, _ = class_vocabulary(spec.eval)
            self.spec_eval = eval_spec(spec.eval)
        self.pack = pack_semantic if self.semantic else pack_predictions
        self.unpack = unpack_semantic if self.semantic else unpack_predictions

    def targets(self, kept: Mapping[str, Sequence[str]] | None,
                points: Mapping[str, Any] | None = None) -> ProtocolTargets | SemanticTargets:
        """Returns the training targets of a fold (kept: a masks protocol's kept instances, its dropped ones made
        what the protocol's `dropped` says; points: a points protocol's labelled vertices)."""
        if self.semantic:
            return SemanticTargets(self.rules, kept, points)
        return ProtocolTargets(self.rules, kept, points, self.dropped)

    def predict(self, segmenter: Any, store: Any, names: Sequence[str], config: FinetuneConfig,
                progress: ProgressFn | None, *, stage: str, device: Any) -> dict[str, Any]:
        """Returns the per-scene predictions of the evaluation scenes."""
        if self.semantic:
            return predict_semantic_scenes(segmenter, store, names, config, progress, stage=stage, device=device)
        return predict_scenes(segmenter, store, names, config, self.class_ids, progress, stage=stage, device=device)

    def score(self, store: Any, preds: Mapping[str, Any]) -> dict[str, Any]:
        """Returns the metrics block of a result (results.py: the task's metrics and per_class)."""
        if self.semantic:
            return score_semantic(store, preds, self.rules)
        return _metrics(score(store, preds, self.spec_eval).to_dict())


def _metrics(d: Mapping[str, Any]) -> dict[str, Any]:
    return {"ap": d["ap"], "ap50": d["ap50"], "ap25": d["ap25"], "per_class": d["per_class"]}
