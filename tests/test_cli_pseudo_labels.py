"""bench.py pseudo-labels --diagnose / --config-preset and tune --cv on a tiny synthetic dataset."""

from __future__ import annotations

from test_cli import common, synth  # noqa: F401  (synth is a fixture)


def test_pseudo_labels_diagnose_prints_one_row_per_sigma(bench_cli, synth, tmp_path):  # noqa: F811
    code, out, _ = bench_cli("pseudo-labels", *common(synth, tmp_path), "--out", tmp_path / "l", "--diagnose")
    assert code == 0, out
    assert "pseudo-mask diagnosis on synthetic (2 scenes" in out
    for sigma in ("0.9", "1.2"):
        segments = out.split(f"segments per scene at σ={sigma} │ ")[1].split()[0]  # from the run's summary
        row = out.split(f"│ {sigma} │ ")[1].split(" │ ")
        assert len(row) >= 6 and row[2] == segments and row[3].endswith("%")


def test_config_preset_plain_runs_and_excludes_config(bench_cli, synth, tmp_path):  # noqa: F811
    args = common(synth, tmp_path)
    code, out, _ = bench_cli("pseudo-labels", *args, "--config-preset", "plain", "--out", tmp_path / "l")
    assert code == 0 and "segments per scene at σ=0.6" in out and "σ=0.8" in out
    (tmp_path / "c.toml").write_text("sigma_low = 0.7\n")
    code, _, err = bench_cli("pseudo-labels", *args, "--config-preset", "plain", "--config", tmp_path / "c.toml")
    assert code == 2 and "give one" in err
    code, _, err = bench_cli("pseudo-labels", *args, "--config-preset", "fancy")
    assert code == 2 and "unknown pseudo-label preset 'fancy'" in err


def test_tune_cv_rooms_reports_folds_and_writes_a_loadable_config(bench_cli, synth, tmp_path):  # noqa: F811
    from freepoint_bench.freepoint.config import PseudoLabelConfig

    args = [*common(synth, tmp_path), "--out", tmp_path / "tune"]
    code, out, _ = bench_cli("tune", *args, "--cv", "rooms", "--sigma-grid", "0.7,1.1")
    assert code == 0, out
    assert "2 folds of whole rooms" in out and "synth_0000" in out and "synth_0001" in out and "pooled" in out
    config = PseudoLabelConfig.from_toml(tmp_path / "tune" / "best.toml")
    assert "chosen: tuned" in out or config == PseudoLabelConfig()
    code, _, err = bench_cli("tune", *args, "--cv", "rooms", "--folds", "3")
    assert code == 2 and "need 2 <= k <= the number of rooms (2)" in err
    code, _, err = bench_cli("tune", *args, "--cv", "scans")
    assert code == 2 and "only cross-validation is by room" in err
