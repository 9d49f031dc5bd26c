"""Every format shows the hand-worked cells of report_fixtures: terminal, Markdown, CSV, LaTeX and HTML."""

from __future__ import annotations

import json
import statistics
from html.parser import HTMLParser

import pandas as pd
import pytest
from report_fixtures import BEST, CONFLICT_REASON, EXPECTED, RUNS, STATUS, write_evaluations, write_store
from rich.console import Console
from rich.table import Table

from freepoint_bench.errors import ConfigError, DataError
from freepoint_bench.report import (
    build_leaderboard,
    build_report,
    load_results,
    parse_formats,
    read_evaluations,
    to_terminal,
    write_report,
)
from freepoint_bench.report.render import to_html, to_latex, to_markdown

METRICS = ("ap", "ap50", "ap25")
PROTOCOLS = ("s3dis-10pct-masks", "s3dis-20pct-masks")
METHODS = ("scratch", "csc", "freepoint", "pointcontrast")  # scratch first, the rest alphabetically
# every row of a baseline this suite re-implements says so (its link: docs/fidelity.md, in the key)
LABEL = {"scratch": "scratch", "freepoint": "freepoint", "csc": "csc (re-implemented here)",
         "pointcontrast": "pointcontrast (re-implemented here)"}


def expected_text(protocol: str, method: str, metric: str) -> tuple[str, str]:
    """Returns (main, detail) of a cell as the key says: 'mean ± sd' and 'n=3 · Δ +6.0**' (partial marked)."""
    status = STATUS[(protocol, method)]
    if status == "missing":
        return "missing", ""
    if status == "conflict":
        return "conflict: not averaged †", ""
    main, n, delta = EXPECTED[(protocol, method)][metric]
    detail = n + (" partial" if status == "partial" else "") + (f" · {delta}" if delta else "")
    return main, detail


def is_best(protocol: str, method: str, metric: str) -> bool:
    return BEST[(protocol, metric)] == method


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    board = build_leaderboard(load_results(write_store(tmp / "results")))
    return build_report(board, read_evaluations(write_evaluations(tmp)), source="results")


UNSUP = [
    ("segmenter", "10.5", "20.0", "33.3"),
    ("FreePoint σ=0.9", "5.0", "10.0", "25.0"),
    ("kmeans", "2.0", "—", "12.5"),
]


# ------------------------------------------------------------------------------------------ terminal


def test_terminal_cells_and_bold(report):
    group = to_terminal(report)
    tables = [r for r in group.renderables if isinstance(r, Table)]
    assert [t.title.split()[0] for t in tables[:2]] == list(PROTOCOLS)
    for protocol, table in zip(PROTOCOLS, tables, strict=False):
        methods = [str(c) for c in table.columns[0]._cells]
        assert methods[: len(METHODS)] == [LABEL[m] for m in METHODS]
        assert methods[len(METHODS) :] == [
            "paper, Table 2 (quoted, not measured):",
            "  train from scratch",
            "  supervised",
            "  PointContrast",
            "  DepthContrast",
            "  CSC",
            "  FreePoint",
        ]
        assert [t.plain for t in table.columns[1]._cells[-6:]] == (
            ["34.7", "36.9", "36.1", "36.8", "37.1", "40.5"]
            if protocol == PROTOCOLS[0]
            else ["44.1", "45.7", "44.4", "45.2", "46.3", "46.9"]
        )
        for i, method in enumerate(METHODS):
            for j, metric in enumerate(METRICS):
                text = table.columns[1 + j]._cells[i]
                main, detail = expected_text(protocol, method, metric)
                assert text.plain == (f"{main}\n{detail}" if detail else main), (protocol, method, metric)
                assert (text.style == "bold") == is_best(protocol, method, metric), (protocol, method, metric)
    console = Console(record=True, width=300)
    console.print(group)
    out = console.export_text()
    assert (
        CONFLICT_REASON in out
        and "two-sided paired t-test" in out
        and "partial, 2 of 3 seeds; seed 2 unfinished" in out
    )
    for name, *values in UNSUP:
        assert any(name in line and all(v in line for v in values) for line in out.splitlines()), name
    assert "paper: FreePoint (Ours) (Table 1, unsup., quoted)" in out


