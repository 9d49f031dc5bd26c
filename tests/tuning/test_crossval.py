"""Cross-validation by room: folds keep rooms whole; held-out scans never reach a fold's study."""

from __future__ import annotations

import pytest

from freepoint_bench.data.splits import room_of
from freepoint_bench.data.synthetic import SyntheticConfig, generate_room
from freepoint_bench.errors import ConfigError, DataError
from freepoint_bench.freepoint.config import PseudoLabelConfig
from freepoint_bench.freepoint.pipeline import generate_pseudo_labels
from freepoint_bench.tuning import crossval
from freepoint_bench.tuning.crossval import cross_validate, room_folds, write_cv_config
from freepoint_bench.tuning.objective import evaluation_spec_for, score_pseudo_masks
from freepoint_bench.tuning.study import TuneConfig

NAMES = ["scene0001_00", "scene0001_01", "scene0002_00", "scene0003_00"]
FAST = {"plane_ransac_iterations": 60, "plane_fit_points": 1500, "plane_min_points": 100}


def test_leave_one_room_out_and_k_folds_keep_rooms_whole():
    folds = room_folds(["scene0002_00", *NAMES])  # a repeated name counts once
    assert [held for _, held in folds] == [["scene0001_00", "scene0001_01"], ["scene0002_00"], ["scene0003_00"]]
    assert folds[0][0] == ["scene0002_00", "scene0003_00"]
    two = room_folds(NAMES, folds=2)  # rooms 0001, 0003 | 0002
    assert [held for _, held in two] == [["scene0001_00", "scene0001_01", "scene0003_00"], ["scene0002_00"]]
    for train, held in folds + two:
        assert not {room_of(n) for n in train} & {room_of(n) for n in held}
        assert sorted(train + held) == sorted(NAMES)
    assert sorted(n for _, held in two for n in held) == sorted(NAMES)  # each scan held out once
    with pytest.raises(ConfigError, match="need 2 <= k <= the number of rooms \\(3\\)"):
        room_folds(NAMES, folds=4)
    with pytest.raises(DataError, match="at least 2 rooms"):
        room_folds(["scene0001_00", "scene0001_01"])


@pytest.fixture(scope="module")
def scenes():
    config = SyntheticConfig(num_points=4000)
    return [generate_room(seed, config, name=name) for seed, name in enumerate(NAMES, start=1)]


def test_cross_validate_scores_held_out_rooms_only(scenes, monkeypatch, tmp_path):
    base = PseudoLabelConfig(**FAST)
    tune = TuneConfig(alphas=(), tune_sigma_low=True, sigma_low_grid=(0.3, 0.9, 1.5), sampler="grid", prune=False)
    seen: list[list[str]] = []
    real = crossval.run_study

    def spy(train, *args, **kwargs):
        seen.append([s.name for s in train])
        return real(train, *args, **kwargs)

    monkeypatch.setattr(crossval, "run_study", spy)
    folds = room_folds(NAMES)
    spec = evaluation_spec_for("synthetic")
    cv = cross_validate(scenes, base, tune, folds, evaluation_spec=spec)
    assert seen[: len(folds)] == [train for train, _ in folds]  # each fold's study saw its training rooms only
    assert cv.rooms == [["scene0001"], ["scene0002"], ["scene0003"]]
    by_name = {s.name: s for s in scenes}
    for (_, held), value, params in zip(folds, cv.tuned.per_fold, cv.fold_params, strict=True):
        held_scenes = [by_name[n] for n in held]
        # Recomputed independently: the fold's chosen σ through the plain pipeline, scored on its held-out scans.
        config = base.with_overrides(params)
        labels = {s.name: generate_pseudo_labels(s, config, (config.sigma_low,)).labels[config.sigma_low]
                  for s in held_scenes}
        assert score_pseudo_masks(held_scenes, labels, spec).ap50 == pytest.approx(value, nan_ok=True)
        assert params["sigma_low"] in (0.3, 0.9, 1.5)
    fixed_fold0 = score_pseudo_masks(
        [by_name[n] for n in folds[0][1]],
        {n: generate_pseudo_labels(by_name[n], base, (0.9,)).labels[0.9] for n in folds[0][1]},
        spec,
    )
    assert cv.fixed.per_fold[0] == pytest.approx(fixed_fold0.ap50)
    assert all(v == v for v in cv.fixed.per_fold)  # every held-out room has objects (no NaN)
    assert len(cv.fixed.per_fold) == 3 and cv.fixed.min <= cv.fixed.mean <= cv.fixed.max
    gain, se = crossval.paired_gain(cv.fixed, cv.tuned)
    diffs = [t - f for f, t in zip(cv.fixed.per_fold, cv.tuned.per_fold, strict=True)]
    assert gain == pytest.approx(sum(diffs) / 3)
    assert se == pytest.approx((sum((d - gain) ** 2 for d in diffs) / 2) ** 0.5 / 3**0.5)
    if gain > se:
        assert cv.chosen == "tuned" and seen[-1] == NAMES and cv.final is not None  # refit on every scan
        assert cv.chosen_config == cv.final.best_config
    else:
        assert cv.chosen == "fixed" and cv.chosen_config == base and len(seen) == len(folds)
    path = write_cv_config(cv, tmp_path / "cv.toml")
    assert PseudoLabelConfig.from_toml(path) == cv.chosen_config
    assert "# Cross-validated by room (3 folds, held-out ap50" in path.read_text()


def test_fixed_only_and_bad_folds(scenes):
    base = PseudoLabelConfig(**FAST)
    cv = cross_validate(scenes, base, None, room_folds(NAMES, 2), evaluation_spec=evaluation_spec_for("synthetic"))
    assert cv.tuned is None and cv.chosen == "fixed" and len(cv.fixed.per_fold) == 2
    with pytest.raises(DataError, match="not given"):
        cross_validate(scenes[:2], base, None, room_folds(NAMES))
    with pytest.raises(ConfigError, match="grid sampler needs a discrete space"):
        TuneConfig(sampler="grid")
