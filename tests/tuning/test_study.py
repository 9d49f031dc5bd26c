"""Optuna studies over the pseudo-label config on tiny synthetic rooms: run, resume, prune, write, plot."""

from __future__ import annotations

import logging

import numpy as np
import optuna
import pytest

from freepoint_bench.data.classes import S3DIS_CLASS_ID, S3DIS_STRUCTURE
from freepoint_bench.data.synthetic import SyntheticConfig, generate_room
from freepoint_bench.errors import ConfigError, DataError
from freepoint_bench.freepoint.config import PseudoLabelConfig
from freepoint_bench.freepoint.pipeline import generate_pseudo_labels
from freepoint_bench.tuning.objective import evaluation_spec_for, score_pseudo_masks
from freepoint_bench.tuning.study import TuneConfig, run_study, save_plots, write_best_config

FAST = {"plane_ransac_iterations": 60, "plane_fit_points": 1500, "plane_min_points": 100}
ALPHAS = ("norm", "xyz", "rgb")


@pytest.fixture(scope="module")
def scenes():
    config = SyntheticConfig(num_points=2500)
    return [generate_room(seed, config, name=f"room_{seed}") for seed in (1, 2, 3)]


@pytest.fixture(scope="module")
def base():
    return PseudoLabelConfig(**FAST)


@pytest.fixture(scope="module")
def spec():
    return evaluation_spec_for("synthetic")


class AlwaysPrune(optuna.pruners.BasePruner):
    def prune(self, study, trial) -> bool:
        return True


class PruneOddTrials(optuna.pruners.BasePruner):
    def prune(self, study, trial) -> bool:
        return trial.number % 2 == 1


def _object_labels(scene) -> np.ndarray:
    """Ground-truth instances of the non-structure, non-clutter classes; -1 elsewhere."""
    void = [S3DIS_CLASS_ID[c] for c in (*S3DIS_STRUCTURE, "clutter")]
    keep = ~np.isin(scene.semantic, void)
    _, ids = np.unique(scene.instance[keep], return_inverse=True)
    labels = np.full(scene.num_points, -1, dtype=np.int64)
    labels[keep] = ids
    return labels


# --------------------------------------------------------------------------------------------- objective


def test_score_pseudo_masks_oracles(scenes, spec):
    perfect = score_pseudo_masks(scenes, {s.name: _object_labels(s) for s in scenes}, spec)
    assert perfect.ap == pytest.approx(1.0)
    assert perfect.ap50 == pytest.approx(1.0) and perfect.ap25 == pytest.approx(1.0)
    empty = {s.name: np.full(s.num_points, -1, dtype=np.int64) for s in scenes}
    none = score_pseudo_masks(scenes, empty, spec)
    assert (none.ap, none.ap50, none.ap25) == (0.0, 0.0, 0.0)


def test_score_pseudo_masks_rejects_missing_or_wrong_labels(scenes, spec):
    with pytest.raises(DataError, match="room_2"):
        score_pseudo_masks(scenes[:2], {"room_1": _object_labels(scenes[0])}, spec)
    with pytest.raises(DataError, match="room_1.*shape"):
        score_pseudo_masks(scenes[:1], {"room_1": np.zeros(7, dtype=np.int64)}, spec)


def test_evaluation_spec_for_names():
    for name in ("scannet", "ScanNet_npy", "s3dis", "synthetic"):
        assert evaluation_spec_for(name) is not None
    with pytest.raises(ConfigError, match="use scannet, scannet-npy, s3dis, synthetic, pointcept-scannet or "
                                          "pointcept-s3dis"):
        evaluation_spec_for("kitti")


# -------------------------------------------------------------------------------------------------- study


def test_tune_config_validation():
    with pytest.raises(ConfigError, match="alpha_range"):
        TuneConfig(alpha_range=(1.0, 0.5))
    with pytest.raises(ConfigError, match="objective"):
        TuneConfig(objective="map")


