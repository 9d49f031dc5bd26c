"""The task-aware report over a hand-made ladder store (linear, insseg-frozen, semseg, insseg cells for scratch and two
methods, 3 seeds): each protocol's columns are its task's metrics, the ladder, the label-efficiency panels per task,
every format, and a semantic-only store."""

from __future__ import annotations

import io
import json
import math
import statistics
from html.parser import HTMLParser

import pandas as pd
import pytest
from report_fixtures import AREA_5, LADDER_METHODS, LADDER_PROTOCOLS, LADDER_VALUES, ladder_metrics, write_ladder_store
from rich.console import Console
from rich.table import Table
from scipy import stats

from freepoint_bench.report import build_leaderboard, build_report, load_results, to_terminal, write_report
from freepoint_bench.report.leaderboard import label_efficiency, label_efficiency_panels, ladder
from freepoint_bench.report.render import to_html, to_latex, to_markdown

SEMANTIC = ("miou", "macc", "all_acc")
INSTANCE = ("ap", "ap50", "ap25")
# the protocols as the report orders them: by task, cheapest rung first, then as the store orders them
ORDER = [
    "s3dis-linear",
    "s3dis-10pct-masks-frozen",
    "s3dis-10pct-scenes-semseg",
    "s3dis-20pct-scenes-semseg",
    "s3dis-10pct-masks",
]
METHODS = ["scratch", "freepoint", "pointcontrast"]
LABEL = {"scratch": "scratch", "freepoint": "freepoint", "pointcontrast": "pointcontrast (re-implemented here)"}
# the ladder worked by hand from LADDER_VALUES (report_fixtures' comments): per method, per rung in ORDER, the
# headline metric's (mean ± sd, detail); headline mIoU for linear / semseg, AP for insseg-frozen / insseg
LADDER = {
    "scratch": [("22.0 ± 2.0", "n=3"), ("12.0 ± 2.0", "n=3"), ("42.0 ± 2.0", "n=3"), ("52.0 ± 2.0", "n=3"),
                ("32.0 ± 2.0", "n=3")],
    "freepoint": [("32.0 ± 1.7", "n=3 · Δ +10.0**"), ("16.7 ± 1.5", "n=3 · Δ +4.7*"), ("48.0 ± 1.7", "n=3 · Δ +6.0**"),
                  ("56.7 ± 1.5", "n=3 · Δ +4.7*"), ("38.0 ± 1.7", "n=3 · Δ +6.0**")],
    "pointcontrast": [("25.0 ± 3.0", "n=3 · Δ +3.0*"), ("12.0 ± 1.7", "n=3 · Δ +0.0"), ("43.0 ± 2.6", "n=3 · Δ +1.0"),
                      ("53.0 ± 2.6", "n=3 · Δ +1.0"), ("35.0 ± 3.0", "n=3 · Δ +3.0*")],
}
HEADERS = [  # rung and its metric, labels kept, protocol
    ("linear mIoU", "all labels", "s3dis-linear"),
    ("insseg-frozen AP", "10% masks", "s3dis-10pct-masks-frozen"),
    ("semseg mIoU", "10% scenes", "s3dis-10pct-scenes-semseg"),
    ("semseg mIoU", "20% scenes", "s3dis-20pct-scenes-semseg"),
    ("insseg AP", "10% masks", "s3dis-10pct-masks"),
]
ONE_LINE = [f"{a} {b} ({c})" for a, b, c in HEADERS]


def metrics_of(protocol: str) -> tuple[str, ...]:
    return SEMANTIC if LADDER_PROTOCOLS[protocol][0] in ("linear", "semseg") else INSTANCE


def values(protocol: str, method: str, metric: str) -> list[float]:
    return [v[metrics_of(protocol).index(metric)] for v in LADDER_VALUES[(protocol, method)]]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_ladder_store(tmp_path_factory.mktemp("ladder") / "results")


@pytest.fixture(scope="module")
def board(store):
    return build_leaderboard(load_results(store))


@pytest.fixture(scope="module")
def report(board):
    return build_report(board, source="results")


# ------------------------------------------------------------------------------------------ the tables as data


