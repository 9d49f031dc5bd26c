"""`bench.py tune --tune-config FILE`: the file's fields, then only the flags typed on the command line."""

from __future__ import annotations

import pytest

import freepoint_bench.atomic as atomic
import freepoint_bench.tuning as tuning
from freepoint_bench.errors import ConfigError


@pytest.fixture()
def final_config(monkeypatch):
    """Returns the list of TuneConfigs the command builds (the last is the study's); the command stops before any
    data is read."""
    built = []

    class Recording(tuning.TuneConfig):
        def __init__(self, **fields):
            super().__init__(**fields)
            built.append(self)

    def stop(path):
        raise ConfigError("stopped before the study")

    monkeypatch.setattr(tuning, "TuneConfig", Recording)
    monkeypatch.setattr(atomic, "ensure_dir", stop)
    return built


def test_a_flag_left_at_its_default_does_not_override_the_file(bench_cli, tmp_path, final_config):
    toml = tmp_path / "tune.toml"
    toml.write_text("[tuning]\ntrials = 3\nseed = 5\nobjective = 'ap25'\n")
    code, out, err = bench_cli("tune", "--dataset", "synthetic", "--tune-config", toml, "--out", tmp_path / "o")
    assert "stopped before the study" in out + err
    assert (final_config[-1].trials, final_config[-1].seed, final_config[-1].objective) == (3, 5, "ap25")


def test_a_typed_flag_overrides_the_file_even_when_falsy(bench_cli, tmp_path, final_config):
    toml = tmp_path / "tune.toml"
    toml.write_text("[tuning]\ntrials = 3\nseed = 5\ntune_k1 = true\n")
    bench_cli("tune", "--dataset", "synthetic", "--tune-config", toml, "--seed", "0", "--trials", "40",
              "--out", tmp_path / "o")
    final = final_config[-1]
    assert (final.trials, final.seed, final.tune_k1) == (40, 0, True)


def test_sigma_grid_applies_over_the_file(bench_cli, tmp_path, final_config):
    toml = tmp_path / "tune.toml"
    toml.write_text("[tuning]\ntrials = 3\n")
    bench_cli("tune", "--dataset", "synthetic", "--tune-config", toml, "--sigma-grid", "0.5,0.9",
              "--out", tmp_path / "o")
    final = final_config[-1]
    assert final.sampler == "grid" and final.sigma_low_grid == (0.5, 0.9) and final.alphas == ()