def test_tune_config_from_toml(tmp_path):
    path = tmp_path / "tune.toml"
    path.write_text('[tuning]\ntrials = 7\nobjective = "ap25"\nalphas = ["xyz", "rgb"]\nalpha_range = [0.1, 2.0]\n')
    tune = TuneConfig.from_toml(path)
    assert (tune.trials, tune.objective, tune.alphas, tune.alpha_range) == (7, "ap25", ("xyz", "rgb"), (0.1, 2.0))
    path.write_text("trials = 0\n")
    with pytest.raises(ConfigError, match="tune.toml.*trials"):
        TuneConfig.from_toml(path)
    with pytest.raises(ConfigError, match="not found"):
        TuneConfig.from_toml(tmp_path / "missing.toml")


def test_tune_config_from_flags_lets_only_typed_flags_override_the_file(tmp_path):
    path = tmp_path / "tune.toml"
    path.write_text("trials = 7\nseed = 3\ntune_k1 = true\n")
    flags = {"trials": 40, "seed": 0, "tune_k1": False, "objective": "ap50"}
    assert TuneConfig.from_flags(flags).model_dump() == TuneConfig(**flags).model_dump()  # no file: the flags
    kept = TuneConfig.from_flags(flags, typed=(), toml=path)  # defaults never override the file
    assert (kept.trials, kept.seed, kept.tune_k1) == (7, 3, True)
    typed = TuneConfig.from_flags(flags, typed={"seed", "tune_k1"}, toml=path)  # typed values always do, falsy too
    assert (typed.trials, typed.seed, typed.tune_k1) == (7, 0, False)
    grid = TuneConfig.from_flags(flags, typed=(), toml=path, sigma_grid=[0.5, 0.9])
    assert (grid.sampler, grid.sigma_low_grid, grid.tune_sigma_low, grid.alphas, grid.prune, grid.trials) == (
        "grid", (0.5, 0.9), True, (), False, 7)


def test_study_finds_best_and_matches_full_pipeline(scenes, base, spec):
    records = []
    tune = TuneConfig(trials=3, alphas=ALPHAS, objective="ap50", seed=1)
    result = run_study(scenes, base, tune, progress=records.append)
    study = result.study
    assert result.n_trials == 3 and len(records) == 3
    # The base config is the first trial, so the result is never worse than it.
    assert study.trials[0].params == {"alpha_norm": 0.25, "alpha_xyz": 0.5, "alpha_rgb": 0.5}
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert result.best_value == max(t.value for t in complete)
    assert result.best_value >= study.trials[0].value
    assert set(result.best_params) == {"alpha_norm", "alpha_xyz", "alpha_rgb"}
    for key, value in result.best_params.items():
        assert getattr(result.best_config, key) == value
        assert 0.05 <= value <= 4.0
    assert result.best_config.plane_ransac_iterations == 60  # untuned fields kept from the base
    # Independent check of the cached path: the full pipeline with the best config scores the same.
    labels = {
        s.name: generate_pseudo_labels(s, result.best_config, sigmas=(base.sigma_low,)).labels[base.sigma_low]
        for s in scenes
    }
    full = score_pseudo_masks(scenes, labels, spec)
    assert result.best_value == pytest.approx(full.ap50)
    assert result.best_metrics == pytest.approx({"ap": full.ap, "ap50": full.ap50, "ap25": full.ap25})
    # One intermediate value per scene: the score of the scenes seen so far.
    best = study.best_trial
    assert sorted(best.intermediate_values) == [0, 1, 2]
    assert best.intermediate_values[2] == pytest.approx(best.value)
    first = score_pseudo_masks(scenes[:1], labels, spec)
    assert best.intermediate_values[0] == pytest.approx(first.ap50)
    assert records[-1]["best_value"] == pytest.approx(result.best_value)


def test_best_config_round_trips_through_toml(scenes, base, tmp_path):
    tune = TuneConfig(trials=2, alphas=("xyz",), tune_sigma_low=True, seed=3)
    result = run_study(scenes[:2], base, tune)
    assert set(result.best_params) == {"alpha_xyz", "sigma_low"}
    path = write_best_config(result, tmp_path / "best.toml")
    assert path.read_text().startswith("# Tuned by Optuna study")
    assert PseudoLabelConfig.from_toml(path) == result.best_config