def test_every_protocol_is_tabled_with_its_tasks_metrics(board):
    assert [p.name for p in board.protocols] == ORDER
    assert [p.task for p in board.protocols] == [LADDER_PROTOCOLS[n][0] for n in ORDER]
    assert board.methods == METHODS and board.shows_tasks and not board.notes
    for p in board.protocols:
        assert p.metrics == metrics_of(p.name)
        for m in METHODS:
            entry = board.entry(p.name, m)
            assert entry.status == "ok" and tuple(entry.metrics) == metrics_of(p.name)


@pytest.mark.filterwarnings("ignore:Precision loss occurred")  # scipy on zero-spread differences
@pytest.mark.parametrize("protocol", ORDER)
def test_means_sd_delta_and_p_match_scipy(board, protocol):
    for method in METHODS:
        for metric in metrics_of(protocol):
            stat = board.entry(protocol, method).metrics[metric]
            vals = values(protocol, method, metric)
            assert stat.mean == pytest.approx(statistics.mean(vals), abs=1e-12)
            assert stat.sd == pytest.approx(statistics.stdev(vals), abs=1e-12)
            if method == "scratch":
                assert stat.paired is None
                continue
            base = values(protocol, "scratch", metric)
            assert stat.paired.n == 3
            assert stat.paired.delta == pytest.approx(statistics.mean(a - b for a, b in zip(vals, base, strict=True)))
            expected = stats.ttest_rel(vals, base).pvalue
            if math.isnan(expected):  # every difference zero: scipy's 0/0, the test's limit p = 1
                assert stat.paired.p == 1.0
            elif expected < 1e-12:  # zero spread of nonzero differences: p = 0
                assert stat.paired.p == 0.0
            else:
                assert stat.paired.p == pytest.approx(expected, rel=1e-9)


def test_hand_worked_significance(board):
    linear = board.entry("s3dis-linear", "freepoint").metrics
    assert linear["miou"].paired.p == pytest.approx(0.0033, abs=1e-4) and linear["miou"].paired.stars == "**"
    assert linear["macc"].paired.p == pytest.approx(0.0091, abs=1e-4) and linear["macc"].paired.stars == "**"
    assert linear["all_acc"].paired.p == pytest.approx(0.3377, abs=1e-4) and linear["all_acc"].paired.stars == ""
    pc = board.entry("s3dis-linear", "pointcontrast").metrics
    assert pc["miou"].paired.stars == "*" and pc["all_acc"].paired.p == 1.0


def test_best_per_column_in_each_tasks_metrics(board):
    for p in ORDER:
        for metric in metrics_of(p):
            means = {m: statistics.mean(values(p, m, metric)) for m in METHODS}
            top = max(means.values())
            assert board.best[(p, metric)] == {m for m, v in means.items() if math.isclose(v, top, abs_tol=1e-12)}
    assert board.best[("s3dis-linear", "miou")] == {"freepoint"}


def test_per_class_iou_for_semantic_protocols_ap_for_instance_ones(board):
    assert board.semantic_classes == ["chair", "floor"]
    assert board.classes == ["chair", "table"]  # RUNS' insseg classes and the frozen rung's chair
    chair = board.entry("s3dis-linear", "freepoint").per_class["chair"]
    assert chair.values == pytest.approx({0: 0.20, 1: 0.23, 2: 0.23})  # IoU = mIoU - 0.1, not mAcc
    assert board.entry("s3dis-10pct-masks", "freepoint").per_class["table"].values == {0: 0.20, 2: 0.30}


def test_a_run_of_another_task_is_a_conflict_not_averaged(tmp_path):
    root = write_ladder_store(tmp_path / "results", protocols=["s3dis-linear"])
    path = root / "s3dis-linear" / "pointcontrast" / "seed-2" / "result.json"
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, "task": "semseg"}))
    entry = build_leaderboard(load_results(root)).entry("s3dis-linear", "pointcontrast")
    assert entry.status == "conflict" and not entry.metrics
    assert entry.reason == "not averaged: task differs (seed 2 → semseg; the protocol's: linear)"


# ------------------------------------------------------------------------------------------ ladder and plot


def test_ladder_rows(board):
    (group,) = ladder(board)
    assert (group.dataset, group.eval_scenes) == ("s3dis", tuple(AREA_5))
    assert [p.name for p in group.rungs] == ORDER and group.methods == METHODS
    assert [group.metric(p) for p in group.rungs] == ["miou", "ap", "miou", "miou", "ap"]
    from freepoint_bench.report.render import entry_text

    for method, cells in LADDER.items():
        got = [entry_text(board.entry(p.name, method), group.metric(p)) for p in group.rungs]
        assert got == cells, method


