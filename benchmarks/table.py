"""The plain-text table the benchmark tools print: left-aligned columns two spaces apart under a dashed rule.

A tool run as a script has benchmarks/ on sys.path, so `from table import print_table` finds this module.
"""

from __future__ import annotations

from collections.abc import Sequence


def format_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Returns `rows` under `header` as lines of left-aligned columns (each as wide as its widest cell), two
    spaces apart, with a dashed rule under the header; every row must have as many cells as the header."""
    cells = [[str(x) for x in row] for row in rows]
    for row in cells:
        if len(row) != len(header):
            raise ValueError(f"table row {row} has {len(row)} cells for {len(header)} columns {list(header)}")
    widths = [max(len(x) for x in col) for col in zip(header, *cells, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(x.ljust(w) for x, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def print_table(header: Sequence[str], rows: Sequence[Sequence[object]], title: str | None = None) -> None:
    """Prints `format_table(header, rows)`, after a blank line and `title` when one is given."""
    if title is not None:
        print(f"\n{title}")
    print(format_table(header, rows))
