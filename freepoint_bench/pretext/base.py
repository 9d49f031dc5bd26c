"""The PretextMethod interface and the registry that finds methods through entry points."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from freepoint_bench.errors import ConfigError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "freepoint_bench.pretext"

# progress(stage, done, total, info): stage is e.g. "pseudo-labels", "step1", "step2"; done/total count
# scenes or epochs within that stage; info is a short human-readable status (scene name, last loss).
ProgressFn = Callable[[str, int, int, str], None]


@dataclass(frozen=True)
class PretrainResult:
    """What a pretext method produced: checkpoint paths plus the metadata written into them."""

    method: str
    backbone: Path  # backbone-only checkpoint (what fine-tuning starts from)
    segmenter: Path | None = None  # full model checkpoint, when the method trains one
    metadata: dict = field(default_factory=dict)


@runtime_checkable
class PretextMethod(Protocol):
    """A way to pretrain a backbone on unlabelled scenes.

    Implementations live in `freepoint_bench.pretext` (FreePoint) and `baselines` (the competitors) and
    are registered under the `freepoint_bench.pretext` entry-point group in pyproject.toml.
    """

    name: str

    def default_config(self, preset: str = "cpu-small", **overrides: Any) -> Any:
        """Returns the method's validated config for a training preset with `overrides` applied."""
        ...

    def pretrain(
        self,
        store: Any,
        config: Any,
        out_dir: Path,
        *,
        names: list[str] | None = None,
        resume: bool = False,
        progress: ProgressFn | None = None,
        **kwargs: Any,
    ) -> PretrainResult:
        """Returns the checkpoints trained on `store`'s scenes (`names`, default: the train split)."""
        ...


def applicable_overrides(method: PretextMethod, overrides: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """Returns (the overrides `method` reads, {key: why not} for the others) of pretraining overrides shared by
    several methods (`run --pretrain-set`). A method lists what it never reads in `unread_fields` (field → why;
    pretext.training.UNREAD_TRAIN_FIELDS for the one-stage backbone methods), bare or as `train.<field>`; its
    `stage_epochs` maps a shared stage budget onto its own field (one-stage methods: epochs1 → epochs, so
    `--pretrain-set epochs1=N` budgets every method's first stage). Anything else goes to default_config, which
    refuses unknown keys."""
    unread: Mapping[str, str] = getattr(method, "unread_fields", {})
    renames: Mapping[str, str] = getattr(method, "stage_epochs", {})
    kept: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for key, value in overrides.items():
        field = key.removeprefix("train.").partition(".")[0]
        if key in renames:
            kept[renames[key]] = value
        elif field in unread:
            skipped[key] = unread[field]
        elif not key.startswith("train.") and (owners := _owners_elsewhere(method, field)):
            skipped[key] = f"a field of {', '.join(owners)}'s config, not of this method's"
        else:
            kept[key] = value
    return kept, skipped


def _config_fields(method: PretextMethod) -> frozenset[str]:
    """Returns the top-level fields of `method`'s config (its default config's model fields)."""
    return frozenset(type(method.default_config()).model_fields)


def _owners_elsewhere(method: PretextMethod, field: str) -> list[str]:
    """Returns the other registered methods whose config has the top-level `field` when `method`'s config and the
    training preset (bare training fields route into train.) do not: a shared --pretrain-set of FreePoint's
    `deep_features` or `pseudo.*` is skipped for PointContrast instead of refused; a field no method has still goes
    to default_config, which refuses it."""
    from freepoint_bench.engine.presets import TrainPreset

    if field in TrainPreset.model_fields or field in _config_fields(method):
        return []
    return [name for name in available_methods() if name != method.name and field in _config_fields(get_method(name))]


def _entry_points() -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in found and found[ep.name].value != ep.value:
            log.warning("pretext method %r registered twice (%s, %s); using the first", ep.name,
                        found[ep.name].value, ep.value)
            continue
        found.setdefault(ep.name, ep)
    return found


def available_methods() -> list[str]:
    """Returns the sorted names of the registered pretext methods."""
    return sorted(_entry_points())


def get_method(name: str) -> PretextMethod:
    """Returns an instance of the pretext method registered as `name`."""
    eps = _entry_points()
    if name not in eps:
        known = ", ".join(sorted(eps)) or "none (is freepoint-bench installed? run `make setup`)"
        raise ConfigError(f"unknown pretext method {name!r}; registered methods: {known}")
    try:
        factory = eps[name].load()
    except ImportError as e:
        raise ConfigError(
            f"pretext method {name!r} ({eps[name].value}) failed to import: {e}; "
            "install its dependencies or reinstall the package"
        ) from e
    method = factory() if isinstance(factory, type) or callable(factory) else factory
    if not isinstance(method, PretextMethod):
        raise ConfigError(f"entry point {name!r} ({eps[name].value}) is not a PretextMethod")
    return method
