"""The report in every format: rich (terminal), Markdown, CSV (pandas), LaTeX booktabs and one self-contained HTML.

Every format shows the same cells with the same text: mean ± sd over seeds (percent, one decimal), n,
Δ vs scratch with its significance stars (or "not comparable" where the cell's fine-tuning recipe is not scratch's),
the best complete cell per column in bold, partial / missing / conflict cells named as such, the re-implemented
baselines marked, and the paper's rows quoted apart from ours (only beside cells of the paper's setting). Each
protocol's columns are its task's metrics; when the store holds tasks other than insseg, the tables are grouped per
task and named, and the probe ladder (leaderboard.ladder: each rung's headline metric per method) comes first.
"""

from __future__ import annotations

import base64
import html
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from rich.console import Group
from rich.table import Table
from rich.text import Text

from freepoint_bench.atomic import write_bytes, write_text
from freepoint_bench.errors import ConfigError
from freepoint_bench.report.leaderboard import (
    ALPHA,
    BASELINE,
    HEADLINE,
    METRIC_LABELS,
    Entry,
    LadderGroup,
    Leaderboard,
    MetricStat,
    ProtocolInfo,
    ladder,
    protocol_label,
)
from freepoint_bench.report.paper import (
    FIDELITY,
    PAPER_EVAL_SCENES,
    PAPER_PRESET,
    PAPER_PRETRAIN_DATASET,
    REIMPLEMENTED,
    UNSUPERVISED,
    QuotedRow,
)
from freepoint_bench.report.plots import label_efficiency_png, per_class_heatmap_png
from freepoint_bench.report.unsupervised import EvalRow
from freepoint_bench.results import DEFAULT_DROPPED, METRICS, RECIPE_EXCLUDED, SEMANTIC_METRICS, SEMANTIC_TASKS

FORMATS: tuple[str, ...] = ("terminal", "md", "csv", "html", "latex")
LABELS = METRIC_LABELS
TASK_TITLES = {
    "linear": "Linear probe, frozen backbone",
    "insseg-frozen": "Instance segmentation, frozen backbone",
    "semseg": "Semantic segmentation, fine-tuned",
    "insseg": "Instance segmentation, fine-tuned",
}
_UNSUP_COLUMNS = ("method", "data", "scenes", "AP", "AP50", "AP25")
FIGURES = {
    "label-efficiency.png": "Label efficiency",
    "per-class-heatmap.png": "Per-class AP",
    "per-class-iou-heatmap.png": "Per-class IoU",
}


@dataclass
class Report:
    """What a report shows: the leaderboard, the unsupervised rows and the figures (PNG bytes by file name)."""

    board: Leaderboard
    evaluations: list[EvalRow]
    figures: dict[str, bytes]
    source: str  # the results folder, as the user named it


def build_report(board: Leaderboard, evaluations: Sequence[EvalRow] = (), source: str = "results") -> Report:
    """Returns the report of a leaderboard and class-agnostic evaluations, figures drawn."""
    figures = {}
    for name, png in (
        ("label-efficiency.png", label_efficiency_png(board)),
        ("per-class-heatmap.png", per_class_heatmap_png(board)),
        ("per-class-iou-heatmap.png", per_class_heatmap_png(board, semantic=True)),
    ):
        if png is not None:
            figures[name] = png
    return Report(board, list(evaluations), figures, source)


def parse_formats(text: str) -> list[str]:
    """Returns the formats named in a comma-separated list; ConfigError on an unknown one."""
    wanted = [w.strip() for w in text.replace(" ", ",").split(",") if w.strip()]
    unknown = [w for w in wanted if w not in FORMATS]
    if unknown or not wanted:
        raise ConfigError(f"--format {text!r}: choose from {', '.join(FORMATS)} (comma-separated)")
    return list(dict.fromkeys(wanted))


# ------------------------------------------------------------------------------------------ entry text


def pct(x: float | None) -> str:
    """Returns a fraction as percent with one decimal, '—' for None / NaN."""
    return "—" if x is None or math.isnan(x) else f"{100 * x:.1f}"


def quoted(x: float | None) -> str:
    """Returns a quoted paper figure (already percent) with one decimal, '—' when the paper gives none."""
    return "—" if x is None else f"{x:.1f}"


def mean_sd(stat: MetricStat) -> str:
    """Returns 'mean ± sd' in percent ('mean' alone when n = 1, '—' when n = 0)."""
    if stat.n == 0:
        return "—"
    return pct(stat.mean) if stat.n < 2 else f"{pct(stat.mean)} ± {pct(stat.sd)}"


def n_text(entry: Entry, stat: MetricStat) -> str:
    """Returns 'n=3', or 'n=2/3' for a partial entry."""
    return f"n={stat.n}" + (f"/{len(entry.expected)}" if entry.status == "partial" else "")


def delta_text(entry: Entry, stat: MetricStat) -> str:
    """Returns 'Δ +5.8*' (paired n added when it differs from the entry's n), '' without a Δ."""
    if stat.paired is None:
        return ""
    d = stat.paired
    extra = f" ({d.n} paired)" if d.n != stat.n else ""
    return f"Δ {100 * d.delta:+.1f}{d.stars}{extra}"