def test_no_ladder_for_one_task(tmp_path):
    semseg = ["s3dis-10pct-scenes-semseg", "s3dis-20pct-scenes-semseg"]
    root = write_ladder_store(tmp_path / "results", protocols=semseg)
    assert ladder(build_leaderboard(load_results(root))) == []


def test_label_efficiency_panel_per_task(board):
    panels = label_efficiency_panels(board)
    assert [k[:4] for k in panels] == [
        ("linear", "s3dis", "full", 68),
        ("insseg-frozen", "s3dis", "masks", 68),
        ("semseg", "s3dis", "scenes", 68),
        ("insseg", "s3dis", "masks", 68),
    ]
    semseg = panels[next(k for k in panels if k[0] == "semseg")]
    for method in METHODS:  # mIoU at every fraction run
        expected = [(0.1, statistics.mean(values("s3dis-10pct-scenes-semseg", method, "miou"))),
                    (0.2, statistics.mean(values("s3dis-20pct-scenes-semseg", method, "miou")))]
        assert [(f, m) for f, m, _, _ in semseg[method]] == [(f, pytest.approx(m)) for f, m in expected]
        assert [n for *_, n in semseg[method]] == [3, 3]
    insseg = panels[next(k for k in panels if k[0] == "insseg")]
    assert [(f, round(100 * m, 6)) for f, m, _, _ in insseg["scratch"]] == [(0.1, 32.0)]  # AP
    # one task's panels: the old call reads insseg's only
    assert list(label_efficiency(board)) == [k[1:] for k in panels if k[0] == "insseg"]


# ------------------------------------------------------------------------------------------ formats


def test_terminal_names_each_tables_task_and_shows_the_ladder(report):
    group = to_terminal(report)
    tables = [r for r in group.renderables if isinstance(r, Table)]
    assert tables[0].title == "Ladder: s3dis, 68 eval scenes"
    assert [str(c.header) for c in tables[0].columns] == ["method"] + ["\n".join(h) for h in HEADERS]
    for i, method in enumerate(METHODS):
        row = [tables[0].columns[1 + j]._cells[i].plain for j in range(len(ORDER))]
        assert row == [f"{a}\n{b}" for a, b in LADDER[method]]
    assert [t.title for t in tables[1:]] == [
        "s3dis-linear  (linear: s3dis, full, 100% labels)",
        "s3dis-10pct-masks-frozen  (insseg-frozen: s3dis, masks, 10% labels)",
        "s3dis-10pct-scenes-semseg  (semseg: s3dis, scenes, 10% labels)",
        "s3dis-20pct-scenes-semseg  (semseg: s3dis, scenes, 20% labels)",
        "s3dis-10pct-masks  (insseg: s3dis, masks, 10% labels)",
    ]
    linear = tables[1]
    assert [str(c.header) for c in linear.columns] == ["method", "mIoU", "mAcc", "allAcc"]
    assert linear.columns[1]._cells[1].plain == "32.0 ± 1.7\nn=3 · Δ +10.0**"
    assert linear.columns[1]._cells[1].style == "bold"
    assert linear.columns[3]._cells[1].plain == "63.7 ± 3.1\nn=3 · Δ +1.7"
    assert [str(c.header) for c in tables[2].columns] == ["method", "AP", "AP50", "AP25"]
    console = Console(record=True, width=250, file=io.StringIO())
    console.print(group)
    out = console.export_text()
    assert "not in these" not in out and "mIoU / mAcc / allAcc" in out and "cheapest rung first" in out


def _sections(text: str) -> dict[str, list[list[str]]]:
    """Returns {heading: rows of the first Markdown table under it}."""
    out, heading, rows = {}, None, None
    for line in text.splitlines():
        if line.startswith("## "):
            heading, rows = line[3:], None
        elif line.startswith("|") and heading is not None:
            if rows is None:
                rows = out.setdefault(heading, [])
            rows.append([c.strip() for c in line.strip("|").split(" | ")])
    return out


