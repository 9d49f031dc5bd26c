"""The leaderboard's numbers over a hand-made store: means, sd, Δ and p against independent computations."""

from __future__ import annotations

import json
import math
import shutil
import statistics

import pytest
from report_fixtures import AREA_5, BEST, CONFLICT_REASON, RUNS, STATUS, UNFINISHED, write_store
from scipy import stats

from freepoint_bench.errors import DataError
from freepoint_bench.report import build_leaderboard, load_results, paired_test
from freepoint_bench.report.leaderboard import label_efficiency
from freepoint_bench.report.paper import FINETUNE

METRIC_INDEX = {"ap": 0, "ap50": 1, "ap25": 2}


@pytest.fixture
def board(tmp_path):
    return build_leaderboard(load_results(write_store(tmp_path / "results")))


def _values(protocol: str, method: str, metric: str) -> dict[int, float]:
    return {s: v[METRIC_INDEX[metric]] for (p, m, s), v in RUNS.items() if (p, m) == (protocol, method)}


def test_store_lists_runs_and_unfinished_seeds(tmp_path):
    store = load_results(write_store(tmp_path / "results"))
    assert len(store.runs) == len(RUNS)
    assert store.unfinished == UNFINISHED
    assert store.protocols() == ["s3dis-10pct-masks", "s3dis-20pct-masks"]
    assert store.methods()[0] == "scratch"


def test_statuses(board):
    assert {(c.protocol, c.method): c.status for c in board.entries.values()} == STATUS


@pytest.mark.filterwarnings("ignore:Precision loss occurred")  # scipy on the zero-spread differences
@pytest.mark.parametrize("metric", ["ap", "ap50", "ap25"])
def test_means_sd_and_paired_tests_match_independent_computations(board, metric):
    for (protocol, method), status in STATUS.items():
        entry = board.entry(protocol, method)
        if status not in ("ok", "partial"):
            assert not entry.metrics
            continue
        values = _values(protocol, method, metric)
        stat = entry.metrics[metric]
        assert stat.n == len(values)
        assert stat.mean == pytest.approx(statistics.mean(values.values()), abs=1e-12)
        assert stat.sd == pytest.approx(statistics.stdev(values.values()), abs=1e-12)
        if method == "scratch":
            assert stat.paired is None
            continue
        base = _values(protocol, "scratch", metric)
        common = sorted(set(values) & set(base))
        a, b = [values[s] for s in common], [base[s] for s in common]
        assert stat.paired.n == len(common)
        assert stat.paired.delta == pytest.approx(statistics.mean(x - y for x, y in zip(a, b, strict=True)), abs=1e-12)
        expected_p = stats.ttest_rel(a, b).pvalue
        if math.isnan(expected_p):  # every difference exactly zero: scipy's 0/0; the test's limit is p = 1
            assert stat.paired.p == 1.0
        elif expected_p < 1e-12:  # zero spread: scipy's t is inf (or huge from float noise), p ≈ 0
            assert stat.paired.p == 0.0
        else:
            assert stat.paired.p == pytest.approx(expected_p, rel=1e-9)


def test_significance_marks(board):
    ap = {m: board.entry("s3dis-10pct-masks", m).metrics["ap"].paired for m in ("freepoint", "pointcontrast", "csc")}
    assert ap["freepoint"].p == pytest.approx(0.009132611386275455) and ap["freepoint"].stars == "**"
    assert ap["pointcontrast"].p == pytest.approx(0.0351, abs=1e-4) and ap["pointcontrast"].stars == "*"
    assert ap["csc"].p == pytest.approx(0.2951672353008665) and ap["csc"].stars == ""
    # constant differences of +5 (float noise aside): zero spread, p = 0
    assert board.entry("s3dis-10pct-masks", "freepoint").metrics["ap50"].paired.stars == "**"


def test_best_per_column_among_complete_entries(board):
    assert {k: sorted(v) for k, v in board.best.items()} == {k: [v] for k, v in BEST.items()}
    csc = board.entry("s3dis-10pct-masks", "csc").metrics["ap25"].mean
    assert csc > board.entry("s3dis-10pct-masks", "freepoint").metrics["ap25"].mean  # higher, but partial


def test_mismatched_protocol_hash_is_never_averaged_and_says_why(board):
    entry = board.entry("s3dis-20pct-masks", "freepoint")
    assert entry.status == "conflict" and entry.seeds == [0, 1]
    assert entry.reason == "not averaged: " + CONFLICT_REASON
    assert any(CONFLICT_REASON in n for n in board.notes)