NOT_COMPARABLE = "not comparable"
REIMPLEMENTED_TEXT = "re-implemented here"


def method_label(method: str) -> str:
    """Returns a method's row label: 'csc (re-implemented here)' for the baselines this suite re-implements."""
    return f"{method} ({REIMPLEMENTED_TEXT})" if method in REIMPLEMENTED else method


def status_text(entry: Entry) -> str:
    """Returns the text of an entry without values: 'missing' or 'conflict: not averaged'."""
    return "missing" if entry.status == "missing" else "conflict: not averaged †"


def entry_text(entry: Entry, metric: str) -> tuple[str, str]:
    """Returns (main, detail): 'mean ± sd' and 'n=3 · Δ +5.8*' (partial marked), or a status and ''."""
    if not entry.has_values:
        return status_text(entry), ""
    stat = entry.metrics[metric]
    detail = n_text(entry, stat) + (" partial" if entry.status == "partial" else "")
    d = NOT_COMPARABLE if entry.not_comparable else delta_text(entry, stat)
    return mean_sd(stat), detail + (f" · {d}" if d else "")


def _metric_names(metrics: Sequence[str]) -> str:
    return " / ".join(LABELS[m] for m in metrics)


def footnote(board: Leaderboard) -> str:
    """Returns the one-paragraph key to the leaderboard: what a cell shows, the test, n, bold, statuses."""
    scored = _metric_names(METRICS)
    if board.shows_tasks:
        instance = ", ".join(t for t in TASK_TITLES if t not in SEMANTIC_TASKS)
        semantic = ", ".join(t for t in TASK_TITLES if t in SEMANTIC_TASKS)
        scored = f"each task's metrics ({semantic}: {_metric_names(SEMANTIC_METRICS)}; {instance}: {scored})"
    return (
        f"Cells: mean ± sd over fine-tuning seeds of {scored} in percent; n = seeds with a result. "
        f"Δ: mean over the seeds both have of (method − {BASELINE}), percentage points; "
        f"* p < {ALPHA:g}, ** p < {ALPHA / 5:g}, two-sided paired t-test over those seeds (df = n − 1; the paired n "
        "is shown when it differs from the cell's n); no test with fewer than 2 paired seeds. "
        "Bold: best mean per column among complete cells. partial: fewer seeds than other cells of the protocol; "
        "missing: not run; conflict †: the runs disagree on protocol_hash, split_sha256, fine-tuning recipe or "
        "pretraining dataset and are not averaged (see the notes). not comparable: fine-tuned with another recipe "
        f"than {BASELINE}'s (its config less {', '.join(k.removeprefix('train.') for k in RECIPE_EXCLUDED)}, and "
        "what the protocol's dropped masks became, dropped ignore or background; the notes name the fields): no Δ, "
        "never bold. Rows marked 'paper' are quoted from the paper's Tables 2 and 3 "
        f"(S3DIS Area 5) only beside cells of its setting (the {PAPER_PRESET} preset's recipe, "
        f"{PAPER_PRETRAIN_DATASET} pretraining, all {PAPER_EVAL_SCENES} rooms of Area 5; the notes say why a row is "
        f"left out) and take no part in any statistic. {REIMPLEMENTED_TEXT}: {', '.join(REIMPLEMENTED)} are this "
        f"suite's re-implementations, not the authors' code; {FIDELITY} compares each of their settings with the "
        "original's."
    )


def entry_notes(board: Leaderboard) -> list[str]:
    """Returns the notes: conflicts and protocol versions, recipes not comparable, pretraining datasets, paper rows
    not quoted, partial entries, entries without a Δ."""
    notes = list(board.notes)
    for p in board.protocols:
        for m in board.methods:
            c = board.entry(p.name, m)
            if c.status == "partial":
                notes.append(f"{p.name}/{m}: partial, {c.reason}")
            if c.delta_note:
                notes.append(f"{p.name}/{m}: {c.delta_note}")
    return notes


def protocol_notes(board: Leaderboard, protocols: Sequence[ProtocolInfo]) -> list[str]:
    """Returns the notes (entry_notes) about these protocols: for a format that shows notes per table."""
    names = {p.name for p in protocols}
    return [n for n in entry_notes(board) if n.split(":", 1)[0].split("/", 1)[0] in names]


def _is_best(board: Leaderboard, protocol: str, metric: str, method: str) -> bool:
    return method in board.best.get((protocol, metric), set())


def task_heading(task: str, protocols: Sequence[ProtocolInfo]) -> str:
    """Returns the title of a task's table: 'Linear probe, frozen backbone (linear): mIoU / mAcc / allAcc'."""
    return f"{TASK_TITLES.get(task, task)} ({task}): {_metric_names(protocols[0].metrics)}"


def labels_text(p: ProtocolInfo) -> str:
    """Returns the labels a protocol keeps: 'all labels' or '10% masks' (+ ', dropped masks: background' where its
    dropped masks trained as background, not ignored)."""
    return ("all labels" if p.unit == "full" else f"{100 * p.fraction:g}% {p.unit}") + dropped_text(p)


def dropped_text(p: ProtocolInfo) -> str:
    """Returns ', dropped masks: background' for a protocol whose dropped masks were not ignored, else ''."""
    return "" if p.dropped == DEFAULT_DROPPED else f", dropped masks: {p.dropped}"


