"""PseudoLabelConfig: paper defaults, TOML round trip, overrides, errors."""

from __future__ import annotations

import pytest

from freepoint_bench.errors import ConfigError
from freepoint_bench.freepoint.config import PseudoLabelConfig


def test_paper_defaults():
    c = PseudoLabelConfig()
    assert (c.k1, c.k2, c.fps_ratio, c.sigma_low, c.sigma_high) == (4, 4, 0.5, 0.9, 1.2)
    assert c.sigmas == (0.9, 1.2) and c.solver == "gaec"


def test_toml_round_trip_and_overrides(tmp_path):
    c = PseudoLabelConfig(alpha_xyz=0.3, solver="gaec-kl")
    path = c.to_toml(tmp_path / "pl.toml")
    assert PseudoLabelConfig.from_toml(path) == c
    d = PseudoLabelConfig.from_toml(path, overrides=["k1=6", "solver=gaec", "sigma_low=0.7"])
    assert (d.k1, d.solver, d.sigma_low, d.alpha_xyz) == (6, "gaec", 0.7, 0.3)
    flat = tmp_path / "flat.toml"
    flat.write_text("k2 = 8\n")
    assert PseudoLabelConfig.from_toml(flat).k2 == 8


@pytest.mark.parametrize(
    "bad",
    [
        {"k1": 0},
        {"fps_ratio": 1.5},
        {"solver": "metis"},
        {"nope": 1},
        {"alpha_norm": -1.0},
        {"alpha_emb": 0, "alpha_norm": 0, "alpha_xyz": 0, "alpha_rgb": 0},
    ],
)
def test_bad_values(bad):
    with pytest.raises(ConfigError):
        PseudoLabelConfig(**bad)


def test_bad_files_and_overrides(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        PseudoLabelConfig.from_toml(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("k1 = = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        PseudoLabelConfig.from_toml(broken)
    wrong = tmp_path / "wrong.toml"
    wrong.write_text("k1 = 'four'")
    with pytest.raises(ConfigError, match="wrong.toml"):
        PseudoLabelConfig.from_toml(wrong)
    with pytest.raises(ConfigError, match="unknown"):
        PseudoLabelConfig().with_overrides(["kk=1"])
    with pytest.raises(ConfigError, match="key=value"):
        PseudoLabelConfig().with_overrides(["k1"])


def test_plain_preset_is_the_issue_18_baseline_and_round_trips(tmp_path):
    plain = PseudoLabelConfig.preset("plain")
    assert (plain.plane_distance_threshold, plain.plane_max_count, plain.plane_min_fraction) == (0.03, 8, 0.05)
    assert plain.plane_grid_size == 0.0  # plain RANSAC: every inlier of a plane goes
    assert plain.alpha_norm == plain.alpha_xyz == plain.alpha_rgb == pytest.approx(1 / 3)  # averaged
    assert (plain.sigma_low, plain.mask_score, plain.min_segment_size) == (0.6, "size", 30)
    assert (plain.k1, plain.k2, plain.fps_ratio) == (4, 4, 0.5)
    assert PseudoLabelConfig.preset("default") == PseudoLabelConfig()
    assert PseudoLabelConfig.preset("plain", ["sigma_low=0.7"]).sigma_low == 0.7
    assert PseudoLabelConfig.from_toml(plain.to_toml(tmp_path / "plain.toml")) == plain
    with pytest.raises(ConfigError, match="unknown pseudo-label preset 'fancy'; known: default, plain"):
        PseudoLabelConfig.preset("fancy")
    with pytest.raises(ConfigError, match="mask_score"):
        PseudoLabelConfig(mask_score="area")


# the default config's record before superpoints / normal_affinity existed (cache keys and FreePoint ids hash it)
RECORD_BEFORE_SUPERPOINTS = {
    "plane_distance_threshold", "plane_min_fraction", "plane_min_points", "plane_max_count",
    "plane_ransac_iterations", "plane_grid_size", "plane_rules", "alpha_emb", "alpha_norm", "alpha_xyz",
    "alpha_rgb", "sigma_low", "sigma_high", "mask_score", "min_segment_size", "k1", "k2", "fps_ratio",
    "normal_k", "solver", "seed",
}


def test_later_fields_are_recorded_only_off_their_defaults(tmp_path):
    record = PseudoLabelConfig().model_dump()
    assert not {"superpoints", "superpoint_threshold", "superpoint_min_size", "normal_affinity"} & set(record)
    assert RECORD_BEFORE_SUPERPOINTS <= set(record)
    on = PseudoLabelConfig().with_overrides(["superpoints=true", "superpoint_min_size=20"])
    assert on.model_dump()["superpoints"] is True and on.model_dump()["superpoint_min_size"] == 20
    assert "superpoint_threshold" not in on.model_dump()
    assert PseudoLabelConfig.preset("plain").model_dump()["normal_affinity"] == "abs"
    for config in (PseudoLabelConfig(), on, PseudoLabelConfig.preset("plain")):
        assert PseudoLabelConfig(**config.model_dump()) == config
        assert PseudoLabelConfig.from_toml(config.to_toml(tmp_path / "c.toml")) == config
