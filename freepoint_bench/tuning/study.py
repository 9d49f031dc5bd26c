"""Optuna studies over FreePoint's affinity weights (eq. 3 α), σ_low, k1 and the plane threshold.

    result = run_study(scenes, PseudoLabelConfig(), TuneConfig(trials=40, storage="sqlite:///tune.db"))
    write_best_config(result, "best.toml")     # loads with PseudoLabelConfig.from_toml
    save_plots(result.study, "plots/")

The objective is the class-agnostic AP (AP, AP50 or AP25) of the pseudo masks on labelled tuning scenes,
scored with `segment_scores` as confidence. Only the base masks (σ_low) are scored: σ_high masks come from
the same graph and weights and are not tuned separately; when σ_low itself is tuned, the tuned value is the
one scored. With a storage URL the study is persistent: running again with the same storage and study name
continues it (trials add up). The per-scene graph (planes, FPS, normals, kNN, raw affinities) is computed
once per scene and per value of the graph fields (k1, plane threshold) and reused across trials.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import optuna
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from freepoint_bench.atomic import atomic_path, ensure_dir, write_text
from freepoint_bench.config import read_toml_table, validation_message
from freepoint_bench.data.scene import Scene
from freepoint_bench.errors import ConfigError, DataError
from freepoint_bench.evaluation import EvalSpec
from freepoint_bench.freepoint.config import PseudoLabelConfig
from freepoint_bench.tuning.graph import GraphCache
from freepoint_bench.tuning.objective import METRIC_NAMES, evaluation_spec_for, score_pseudo_masks

logger = logging.getLogger(__name__)

ObjectiveName = Literal["ap", "ap50", "ap25"]
AlphaName = Literal["emb", "norm", "xyz", "rgb"]
FloatRange = tuple[float, float]


class TuneConfig(BaseModel):
    """What a study optimises and over which search space (tuning settings, not paper constants)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    trials: int = Field(40, ge=1)  # trials added by this run (a resumed study keeps its earlier ones)
    objective: ObjectiveName = "ap50"  # class-agnostic metric of the σ_low masks, maximised
    storage: str | None = None  # Optuna storage URL, e.g. "sqlite:///tune.db"; None = in memory
    study_name: str = "freepoint-pseudo-labels"
    jobs: int = Field(1, ge=1)  # parallel trials (threads); > 1 makes the result depend on timing
    seed: int = 0  # TPE sampler seed (offset by the trials already in a resumed study)
    timeout_s: float | None = Field(None, gt=0)  # stop starting trials after this many seconds

    # --- search space ---
    alphas: tuple[AlphaName, ...] = ("norm", "xyz", "rgb", "emb")  # "emb" only when features are given
    alpha_range: FloatRange = (0.05, 4.0)  # log-uniform range of every tuned α
    tune_sigma_low: bool = False
    sigma_low_range: FloatRange = (0.5, 1.5)  # uniform
    sigma_low_grid: tuple[float, ...] = ()  # when given, σ_low is one of these values instead (categorical)
    tune_k1: bool = False
    k1_choices: tuple[int, ...] = (4, 6, 8)
    tune_plane_distance: bool = False
    plane_distance_range: FloatRange = (0.02, 0.08)  # metres
    # Grid step of the plane threshold: a few distinct values let the per-scene graphs be reused.
    plane_distance_step: float | None = Field(0.01, gt=0)

    # --- search strategy ---
    # "grid" tries every point of a discrete space once (σ_low grid, k1 choices, plane steps; no α), so
    # repeated studies over it (cross-validation folds) reuse each scene's labels
    sampler: Literal["tpe", "grid"] = "tpe"
    prune: bool = True  # score scenes one by one and let the pruner stop poor trials (off: score once)
    enqueue_base: bool = True  # a new study's first trial is the base config (when inside the space)
    pruner_startup_trials: int = Field(5, ge=0)  # MedianPruner: no pruning before this many trials finish
    pruner_warmup_steps: int = Field(2, ge=0)  # ... nor before this many scenes of a trial are scored

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise ConfigError(f"invalid tuning config: {validation_message(exc)}") from None

    @model_validator(mode="after")
    def _check(self) -> TuneConfig:
        for name in ("alpha_range", "sigma_low_range", "plane_distance_range"):
            low, high = getattr(self, name)
            if not 0 < low < high:
                raise ValueError(f"{name} must be (low, high) with 0 < low < high; got {(low, high)}")
        if self.tune_k1 and (not self.k1_choices or min(self.k1_choices) < 1):
            raise ValueError(f"k1_choices must be non-empty positive ints; got {self.k1_choices}")
        if len(set(self.alphas)) != len(self.alphas):
            raise ValueError(f"alphas has repeats: {self.alphas}")
        low, high = self.plane_distance_range
        if self.tune_plane_distance and self.plane_distance_step is not None and self.plane_distance_step > high - low:
            raise ValueError(f"plane_distance_step {self.plane_distance_step} is wider than plane_distance_range "
                             f"{(low, high)}: the search would try one value; give a smaller step")
        if not (self.alphas or self.tune_sigma_low or self.tune_k1 or self.tune_plane_distance):
            raise ValueError("nothing to tune: alphas is empty and no tune_sigma_low / tune_k1 / tune_plane_distance "
                             "is set; every trial would be the base config")
        if self.sampler == "grid":
            if self.alphas:
                raise ValueError(f"the grid sampler needs a discrete space: set alphas = [] (got {self.alphas})")
            if self.tune_sigma_low and not self.sigma_low_grid:
                raise ValueError("the grid sampler tunes σ_low over sigma_low_grid; give its values")
            if self.tune_plane_distance and self.plane_distance_step is None:
                raise ValueError("the grid sampler needs plane_distance_step for the plane threshold")
        return self

    def grid(self) -> dict[str, list[Any]]:
        """Returns the discrete search space {param: values} (for the grid sampler)."""
        space: dict[str, list[Any]] = {}
        if self.tune_sigma_low and self.sigma_low_grid:
            space["sigma_low"] = list(self.sigma_low_grid)
        if self.tune_k1:
            space["k1"] = list(self.k1_choices)
        if self.tune_plane_distance and self.plane_distance_step is not None:
            low, high = self.plane_distance_range
            count = 1 + int(round((high - low) / self.plane_distance_step))
            space["plane_distance_threshold"] = [low + i * self.plane_distance_step for i in range(count)]
        return space

    @classmethod
    def from_toml(cls, path: str | os.PathLike) -> TuneConfig:
        """Returns the TuneConfig in TOML file `path` (flat keys or a [tuning] table)."""
        data = read_toml_table(path, "tuning", "tuning config")
        try:
            return cls(**data)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    @classmethod
    def from_flags(cls, flags: Mapping[str, Any], typed: Collection[str] = (), toml: str | os.PathLike | None = None,
                   sigma_grid: Sequence[float] = ()) -> TuneConfig:
        """Returns the TuneConfig of a command line. flags: the tuning flags' values by field name, typed or left at
        their defaults; without `toml` they are the config; with it, the file's fields hold and only the flags named
        in `typed` override them (a flag's default never overrides the file, a typed value always does, a seed of 0
        or one trial included). sigma_grid: tune σ_low alone over these values (grid sampler, α fixed, no pruning)."""
        fields = dict(flags)
        if toml is not None:
            fields = {**cls.from_toml(toml).model_dump(), **{k: v for k, v in flags.items() if k in typed}}
        if sigma_grid:
            fields.update(tune_sigma_low=True, sigma_low_grid=tuple(sigma_grid), sampler="grid", alphas=(),
                          prune=False)
        return cls(**fields)

    def tunes_graph(self) -> bool:
        """Returns whether the search changes the per-scene graph (k1 or plane threshold)."""
        return self.tune_k1 or self.tune_plane_distance


