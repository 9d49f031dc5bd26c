"""The result record: one typed schema for a finished benchmark cell, written by the harness, read by the report.

    results/<protocol>/<method>/seed-<k>/result.json    one ResultRecord (fields: docs/protocols-and-results.md)

A result.json is indented JSON with sorted keys and its content's sha256 under `content_sha256` (atomic.py's
with_checksum), so a flipped byte that still parses is refused on reading. It is read and written only through
read_result / write_result: a record read from a file the harness wrote writes back the same bytes.

Also here: the class-agnostic comparison document of `bench.py pseudo-labels --compare-json` (a list of rows, one
per method), written by the CLI and read by the report's unsupervised leaderboard.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from freepoint_bench.atomic import checksum_ok, stable_hash, with_checksum, write_json
from freepoint_bench.errors import DataError

SCHEMA_VERSION = 1  # bump only with a reader for the old version: finished cells are never recomputed silently
RESULT_FILE = "result.json"
METRICS: tuple[str, ...] = ("ap", "ap50", "ap25")  # fractions 0..1; null where there is nothing to score
# a protocol's task (harness.protocol.TASKS); a result.json without "task" is an instance-segmentation cell (every
# file written before tasks existed)
DEFAULT_TASK = "insseg"
# the metrics of the semantic tasks (harness.protocol.SEMANTIC_TASKS): mIoU, mAcc, allAcc (evaluation.semantic);
# their per_class blocks hold iou and acc
SEMANTIC_METRICS: tuple[str, ...] = ("miou", "macc", "all_acc")
SEMANTIC_CLASS_METRICS: tuple[str, ...] = ("iou", "acc")
SEMANTIC_TASKS: tuple[str, ...] = ("semseg", "linear")  # the tasks scored by SEMANTIC_METRICS
SEED_PREFIX = "seed-"
# what a masks protocol's dropped masks became in training (harness.protocol.DroppedMasks): ignored unless a result
# records "dropped" (written only when not this default, so every file written before the field keeps its bytes)
DEFAULT_DROPPED = "ignore"
_REQUIRED = ("protocol", "protocol_hash", "split_sha256", "method", "seed", "metrics")  # the fields without a default
_RERUN = "delete it and rerun the cell with `bench.py run`"
# The fields of the fine-tuning config (dotted, as result.json's "config" nests them) that are not part of a cell's
# recipe (ResultRecord.recipe), each with why: they say where, how fast or under which name a cell ran, not what it
# trained on, how it trained or how it was scored. Every other field is recipe, including fields added later: one
# recorded only off its default (engine.presets.OMITTED_AT_DEFAULT) keeps older cells alike, any other splits them
# from newer ones, named as "absent" (the code that trained them did not have it).
RECIPE_EXCLUDED: dict[str, str] = {
    "train.seed": "train_fold replaces it with the cell's seed (train.with_(seed=seed)); seeds are an entry's axis",
    "train.name": "the preset's label; the values the preset sets are compared field by field",
    "train.num_workers": "DataLoader processes: each sample's randomness is keyed by (seed, epoch, index) "
    "(engine.data), so the count changes speed, not samples",
    "train.accelerator": "where it ran (engine.trainer.resolve_accelerator falls back to the CPU whatever it asks); "
    "the record's environment says what ran",
    "train.epochs1": "FreePoint's pretraining step-1 budget in the shared training preset; fine-tuning reads epochs",
    "train.epochs2": "FreePoint's pretraining step-2 budget in the shared training preset; fine-tuning reads epochs",
}
# recipe fields that are not fine-tuning config fields, in a recipe only when not these defaults (the report names a
# recipe without one as holding the default, not as "absent")
RECIPE_DEFAULTS: dict[str, Any] = {"dropped": DEFAULT_DROPPED}
UNKNOWN_DATASET = "unknown"  # a pretraining dataset no checkpoint record names
# engine checkpoint ids: <method>-<dataset>-<10 hex digits> (pretext.runs.checkpoint_id and the import commands)
_ID_HEX = 10


def task_metrics(task: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Returns (the metrics of a task's results, those of its per_class blocks)."""
    return (SEMANTIC_METRICS, SEMANTIC_CLASS_METRICS) if task in SEMANTIC_TASKS else (METRICS, METRICS)


