"""`bench.py report`: the leaderboard over the results store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from freepoint_bench.cli.common import console


def report_cmd(
    results: Annotated[Path, typer.Option("--results", help="The results store that `bench.py run` fills.")] = Path(
        "results"
    ),
    formats: Annotated[
        str, typer.Option("--format", "-f", help="Comma-separated: terminal, md, csv, html, latex.")
    ] = "terminal,md,csv,html,latex",
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the report's files.")] = Path("report"),
    evaluations: Annotated[
        list[Path] | None,
        typer.Option(
            "--evaluations",
            help="Class-agnostic evaluation JSONs (or folders of them) from `evaluate --json` / `--compare-json`.",
        ),
    ] = None,
) -> None:
    """The leaderboard over the results store: per task (mIoU / mAcc / allAcc for linear and semseg, AP / AP50 / AP25
    for insseg-frozen and insseg) mean ± sd over seeds, Δ vs scratch (paired t-test), the probe ladder, the paper
    quoted."""
    from freepoint_bench import report as rp

    chosen = rp.parse_formats(formats)
    rows = rp.read_evaluations(evaluations) if evaluations else []
    report = rp.build_report(rp.build_leaderboard(rp.load_results(results)), rows, source=str(results))
    if "terminal" in chosen:
        console.print(rp.to_terminal(report))
    for path in rp.write_report(report, chosen, out):
        console.print(f"wrote {path}")