def rung_header(group: LadderGroup, p: ProtocolInfo) -> tuple[str, str, str]:
    """Returns a ladder column's header lines: rung and metric, labels kept, protocol ('semseg mIoU', '10% scenes',
    's3dis-10pct-scenes-semseg')."""
    return f"{p.task} {LABELS[group.metric(p)]}", labels_text(p), p.name


def rung_label(group: LadderGroup, p: ProtocolInfo) -> str:
    """Returns a ladder column's header on one line: 'semseg mIoU 10% scenes (s3dis-10pct-scenes-semseg)'."""
    rung, labels, name = rung_header(group, p)
    return f"{rung} {labels} ({name})"


def ladder_title(group: LadderGroup) -> str:
    return f"Ladder: {group.dataset}, {len(group.eval_scenes)} eval scenes"


def ladder_key() -> str:
    """Returns the key to the ladder tables: what a column is and which metric it shows."""
    headline = "; ".join(
        f"{', '.join(t for t in TASK_TITLES if HEADLINE[t] == m)}: {LABELS[m]}"
        for m in dict.fromkeys(HEADLINE.values())
    )
    return (
        "Ladder: one column per protocol scored on the same scenes, cheapest rung first (linear → insseg-frozen → "
        f"semseg → insseg, then by label fraction), each on its task's headline metric ({headline}); cells, Δ, stars "
        "and bold as in the tables."
    )


def _ref_rows(board: Leaderboard, protocols: Sequence[ProtocolInfo]) -> list[tuple[str, dict[str, QuotedRow]]]:
    """Returns the quoted rows as (label, {protocol: row}), one per paper method present in any of the columns."""
    order: list[str] = []
    by_label: dict[str, dict[str, QuotedRow]] = {}
    for p in protocols:
        for row in board.references.get(p.name, []):
            label = f"paper: {row.label}"
            if label not in by_label:
                order.append(label)
                by_label[label] = {}
            by_label[label][p.name] = row
    return [(label, by_label[label]) for label in order]


def _class_entries(board: Leaderboard, semantic: bool = False) -> list[tuple[ProtocolInfo, str, Entry]]:
    """Returns the entries with per-class values of the instance tasks' protocols (semantic: the semantic ones')."""
    return [
        (p, m, board.entry(p.name, m))
        for p in board.protocols
        if p.semantic == semantic
        for m in board.methods
        if board.entry(p.name, m).has_values and board.entry(p.name, m).per_class
    ]


def _class_names(board: Leaderboard, semantic: bool) -> tuple[str, list[str]]:
    """Returns (the per-class metric's label, the classes) of one per-class table."""
    return ("IoU", board.semantic_classes) if semantic else ("AP", board.classes)


def _eval_best(rows: Sequence[EvalRow], metric: str) -> float:
    values = [r.metric(metric) for r in rows if not math.isnan(r.metric(metric))]
    return max(values) if values else math.nan


# ------------------------------------------------------------------------------------------ terminal


def to_terminal(report: Report) -> Group:
    """Returns rich renderables: one table per protocol (quoted rows dimmed), the key, notes, unsupervised rows."""
    board = report.board
    parts: list = [_ladder_terminal(board, group) for group in ladder(board)]
    if parts:
        parts.append(Text(ladder_key(), style="dim"))
    for p in board.protocols:
        task = f"{p.task}: " if board.shows_tasks else ""
        table = Table(
            title=f"{p.name}  ({task}{p.dataset}, {p.unit}, {100 * p.fraction:g}% labels{dropped_text(p)})",
            title_justify="left",
        )
        table.add_column("method")
        for metric in p.metrics:
            table.add_column(LABELS[metric], justify="right")
        for m in board.methods:
            table.add_row(method_label(m), *[_terminal_cell(board, p.name, m, metric) for metric in p.metrics])
        refs = board.references.get(p.name, [])
        if refs:
            table.add_section()
            table.add_row(Text(f"paper, {refs[0].source} (quoted, not measured):", style="italic dim"))
            for r in refs:
                table.add_row(
                    Text(f"  {r.label}", style="italic dim"),
                    *[Text(quoted(r.metric(k)), style="italic dim") for k in p.metrics],
                )
        parts.append(table)
    parts.append(Text(footnote(board), style="dim"))
    notes = entry_notes(board)
    if notes:
        parts.append(Text("notes:\n" + "\n".join(f"  • {n}" for n in notes), style="yellow"))
    if report.evaluations:
        parts.append(_unsup_terminal(report.evaluations))
    return Group(*parts)


def _terminal_cell(board: Leaderboard, protocol: str, method: str, metric: str) -> Text:
    c = board.entry(protocol, method)
    main, detail = entry_text(c, metric)
    style = "bold" if _is_best(board, protocol, metric, method) else ("red" if c.status == "conflict" else "")
    text = Text(main, style=style)
    if detail:
        text.append(f"\n{detail}", style="dim" if c.status == "ok" else "yellow")
    return text


