"""The report's figures as PNG bytes (matplotlib, Agg): label efficiency and the per-class AP heatmap."""

from __future__ import annotations

import io
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from freepoint_bench.report.leaderboard import Leaderboard, label_efficiency  # noqa: E402


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def label_efficiency_png(board: Leaderboard, metric: str = "ap") -> bytes | None:
    """Returns a PNG of AP against label fraction, one panel per (dataset, unit, eval scenes), one line per method.

    Error bars: ± sd over seeds.

    None when no cell has values.
    """
    curves = label_efficiency(board, metric)
    if not curves:
        return None
    fig, axes = plt.subplots(1, len(curves), figsize=(4.6 * len(curves), 3.6), squeeze=False)
    colors = {m: plt.cm.tab10(i % 10) for i, m in enumerate(board.methods)}
    for ax, ((dataset, unit, num_eval, _), lines) in zip(axes[0], curves.items(), strict=True):
        for method, pts in lines.items():
            x = [100 * p[0] for p in pts]
            y = [100 * p[1] for p in pts]
            err = [0.0 if math.isnan(p[2]) else 100 * p[2] for p in pts]
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=method, color=colors[method])
        ax.set_title(f"{dataset}, {num_eval} eval scenes: labels kept as {unit}", fontsize=9)
        ax.set_xlabel("labels kept (%)")
        ax.set_ylabel(f"{metric.upper()} (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Label efficiency (mean ± sd over seeds)", fontsize=10)
    return _png(fig)


def per_class_heatmap_png(board: Leaderboard) -> bytes | None:
    """Returns a PNG heatmap of per-class AP (rows: protocol / method, columns: classes); None without classes."""
    rows = [(p.name, m) for p in board.protocols for m in board.methods if board.entry(p.name, m).has_values]
    if not rows or not board.classes:
        return None
    grid = np.full((len(rows), len(board.classes)), np.nan)
    for i, (p, m) in enumerate(rows):
        for j, name in enumerate(board.classes):
            stat = board.entry(p, m).per_class.get(name)
            if stat is not None and stat.n:
                grid[i, j] = 100 * stat.mean
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * len(board.classes), 1.2 + 0.35 * len(rows)))
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", vmin=0, vmax=max(1.0, np.nanmax(grid)), aspect="auto")
    ax.set_xticks(range(len(board.classes)), board.classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), [f"{p} / {m}" for p, m in rows], fontsize=8)
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            if not math.isnan(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.0f}", ha="center", va="center", fontsize=6, color="w")
    fig.colorbar(image, ax=ax, label="AP (%)")
    ax.set_title("Per-class AP (mean over seeds; blank = class absent)", fontsize=10)
    return _png(fig)