# ------------------------------------------------------------------------------------------ Markdown


def _md_table(text: str, heading_line: str) -> list[list[str]]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(heading_line))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split(" | ")])
    return rows


def test_markdown_cells(report):
    text = to_markdown(report)
    rows = _md_table(text, "| method |")
    header = rows[0]
    assert header == ["method"] + [f"{p} {m.upper()}" for p in PROTOCOLS for m in METRICS]
    body = {r[0]: r[1:] for r in rows[2:]}
    for method in METHODS:
        for i, (protocol, metric) in enumerate((p, m) for p in PROTOCOLS for m in METRICS):
            main, detail = expected_text(protocol, method, metric)
            if is_best(protocol, method, metric):
                main = f"**{main}**"
            assert body[LABEL[method]][i] == (f"{main} ({detail})" if detail else main), (protocol, method, metric)
    quoted = body["*paper: FreePoint (quoted)*"]
    assert quoted == ["*40.5*", "*52.3*", "*58.3*", "*46.9*", "*56.4*", "*63.9*"]
    assert body["*paper: train from scratch (quoted)*"][:3] == ["*34.7*", "*47.6*", "*56.3*"]
    assert "Quoted paper rows: Table 2: S3DIS Area 5, 10% masks; Table 2: S3DIS Area 5, 20% masks." in text
    assert ("re-implemented here: pointcontrast, csc, depthcontrast, supervised are this suite's re-implementations, "
            "not the authors' code; [docs/fidelity.md](docs/fidelity.md) compares") in text
    assert f"- s3dis-20pct-masks/freepoint: not averaged: {CONFLICT_REASON}" in text
    per_class = {r[0]: r[1:] for r in _md_table(text, "| protocol / method |")[2:]}
    assert per_class["s3dis-10pct-masks / freepoint"] == ["62.0 ± 2.0", "25.0 ± 7.1"]
    assert "s3dis-20pct-masks / freepoint" not in per_class  # conflict: not averaged
    unsup = {r[0]: r[3:] for r in _md_table(text, "| method | data |")[2:]}
    assert unsup["segmenter"] == ["**10.5**", "**20.0**", "**33.3**"]
    assert unsup["kmeans"] == ["2.0", "—", "12.5"]
    assert unsup["*paper: FreePoint (Ours) (Table 1, unsup., quoted)*"] == ["*10.7*", "*21.4*", "*37.8*"]
    assert unsup["*paper: DBSCAN (Table S1, unsup., quoted)*"] == ["*3.3*", "*3.6*", "*13.4*"]
    assert "![Label efficiency](label-efficiency.png)" in text


# ------------------------------------------------------------------------------------------ CSV


def _values(protocol, method, metric):
    i = METRICS.index(metric)
    return {s: 100 * v[i] for (p, m, s), v in RUNS.items() if (p, m) == (protocol, method)}