def _ladder_terminal(board: Leaderboard, group: LadderGroup) -> Table:
    table = Table(title=ladder_title(group), title_justify="left")
    table.add_column("method")
    for p in group.rungs:
        table.add_column("\n".join(rung_header(group, p)), justify="right", overflow="fold")
    for m in group.methods:
        table.add_row(method_label(m), *[_terminal_cell(board, p.name, m, group.metric(p)) for p in group.rungs])
    return table


def _unsup_terminal(rows: Sequence[EvalRow]) -> Table:
    table = Table(title="Unsupervised class-agnostic instance segmentation", title_justify="left")
    for col in ("method", "data", "scenes", "AP", "AP50", "AP25"):
        table.add_column(col, justify="left" if col in ("method", "data") else "right")
    best = {m: _eval_best(rows, m) for m in METRICS}
    for r in rows:
        table.add_row(
            r.name,
            r.dataset,
            "" if r.num_scenes is None else str(r.num_scenes),
            *[Text(pct(r.metric(m)), style="bold" if r.metric(m) == best[m] else "") for m in METRICS],
        )
    table.add_section()
    for q in UNSUPERVISED:
        table.add_row(
            Text(f"paper: {q.label} ({q.source}, {q.supervision}, quoted)", style="italic dim"),
            Text("ScanNet v2 val", style="italic dim"),
            "",
            *[Text(quoted(q.metric(m)), style="italic dim") for m in METRICS],
        )
    return table


# ------------------------------------------------------------------------------------------ Markdown


def _md_escape(s: str) -> str:
    return s.replace("|", "\\|")


def _md_table(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|",
    ]
    lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
    return lines


def _plain_cell(board: Leaderboard, protocol: str, method: str, metric: str, bold: tuple[str, str]) -> str:
    c = board.entry(protocol, method)
    main, detail = entry_text(c, metric)
    if _is_best(board, protocol, metric, method):
        main = f"{bold[0]}{main}{bold[1]}"
    return f"{main} ({detail})" if detail else main


def _md_leaderboard(board: Leaderboard, protocols: Sequence[ProtocolInfo]) -> list[str]:
    header = ["method"] + [f"{p.name} {LABELS[m]}" for p in protocols for m in p.metrics]
    rows = [
        [method_label(m)]
        + [_plain_cell(board, p.name, m, metric, ("**", "**")) for p in protocols for metric in p.metrics]
        for m in board.methods
    ]
    for label, refs in _ref_rows(board, protocols):
        rows.append(
            [f"*{label} (quoted)*"]
            + [
                f"*{quoted(refs[p.name].metric(metric))}*" if p.name in refs else ""
                for p in protocols
                for metric in p.metrics
            ]
        )
    return _md_table(header, rows)


def _md_ladder(board: Leaderboard, group: LadderGroup) -> list[str]:
    header = ["method"] + [rung_label(group, p) for p in group.rungs]
    rows = [[method_label(m)] + [_plain_cell(board, p.name, m, group.metric(p), ("**", "**")) for p in group.rungs]
            for m in group.methods]
    return [f"## {ladder_title(group)}", ""] + _md_table(header, rows) + [""]


def to_markdown(report: Report) -> str:
    """Returns the report as Markdown (figures referenced as PNG files beside it)."""
    board = report.board
    lines = [f"# Leaderboard ({report.source})", ""]
    groups = ladder(board)
    for group in groups:
        lines += _md_ladder(board, group)
    if groups:
        lines += [ladder_key(), ""]
    for task, protocols in board.task_groups():
        if board.shows_tasks:
            lines += [f"## {task_heading(task, protocols)}", ""]
        lines += _md_leaderboard(board, protocols) + [""]
    lines += [footnote(board).replace(FIDELITY, f"[{FIDELITY}]({FIDELITY})"), ""]
    sources = sorted({f"{r.source}: {r.setting}" for refs in board.references.values() for r in refs})
    if sources:
        lines += ["Quoted paper rows: " + "; ".join(sources) + ".", ""]
    notes = entry_notes(board)
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    lines += _md_per_class(board) + _md_per_class(board, semantic=True)
    for name, title in FIGURES.items():
        if name in report.figures:
            lines += [f"## {title}", "", f"![{title}]({name})", ""]
    if report.evaluations:
        lines += _md_unsupervised(report.evaluations)
    return "\n".join(lines) + "\n"


def _md_per_class(board: Leaderboard, semantic: bool = False) -> list[str]:
    cells = _class_entries(board, semantic)
    if not cells:
        return []
    label, classes = _class_names(board, semantic)
    rows = [[f"{protocol_label(board, p)} / {m}"] + [_class_text(c, name) for name in classes] for p, m, c in cells]
    return (
        [f"## Per-class {label} (mean ± sd over seeds, percent)", ""]
        + _md_table(["protocol / method", *classes], rows)
        + [""]
    )


def _class_text(entry: Entry, name: str) -> str:
    stat = entry.per_class.get(name)
    return "—" if stat is None else mean_sd(stat)


