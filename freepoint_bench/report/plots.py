"""The report's figures as PNG bytes (matplotlib, Agg): label efficiency and the per-class AP / IoU heatmaps."""

from __future__ import annotations

import io
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from freepoint_bench.report.leaderboard import (  # noqa: E402
    HEADLINE,
    METRIC_LABELS,
    Leaderboard,
    label_efficiency_panels,
    protocol_label,
)

PANELS_PER_ROW = 4


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def label_efficiency_png(board: Leaderboard) -> bytes | None:
    """Returns a PNG of each task's headline metric (AP; mIoU for the semantic tasks) against label fraction, one
    panel per (task, dataset, unit, eval scenes), one line per method.

    Error bars: ± sd over seeds. Panel titles name the task when the report does (Leaderboard.shows_tasks).

    None when no cell has values.
    """
    curves = label_efficiency_panels(board)
    if not curves:
        return None
    cols = min(PANELS_PER_ROW, len(curves))
    rows = math.ceil(len(curves) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.6 * rows), squeeze=False)
    colors = {m: plt.cm.tab10(i % 10) for i, m in enumerate(board.methods)}
    for ax, ((task, dataset, unit, num_eval, _), lines) in zip(axes.flat, curves.items(), strict=False):
        for method, pts in lines.items():
            x = [100 * p[0] for p in pts]
            y = [100 * p[1] for p in pts]
            err = [0.0 if math.isnan(p[2]) else 100 * p[2] for p in pts]
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=method, color=colors[method])
        prefix = f"{task}: " if board.shows_tasks else ""
        ax.set_title(f"{prefix}{dataset}, {num_eval} eval scenes: labels kept as {unit}", fontsize=9)
        ax.set_xlabel("labels kept (%)")
        ax.set_ylabel(f"{METRIC_LABELS[HEADLINE.get(task, 'ap')]} (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    for ax in axes.flat[len(curves):]:
        ax.set_axis_off()
    fig.suptitle("Label efficiency (mean ± sd over seeds)", fontsize=10)
    return _png(fig)


def per_class_heatmap_png(board: Leaderboard, semantic: bool = False) -> bytes | None:
    """Returns a PNG heatmap of per-class AP of the instance tasks' protocols (semantic: per-class IoU of the semantic
    tasks'), rows protocol / method, columns classes; None without such rows or classes."""
    classes = board.semantic_classes if semantic else board.classes
    label = "IoU" if semantic else "AP"
    rows = [(p, m) for p in board.protocols if p.semantic == semantic for m in board.methods
            if board.entry(p.name, m).has_values]
    if not rows or not classes:
        return None
    grid = np.full((len(rows), len(classes)), np.nan)
    for i, (p, m) in enumerate(rows):
        for j, name in enumerate(classes):
            stat = board.entry(p.name, m).per_class.get(name)
            if stat is not None and stat.n:
                grid[i, j] = 100 * stat.mean
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * len(classes), 1.2 + 0.35 * len(rows)))
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", vmin=0, vmax=max(1.0, np.nanmax(grid)), aspect="auto")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), [f"{protocol_label(board, p)} / {m}" for p, m in rows], fontsize=8)
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            if not math.isnan(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.0f}", ha="center", va="center", fontsize=6, color="w")
    fig.colorbar(image, ax=ax, label=f"{label} (%)")
    ax.set_title(f"Per-class {label} (mean over seeds; blank = class absent)", fontsize=10)
    return _png(fig)