def cell_folder(results: str | os.PathLike, protocol: str, method: str, seed: int) -> Path:
    """Returns results/<protocol>/<method>/seed-<seed>, the folder of one cell of the results store."""
    return Path(results) / protocol / method / f"{SEED_PREFIX}{seed}"


def result_path(results: str | os.PathLike, protocol: str, method: str, seed: int) -> Path:
    """Returns results/<protocol>/<method>/seed-<seed>/result.json."""
    return cell_folder(results, protocol, method, seed) / RESULT_FILE


def cell_of(folder: Path) -> tuple[str, str, int] | None:
    """Returns (protocol, method, seed) of a cell folder results/<protocol>/<method>/seed-<k>; None for another
    folder."""
    if not folder.name.startswith(SEED_PREFIX):
        return None
    try:
        seed = int(folder.name.removeprefix(SEED_PREFIX))
    except ValueError:
        return None
    return folder.parent.parent.name, folder.parent.name, seed


@dataclass(frozen=True)
class ResultRecord:
    """One finished cell (protocol × method × seed): what it was computed from and what it scored.

    The values are the JSON values of result.json (metrics are fractions 0..1 or None); the fields after `metrics`
    default to what the report assumes when a hand-made file omits them.
    """

    protocol: str
    protocol_hash: str  # sha256 of the protocol's content (its TOML as parsed)
    split_sha256: str  # sha256 of the frozen split the cell trained on
    method: str
    seed: int
    # insseg: ap, ap50, ap25 (pooled over folds) and per_class: {class: {ap, ap50, ap25}}; semantic tasks (semseg,
    # linear): miou, macc, all_acc and per_class: {class: {iou, acc}} (task_metrics)
    metrics: dict[str, Any]
    task: str = DEFAULT_TASK  # the protocol's task; written only when not insseg (older files stay byte-identical)
    dataset: str = ""
    # the catalogue entry that read the scenes when it is another on-disk layout of `dataset` (pointcept-s3dis for an
    # s3dis protocol run on Pointcept's copy: its instance numbering may differ); written only when set
    layout: str = ""
    unit: str = ""  # masks | scenes | full
    fraction: float = 1.0
    # the protocol's `dropped` (ignore | background): part of the recipe (recipe) when not the default
    dropped: str = DEFAULT_DROPPED
    # path, sha256, weights_sha256, id, method, pretrain_dataset (since issue 29) (+ per_fold when folds > 1)
    checkpoint: dict[str, Any] | None = None
    preset: str = ""
    config: dict[str, Any] = field(default_factory=dict)  # the fine-tuning config
    folds: list[dict[str, Any]] = field(default_factory=list)
    eval_scenes: tuple[str, ...] = ()  # the scenes scored (all folds pooled)
    num_train_scenes: int | None = None
    num_train_masks: int | None = None
    num_masks_total: int | None = None
    throughput: dict[str, Any] | None = None
    code_version: dict[str, Any] | None = None
    environment: dict[str, Any] | None = None
    wall_time_s: float | None = None
    finished: str | None = None  # ISO 8601, UTC
    path: Path | None = field(default=None, compare=False)  # the file it was read from (not written)

    def to_json(self) -> dict[str, Any]:
        """Returns the record as result.json's object (without its checksum)."""
        doc = {"schema_version": SCHEMA_VERSION}
        doc.update({f.name: getattr(self, f.name) for f in fields(self) if f.name != "path"})
        doc["eval_scenes"] = list(self.eval_scenes)
        if self.task == DEFAULT_TASK:
            del doc["task"]
        if not self.layout:
            del doc["layout"]
        if self.dropped == DEFAULT_DROPPED:
            del doc["dropped"]
        return doc

    @property
    def scores(self) -> dict[str, float]:
        """Returns the task's metrics as floats (insseg: {ap, ap50, ap25}; semantic tasks: {miou, macc, all_acc}),
        NaN where the file holds null."""
        return _scores(self.metrics, task_metrics(self.task)[0])

    @property
    def class_scores(self) -> dict[str, dict[str, float]]:
        """Returns {class: the task's per-class metrics} as floats (insseg: ap, ap50, ap25; semantic tasks: iou,
        acc), NaN where the file holds null."""
        names = task_metrics(self.task)[1]
        return {str(c): _scores(v, names) for c, v in (self.metrics.get("per_class") or {}).items()}

    @property
    def checkpoint_id(self) -> str:
        """Returns the id of the checkpoint the cell fine-tuned ('' for random initialisation)."""
        return str((self.checkpoint or {}).get("id") or "")

    @property
    def recipe(self) -> dict[str, Any]:
        """Returns the fine-tuning recipe: the config's fields by dotted name (train.lr, inference.topk), without
        RECIPE_EXCLUDED's, and "dropped" where the dropped masks were not ignored (it changes what the cell trains
        on; RECIPE_DEFAULTS names the default a recipe without it holds). Read from the stored config, so files
        written before it existed have one too."""
        recipe = recipe_of(self.config)
        return recipe if self.dropped == DEFAULT_DROPPED else {**recipe, "dropped": self.dropped}

    @property
    def recipe_hash(self) -> str:
        """Returns the hash of `recipe` (16 hex digits): cells of one recipe share it."""
        return stable_hash(self.recipe)

    @property
    def pretrain_dataset(self) -> str:
        """Returns the dataset the fine-tuned checkpoint was pretrained on: '' for random initialisation, else its
        record's pretrain_dataset (written since issue 29), else the dataset its id names (older files), else
        'unknown'; folds pretrained on different data give their datasets joined by '+'."""
        ckpt = self.checkpoint or {}
        names = sorted({_pretrain_dataset(c) for c in ckpt.get("per_fold") or [ckpt] if isinstance(c, dict)})
        return "+".join(n for n in names if n)