def _md_unsupervised(rows: Sequence[EvalRow]) -> list[str]:
    best = {m: _eval_best(rows, m) for m in METRICS}
    body = [
        [r.name, r.dataset, "" if r.num_scenes is None else str(r.num_scenes)]
        + [f"**{pct(r.metric(m))}**" if r.metric(m) == best[m] else pct(r.metric(m)) for m in METRICS]
        for r in rows
    ]
    body += [
        [f"*paper: {q.label} ({q.source}, {q.supervision}, quoted)*", "*ScanNet v2 val*", ""]
        + [f"*{quoted(q.metric(m))}*" for m in METRICS]
        for q in UNSUPERVISED
    ]
    return (
        ["## Unsupervised class-agnostic instance segmentation", ""]
        + _md_table(["method", "data", "scenes", "AP", "AP50", "AP25"], body)
        + [
            "",
            "Measured rows: class-agnostic ScanNet-style AP in percent, bold = best measured. Quoted rows: the paper's "
            "Table 1 (class-agnostic block) and Table S1 on ScanNet v2 val, not comparable to other data.",
            "",
        ]
    )


# ------------------------------------------------------------------------------------------ CSV


def _frame_record(board: Leaderboard, p: ProtocolInfo, method: str, metric: str) -> dict:
    c = board.entry(p.name, method)
    stat = c.metrics.get(metric, MetricStat({}))
    paired = stat.paired
    return {
        "protocol": p.name,
        **({"task": p.task} if board.shows_tasks else {}),
        "dataset": p.dataset,
        "unit": p.unit,
        "fraction": p.fraction,
        "method": method,
        "metric": LABELS[metric],
        "status": c.status,
        "n": stat.n,
        "seeds": " ".join(map(str, sorted(stat.values))),
        "mean_pct": 100 * stat.mean if stat.n else math.nan,
        "sd_pct": 100 * stat.sd if stat.n >= 2 else math.nan,
        "delta_pct": math.nan if paired is None else 100 * paired.delta,
        "p_value": math.nan if paired is None else paired.p,
        "paired_n": 0 if paired is None else paired.n,
        "significance": "" if paired is None else paired.stars,
        "best": _is_best(board, p.name, metric, method),
        "protocol_hash": c.protocol_hash,
        "split_sha256": c.split_sha256,
        "recipe_hash": c.recipe_hash,
        "comparable": not c.not_comparable,
        "pretrain_dataset": c.pretrain_dataset,
        "reimplemented": method in REIMPLEMENTED,
        "note": "; ".join(
            x for x in (c.reason, c.delta_note, c.not_comparable and f"{NOT_COMPARABLE}: {c.not_comparable}") if x
        ),
    }


def leaderboard_frame(board: Leaderboard) -> pd.DataFrame:
    """Returns one row per (protocol, method, metric of its task): status, n, seeds, mean / sd / Δ in percent, p,
    hashes; with a task column when the report names tasks."""
    return pd.DataFrame.from_records(
        [_frame_record(board, p, m, metric) for p in board.protocols for m in board.methods for metric in p.metrics]
    )


def ladder_frame(board: Leaderboard) -> pd.DataFrame:
    """Returns one row per (ladder, rung, method) on the rung's headline metric, columns as leaderboard_frame's."""
    return pd.DataFrame.from_records(
        [
            {"ladder": ladder_title(group).removeprefix("Ladder: "), "rung": i + 1,
             **_frame_record(board, p, m, group.metric(p))}
            for group in ladder(board)
            for i, p in enumerate(group.rungs)
            for m in group.methods
        ]
    )


def reference_frame(board: Leaderboard) -> pd.DataFrame:
    """Returns the quoted paper rows (percent as printed in the paper), fine-tuning and unsupervised."""
    records = []
    for p in board.protocols:
        for r in board.references.get(p.name, []):
            records.append(
                {
                    "source": r.source,
                    "setting": r.setting,
                    "protocol": p.name,
                    "method": r.method,
                    "paper_label": r.label,
                    "ap": r.ap,
                    "ap50": r.ap50,
                    "ap25": r.ap25,
                }
            )
    for r in UNSUPERVISED:
        records.append(
            {
                "source": r.source,
                "setting": r.setting,
                "protocol": "",
                "method": r.method,
                "paper_label": r.label,
                "ap": r.ap,
                "ap50": r.ap50,
                "ap25": r.ap25,
            }
        )
    return pd.DataFrame.from_records(records)


def per_class_frame(board: Leaderboard, semantic: bool = False) -> pd.DataFrame:
    """Returns one row per (protocol, method, class) of the instance tasks (semantic: of the semantic tasks): n, mean
    and sd of the class's AP (IoU) in percent; with a task column when the report names tasks."""
    key = _class_names(board, semantic)[0].lower()
    task = ["task"] if board.shows_tasks else []
    records = []
    for p, m, c in _class_entries(board, semantic):
        for name in _class_names(board, semantic)[1]:
            stat = c.per_class.get(name, MetricStat({}))
            records.append(
                {
                    "protocol": p.name,
                    **({"task": p.task} if task else {}),
                    "method": m,
                    "class": name,
                    "n": stat.n,
                    f"mean_{key}_pct": 100 * stat.mean if stat.n else math.nan,
                    f"sd_{key}_pct": 100 * stat.sd if stat.n >= 2 else math.nan,
                }
            )
    columns = ["protocol", *task, "method", "class", "n", f"mean_{key}_pct", f"sd_{key}_pct"]
    return pd.DataFrame.from_records(records, columns=columns)


