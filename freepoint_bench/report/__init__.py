"""The leaderboard over the results store: tables (terminal, Markdown, CSV, LaTeX, HTML) and plots.

The report only reads: results/<protocol>/<method>/seed-<k>/result.json written by the harness (through
freepoint_bench.results), and class-agnostic evaluation JSONs written by `bench.py evaluate --json` /
`pseudo-labels --compare-json`.
"""

from freepoint_bench.report.leaderboard import Leaderboard, build_leaderboard, paired_test
from freepoint_bench.report.render import FORMATS, Report, build_report, parse_formats, to_terminal, write_report
from freepoint_bench.report.store import ResultsStore, load_results
from freepoint_bench.report.unsupervised import EvalRow, read_evaluations

__all__ = [
    "FORMATS",
    "EvalRow",
    "Leaderboard",
    "Report",
    "ResultsStore",
    "build_leaderboard",
    "build_report",
    "load_results",
    "paired_test",
    "parse_formats",
    "read_evaluations",
    "to_terminal",
    "write_report",
]
