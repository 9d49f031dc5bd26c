"""`bench.py report` end to end over a hand-made store, its one-line errors, and pseudo-labels --compare-json."""

from __future__ import annotations

import json

from report_fixtures import CONFLICT_REASON, write_evaluations, write_store

from freepoint_bench.data.synthetic import SyntheticConfig, write_synthetic_dataset


def test_report_prints_and_writes_every_format(bench_cli, tmp_path, monkeypatch):
    monkeypatch.setattr("freepoint_bench.cli.console.width", 200)  # the captured terminal is 80 wide
    store = write_store(tmp_path / "results")
    out = tmp_path / "report"
    evals = write_evaluations(tmp_path)
    code, stdout, _ = bench_cli(
        "report", "--results", store, "--out", out, "--evaluations", evals[0], "--evaluations", evals[1]
    )
    assert code == 0
    assert "38.0 ± 1.7" in stdout and "Δ +6.0**" in stdout and "conflict: not averaged †" in stdout
    assert CONFLICT_REASON in stdout
    for name in ("leaderboard.md", "leaderboard.csv", "leaderboard.tex", "report.html", "label-efficiency.png"):
        assert (out / name).is_file() and f"wrote {out / name}" in stdout
    assert "segmenter" in (out / "unsupervised.csv").read_text()


def test_report_one_format(bench_cli, tmp_path):
    store = write_store(tmp_path / "results")
    code, stdout, _ = bench_cli("report", "--results", store, "--format", "csv", "--out", tmp_path / "o")
    assert code == 0 and "38.0" not in stdout  # no terminal table
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [
        "leaderboard.csv",
        "paper-reference.csv",
        "per-class.csv",
    ]


def test_report_errors_are_one_line(bench_cli, tmp_path):
    code, _, err = bench_cli("report", "--results", tmp_path / "none")
    assert (
        code == 2
        and err == f"error: {tmp_path / 'none'}: no results store here; run `bench.py run` first or pass --results DIR"
    )
    (tmp_path / "empty").mkdir()
    code, _, err = bench_cli("report", "--results", tmp_path / "empty")
    assert code == 2 and "no result.json under <protocol>/<method>/seed-<k>/" in err
    store = write_store(tmp_path / "results")
    bad = store / "s3dis-20pct-masks" / "scratch" / "seed-1" / "result.json"
    bad.write_text('{"schema_version": 1, "metrics": ')
    code, _, err = bench_cli("report", "--results", store, "--out", tmp_path / "o")
    assert code == 2 and err.startswith(f"error: {bad}: corrupt result.json") and "Traceback" not in err
    code, _, err = bench_cli("report", "--results", store, "--format", "docx")
    assert code == 2 and "--format 'docx'" in err


def test_compare_json_feeds_the_unsupervised_leaderboard(bench_cli, tmp_path, monkeypatch):
    monkeypatch.setattr("freepoint_bench.cli.console.width", 200)
    root = tmp_path / "synthetic"
    write_synthetic_dataset(root, num_scenes=2, seed=3, config=SyntheticConfig(num_points=3000))
    compare = tmp_path / "compare.json"
    code, _, _ = bench_cli(
        "pseudo-labels",
        "--dataset",
        "synthetic",
        "--root",
        root,
        "--cache",
        tmp_path / "cache",
        "--out",
        tmp_path / "labels",
        "--sigma",
        "0.9",
        "--compare",
        "kmeans",
        "--compare-json",
        compare,
    )
    assert code == 0
    doc = json.loads(compare.read_text())
    assert doc["num_scenes"] == 2 and [r["method"] for r in doc["rows"]] == ["FreePoint σ=0.9", "kmeans"]
    code, stdout, _ = bench_cli(
        "report",
        "--results",
        write_store(tmp_path / "results"),
        "--evaluations",
        compare,
        "--format",
        "terminal",
    )
    assert code == 0 and "Unsupervised class-agnostic instance segmentation" in stdout
    for row in doc["rows"]:
        assert f"{100 * row['ap']:.1f}" in stdout


def test_report_of_a_ladder_store(bench_cli, tmp_path, monkeypatch):
    from report_fixtures import write_ladder_store

    monkeypatch.setattr("freepoint_bench.cli.console.width", 250)
    out = tmp_path / "report"
    code, stdout, _ = bench_cli("report", "--results", write_ladder_store(tmp_path / "results"), "--out", out)
    assert code == 0
    assert "Ladder: s3dis, 68 eval scenes" in stdout and "s3dis-linear (linear: s3dis, full, 100% labels)" in stdout
    assert "32.0 ± 1.7" in stdout and "n=3 · Δ +10.0**" in stdout and "mIoU" in stdout
    for name in ("ladder.csv", "per-class-iou.csv", "per-class-iou-heatmap.png", "label-efficiency.png"):
        assert (out / name).is_file() and f"wrote {out / name}" in stdout