def recipe_of(config: Mapping[str, Any]) -> dict[str, Any]:
    """Returns a fine-tuning config's recipe: its fields by dotted name, without RECIPE_EXCLUDED's."""
    return {k: v for k, v in _flatten(config).items() if k not in RECIPE_EXCLUDED}


def _flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in config.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _pretrain_dataset(ckpt: Mapping[str, Any]) -> str:
    """Returns one checkpoint record's pretraining dataset ('' when it records no checkpoint: random init)."""
    if isinstance(ckpt.get("pretrain_dataset"), str):
        return ckpt["pretrain_dataset"]
    if ckpt.get("path") is None and ckpt.get("id") is None:
        return ""
    ident, method = ckpt.get("id"), ckpt.get("method")
    if isinstance(ident, str) and isinstance(method, str):
        # the method is the id's prefix and the hash its fixed-length suffix, so a dataset named with hyphens
        # (synthetic-s3dis) still reads whole
        found = re.fullmatch(rf"{re.escape(method)}-(.+)-[0-9a-f]{{{_ID_HEX}}}", ident)
        if found:
            return found.group(1)
    return UNKNOWN_DATASET


def _scores(block: Mapping[str, Any], names: Sequence[str] = METRICS) -> dict[str, float]:
    return {m: math.nan if block[m] is None else float(block[m]) for m in names}


def write_result(path: str | os.PathLike, record: ResultRecord) -> Path:
    """Writes a record as result.json atomically, with its checksum; returns the path."""
    return write_json(path, with_checksum(record.to_json()))


def _is_number(value: Any) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def _check_metrics(block: Any, where: str, path: Path, names: Sequence[str] = METRICS) -> None:
    if not isinstance(block, dict):
        raise DataError(f"{path}: {where} is not an object; {_RERUN}")
    missing = [m for m in names if m not in block]
    if missing:
        raise DataError(f"{path}: {where} lacks {', '.join(missing)}; {_RERUN}")
    for m in names:
        if not _is_number(block[m]):
            raise DataError(f"{path}: {where}.{m} is {block[m]!r}, not a number; {_RERUN}")