@dataclass(frozen=True)
class TuneResult:
    """best_params: the tuned fields (PseudoLabelConfig names) of the best trial; best_value: its
    objective (0..1); best_metrics: its "ap", "ap50", "ap25"; best_config: base config with best_params;
    n_trials: trials in the study (all runs, all states); study: the Optuna study."""

    best_params: dict[str, Any]
    best_value: float
    best_metrics: dict[str, float]
    best_config: PseudoLabelConfig
    n_trials: int
    study: optuna.Study


def suggest_params(trial: optuna.Trial, tune: TuneConfig, has_features: bool) -> dict[str, Any]:
    """Returns the PseudoLabelConfig overrides sampled by `trial` from the search space of `tune`."""
    params: dict[str, Any] = {}
    for name in tune.alphas:
        if name == "emb" and not has_features:
            continue  # α1 weighs deep features; without them it has no effect
        params[f"alpha_{name}"] = trial.suggest_float(f"alpha_{name}", *tune.alpha_range, log=True)
    if tune.tune_sigma_low and tune.sigma_low_grid:
        params["sigma_low"] = trial.suggest_categorical("sigma_low", list(tune.sigma_low_grid))
    elif tune.tune_sigma_low:
        params["sigma_low"] = trial.suggest_float("sigma_low", *tune.sigma_low_range)
    if tune.tune_k1:
        params["k1"] = trial.suggest_categorical("k1", list(tune.k1_choices))
    if tune.tune_plane_distance:
        params["plane_distance_threshold"] = trial.suggest_float(
            "plane_distance_threshold", *tune.plane_distance_range, step=tune.plane_distance_step
        )
    return params