def unsupervised_frame(rows: Sequence[EvalRow]) -> pd.DataFrame:
    """Returns the measured class-agnostic rows in percent with the file each came from."""
    return pd.DataFrame.from_records(
        [
            {
                "method": r.name,
                "dataset": r.dataset,
                "num_scenes": r.num_scenes,
                "ap_pct": 100 * r.ap,
                "ap50_pct": 100 * r.ap50,
                "ap25_pct": 100 * r.ap25,
                "file": str(r.path),
            }
            for r in rows
        ],
        columns=["method", "dataset", "num_scenes", "ap_pct", "ap50_pct", "ap25_pct", "file"],
    )


def write_csvs(report: Report, out: Path) -> list[Path]:
    """Writes leaderboard.csv, paper-reference.csv, per-class.csv (and per-class-iou.csv with semantic protocols,
    ladder.csv with a ladder, unsupervised.csv with evaluations) atomically; returns them."""
    board = report.board
    frames = {
        "leaderboard.csv": leaderboard_frame(board),
        "paper-reference.csv": reference_frame(board),
        "per-class.csv": per_class_frame(board),
    }
    if _class_entries(board, semantic=True):
        frames["per-class-iou.csv"] = per_class_frame(board, semantic=True)
    if ladder(board):
        frames["ladder.csv"] = ladder_frame(board)
    if report.evaluations:
        frames["unsupervised.csv"] = unsupervised_frame(report.evaluations)
    return [write_text(out / name, frame.to_csv(index=False)) for name, frame in frames.items()]


# ------------------------------------------------------------------------------------------ LaTeX


_TEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


_TEX_UNICODE = {
    "±": r"$\pm$",
    "Δ": r"$\Delta$",
    "−": "$-$",
    "†": r"$\dagger$",
    "—": "---",
    "·": r"$\cdot$",
    "σ": r"$\sigma$",
    "→": r"$\to$",
}


def tex_escape(s: str) -> str:
    """Returns s with LaTeX's special characters escaped and the report's Unicode signs as math (pdflatex-safe)."""
    return "".join(_TEX_UNICODE.get(ch) or _TEX.get(ch, ch) for ch in s)


def _tex_cell(board: Leaderboard, protocol: str, method: str, metric: str) -> str:
    c = board.entry(protocol, method)
    if c.status == "missing":
        return "--"
    if c.status == "conflict":
        return r"n/a$^\dagger$"
    stat = c.metrics[metric]
    if stat.n == 0:
        return "--"
    value = pct(stat.mean) if stat.n < 2 else f"{pct(stat.mean)} $\\pm$ {pct(stat.sd)}"
    if _is_best(board, protocol, metric, method):
        value = f"\\textbf{{{value}}}"
    n = f"{stat.n}/{len(c.expected)}" if c.status == "partial" else str(stat.n)
    text = f"{value} {{\\scriptsize ({n})}}"
    if c.not_comparable:
        text += f" {{\\scriptsize {NOT_COMPARABLE}}}"
    elif stat.paired is not None:
        d = stat.paired
        stars = f"^{{{d.stars}}}" if d.stars else ""
        paired = f", {d.n}~paired" if d.n != stat.n else ""
        text += f" {{\\scriptsize $\\Delta\\,{100 * d.delta:+.1f}{stars}${paired}}}"
    return text


def _tex_table(board: Leaderboard, protocols: Sequence[ProtocolInfo], caption: str) -> list[str]:
    """Returns one booktabs `table*` float: methods × (protocols × their task's metrics), the quoted rows."""
    k = len(protocols)
    lines = [
        "\\begin{table*}[t]",
        "\\centering",
        "\\resizebox{\\textwidth}{!}{%",
        "\\begin{tabular}{l" + "rrr" * k + "}",
        "\\toprule",
        " & ".join(["Pre-train"] + [f"\\multicolumn{{3}}{{c}}{{{tex_escape(p.name)}}}" for p in protocols])
        + " \\\\",
        " ".join(f"\\cmidrule(lr){{{2 + 3 * i}-{4 + 3 * i}}}" for i in range(k)),
        " & ".join([""] + [LABELS[m] for p in protocols for m in p.metrics]) + " \\\\",
        "\\midrule",
    ]
    for m in board.methods:
        cells = [_tex_cell(board, p.name, m, metric) for p in protocols for metric in p.metrics]
        lines.append(" & ".join([tex_escape(method_label(m))] + cells) + " \\\\")
    refs = _ref_rows(board, protocols)
    if refs:
        lines += [
            "\\midrule",
            f"\\multicolumn{{{1 + 3 * k}}}{{l}}{{\\textit{{Quoted from the paper (not measured)}}}} \\\\",
        ]
        for label, by_protocol in refs:
            cells = [
                f"\\textit{{{quoted(by_protocol[p.name].metric(metric))}}}" if p.name in by_protocol else ""
                for p in protocols
                for metric in p.metrics
            ]
            lines.append(" & ".join([f"\\textit{{{tex_escape(label)}}}"] + cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}}", f"\\caption{{{tex_escape(caption)}}}", "\\end{table*}"]
    return lines