def test_mismatched_split_is_refused_within_an_entry_and_against_scratch(tmp_path):
    root = write_store(tmp_path / "results")
    path = root / "s3dis-10pct-masks" / "csc" / "seed-1" / "result.json"
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, "split_sha256": "f" * 64}))
    entry = build_leaderboard(load_results(root)).entry("s3dis-10pct-masks", "csc")
    assert entry.status == "conflict" and not entry.metrics
    assert "split_sha256 differs (seed 0 → 111111111111; seed 1 → ffffffffffff)" in entry.reason
    # both seeds on another split: averaged, but no Δ against scratch (another selection of labels)
    other = root / "s3dis-10pct-masks" / "csc" / "seed-0" / "result.json"
    other.write_text(json.dumps({**json.loads(other.read_text()), "split_sha256": "f" * 64}))
    entry = build_leaderboard(load_results(root)).entry("s3dis-10pct-masks", "csc")
    assert entry.status == "partial" and all(s.paired is None for s in entry.metrics.values())
    assert entry.delta_note == "no Δ: split_sha256 ffffffffffff differs from scratch's 111111111111"


def test_no_delta_without_scratch(tmp_path):
    root = write_store(tmp_path / "results")
    for seed in (0, 1):
        (root / "s3dis-10pct-masks" / "scratch" / f"seed-{seed}" / "result.json").unlink()
    shutil.rmtree(root / "s3dis-10pct-masks" / "scratch" / "seed-2")
    board = build_leaderboard(load_results(root))
    scratch, fp = board.entry("s3dis-10pct-masks", "scratch"), board.entry("s3dis-10pct-masks", "freepoint")
    assert scratch.status == "missing" and scratch.reason == "no finished run; seeds 0, 1 unfinished"
    assert fp.status == "ok" and all(s.paired is None for s in fp.metrics.values())
    assert fp.delta_note == "no Δ: scratch not run in this protocol"
    shutil.rmtree(root / "s3dis-10pct-masks" / "scratch")
    assert build_leaderboard(load_results(root)).entry("s3dis-10pct-masks", "scratch").reason == "not run"


def test_paper_rows_are_quoted_apart(board):
    assert board.references["s3dis-10pct-masks"] == FINETUNE["s3dis-10pct-masks"]
    fp = next(r for r in board.references["s3dis-10pct-masks"] if r.method == "freepoint")
    assert (fp.ap, fp.ap50, fp.ap25, fp.source) == (40.5, 52.3, 58.3, "Table 2")
    scratch = next(r for r in FINETUNE["s3dis-10pct-scenes"] if r.method == "scratch")
    assert (scratch.ap, scratch.ap50, scratch.ap25, scratch.source) == (30.1, 41.2, 52.2, "Table 3")
    # our statistics see only our runs
    assert board.entry("s3dis-10pct-masks", "freepoint").metrics["ap"].n == 3


def test_paper_rows_only_beside_the_protocols_that_reproduce_them(tmp_path):
    root = write_store(tmp_path / "results")
    src = root / "s3dis-10pct-masks"
    dst = root / "synthetic-s3dis-20pct-masks"
    for path in src.glob("*/seed-*/result.json"):
        target = dst / path.relative_to(src)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps({**json.loads(path.read_text()), "protocol": dst.name}))
    board = build_leaderboard(load_results(root))
    assert board.references["synthetic-s3dis-20pct-masks"] == []


def test_per_class_means_skip_absent_classes(board):
    table = board.entry("s3dis-10pct-masks", "freepoint").per_class["table"]
    assert table.values == {0: 0.20, 2: 0.30}
    assert table.mean == pytest.approx(0.25) and table.sd == pytest.approx(statistics.stdev([0.2, 0.3]))
    assert board.classes == ["chair", "table"]


def test_label_efficiency_points(board):
    curves = label_efficiency(board)
    assert [k[:3] for k in curves] == [("s3dis", "masks", 68)]
    (panel,) = curves.values()
    scratch = panel["scratch"]
    assert [(f, round(100 * m, 6), n) for f, m, _, n in scratch] == [(0.1, 32.0, 3), (0.2, 41.0, 2)]
    assert [p[0] for p in panel["freepoint"]] == [0.1]  # the conflict entry has no point


def test_label_efficiency_panels_by_evaluated_scenes(tmp_path):
    """A full-label protocol joins every unit on the same scenes; another evaluation set gets its own panel."""
    root = write_store(tmp_path / "results")
    for name, unit, fraction, scenes in [
        ("s3dis-full", "full", 1.0, AREA_5),
        ("s3dis-6fold-full", "full", 1.0, ["Area_1_office_1", "Area_5_office_1"]),
    ]:
        for seed in (0, 1):
            path = root / name / "scratch" / f"seed-{seed}" / "result.json"
            path.parent.mkdir(parents=True)
            doc = json.loads((root / "s3dis-10pct-masks" / "scratch" / f"seed-{seed}" / "result.json").read_text())
            path.write_text(
                json.dumps(
                    {
                        **doc,
                        "protocol": name,
                        "unit": unit,
                        "fraction": fraction,
                        "eval_scenes": scenes,
                        "metrics": {**doc["metrics"], "ap": 0.5 + seed / 10},
                    }
                )
            )
    curves = label_efficiency(build_leaderboard(load_results(root)))
    assert sorted(k[:3] for k in curves) == [("s3dis", "full", 2), ("s3dis", "masks", 68)]
    masks = next(v for k, v in curves.items() if k[1] == "masks")
    assert [(f, round(100 * m, 6)) for f, m, _, _ in masks["scratch"]] == [(0.1, 32.0), (0.2, 41.0), (1.0, 55.0)]
    assert "freepoint" in masks and "csc" in masks