def test_resuming_a_sqlite_study_continues_it(scenes, base, tmp_path):
    url = f"sqlite:///{tmp_path / 'tune.db'}"
    tune = TuneConfig(trials=2, alphas=ALPHAS, storage=url, study_name="resume-test", enqueue_base=False)
    first = run_study(scenes[:2], base, tune)
    assert first.n_trials == 2
    second = run_study(scenes[:2], base, tune)
    assert second.n_trials == 4
    params = [tuple(sorted(t.params.items())) for t in second.study.trials]
    assert len(set(params)) == 4  # the resumed sampler does not replay the first run's samples
    assert second.best_value >= first.best_value
    reloaded = optuna.load_study(study_name="resume-test", storage=url)
    assert len(reloaded.trials) == 4
    with pytest.raises(ConfigError, match="ap50"):
        run_study(scenes[:2], base, tune.model_copy(update={"objective": "ap"}))


def test_pruned_trials_stop_early_and_the_best_completed_wins(scenes, base):
    tune = TuneConfig(trials=4, alphas=ALPHAS)
    result = run_study(scenes, base, tune, pruner=PruneOddTrials())
    states = [t.state for t in result.study.trials]
    assert states[1] == states[3] == optuna.trial.TrialState.PRUNED
    assert all(len(result.study.trials[i].intermediate_values) == 1 for i in (1, 3))
    assert result.best_value == max(result.study.trials[i].value for i in (0, 2))


def test_every_trial_pruned_is_a_clear_error(scenes, base):
    with pytest.raises(ConfigError, match="no trial completed.*2 pruned"):
        run_study(scenes[:2], base, TuneConfig(trials=2, alphas=ALPHAS), pruner=AlwaysPrune())


def test_study_rejects_unlabelled_or_duplicate_scenes(scenes, base):
    import dataclasses

    unlabelled = dataclasses.replace(scenes[0], instance=np.full(scenes[0].num_points, -1))
    with pytest.raises(DataError, match="no instance labels"):
        run_study([unlabelled], base, TuneConfig(trials=1))
    with pytest.raises(DataError, match="repeat"):
        run_study([scenes[0], scenes[0]], base, TuneConfig(trials=1))
    walls_only = dataclasses.replace(scenes[0], semantic=np.full(scenes[0].num_points, S3DIS_CLASS_ID["wall"]))
    with pytest.raises(DataError, match="no ground-truth instance of the evaluated classes"):
        run_study([walls_only], base, TuneConfig(trials=1))


def test_save_plots_writes_pngs_and_skips_importance_gracefully(scenes, base, tmp_path, caplog):
    result = run_study(scenes[:2], base, TuneConfig(trials=3, alphas=ALPHAS, seed=5))
    paths = save_plots(result.study, tmp_path / "plots")
    assert [p.name for p in paths] == ["optimization_history.png", "param_importances.png"]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    single = run_study(scenes[:1], base, TuneConfig(trials=1, alphas=ALPHAS))
    with caplog.at_level(logging.INFO, logger="freepoint_bench.tuning.study"):
        paths = save_plots(single.study, tmp_path / "one")
    assert [p.name for p in paths] == ["optimization_history.png"]
    assert "importance" in caplog.text


def test_alpha_emb_is_tuned_only_with_deep_features(scenes, base):
    seen = []

    def features_fn(scene):
        seen.append(scene.name)
        return np.c_[scene.xyz, scene.rgb].astype(np.float32)  # stand-in "deep" features, (N, 6)

    tune = TuneConfig(trials=2, enqueue_base=False)
    with_features = run_study(scenes[:1], base, tune, features_fn=features_fn)
    assert set(with_features.best_params) == {"alpha_emb", "alpha_norm", "alpha_xyz", "alpha_rgb"}
    assert seen == ["room_1"]  # once per scene, not once per trial
    without = run_study(scenes[:1], base, tune)
    assert "alpha_emb" not in without.best_params