def _check_types(data: dict[str, Any], path: Path) -> None:
    for key in ("protocol", "protocol_hash", "split_sha256", "method"):
        if not isinstance(data[key], str):
            raise DataError(f"{path}: {key} is {data[key]!r}, not a string; {_RERUN}")
    for key in ("dataset", "unit", "preset", "task", "dropped"):
        if not isinstance(data.get(key, ""), str):
            raise DataError(f"{path}: {key} is {data[key]!r}, not a string; {_RERUN}")
    if isinstance(data["seed"], bool) or not isinstance(data["seed"], int):
        raise DataError(f"{path}: seed is {data['seed']!r}, not an integer; {_RERUN}")
    if "fraction" in data and (data["fraction"] is None or not _is_number(data["fraction"])):
        raise DataError(f"{path}: fraction is {data['fraction']!r}, not a number; {_RERUN}")
    names, class_names = task_metrics(data.get("task", DEFAULT_TASK))
    _check_metrics(data["metrics"], "metrics", path, names)
    per_class = data["metrics"].get("per_class") or {}
    if not isinstance(per_class, dict):
        raise DataError(f"{path}: metrics.per_class is not an object; {_RERUN}")
    for name, block in per_class.items():
        _check_metrics(block, f"metrics.per_class.{name}", path, class_names)
    # a null checkpoint or eval_scenes reads as none, as the report always read them
    for key, kind, nullable in (("checkpoint", dict, True), ("config", dict, False), ("folds", list, False),
                                ("eval_scenes", list, True)):
        if key in data and not isinstance(data[key], kind) and not (nullable and data[key] is None):
            raise DataError(f"{path}: {key} is not a JSON {'object' if kind is dict else 'list'}; {_RERUN}")


def read_result(path: str | os.PathLike) -> ResultRecord:
    """Returns the record of one result.json; DataError (one line naming the file and the fix) when it is unreadable,
    damaged (its content differs from its checksum), of another schema version, or lacks or mistypes a field."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        reason = e.msg if isinstance(e, json.JSONDecodeError) else type(e).__name__
        raise DataError(f"{path}: corrupt result.json ({reason}); {_RERUN}") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: corrupt result.json (not a JSON object); {_RERUN}")
    if not checksum_ok(data):
        raise DataError(f"{path}: damaged result.json (its content differs from its content_sha256); {_RERUN}")
    if "schema_version" not in data:
        raise DataError(f"{path}: not a freepoint-bench result (no schema_version); {_RERUN}")
    if data["schema_version"] != SCHEMA_VERSION:
        raise DataError(f"{path}: schema_version {data['schema_version']!r}, this freepoint-bench reads "
                        f"{SCHEMA_VERSION}; update freepoint-bench or {_RERUN}")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise DataError(f"{path}: result.json lacks {', '.join(missing)}; {_RERUN}")
    _check_types(data, path)
    values = {f.name: data[f.name] for f in fields(ResultRecord) if f.name in data and f.name != "path"}
    values["eval_scenes"] = tuple(data.get("eval_scenes") or ())
    return ResultRecord(**values, path=path)


# ---------------------------------------------------------------------------------------------- compare document


def compare_document(rows: Sequence[Mapping[str, Any]], dataset: str, num_scenes: int) -> dict[str, Any]:
    """Returns the `pseudo-labels --compare-json` document: {dataset, num_scenes, class_agnostic, rows}, each row a
    method's class-agnostic metrics (NaN written as null)."""
    clean = [{k: None if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()} for r in rows]
    return {"dataset": dataset, "num_scenes": num_scenes, "class_agnostic": True, "rows": clean}


def write_compare(path: str | os.PathLike, rows: Sequence[Mapping[str, Any]], dataset: str, num_scenes: int) -> Path:
    """Writes the `--compare-json` document atomically; returns the path."""
    return write_json(path, compare_document(rows, dataset, num_scenes))


def compare_rows(data: Any) -> list[Any] | None:
    """Returns the rows of a `--compare-json` document, each with the document's dataset and num_scenes added where
    it is an object; None when `data` is not one (e.g. an `evaluate --json` result)."""
    if not (isinstance(data, dict) and isinstance(data.get("rows"), list)):
        return None
    extra = {"num_scenes": data.get("num_scenes"), "dataset": data.get("dataset")}
    return [{**row, **extra} if isinstance(row, dict) else row for row in data["rows"]]