def test_paired_test_edge_cases():
    assert paired_test({0: 0.5}, {1: 0.4}) is None
    one = paired_test({0: 0.5, 1: 0.6}, {1: 0.4})
    assert one.n == 1 and one.delta == pytest.approx(0.2) and math.isnan(one.p) and one.stars == ""
    same = paired_test({0: 0.5, 1: 0.6}, {0: 0.5, 1: 0.6})
    assert same.delta == 0 and same.p == 1.0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "corrupt result.json"),
        ("[1, 2]", "not a JSON object"),
        ('{"schema_version": 2}', "schema_version 2"),
        ('{"schema_version": 1, "protocol": "x"}', "lacks protocol_hash"),
    ],
)
def test_corrupt_result_names_the_file(tmp_path, content, message):
    root = write_store(tmp_path / "results")
    bad = root / "s3dis-10pct-masks" / "csc" / "seed-0" / "result.json"
    bad.write_text(content)
    with pytest.raises(DataError, match=message) as e:
        load_results(root)
    assert str(bad) in str(e.value)


def test_metric_that_is_not_a_number_names_the_file(tmp_path):
    root = write_store(tmp_path / "results")
    bad = root / "s3dis-10pct-masks" / "csc" / "seed-0" / "result.json"
    doc = json.loads(bad.read_text())
    doc["metrics"]["ap50"] = "high"
    bad.write_text(json.dumps(doc))
    with pytest.raises(DataError, match=r"metrics\.ap50 is 'high'") as e:
        load_results(root)
    assert str(bad) in str(e.value)


def test_result_in_the_wrong_folder_is_refused(tmp_path):
    root = write_store(tmp_path / "results")
    src = root / "s3dis-10pct-masks" / "csc" / "seed-0" / "result.json"
    dst = root / "s3dis-10pct-masks" / "csc" / "seed-7" / "result.json"
    dst.parent.mkdir()
    dst.write_text(src.read_text())
    with pytest.raises(DataError, match="records protocol/method/seed s3dis-10pct-masks/csc/0"):
        load_results(root)


def test_empty_and_missing_stores(tmp_path):
    with pytest.raises(DataError, match="no results store here"):
        load_results(tmp_path / "nowhere")
    (tmp_path / "empty" / "p" / "m" / "seed-0").mkdir(parents=True)
    with pytest.raises(DataError, match="no result.json under"):
        load_results(tmp_path / "empty")


def test_null_metric_counts_as_missing_not_zero(tmp_path):
    root = write_store(tmp_path / "results")
    path = root / "s3dis-10pct-masks" / "scratch" / "seed-2" / "result.json"
    doc = json.loads(path.read_text())
    doc["metrics"]["ap"] = None
    path.write_text(json.dumps(doc))
    stat = build_leaderboard(load_results(root)).entry("s3dis-10pct-masks", "scratch").metrics["ap"]
    assert stat.values == {0: 0.30, 1: 0.32} and stat.mean == pytest.approx(0.31)


def test_semantic_task_cells_get_their_own_columns_beside_the_ap_tables(tmp_path):
    from freepoint_bench.report import build_report
    from freepoint_bench.report.render import to_markdown
    from freepoint_bench.results import ResultRecord, write_result

    root = write_store(tmp_path / "results")
    before = build_leaderboard(load_results(root))
    metrics = {"miou": 0.5, "macc": 0.6, "all_acc": 0.8, "per_class": {"chair": {"iou": 0.5, "acc": 0.6}}}
    for method in ("scratch", "linear-only-method"):
        write_result(root / "s3dis-linear" / method / "seed-0" / "result.json",
                     ResultRecord(protocol="s3dis-linear", protocol_hash="c" * 64, split_sha256="", method=method,
                                  seed=0, metrics=metrics, task="linear", dataset="s3dis", unit="full"))
    board = build_leaderboard(load_results(root))  # raised KeyError: 'ap' before semantic cells were left out
    # the linear rung comes first (cheapest), scored by its own metrics; the AP entries are what they were
    assert [p.name for p in board.protocols] == ["s3dis-linear"] + [p.name for p in before.protocols]
    assert board.methods == ["scratch", *sorted(before.methods[1:] + ["linear-only-method"])]
    for key, entry in before.entries.items():
        assert board.entries[key].metrics == entry.metrics and board.entries[key].status == entry.status
    linear = board.entry("s3dis-linear", "linear-only-method")
    assert list(linear.metrics) == ["miou", "macc", "all_acc"] and linear.metrics["miou"].values == {0: 0.5}
    assert linear.metrics["miou"].paired.delta == 0 and board.semantic_classes == ["chair"]
    assert board.entry("s3dis-10pct-masks", "linear-only-method").status == "missing"
    text = to_markdown(build_report(board))
    assert "## Linear probe, frozen backbone (linear): mIoU / mAcc / allAcc" in text
    assert "not in these instance-segmentation tables" not in text