def _base_params(base: PseudoLabelConfig, tune: TuneConfig, has_features: bool) -> dict[str, Any] | None:
    """Returns base's values of the tuned fields, or None when one lies outside the search space."""
    params: dict[str, Any] = {}
    for name in tune.alphas:
        if name == "emb" and not has_features:
            continue
        value = getattr(base, f"alpha_{name}")
        if not tune.alpha_range[0] <= value <= tune.alpha_range[1]:
            return None
        params[f"alpha_{name}"] = value
    if tune.tune_sigma_low:
        inside = base.sigma_low in tune.sigma_low_grid if tune.sigma_low_grid else (
            tune.sigma_low_range[0] <= base.sigma_low <= tune.sigma_low_range[1]
        )
        if not inside:
            return None
        params["sigma_low"] = base.sigma_low
    if tune.tune_k1:
        if base.k1 not in tune.k1_choices:
            return None
        params["k1"] = base.k1
    if tune.tune_plane_distance:
        low, high = tune.plane_distance_range
        value = base.plane_distance_threshold
        step = tune.plane_distance_step
        on_grid = step is None or math.isclose((value - low) / step, round((value - low) / step), abs_tol=1e-6)
        if not (low <= value <= high and on_grid):
            return None
        params["plane_distance_threshold"] = value
    return params


def graph_variants(tune: TuneConfig) -> int:
    """Returns how many distinct graphs per scene the search space can ask for (8 for a continuous range)."""
    count = len(tune.k1_choices) if tune.tune_k1 else 1
    if tune.tune_plane_distance:
        low, high = tune.plane_distance_range
        step = tune.plane_distance_step
        count *= 8 if step is None else 1 + int(round((high - low) / step))
    return count


def _check_scenes(scenes: Sequence[Scene]) -> list[Scene]:
    scenes = list(scenes)
    if not scenes:
        raise DataError("run_study: no tuning scenes; give at least one labelled scene")
    names = [s.name for s in scenes]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise DataError(f"run_study: scene names repeat ({dup}); each tuning scene needs its own name")
    unlabelled = [s.name for s in scenes if not (np.asarray(s.instance) >= 0).any()]
    if unlabelled:
        raise DataError(f"run_study: scenes {unlabelled} have no instance labels; tuning needs labelled scenes")
    return scenes


def _check_study_attrs(study: optuna.Study, tune: TuneConfig, names: list[str]) -> None:
    """Records the objective and scenes in a new study; refuses to mix objectives in a resumed one."""
    attrs = study.user_attrs
    if "objective" not in attrs:
        study.set_user_attr("objective", tune.objective)
        study.set_user_attr("scenes", names)
        return
    if attrs["objective"] != tune.objective:
        raise ConfigError(
            f"study {tune.study_name!r} in {tune.storage} optimises {attrs['objective']!r}, not "
            f"{tune.objective!r}; use objective={attrs['objective']!r} or another study name"
        )
    if list(attrs.get("scenes", [])) != names:
        logger.warning(
            "study %r was run on other scenes (%d before, %d now); its earlier values are not comparable",
            tune.study_name,
            len(attrs.get("scenes", [])),
            len(names),
        )