def test_csv_cells(tmp_path, report):
    paths = write_report(report, ["csv"], tmp_path / "out")
    assert sorted(p.name for p in paths) == [
        "leaderboard.csv",
        "paper-reference.csv",
        "per-class.csv",
        "unsupervised.csv",
    ]
    df = pd.read_csv(tmp_path / "out" / "leaderboard.csv", keep_default_na=False, na_values=[""])
    assert len(df) == len(PROTOCOLS) * len(METHODS) * len(METRICS)
    for (protocol, method), status in STATUS.items():
        for metric in METRICS:
            row = df[(df.protocol == protocol) & (df.method == method) & (df.metric == metric.upper())].iloc[0]
            assert row.status == status
            assert bool(row.best) == is_best(protocol, method, metric)
            if status in ("missing", "conflict"):
                assert row.n == 0 and pd.isna(row.mean_pct) and pd.isna(row.sd_pct)  # never zeros
                continue
            values = _values(protocol, method, metric)
            assert row.n == len(values)
            assert row.mean_pct == pytest.approx(statistics.mean(values.values()), abs=1e-9)
            assert row.sd_pct == pytest.approx(statistics.stdev(values.values()), abs=1e-9)
            delta = EXPECTED[(protocol, method)][metric][2]
            stars = "" if pd.isna(row.significance) else row.significance  # "" reads back as NaN
            if delta:
                assert f"Δ {row.delta_pct:+.1f}{stars}" == delta
            else:
                assert pd.isna(row.delta_pct) and stars == ""
    conflict = df[(df.protocol == "s3dis-20pct-masks") & (df.method == "freepoint")].iloc[0]
    assert CONFLICT_REASON in conflict.note
    ref = pd.read_csv(tmp_path / "out" / "paper-reference.csv")
    fp = ref[(ref.protocol == "s3dis-20pct-masks") & (ref.method == "freepoint")].iloc[0]
    assert (fp.ap, fp.ap50, fp.ap25, fp.source) == (46.9, 56.4, 63.9, "Table 2")
    assert set(ref.source) == {"Table 1", "Table 2", "Table S1"}
    pc = pd.read_csv(tmp_path / "out" / "per-class.csv")
    table = pc[(pc.protocol == "s3dis-10pct-masks") & (pc.method == "freepoint") & (pc["class"] == "table")].iloc[0]
    assert table.n == 2 and table.mean_ap_pct == pytest.approx(25.0)
    un = pd.read_csv(tmp_path / "out" / "unsupervised.csv")
    assert list(un.method) == ["segmenter", "FreePoint σ=0.9", "kmeans"]
    assert un.ap_pct.tolist() == pytest.approx([10.5, 5.0, 2.0]) and pd.isna(un.ap50_pct[2])


# ------------------------------------------------------------------------------------------ LaTeX


def expected_tex(protocol: str, method: str, metric: str) -> str:
    status = STATUS[(protocol, method)]
    if status == "missing":
        return "--"
    if status == "conflict":
        return r"n/a$^\dagger$"
    main, n, delta = EXPECTED[(protocol, method)][metric]
    main = main.replace(" ± ", r" $\pm$ ")
    if is_best(protocol, method, metric):
        main = rf"\textbf{{{main}}}"
    text = f"{main} {{\\scriptsize ({n.removeprefix('n=')})}}"
    if delta:
        value, stars = delta.removeprefix("Δ ").rstrip("*"), delta.count("*") * "*"
        text += f" {{\\scriptsize $\\Delta\\,{value}" + (f"^{{{stars}}}" if stars else "") + "$}"
    return text


def test_latex_cells(report):
    tex = to_latex(report)
    assert tex.isascii(), "pdflatex-safe: every Unicode sign written as LaTeX"
    for command in (
        r"\toprule",
        r"\midrule",
        r"\bottomrule",
        r"\cmidrule(lr){2-4}",
        r"\multicolumn{3}{c}{s3dis-10pct-masks}",
    ):
        assert command in tex
    rows = {
        line.split(" & ")[0]: line.removesuffix(r" \\").split(" & ")[1:] for line in tex.splitlines() if " & " in line
    }
    for method in METHODS:
        expected = [expected_tex(p, method, m) for p in PROTOCOLS for m in METRICS]
        assert rows[LABEL[method]] == expected, method
    assert rows[r"\textit{paper: FreePoint}"] == [
        rf"\textit{{{v}}}" for v in ("40.5", "52.3", "58.3", "46.9", "56.4", "63.9")
    ]
    assert r"Quoted from the paper (not measured)" in tex
    assert r"protocol\_hash" in tex and r"$\pm$" in tex


# ------------------------------------------------------------------------------------------ HTML