def test_markdown_ladder_and_task_tables(report):
    text = to_markdown(report)
    sections = _sections(text)
    ladder_rows = sections["Ladder: s3dis, 68 eval scenes"]
    assert ladder_rows[0] == ["method"] + ONE_LINE
    body = {r[0]: r[1:] for r in ladder_rows[2:]}
    for method, cells in LADDER.items():
        assert body[LABEL[method]] == [
            (f"**{a}** ({b})" if method == "freepoint" else f"{a} ({b})") for a, b in cells
        ], method
    linear = sections["Linear probe, frozen backbone (linear): mIoU / mAcc / allAcc"]
    assert linear[0] == ["method", "s3dis-linear mIoU", "s3dis-linear mAcc", "s3dis-linear allAcc"]
    assert {r[0]: r[1] for r in linear[2:]}[LABEL["pointcontrast"]] == "25.0 ± 3.0 (n=3 · Δ +3.0*)"
    semseg = sections["Semantic segmentation, fine-tuned (semseg): mIoU / mAcc / allAcc"]
    assert semseg[0][1:4] == [f"s3dis-10pct-scenes-semseg {m}" for m in ("mIoU", "mAcc", "allAcc")]
    assert len(semseg[0]) == 7
    frozen = sections["Instance segmentation, frozen backbone (insseg-frozen): AP / AP50 / AP25"]
    assert frozen[0] == ["method"] + [f"s3dis-10pct-masks-frozen {m}" for m in ("AP", "AP50", "AP25")]
    insseg = {r[0]: r[1:] for r in sections["Instance segmentation, fine-tuned (insseg): AP / AP50 / AP25"][2:]}
    assert insseg["*paper: FreePoint (quoted)*"] == ["*40.5*", "*52.3*", "*58.3*"]  # quoted beside the insseg rung
    iou = {r[0]: r[1:] for r in sections["Per-class IoU (mean ± sd over seeds, percent)"][2:]}
    assert iou["s3dis-linear (linear) / freepoint"] == ["22.0 ± 1.7", "42.0 ± 1.7"]
    ap = {r[0]: r[1:] for r in sections["Per-class AP (mean ± sd over seeds, percent)"][2:]}
    assert "s3dis-10pct-masks (insseg) / freepoint" in ap and not any("linear" in k for k in ap)
    assert "![Per-class IoU](per-class-iou-heatmap.png)" in text
    assert "not in these" not in text


def test_csv_task_column_ladder_and_per_class_iou(tmp_path, report):
    paths = write_report(report, ["csv"], tmp_path / "out")
    assert sorted(p.name for p in paths) == [
        "ladder.csv", "leaderboard.csv", "paper-reference.csv", "per-class-iou.csv", "per-class.csv"
    ]
    df = pd.read_csv(tmp_path / "out" / "leaderboard.csv", keep_default_na=False, na_values=[""])
    assert len(df) == len(ORDER) * len(METHODS) * 3
    for p in ORDER:
        rows = df[df.protocol == p]
        assert set(rows.task) == {LADDER_PROTOCOLS[p][0]}
        assert list(dict.fromkeys(rows.metric)) == [
            {"miou": "mIoU", "macc": "mAcc", "all_acc": "allAcc"}.get(m, m.upper()) for m in metrics_of(p)
        ]
    row = df[(df.protocol == "s3dis-linear") & (df.method == "freepoint") & (df.metric == "mIoU")].iloc[0]
    assert row.mean_pct == pytest.approx(32.0) and row.delta_pct == pytest.approx(10.0)
    assert row.significance == "**" and row.p_value == pytest.approx(0.0033, abs=1e-4)
    lad = pd.read_csv(tmp_path / "out" / "ladder.csv", keep_default_na=False, na_values=[""])
    assert list(lad.rung.unique()) == [1, 2, 3, 4, 5] and set(lad.ladder) == {"s3dis, 68 eval scenes"}
    assert list(lad[lad.method == "freepoint"].metric) == ["mIoU", "AP", "mIoU", "mIoU", "AP"]
    assert [f"{d:+.1f}" for d in lad[lad.method == "freepoint"].delta_pct] == ["+10.0", "+4.7", "+6.0", "+4.7", "+6.0"]
    iou = pd.read_csv(tmp_path / "out" / "per-class-iou.csv")
    floor = iou[(iou.protocol == "s3dis-20pct-scenes-semseg") & (iou.method == "scratch") & (iou["class"] == "floor")]
    assert floor.iloc[0].mean_iou_pct == pytest.approx(62.0) and floor.iloc[0].task == "semseg"