def _tex_ladder(board: Leaderboard, group: LadderGroup) -> list[str]:
    """Returns one booktabs `table*` float of a ladder: methods × rungs, two header rows (rung and metric; labels kept
    and protocol)."""
    headers = [rung_header(group, p) for p in group.rungs]
    lines = [
        "\\begin{table*}[t]",
        "\\centering",
        "\\resizebox{\\textwidth}{!}{%",
        "\\begin{tabular}{l" + "r" * len(group.rungs) + "}",
        "\\toprule",
        " & ".join(["Pre-train"] + [tex_escape(h[0]) for h in headers]) + " \\\\",
        " & ".join([""] + [f"{{\\scriptsize {tex_escape(f'{h[1]} ({h[2]})')}}}" for h in headers]) + " \\\\",
        "\\midrule",
    ]
    for m in group.methods:
        cells = [_tex_cell(board, p.name, m, group.metric(p)) for p in group.rungs]
        lines.append(" & ".join([tex_escape(method_label(m))] + cells) + " \\\\")
    caption = f"{ladder_title(group)}. {ladder_key()}"
    lines += ["\\bottomrule", "\\end{tabular}}", f"\\caption{{{tex_escape(caption)}}}", "\\end{table*}"]
    return lines


def to_latex(report: Report) -> str:
    """Returns booktabs tables (complete `table*` floats) of the leaderboard with the quoted rows and the key: one
    table, or with tasks other than insseg the ladders and one table per task."""
    board = report.board
    lines = ["% generated by `bench.py report`; needs \\usepackage{booktabs} and \\usepackage{graphicx} (resizebox)"]
    for group in ladder(board):
        lines += _tex_ladder(board, group)
    for task, protocols in board.task_groups():
        caption = f"{task_heading(task, protocols)}. {footnote(board)}" if board.shows_tasks else footnote(board)
        notes = protocol_notes(board, protocols)
        if notes:  # the notes name the fields a "not comparable" differs in, the conflicts and the unquoted rows
            caption += " Notes: " + "; ".join(notes) + "."
        lines += _tex_table(board, protocols, caption)
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------ HTML


_CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:2em;color:#1a1a1a;background:#fff}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:2em}
table{border-collapse:collapse;font-size:13px;margin:.5em 0}
th,td{padding:4px 8px;border-bottom:1px solid #ddd;text-align:right;white-space:nowrap}
td:first-child,th.l{text-align:left}th.g{text-align:center}
thead th{border-bottom:2px solid #333;background:#f4f4f4}
td.best .v{font-weight:700}
.d{color:#666;font-size:11px;display:block}
td.partial{background:#fff8e1}td.missing{color:#999}td.conflict{background:#fdecea;color:#b00020}
tr.quoted td{font-style:italic;color:#555;background:#fafafa}
tbody.quoted tr:first-child td{border-top:2px solid #333}
p.key{max-width:70em;color:#444;font-size:13px}
ul.notes{color:#8a5300;font-size:13px}
img{max-width:100%;border:1px solid #eee}
"""


def _h(s: object) -> str:
    return html.escape(str(s))


def _html_cell(board: Leaderboard, protocol: str, method: str, metric: str) -> str:
    c = board.entry(protocol, method)
    main, detail = entry_text(c, metric)
    classes = [c.status] + (["best"] if _is_best(board, protocol, metric, method) else [])
    d = f'<span class="d">{_h(detail)}</span>' if detail else ""
    return f'<td class="{" ".join(classes)}"><span class="v">{_h(main)}</span>{d}</td>'


def _html_leaderboard(board: Leaderboard, protocols: Sequence[ProtocolInfo], table_id: str) -> list[str]:
    out = [f'<table id="{table_id}"><thead><tr><th class="l" rowspan="2">method</th>']
    out += [f'<th class="g" colspan="{len(p.metrics)}">{_h(p.name)}</th>' for p in protocols]
    out.append(
        "</tr><tr>" + "".join(f"<th>{LABELS[m]}</th>" for p in protocols for m in p.metrics) + "</tr></thead>"
    )
    out.append("<tbody>")
    for m in board.methods:
        cells = "".join(_html_cell(board, p.name, m, metric) for p in protocols for metric in p.metrics)
        out.append(f"<tr><td>{_h(method_label(m))}</td>{cells}</tr>")
    out.append("</tbody>")
    refs = _ref_rows(board, protocols)
    if refs:
        out.append('<tbody class="quoted">')
        for label, by_protocol in refs:
            cells = "".join(
                f"<td>{quoted(by_protocol[p.name].metric(metric))}</td>" if p.name in by_protocol else "<td></td>"
                for p in protocols
                for metric in p.metrics
            )
            out.append(f'<tr class="quoted"><td>{_h(label)} (quoted)</td>{cells}</tr>')
        out.append("</tbody>")
    out.append("</table>")
    return out


def _html_ladder(board: Leaderboard, group: LadderGroup, table_id: str) -> list[str]:
    headers = "".join(
        f"<th>{_h(rung)}<br><small>{_h(labels)} ({_h(name)})</small></th>"
        for rung, labels, name in (rung_header(group, p) for p in group.rungs)
    )
    out = [f"<h2>{_h(ladder_title(group))}</h2>",
           f'<table id="{table_id}"><thead><tr><th class="l">method</th>{headers}</tr></thead><tbody>']
    for m in group.methods:
        cells = "".join(_html_cell(board, p.name, m, group.metric(p)) for p in group.rungs)
        out.append(f"<tr><td>{_h(method_label(m))}</td>{cells}</tr>")
    out.append("</tbody></table>")
    return out


def _html_per_class(board: Leaderboard, semantic: bool) -> list[str]:
    cells = _class_entries(board, semantic)
    if not cells:
        return []
    label, classes = _class_names(board, semantic)
    table_id = "per-class-iou" if semantic else "per-class"
    out = [
        f'<h2>Per-class {label} (mean ± sd over seeds, percent)</h2><table id="{table_id}"><thead><tr>',
        '<th class="l">protocol / method</th>' + "".join(f"<th>{_h(n)}</th>" for n in classes) + "</tr></thead><tbody>",
    ]
    for p, m, c in cells:
        out.append(
            f"<tr><td>{_h(protocol_label(board, p))} / {_h(m)}</td>"
            + "".join(f"<td>{_h(_class_text(c, n))}</td>" for n in classes)
            + "</tr>"
        )
    out.append("</tbody></table>")
    return out


def to_html(report: Report) -> str:
    """Returns one self-contained HTML page: inline CSS, figures as base64 data URIs, no external resource.

    Table ids: leaderboard (one table; with tasks other than insseg, leaderboard-<task> per task and ladder-<i> per
    ladder), per-class, per-class-iou, unsupervised."""
    board = report.board
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>freepoint-bench leaderboard ({_h(report.source)})</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Leaderboard <small>({_h(report.source)})</small></h1>",
    ]
    groups = ladder(board)
    for i, group in enumerate(groups):
        out += _html_ladder(board, group, f"ladder-{i}")
    if groups:
        out.append(f'<p class="key">{_h(ladder_key())}</p>')
    for task, protocols in board.task_groups():
        if board.shows_tasks:
            out.append(f"<h2>{_h(task_heading(task, protocols))}</h2>")
        out += _html_leaderboard(board, protocols, f"leaderboard-{task}" if board.shows_tasks else "leaderboard")
    out.append(f'<p class="key">{_h(footnote(board))}</p>')
    sources = sorted({f"{r.source}: {r.setting}" for refs in board.references.values() for r in refs})
    if sources:
        out.append(f'<p class="key">Quoted paper rows: {_h("; ".join(sources))}.</p>')
    notes = entry_notes(board)
    if notes:
        out.append('<h2>Notes</h2><ul class="notes">' + "".join(f"<li>{_h(n)}</li>" for n in notes) + "</ul>")
    out += _html_per_class(board, semantic=False) + _html_per_class(board, semantic=True)
    for name, title in FIGURES.items():
        if name in report.figures:
            data = base64.b64encode(report.figures[name]).decode("ascii")
            out.append(f'<h2>{_h(title)}</h2><img alt="{_h(title)}" src="data:image/png;base64,{data}">')
    if report.evaluations:
        out.append(_html_unsupervised(report.evaluations))
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _html_unsupervised(rows: Sequence[EvalRow]) -> str:
    best = {m: _eval_best(rows, m) for m in METRICS}
    out = [
        '<h2>Unsupervised class-agnostic instance segmentation</h2><table id="unsupervised"><thead><tr>',
        "".join(f'<th class="{"l" if c in ("method", "data") else ""}">{c}</th>' for c in _UNSUP_COLUMNS),
        "</tr></thead><tbody>",
    ]
    for r in rows:
        vals = "".join(
            f'<td class="{"best" if r.metric(m) == best[m] else ""}"><span class="v">{pct(r.metric(m))}</span></td>'
            for m in METRICS
        )
        scenes = "" if r.num_scenes is None else r.num_scenes
        out.append(f"<tr><td>{_h(r.name)}</td><td>{_h(r.dataset)}</td><td>{scenes}</td>{vals}</tr>")
    out.append('</tbody><tbody class="quoted">')
    for q in UNSUPERVISED:
        vals = "".join(f"<td>{quoted(q.metric(m))}</td>" for m in METRICS)
        out.append(
            f'<tr class="quoted"><td>paper: {_h(q.label)} ({q.source}, {_h(q.supervision)}, quoted)</td>'
            f"<td>ScanNet v2 val</td><td></td>{vals}</tr>"
        )
    out.append("</tbody></table>")
    return "\n".join(out)


# ------------------------------------------------------------------------------------------ files


def write_report(report: Report, formats: Sequence[str], out: str | os.PathLike) -> list[Path]:
    """Writes the file formats among `formats` into out (atomically) and returns the paths; 'terminal' writes none."""
    out = Path(out)
    written: list[Path] = []
    if "md" in formats:
        written.append(write_text(out / "leaderboard.md", to_markdown(report)))
        written += [write_bytes(out / name, png) for name, png in report.figures.items()]
    if "csv" in formats:
        written += write_csvs(report, out)
    if "latex" in formats:
        written.append(write_text(out / "leaderboard.tex", to_latex(report)))
    if "html" in formats:
        written.append(write_text(out / "report.html", to_html(report)))
    return written