class _Cells(HTMLParser):
    """Collects, per table id, rows of (text, class) cells."""

    def __init__(self):
        super().__init__()
        self.tables: dict[str, list[list[tuple[str, str]]]] = {}
        self._table = None
        self._cell = None
        self.external: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self._table = self.tables.setdefault(a.get("id", ""), [])
        elif tag == "tr" and self._table is not None:
            self._table.append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = ["", a.get("class", "")]
        elif tag == "span" and self._cell is not None and a.get("class") == "d":
            self._cell[0] += "  "
        for key in ("src", "href"):
            if key in a and not a[key].startswith("data:"):
                self.external.append(a[key])

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._table[-1].append((self._cell[0], self._cell[1]))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[0] += data


def test_html_cells_and_self_contained(report):
    page = to_html(report)
    parser = _Cells()
    parser.feed(page)
    assert parser.external == [] and "http" not in page.replace("http-equiv", "")
    assert page.count('src="data:image/png;base64,') == 2
    rows = parser.tables["leaderboard"][2:]
    body = {r[0][0]: r[1:] for r in rows}
    for method in METHODS:
        for i, (protocol, metric) in enumerate((p, m) for p in PROTOCOLS for m in METRICS):
            text, classes = body[LABEL[method]][i]
            main, detail = expected_text(protocol, method, metric)
            assert text == (f"{main}  {detail}" if detail else main), (protocol, method, metric)
            assert ("best" in classes.split()) == is_best(protocol, method, metric)
            assert STATUS[(protocol, method)] in classes.split()
    assert [t for t, _ in body["paper: FreePoint (quoted)"]] == ["40.5", "52.3", "58.3", "46.9", "56.4", "63.9"]
    unsup = {r[0][0]: [t.strip() for t, _ in r[3:]] for r in parser.tables["unsupervised"][1:]}
    assert unsup["segmenter"] == ["10.5", "20.0", "33.3"] and unsup["kmeans"] == ["2.0", "—", "12.5"]
    assert unsup["paper: Mask3D (Table 1, full, quoted)"] == ["20.9", "33.4", "49.3"]
    per_class = {r[0][0]: [t for t, _ in r[1:]] for r in parser.tables["per-class"][1:]}
    assert per_class["s3dis-10pct-masks / csc"] == ["53.0 ± 2.8", "12.0 ± 1.4"]


# ------------------------------------------------------------------------------------------ files and errors


def test_write_report_writes_every_format(tmp_path, report):
    paths = write_report(report, parse_formats("md,csv,latex,html"), tmp_path / "out")
    names = sorted(p.name for p in paths)
    assert names == sorted(
        [
            "leaderboard.md",
            "label-efficiency.png",
            "per-class-heatmap.png",
            "leaderboard.csv",
            "paper-reference.csv",
            "per-class.csv",
            "unsupervised.csv",
            "leaderboard.tex",
            "report.html",
        ]
    )
    assert all(p.stat().st_size > 0 for p in paths)
    assert write_report(report, ["terminal"], tmp_path / "none") == []


def test_parse_formats():
    assert parse_formats("html, md,html") == ["html", "md"]
    with pytest.raises(ConfigError, match="--format 'pdf': choose from terminal, md, csv, html, latex"):
        parse_formats("pdf")


def test_evaluation_errors_name_the_file(tmp_path):
    semantic = tmp_path / "eval-sem.json"
    semantic.write_text(json.dumps({"ap": 0.1, "ap50": 0.2, "ap25": 0.3, "class_agnostic": False}))
    with pytest.raises(DataError, match="a semantic evaluation") as e:
        read_evaluations([semantic])
    assert str(semantic) in str(e.value)
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(DataError, match="unreadable evaluation JSON"):
        read_evaluations([broken])
    with pytest.raises(DataError, match="evaluation JSON not found"):
        read_evaluations([tmp_path / "absent.json"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no \\*.json evaluations in this folder"):
        read_evaluations([tmp_path / "empty"])
