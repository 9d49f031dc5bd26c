"""Fine-tuning protocols: declarative specs (TOML under protocols/), deterministic label selection, split files.

    spec = load_protocol("s3dis-10pct-masks")            # protocols/s3dis-10pct-masks.toml, validated
    path, sha = freeze_split(spec, names=..., store=..., class_names=..., splits_dir="results/splits")
    split, sha = load_split(spec, splits_dir="results/splits")  # ConfigError on a hash mismatch

A protocol names the fine-tuning dataset, the scene groups it trains and evaluates on (S3DIS areas
``Area_N``, ScanNet rooms ``sceneXXXX``), the label unit (``masks``: a share of the training instance
masks, ``scenes``: a share of the training rooms, ``points``: a few labelled points per training scene, ``full``:
everything) and fraction, the selection seed,
the split file and its sha256, the fine-tuning preset, the evaluation rules, and the pretraining that goes with
the fine-tuning preset (its preset and default dataset: the paper pretrains on ScanNet for the S3DIS protocols).

Selection is a pure function of names and the seed: every candidate is ranked by
``sha256(f"{seed}\\0{scene}\\0{instance}")`` and the first ``max(1, round(fraction * n))`` are kept
(per class for masks, so every class keeps at least one mask). File order, machine and library versions
cannot change it.

Where split files live: the protocols folder ships the pinned splits (``split_sha256``: the scenes protocols'
committed room choices) and is only read. A split frozen from a user's copy of the data (masks protocols, the
synthetic stand-ins) is written to and read from a user folder, ``<results>/splits/<protocol>.json`` by default
(``--splits``), never into the protocols folder (an installed package's is site-packages). A split an older
version froze into the protocols folder is still read when the user folder has none, so finished results match.

Official split files (``official_file``): ScanNet's data-efficient benchmark (Hou et al. 2021, CSC) publishes its
selections, and a protocol reads them as published from the user's download (``--split-root``, default the data
root): ``tasks/scenes/<1|5|10|20>.txt`` (limited reconstructions: one training scan name per line) and
``tasks/points/points<20|50|100|200>`` (limited annotations: a torch-saved dict scan name → the indices of its labelled
vertices of ``_vh_clean_2.ply``). Their sha256 is the split sha256 every result records.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from freepoint_bench.atomic import write_text
from freepoint_bench.config import validation_message
from freepoint_bench.data import catalogue
from freepoint_bench.errors import ConfigError, DataError
from freepoint_bench.results import DEFAULT_DROPPED, DEFAULT_TASK, SEMANTIC_TASKS

log = logging.getLogger(__name__)

PROTOCOLS_DIR = Path(__file__).resolve().parents[2] / "protocols"  # the repository's protocols/ folder
SPLIT_VERSION = 1
TRAIN_SCENES = "train-scenes"  # pretraining dataset meaning: each fold's own training scenes (their labels unused)
# The pretraining recipe is left out of a protocol's hash: the hash says what a cell is fine-tuned and scored on,
# and a result records the checkpoint it started from by its own hash (so the hashes of results written before
# these fields existed still match).
RECIPE_FIELDS = ("pretrain_preset", "pretrain_dataset", "pretrain_root")
# The probe ladder, cheapest first (DESIGN.md): a protocol's task says what a cell trains and scores.
#   linear         backbone frozen in eval mode, one linear per-point classifier (cross-entropy)
#   insseg-frozen  backbone frozen in eval mode, the instance decoder trained
#   semseg         backbone + the per-point classifier, fine-tuned end to end
#   insseg         semantic instance segmentation, fine-tuned end to end (the paper's; the default)
ProtocolTask = Literal["insseg", "semseg", "linear", "insseg-frozen"]
TASKS: tuple[str, ...] = ("linear", "insseg-frozen", "semseg", "insseg")
# DEFAULT_TASK and SEMANTIC_TASKS (scored by mIoU / mAcc / allAcc) are results.py's: a result's task names its metrics
FROZEN_TASKS = ("linear", "insseg-frozen")  # the backbone is not trained
# What the points of the instance masks a masks protocol drops become in training (issue 29 item 5):
#   ignore      no target, no background, no loss point (engine.data.Targets.ignore): a dropped chair is not
#               taught as a negative (the default, every result before the field)
#   background  plain background, as a point of no instance: a loss point whose target is none (a negative of every
#               mask). FreePoint §4 "randomly ignore[s] some target masks during training" on Mask3D, whose S3DIS
#               loader has no ignore region for instance masks, so its dropped points may have been background.
DroppedMasks = Literal["ignore", "background"]


class EvalRules(BaseModel):
    """How a protocol scores fine-tuned models (the project's ScanNet-exact evaluator, semantic mode)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    classes: str = "s3dis"  # a catalogue class vocabulary: s3dis (S3DIS's 13), scannet (ScanNet's 18 instance classes)
    min_region_size: int = Field(100, ge=1)  # GT instances / predictions below this many points are dropped

    @field_validator("classes")
    @classmethod
    def _known_vocabulary(cls, value: str) -> str:
        catalogue.vocabulary(value)  # ConfigError naming the vocabularies there are
        return value


class ProtocolSpec(BaseModel):
    """One fine-tuning protocol (a TOML file under protocols/)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    name: str
    description: str = ""
    task: ProtocolTask = DEFAULT_TASK  # what a cell trains and scores (TASKS); hashed only when not the default
    dataset: str  # a catalogue dataset: s3dis, scannet-npy, scannet, synthetic
    default_root: str | None = None  # used when no --root is given (relative paths: to the repository)
    train_groups: list[str] = []  # scene groups trained on (Area_N for S3DIS, sceneXXXX rooms for ScanNet)
    eval_groups: list[str] = []  # scene groups evaluated on (never trained on)
    # k-fold cross-validation: each fold's evaluation groups; a fold trains on the other folds' groups
    folds: list[list[str]] = []
    unit: Literal["masks", "scenes", "points", "full"]
    fraction: float = Field(1.0, gt=0, le=1)  # share of the unit kept
    # masks unit, instance tasks: what a dropped mask's points become (DroppedMasks); hashed only when not ignore
    dropped: DroppedMasks = DEFAULT_DROPPED
    selection_seed: int = Field(0, ge=0)  # seeds the selection (not the training)
    # relative to the protocols folder: the shipped split file (pinned by split_sha256); an unpinned protocol's is
    # frozen from the data into the user's splits folder instead, as <name>.json (see split_path)
    split_file: str | None = None
    split_sha256: str | None = None  # pinned hash of the split file (scenes protocols)
    # the protocol whose split this one shares (the other rungs of a ladder train on the same rooms / masks): the
    # split document names it, and a split frozen from the user's data is read from and written to its file
    # (<splits>/<split_protocol>.json); None: the protocol's own. Hashed only when given.
    split_protocol: str | None = None
    room_list: str | None = None  # scenes protocols: the dataset's room names (relative to the protocols folder)
    # an official split file, read as published (relative to --split-root, default the data root; see the module
    # docstring): instead of split_file. Hashed only when given, as points_per_scene.
    official_file: str | None = None
    points_per_scene: int | None = Field(None, ge=1)  # unit 'points': labelled points per training scene
    expected_eval_scenes: int | None = Field(None, ge=1)  # e.g. 68 rooms in S3DIS Area 5 (warned when fewer)
    preset: str = "cpu-small"  # fine-tuning recipe (harness.finetune FINETUNE_PRESETS)
    overrides: dict[str, Any] = {}  # fields of the fine-tuning config set by the protocol
    eval: EvalRules = EvalRules()
    # The pretraining that goes with the fine-tuning recipe (what `bench.py run` pretrains a method's checkpoint
    # with when none is given). Not in content_hash: see RECIPE_FIELDS.
    pretrain_preset: str | None = None  # pretraining preset (None: the preset the fine-tuning preset is built on)
    pretrain_dataset: str = TRAIN_SCENES  # e.g. scannet (the paper's for S3DIS); train-scenes: each fold's own
    pretrain_root: str | None = None  # default root of pretrain_dataset (relative paths: to the repository)

    @field_validator("task", mode="before")
    @classmethod
    def _known_task(cls, value: Any) -> Any:
        if value not in TASKS:
            raise ValueError(f"unknown task {value!r}; choose one of {', '.join(TASKS)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> ProtocolSpec:
        if self.task in SEMANTIC_TASKS and (entry := catalogue.find(self.dataset)) is not None \
                and entry.classes is None:
            raise ValueError(f"task {self.task!r} needs semantic labels, and dataset {self.dataset!r} has no class "
                             "vocabulary; use a labelled dataset or task 'insseg'")
        if self.folds:
            if self.train_groups or self.eval_groups:
                raise ValueError("give either folds or train_groups / eval_groups, not both")
            flat = [g for fold in self.folds for g in fold]
            if len(set(flat)) != len(flat) or len(self.folds) < 2 or not all(self.folds):
                raise ValueError("folds must be >= 2 non-empty, disjoint lists of scene groups")
        else:
            if not self.train_groups or not self.eval_groups:
                raise ValueError("train_groups and eval_groups must both be non-empty (or give folds)")
            if set(self.train_groups) & set(self.eval_groups):
                raise ValueError(f"groups {sorted(set(self.train_groups) & set(self.eval_groups))} are in both "
                                 "train_groups and eval_groups")
        if self.unit == "full" and self.fraction != 1.0:
            raise ValueError("unit 'full' keeps every label: fraction must be 1.0")
        if self.official_file is not None:
            if self.unit not in ("scenes", "points") or self.split_file is not None or self.split_sha256 is not None:
                raise ValueError("official_file selects scenes or points as published: unit 'scenes' or 'points', "
                                 "without split_file / split_sha256")
        elif self.unit == "points":
            raise ValueError("unit 'points' reads the labelled points of an official_file; give one")
        elif self.unit != "full" and self.split_file is None:
            raise ValueError(f"unit {self.unit!r} needs a split_file")
        if self.dropped != DEFAULT_DROPPED and (self.unit != "masks" or self.task in SEMANTIC_TASKS):
            raise ValueError(f"dropped {self.dropped!r} says what the masks a masks protocol drops become in an "
                             "instance task; use it with unit 'masks' and task insseg or insseg-frozen, or leave it "
                             "out")
        if (self.unit == "points") != (self.points_per_scene is not None):
            raise ValueError("points_per_scene goes with unit 'points' (and only with it)")
        for key in ("split_file", "room_list", "official_file"):
            value = getattr(self, key)
            # the shipped files are read from here: a path leaving the protocols folder would read anywhere
            if value is not None and (Path(value).is_absolute() or ".." in Path(value).parts or not value.strip()):
                raise ValueError(f"{key} {value!r} must be a path inside the protocols folder (relative, no '..')")
        return self

    @property
    def num_folds(self) -> int:
        """Returns the number of train / evaluate splits (1 without k-fold cross-validation)."""
        return len(self.folds) if self.folds else 1

    def fold_groups(self, fold: int) -> tuple[list[str], list[str]]:
        """Returns (train groups, eval groups) of fold `fold` (0 without folds)."""
        if not self.folds:
            if fold != 0:
                raise ConfigError(f"protocol {self.name} has no folds; fold {fold} does not exist")
            return list(self.train_groups), list(self.eval_groups)
        if not 0 <= fold < len(self.folds):
            raise ConfigError(f"protocol {self.name} has {len(self.folds)} folds; fold {fold} does not exist")
        held = self.folds[fold]
        return [g for i, f in enumerate(self.folds) if i != fold for g in f], list(held)

    @property
    def all_train_groups(self) -> list[str]:
        """Returns every group some fold trains on (the selection's candidates)."""
        return sorted({g for f in range(self.num_folds) for g in self.fold_groups(f)[0]})

    @property
    def semantic(self) -> bool:
        """Returns whether the task is semantic segmentation (scored by mIoU), not instance segmentation."""
        return self.task in SEMANTIC_TASKS

    @property
    def frozen_backbone(self) -> bool:
        """Returns whether the task keeps the backbone frozen (in eval mode, not trained)."""
        return self.task in FROZEN_TASKS

    def content_hash(self) -> str:
        """Returns the sha256 of the spec's canonical JSON without the pretraining recipe (recorded in every
        result, compared on resume). The fields added later (task, split_protocol, dropped, ...) are left out when
        they hold their default, so the hashes of the protocols written before them stay."""
        exclude = set(RECIPE_FIELDS) | {k for k, default in _HASHED_UNLESS_DEFAULT.items()
                                        if getattr(self, k) == default}
        return sha256_bytes(canonical_json(self.model_dump(mode="json", exclude=exclude)))

    @property
    def split_owner(self) -> str:
        """Returns the name of the protocol whose split this one trains on (split_protocol, else its own)."""
        return self.split_protocol or self.name


# fields added after results were written: in the content hash only when they differ from these defaults
_HASHED_UNLESS_DEFAULT: dict[str, Any] = {"task": DEFAULT_TASK, "split_protocol": None, "official_file": None,
                                          "points_per_scene": None, "dropped": DEFAULT_DROPPED}


# ---------------------------------------------------------------------------------------------- files


def canonical_json(obj: Any) -> bytes:
    """Returns the canonical UTF-8 JSON of `obj` (sorted keys, fixed separators, trailing newline)."""
    return (json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=False) + "\n").encode("utf-8")


def sha256_bytes(data: bytes) -> str:
    """Returns the hex sha256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    """Returns the hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def available_protocols(protocols_dir: str | Path | None = None) -> list[str]:
    """Returns the sorted names of the protocols (TOML files) in `protocols_dir`."""
    folder = Path(protocols_dir) if protocols_dir is not None else PROTOCOLS_DIR
    if not folder.is_dir():
        raise ConfigError(f"{folder}: protocols folder not found; check --protocols-dir")
    return sorted(p.stem for p in folder.glob("*.toml"))


def load_protocol(name_or_path: str | Path, protocols_dir: str | Path | None = None) -> ProtocolSpec:
    """Returns the validated protocol `name_or_path` (a name in `protocols_dir` or a .toml path)."""
    folder = Path(protocols_dir) if protocols_dir is not None else PROTOCOLS_DIR
    path = Path(name_or_path)
    if path.suffix != ".toml":
        path = folder / f"{name_or_path}.toml"
    if not path.is_file():
        known = ", ".join(available_protocols(folder)) or "none"
        raise ConfigError(f"unknown protocol {str(name_or_path)!r} (no {path}); known protocols: {known}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{path}: not a readable TOML protocol ({e}); fix the file") from None
    data.setdefault("name", path.stem)
    if data["name"] != path.stem:
        raise ConfigError(f"{path}: name = {data['name']!r} differs from the file name; make them equal")
    try:
        spec = ProtocolSpec(**data)
    except Exception as e:  # pydantic's ValidationError → one line
        raise ConfigError(f"{path}: invalid protocol ({validation_message(e)}); fix the file") from None
    return spec


def protocol_folder(spec: ProtocolSpec, protocols_dir: str | Path | None = None) -> Path:
    """Returns the folder the protocol's relative paths (split file, room list) are resolved against."""
    return Path(protocols_dir) if protocols_dir is not None else PROTOCOLS_DIR


def shipped_split_path(spec: ProtocolSpec, protocols_dir: str | Path | None = None) -> Path | None:
    """Returns the protocol's split_file in the protocols folder (read-only; None for unit 'full')."""
    if spec.split_file is None:
        return None
    return protocol_folder(spec, protocols_dir) / spec.split_file


def frozen_split_path(spec: ProtocolSpec, splits_dir: str | Path) -> Path:
    """Returns where a split frozen from the user's data lives: ``<splits_dir>/<protocol>.json`` (the protocol whose
    split it shares, split_protocol, when given)."""
    return Path(splits_dir) / f"{spec.split_owner}.json"


def frozen_splits_dir(results: str | Path = Path("results"), splits: str | Path | None = None) -> Path:
    """Returns the folder of the splits frozen from the user's data: `splits`, else ``<results>/splits`` (beside the
    results that record their sha256; never the protocols folder, which ships read-only files)."""
    return Path(splits) if splits is not None else Path(results) / "splits"


def split_path(spec: ProtocolSpec, protocols_dir: str | Path | None = None,
               splits_dir: str | Path | None = None, split_root: str | Path | None = None) -> Path | None:
    """Returns the split file a protocol reads (None for unit 'full').

    An official file: under `split_root` (ConfigError without one). Pinned (split_sha256): always the shipped file.
    Otherwise the split frozen into `splits_dir`; when that is not there but an older version froze one into the
    protocols folder, that one (so finished results keep matching); else where it will be frozen. Without
    `splits_dir` only the protocols folder is looked in."""
    if spec.official_file is not None:
        return official_path(spec, split_root)
    shipped = shipped_split_path(spec, protocols_dir)
    if shipped is None or spec.split_sha256 is not None or splits_dir is None:
        return shipped
    frozen = frozen_split_path(spec, splits_dir)
    if not frozen.is_file() and shipped.is_file():
        return shipped
    return frozen


def split_state(spec: ProtocolSpec, protocols_dir: str | Path | None = None,
                splits_dir: str | Path | None = None, split_root: str | Path | None = None) -> str:
    """Returns the state of the split file a protocol reads: "pinned" (shipped with its sha256 in the protocol),
    "frozen" (from the user's data), "not frozen" (frozen at first use), "-" (unit 'full': no split), or for an
    official file "official" (found), "official, missing" or "official (--split-root)" (no split root given)."""
    if spec.official_file is not None:
        if split_root is None:
            return "official (--split-root)"
        return "official" if official_path(spec, split_root).is_file() else "official, missing"
    path = split_path(spec, protocols_dir, splits_dir)
    if path is None:
        return "-"
    if not path.is_file():
        return "not frozen"
    return "pinned" if spec.split_sha256 else "frozen"


# ---------------------------------------------------------------------------------------------- scene groups

def group_of(scene_name: str, dataset: str | None = None) -> str:
    """Returns the scene group of a name (the catalogue's rule: ``Area_N`` for S3DIS's ``Area_N/room``,
    ``sceneXXXX`` for ScanNet scans ``sceneXXXX_YY``, else the name itself): under `dataset`'s rule when given,
    else under the rule of the first catalogue entry matching the name."""
    return catalogue.group_of(scene_name, dataset)


def scenes_of(names: Iterable[str], groups: Iterable[str], dataset: str | None = None) -> list[str]:
    """Returns the sorted names whose group (group_of, under `dataset`'s rule when given) is in `groups`."""
    wanted = set(groups)
    return sorted(n for n in names if group_of(n, dataset) in wanted)


# ---------------------------------------------------------------------------------------------- selection


def rank_key(seed: int, scene: str, instance: str = "") -> str:
    """Returns the selection rank of a candidate: a hex sha256 of seed, scene and instance name."""
    return hashlib.sha256(f"{int(seed)}\0{scene}\0{instance}".encode()).hexdigest()


def keep_count(fraction: float, n: int) -> int:
    """Returns how many of n candidates a fraction keeps: max(1, round(fraction * n)), at most n."""
    if n <= 0:
        return 0
    return min(n, max(1, int(round(fraction * n))))


def select_scenes(scenes: Sequence[str], fraction: float, seed: int) -> list[str]:
    """Returns the sorted scenes a `fraction` keeps, ranked by rank_key(seed, scene)."""
    unique = sorted(set(scenes))
    ranked = sorted(unique, key=lambda s: rank_key(seed, s))
    return sorted(ranked[: keep_count(fraction, len(unique))])


def select_masks(instances: Mapping[str, Sequence[tuple[str, str]]], fraction: float,
                 seed: int) -> dict[str, list[str]]:
    """Returns {scene: sorted kept instance names}: per class the first keep_count(fraction, n_class) instances
    ranked by rank_key(seed, scene, instance), so every class keeps at least one mask.

    instances: scene → [(instance name, class name), ...].
    """
    by_class: dict[str, list[tuple[str, str]]] = {}
    for scene, items in instances.items():
        for inst, cls in items:
            by_class.setdefault(str(cls), []).append((scene, str(inst)))
    kept: dict[str, list[str]] = {scene: [] for scene in instances}
    for cls in sorted(by_class):
        items = sorted(set(by_class[cls]), key=lambda si: rank_key(seed, si[0], si[1]))
        for scene, inst in items[: keep_count(fraction, len(items))]:
            kept[scene].append(inst)
    return {scene: sorted(names) for scene, names in sorted(kept.items())}


def instance_table(scene: Any, class_names: Mapping[int, str]) -> list[tuple[str, str]]:
    """Returns [(instance name, class name)] of a labelled scene's instances of the evaluated classes.

    Names: the reader's ``meta["instance_names"]`` (S3DIS annotation files, e.g. ``chair_3``) or the
    instance id; a class is the majority semantic id of the instance's points."""
    if scene.instance is None or scene.semantic is None:
        raise DataError(f"scene {scene.name}: no instance / semantic labels; a masks protocol needs labelled data")
    names = scene.meta.get("instance_names")
    out = []
    for inst in np.unique(scene.instance[scene.instance >= 0]):
        sem = scene.semantic[scene.instance == inst]
        sem = sem[sem >= 0]
        if not len(sem):
            continue
        cls = int(np.bincount(sem).argmax())
        if cls not in class_names:
            continue
        out.append((instance_name(scene, int(inst), names), class_names[cls]))
    return out


def instance_name(scene: Any, inst: int, names: Sequence[str] | None = None) -> str:
    """Returns the stable name of instance id `inst` of `scene` (see instance_table)."""
    names = scene.meta.get("instance_names") if names is None else names
    if names is not None:
        if not 0 <= inst < len(names):
            raise DataError(f"scene {scene.name}: instance {inst} has no recorded name; re-prepare the scene cache")
        return str(names[inst])
    entry = catalogue.find(scene.meta.get("dataset"))
    if entry is not None and entry.instance_names:
        raise DataError(f"scene {scene.name}: cached by an older version without instance names; delete the "
                        "scene cache folder and rerun `bench.py data prepare`")
    return str(inst)


# ---------------------------------------------------------------------------------------------- split files


def split_document(spec: ProtocolSpec, selection: dict[str, Any]) -> dict[str, Any]:
    """Returns the JSON document of a split file: protocol, unit, fraction, seed and the selection."""
    return {"version": SPLIT_VERSION, "protocol": spec.split_owner, "unit": spec.unit, "fraction": spec.fraction,
            "selection_seed": spec.selection_seed, **selection}


def write_split(path: str | Path, document: dict[str, Any]) -> str:
    """Writes a split document (canonical JSON) atomically with its ``.sha256`` sidecar; returns the sha256."""
    data = canonical_json(document)
    digest = sha256_bytes(data)
    write_text(path, data.decode("utf-8"))
    write_text(Path(str(path) + ".sha256"), digest + "\n")
    return digest


_TOLD_OLD: set[Path] = set()  # old-place splits already logged (a run loads the split once per cell)


def load_split(spec: ProtocolSpec, protocols_dir: str | Path | None = None,
               splits_dir: str | Path | None = None,
               split_root: str | Path | None = None) -> tuple[dict[str, Any], str]:
    """Returns (split document, sha256) of a protocol's split file (split_path says which), checked against the
    pinned hash (``split_sha256`` in the TOML, else the ``.sha256`` sidecar `freeze` wrote). ConfigError when
    missing, unreadable, of another protocol or of another hash; ({}, "") for unit 'full'. An official file is
    read from `split_root` as published (load_official)."""
    if spec.official_file is not None:
        return load_official(spec, split_root)
    path = split_path(spec, protocols_dir, splits_dir)
    if path is None:
        return {}, ""
    if not path.is_file():
        how = ("restore it from the repository" if spec.split_sha256 is not None
               else "run `bench.py protocols freeze " + spec.name + " --root <your copy>`")
        raise ConfigError(f"{path}: split file of protocol {spec.name} is missing; {how}")
    if splits_dir is not None and spec.split_sha256 is None and path == shipped_split_path(spec, protocols_dir) \
            and path not in _TOLD_OLD:
        _TOLD_OLD.add(path)
        log.warning("protocol %s: reading the split an older version froze into the protocols folder (%s); new "
                    "splits are frozen into %s", spec.name, path, frozen_split_path(spec, splits_dir))
    data = path.read_bytes()
    digest = sha256_bytes(data)
    pinned, source = spec.split_sha256, f"protocol {spec.name}"
    sidecar = Path(str(path) + ".sha256")
    if pinned is None and sidecar.is_file():
        pinned, source = sidecar.read_text(errors="replace").strip(), str(sidecar)
    if pinned is None:
        raise ConfigError(f"{path}: no pinned sha256 (split_sha256 in the protocol or {sidecar.name}); "
                          f"freeze it again with `bench.py protocols freeze {spec.name}`")
    if digest != pinned:
        raise ConfigError(f"{path}: sha256 {digest} does not match the pinned {pinned!r} (from {source}); the split or "
                          "its pin was edited or damaged: restore it (git checkout) or freeze it again")
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise ConfigError(f"{path}: not JSON ({e}); restore the split file") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: not a split document (a JSON object); restore the split file or freeze it again")
    if doc.get("protocol") != spec.split_owner or doc.get("unit") != spec.unit or doc.get("fraction") != spec.fraction \
            or doc.get("selection_seed") != spec.selection_seed:
        raise ConfigError(f"{path}: made for protocol {doc.get('protocol')!r} ({doc.get('unit')}, fraction "
                          f"{doc.get('fraction')}, seed {doc.get('selection_seed')}), not for {spec.split_owner}; "
                          "freeze it again")
    if not _selection_ok(spec.unit, doc):
        what = "train_scenes: a list of scene names" if spec.unit == "scenes" else "masks: scene -> instance names"
        raise ConfigError(f"{path}: malformed selection (expected {what}); restore the split file or freeze it again")
    return doc, digest


def _selection_ok(unit: str, doc: Mapping[str, Any]) -> bool:
    """Returns whether a split document's selection has the shape its unit needs."""
    if unit == "scenes":
        scenes = doc.get("train_scenes")
        return isinstance(scenes, list) and all(isinstance(s, str) for s in scenes)
    masks = doc.get("masks")
    return isinstance(masks, dict) and all(
        isinstance(v, list) and all(isinstance(i, str) for i in v) for v in masks.values())


def scenes_split(spec: ProtocolSpec, candidates: Sequence[str]) -> dict[str, Any]:
    """Returns the selection of a scenes protocol over `candidates` (the training groups' scene names)."""
    if spec.unit != "scenes":
        raise ConfigError(f"protocol {spec.name} selects {spec.unit}, not scenes")
    pool = scenes_of(candidates, spec.all_train_groups, spec.dataset)
    if not pool:
        raise DataError(f"protocol {spec.name}: no scenes of the training groups {spec.all_train_groups}")
    chosen = select_scenes(pool, spec.fraction, spec.selection_seed)
    for fold in range(spec.num_folds):  # one selection over every fold's groups can miss a fold's training groups
        if not scenes_of(chosen, spec.fold_groups(fold)[0], spec.dataset):
            raise DataError(f"protocol {spec.name}: selection seed {spec.selection_seed} keeps {len(chosen)} of "
                            f"{len(pool)} scenes, none of fold {fold}'s training groups; set another selection_seed "
                            "or a larger fraction")
    return {"candidates": len(pool), "train_scenes": chosen}


def masks_split(spec: ProtocolSpec, store: Any, candidates: Sequence[str], class_names: Mapping[int, str],
                progress: Any = None) -> dict[str, Any]:
    """Returns the selection of a masks protocol: every training scene's kept instance names (per class)."""
    if spec.unit != "masks":
        raise ConfigError(f"protocol {spec.name} selects {spec.unit}, not masks")
    pool = scenes_of(candidates, spec.all_train_groups, spec.dataset)
    if not pool:
        raise DataError(f"protocol {spec.name}: no scenes of the training groups {spec.all_train_groups}")
    table = {}
    for i, name in enumerate(pool):
        table[name] = instance_table(store.load(name), class_names)
        if progress is not None:
            progress(i + 1, len(pool), name)
    kept = select_masks(table, spec.fraction, spec.selection_seed)
    total = sum(len(v) for v in table.values())
    return {"candidates": total, "masks": kept, "num_masks": sum(len(v) for v in kept.values()),
            "per_class_candidates": _per_class(table)}


def _per_class(table: Mapping[str, Sequence[tuple[str, str]]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for items in table.values():
        for _, cls in items:
            counts[cls] = counts.get(cls, 0) + 1
    return dict(sorted(counts.items()))


def read_room_list(path: str | Path) -> list[str]:
    """Returns the scene names of a room-list file (one per line, ``#`` comments)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: unreadable room list ({e}); restore it from the repository") from None
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def freeze_split(spec: ProtocolSpec, *, names: Sequence[str] | None = None, store: Any = None,
                 class_names: Mapping[int, str] | None = None, protocols_dir: str | Path | None = None,
                 splits_dir: str | Path | None = None, progress: Any = None) -> tuple[Path, str]:
    """Realises a protocol's selection and writes it to ``<splits_dir>/<protocol>.json`` (+ ``.sha256``); returns
    (path, sha256).

    scenes: from `names` (the data's scene names) or, when None, the protocol's `room_list` file;
    masks: from the labelled training scenes of `store` among `names` (class_names: semantic id → name).
    A protocol with a pinned split_sha256 must reproduce it (ConfigError otherwise): its split is the shipped file,
    which is only checked, never written (the path returned is the shipped one).
    """
    if spec.official_file is not None:
        raise ConfigError(f"protocol {spec.name} reads ScanNet's official {spec.official_file} as published "
                          "(--split-root): there is nothing to freeze")
    shipped = shipped_split_path(spec, protocols_dir)
    if shipped is None:
        raise ConfigError(f"protocol {spec.name} keeps every label (unit 'full'): there is no split to freeze")
    if spec.split_sha256 is None and splits_dir is None:
        raise ConfigError(f"protocol {spec.name}: a split frozen from your data goes into a splits folder "
                          "(--splits, default <results>/splits), never into the protocols folder; give one")
    target = None if spec.split_sha256 is not None or splits_dir is None else frozen_split_path(spec, splits_dir)
    if spec.unit == "scenes":
        if names is None:
            if spec.room_list is None:
                raise ConfigError(f"protocol {spec.name}: give the data (--root) or a room_list to freeze from")
            names = read_room_list(protocol_folder(spec, protocols_dir) / spec.room_list)
        selection = scenes_split(spec, names)
    else:
        if store is None or names is None or class_names is None:
            raise ConfigError(f"protocol {spec.name} selects masks: freezing it needs the labelled data (--root)")
        selection = masks_split(spec, store, names, class_names, progress)
    document = split_document(spec, selection)
    data = canonical_json(document)
    if spec.split_sha256 is not None and sha256_bytes(data) != spec.split_sha256:
        raise ConfigError(f"protocol {spec.name}: the selection realised here (sha256 {sha256_bytes(data)[:12]}…) "
                          f"differs from the pinned split {spec.split_sha256[:12]}…; the data differ from the "
                          "release the split was made from")
    if target is None:  # pinned: the shipped file is the split (its bytes checked above, never written)
        return shipped, sha256_bytes(data)
    return target, write_split(target, document)


# ---------------------------------------------------------------------------------------------- official split files

OFFICIAL_HOWTO = ("get it with ScanNet's download script (python download-scannet.py --data_efficient -o <folder>), "
                  "unzip <folder>/tasks/limited-reconstruction-scenes.zip and limited-annotation-points.zip in "
                  "<folder>/tasks, and pass --split-root <folder> (default: the data root)")
_SCAN_NAME = re.compile(r"^scene\d{4}_\d{2}$")


def official_path(spec: ProtocolSpec, split_root: str | Path | None) -> Path:
    """Returns where a protocol's official split file lies under `split_root`; ConfigError without one."""
    if spec.official_file is None:
        raise ConfigError(f"protocol {spec.name} has no official split file")
    if split_root is None:
        raise ConfigError(f"protocol {spec.name} reads ScanNet's official {spec.official_file}: {OFFICIAL_HOWTO}")
    return Path(split_root) / spec.official_file


def load_official(spec: ProtocolSpec, split_root: str | Path | None) -> tuple[dict[str, Any], str]:
    """Returns (split document, sha256 of the file's bytes) of a protocol's official file, read as published:
    unit 'scenes' → {"train_scenes": the listed scans}; unit 'points' → {"points": scan → (K,) int64 indices of its
    labelled vertices}. ConfigError (one line naming the file and how to get it) when missing or malformed."""
    path = official_path(spec, split_root)
    if not path.is_file():
        raise ConfigError(f"{path}: ScanNet data-efficient file of protocol {spec.name} is missing; {OFFICIAL_HOWTO}")
    data = path.read_bytes()
    doc: dict[str, Any] = {"version": SPLIT_VERSION, "protocol": spec.name, "unit": spec.unit,
                           "official_file": spec.official_file}
    if spec.unit == "scenes":
        scenes = _official_scenes(data)
        if scenes is None:
            raise ConfigError(f"{path}: not a ScanNet scene list (one sceneXXXX_YY per line); {OFFICIAL_HOWTO}")
        doc.update(candidates=None, train_scenes=scenes)
    else:
        points = _official_points(path, spec.points_per_scene or 0)
        if points is None:
            raise ConfigError(f"{path}: not ScanNet's limited-annotation points (a torch-saved dict sceneXXXX_YY → "
                              f"at most {spec.points_per_scene} vertex indices); {OFFICIAL_HOWTO}")
        doc.update(candidates=len(points), points_per_scene=spec.points_per_scene, points=points)
    return doc, sha256_bytes(data)


def _official_scenes(data: bytes) -> list[str] | None:
    """Returns the scans of a limited-reconstruction list (whitespace-separated, as numpy.loadtxt reads it), None
    when it is empty or names anything else."""
    try:
        names = data.decode("utf-8").split()
    except UnicodeDecodeError:
        return None
    if not names or not all(_SCAN_NAME.match(n) for n in names) or len(set(names)) != len(names):
        return None
    return names


def _official_points(path: Path, most: int) -> dict[str, np.ndarray] | None:
    """Returns scan → sorted unique (K,) int64 vertex indices of a limited-annotation file, None when it is not
    one. It is read with torch's weights-only unpickler (no code runs), numpy arrays and int dtypes allowed."""
    import torch

    core = getattr(np, "_core", None) or np.core
    allowed = [core.multiarray._reconstruct, np.ndarray, np.dtype] + [
        type(np.dtype(t)) for t in ("int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64")]
    try:
        with torch.serialization.safe_globals(allowed):
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any unpickling failure means: not the published file
        return None
    if not isinstance(raw, dict) or not raw:
        return None
    out = {}
    for name, value in raw.items():
        idx = np.asarray(value.numpy() if isinstance(value, torch.Tensor) else value)
        if not isinstance(name, str) or not _SCAN_NAME.match(name) or idx.ndim != 1 or not len(idx) \
                or idx.dtype.kind not in "iu" or int(idx.min()) < 0 or len(np.unique(idx)) > most:
            return None
        out[name] = np.unique(idx.astype(np.int64))
    return out