def test_latex_one_table_per_task_and_the_ladder(report):
    tex = to_latex(report)
    assert tex.isascii()
    assert tex.count(r"\begin{table*}") == 5  # the ladder and four tasks
    assert r"Linear probe, frozen backbone (linear): mIoU / mAcc / allAcc" in tex
    assert " & mIoU & mAcc & allAcc \\\\" in tex
    assert r"Pre-train & linear mIoU & insseg-frozen AP & semseg mIoU & semseg mIoU & insseg AP \\" in tex
    assert r" & {\scriptsize all labels (s3dis-linear)} & {\scriptsize 10\% masks (s3dis-10pct-masks-frozen)} & " in tex
    assert r"\textbf{32.0 $\pm$ 1.7} {\scriptsize (3)} {\scriptsize $\Delta\,+10.0^{**}$}" in tex


class _Tables(HTMLParser):
    """Collects, per table id, rows of cell texts."""

    def __init__(self):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self._table = self._cell = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self._table = self.tables.setdefault(dict(attrs).get("id", ""), [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = ""
        elif tag in ("span", "br") and self._cell is not None:
            self._cell += " " if self._cell else ""

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._table[-1].append(self._cell)
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def test_html_ladder_task_tables_and_figures(report):
    page = to_html(report)
    parser = _Tables()
    parser.feed(page)
    assert set(parser.tables) == {
        "ladder-0", "leaderboard-linear", "leaderboard-insseg-frozen", "leaderboard-semseg", "leaderboard-insseg",
        "per-class", "per-class-iou",
    }
    lad = parser.tables["ladder-0"]
    assert lad[0] == ["method"] + ONE_LINE
    assert {r[0]: r[1:] for r in lad[1:]}["freepoint"] == [f"{a} {b}" for a, b in LADDER["freepoint"]]
    assert parser.tables["leaderboard-semseg"][1] == ["mIoU", "mAcc", "allAcc"] * 2
    assert page.count('src="data:image/png;base64,') == 3  # label efficiency, per-class AP, per-class IoU
    assert "<h2>Semantic segmentation, fine-tuned (semseg): mIoU / mAcc / allAcc</h2>" in page


# ------------------------------------------------------------------------------------------ a semantic-only store


def test_semantic_only_store(tmp_path):
    semantic = ["s3dis-linear", "s3dis-10pct-scenes-semseg", "s3dis-20pct-scenes-semseg"]
    board = build_leaderboard(load_results(write_ladder_store(tmp_path / "results", protocols=semantic)))
    assert [p.name for p in board.protocols] == semantic and board.classes == []
    assert all(tuple(board.entry(p, m).metrics) == SEMANTIC for p in semantic for m in METHODS)
    (group,) = ladder(board)  # linear and semseg: two rungs
    assert [p.name for p in group.rungs] == semantic
    panels = [k[:3] for k in label_efficiency_panels(board)]
    assert panels == [("linear", "s3dis", "full"), ("semseg", "s3dis", "scenes")]
    report = build_report(board, source="results")
    assert sorted(report.figures) == ["label-efficiency.png", "per-class-iou-heatmap.png"]
    paths = write_report(report, ["md", "csv", "latex", "html"], tmp_path / "out")
    assert "per-class.csv" in {p.name for p in paths}  # header only: no instance protocol
    assert pd.read_csv(tmp_path / "out" / "per-class.csv").empty
    text = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "AP50" not in text.split("Cells:")[0] and "Per-class AP" not in text
    assert "**32.0 ± 1.7** (n=3 · Δ +10.0**)" in text


def test_ladder_metrics_fixture_shapes():
    """The fixture writes what the harness writes: the task's metrics and per-class blocks (results.task_metrics)."""
    from freepoint_bench.results import task_metrics

    for protocol, (task, _, _) in LADDER_PROTOCOLS.items():
        block = ladder_metrics(protocol, "scratch", 0)
        names, class_names = task_metrics(task)
        assert set(block) == {*names, "per_class"}
        assert all(set(v) == set(class_names) for v in block["per_class"].values())
    assert len(LADDER_METHODS) == 3