def run_study(
    scenes: Sequence[Scene],
    base_config: PseudoLabelConfig,
    tune_config: TuneConfig,
    features_fn: Callable[[Scene], np.ndarray] | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    *,
    evaluation_spec: EvalSpec | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
    cache: GraphCache | None = None,
) -> TuneResult:
    """Returns the best pseudo-label config found by a TPE study maximising class-agnostic mask AP.

    scenes: labelled tuning scenes (instance ids; evaluated with `evaluation_spec`, default the spec of
    scenes[0].meta["dataset"] via `evaluation_spec_for`, ScanNet when unknown). features_fn: deep
    per-point features (N, D) per scene, enabling α1 (alpha_emb). Each trial scores the scenes in order and
    reports the AP of the scenes seen so far after each one, so the MedianPruner (or `pruner`) can stop
    poor trials early. progress receives {"trial", "state", "value", "params", "best_value"} per finished
    trial. cache: a GraphCache to share between studies over the same scenes (cross-validation folds).
    With tune_config.prune off every trial scores all scenes at once; with the grid sampler the study runs
    each grid point once (the base config is not enqueued). Raises ConfigError when no trial completed.
    """
    scenes = _check_scenes(scenes)
    tune = tune_config
    has_features = features_fn is not None
    spec = evaluation_spec
    if spec is None:
        spec = evaluation_spec_for(str(scenes[0].meta.get("dataset", "scannet")))
    names = [s.name for s in scenes]
    # Room for the graphs of every scene at each distinct value of the tuned graph fields.
    if cache is None:
        cache = GraphCache(max_entries=min(len(scenes) * graph_variants(tune), 256), features_fn=features_fn)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = pruner or optuna.pruners.MedianPruner(
        n_startup_trials=tune.pruner_startup_trials, n_warmup_steps=tune.pruner_warmup_steps
    )
    if tune.storage and tune.storage.startswith("sqlite:///"):
        ensure_dir(Path(tune.storage.removeprefix("sqlite:///")).parent)
    try:
        study = optuna.create_study(
            study_name=tune.study_name,
            storage=tune.storage,
            direction="maximize",
            load_if_exists=True,
            pruner=pruner,
        )
    except Exception as exc:  # sqlalchemy and storage plugins raise their own types for bad URLs
        # sqlalchemy's messages run over several lines (the SQL, a link): their first line says it
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"cannot open Optuna storage {tune.storage!r} ({reason}); check the URL") from None
    _check_study_attrs(study, tune, names)
    # Seed offset by the trials already there: a resumed study must not replay the first run's samples.
    if tune.sampler == "grid":
        study.sampler = optuna.samplers.GridSampler(tune.grid(), seed=tune.seed)
    else:
        study.sampler = optuna.samplers.TPESampler(seed=tune.seed + len(study.trials))
    if tune.enqueue_base and not study.trials and tune.sampler == "tpe":
        base = _base_params(base_config, tune, has_features)
        if base:
            study.enqueue_trial(base)
        else:
            logger.info("base config lies outside the search space; not enqueued as the first trial")

    def objective(trial: optuna.Trial) -> float:
        params = suggest_params(trial, tune, has_features)
        config = base_config.with_overrides(params)
        seen: list[Scene] = []
        labels: dict[str, np.ndarray] = {}
        result = None
        for step, scene in enumerate(scenes):
            labels[scene.name] = cache.labels(scene, config)
            seen.append(scene)
            if not tune.prune and step < len(scenes) - 1:
                continue
            result = score_pseudo_masks(seen, labels, spec, config.mask_score)
            value = float(getattr(result, tune.objective))
            # NaN: no evaluated GT instance in the scenes so far; 0 keeps the pruner's medians meaningful.
            trial.report(0.0 if math.isnan(value) else value, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        assert result is not None
        metrics = {name: float(getattr(result, name)) for name in METRIC_NAMES}
        if math.isnan(metrics[tune.objective]):
            raise DataError(
                f"tuning scenes {names[:3]}{'...' if len(names) > 3 else ''} hold no ground-truth instance of "
                f"the evaluated classes ({', '.join(spec.class_names)}); tune on labelled scenes of this dataset"
            )
        for name, metric in metrics.items():
            trial.set_user_attr(name, metric)
        trial.set_user_attr("segments_per_scene", float(np.mean([lab.max() + 1 for lab in labels.values()])))
        return metrics[tune.objective]

    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        try:
            best = study.best_value
        except ValueError:
            best = None
        record = {
            "trial": trial.number,
            "state": trial.state.name,
            "value": trial.value,
            "params": dict(trial.params),
            "best_value": best,
        }
        logger.info("trial %d %s value=%s params=%s", trial.number, trial.state.name, trial.value, trial.params)
        if progress is not None:
            progress(record)

    n_trials = tune.trials
    if tune.sampler == "grid":
        n_trials = min(n_trials, math.prod(len(v) for v in tune.grid().values()))
    study.optimize(
        objective,
        n_trials=n_trials,
        timeout=tune.timeout_s,
        n_jobs=tune.jobs,
        callbacks=[callback],
        gc_after_trial=False,
    )
    logger.info("graph cache: %d hits, %d misses", cache.hits, cache.misses)
    return _result(study, base_config, tune)


def _result(study: optuna.Study, base_config: PseudoLabelConfig, tune: TuneConfig) -> TuneResult:
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        states: dict[str, int] = {}
        for t in study.get_trials(deepcopy=False):
            states[t.state.name.lower()] = states.get(t.state.name.lower(), 0) + 1
        summary = ", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "no trials"
        raise ConfigError(
            f"study {tune.study_name!r}: no trial completed ({summary}); run more trials, or raise "
            "pruner_startup_trials / pruner_warmup_steps so fewer trials are pruned"
        )
    best = study.best_trial
    params = dict(best.params)
    return TuneResult(
        best_params=params,
        best_value=float(best.value),
        best_metrics={n: float(best.user_attrs[n]) for n in METRIC_NAMES if n in best.user_attrs},
        best_config=base_config.with_overrides(params),
        n_trials=len(study.trials),
        study=study,
    )


def write_best_config(result: TuneResult, path: str | os.PathLike) -> Path:
    """Writes result.best_config as a [pseudo_labels] TOML (for PseudoLabelConfig.from_toml); returns path."""
    path = Path(path)
    result.best_config.to_toml(path)
    metrics = ", ".join(f"{k} {100 * v:.2f}" for k, v in result.best_metrics.items())
    header = [
        f"# Tuned by Optuna study {result.study.study_name!r}: {result.n_trials} trials,",
        f"# best trial {result.study.best_trial.number}: {metrics or result.best_value}",
        f"# tuned fields: {', '.join(f'{k} = {v!r}' for k, v in sorted(result.best_params.items()))}",
    ]
    return write_text(path, "\n".join(header) + "\n" + path.read_text())


def save_plots(study: optuna.Study, out_dir: str | os.PathLike) -> list[Path]:
    """Returns the PNG paths written to out_dir: optimisation history and (when possible) param importances.

    The importance plot needs at least two completed trials and a parameter that varies; otherwise it is
    skipped with a logged note.
    """
    import matplotlib

    matplotlib.use("Agg")  # headless; the CLI never shows windows
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    written: list[Path] = []

    def save(name: str, draw: Callable[[], Any]) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            ax = draw()
        fig = ax.figure if hasattr(ax, "figure") else np.ravel(ax)[0].figure
        fig.tight_layout()
        path = out / f"{name}.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=120)
        plt.close(fig)
        written.append(path)

    if not complete:
        logger.info("no completed trials in study %r; no plots written", study.study_name)
        return written
    save("optimization_history", lambda: ovm.plot_optimization_history(study))
    varying = [
        name for name in {p for t in complete for p in t.params} if len({t.params.get(name) for t in complete}) > 1
    ]
    if len(complete) < 2 or not varying:
        logger.info(
            "parameter importance needs >= 2 completed trials with varying params (have %d trials, %d "
            "varying params); plot skipped",
            len(complete),
            len(varying),
        )
        return written
    try:
        save("param_importances", lambda: ovm.plot_param_importances(study, params=sorted(varying)))
    except (RuntimeError, ValueError, ZeroDivisionError) as exc:
        logger.info("parameter importance plot skipped: %s", exc)
        plt.close("all")
    return written
