"""Headless pictures of scenes (matplotlib, Agg): top-down and oblique views, side-by-side panels, PLY export.

    render_scene(scene, "room.png", color_by="instance")
    render_panels(scene, {"ground truth": "instance", "σ = 0.9": masks_09, "σ = 1.2": masks_12}, "m.png")
    write_colored_ply(scene, label_colors(scene.instance), "room.ply")
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: never open a window, never need a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from plyfile import PlyData, PlyElement  # noqa: E402

from freepoint_bench.atomic import atomic_path  # noqa: E402
from freepoint_bench.data import catalogue  # noqa: E402
from freepoint_bench.data.scene import Scene  # noqa: E402
from freepoint_bench.errors import ConfigError, DataError  # noqa: E402

logger = logging.getLogger(__name__)

__all__ = [
    "COLOR_BY",
    "DPI",
    "MAX_PLOT_POINTS",
    "UNLABELLED_COLOR",
    "label_colors",
    "render_panels",
    "render_scene",
    "write_colored_ply",
]

COLOR_BY = ("instance", "semantic", "rgb")
UNLABELLED_COLOR = (0.6, 0.6, 0.6)  # grey for label -1
MAX_PLOT_POINTS = 60_000  # larger scenes are subsampled (seeded) for plotting only
DPI = 100
SCENE_FIGSIZE = (12.0, 6.0)  # inches: top-down | oblique -> 1200 x 600 px
PANEL_SIZE = 4.5  # inches per panel side
VIEW_CUT = 0.9  # views show the points below 90 % of the height range (no ceiling)

_GOLDEN = 0.618033988749895


def label_colors(labels: np.ndarray) -> np.ndarray:
    """Returns (N, 3) float32 rgb in 0..1: a distinct saturated colour per label value, grey for -1.

    Colours depend only on the label value (the same id has the same colour in every picture): hues step
    by the golden ratio, saturation and value vary in a second cycle, so neighbouring ids look different.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise DataError(f"label_colors: labels have shape {labels.shape}; expected (N,)")
    labels = labels.astype(np.int64)
    out = np.empty((len(labels), 3), dtype=np.float32)
    unlabelled = labels < 0
    out[unlabelled] = UNLABELLED_COLOR
    ids, inverse = np.unique(labels[~unlabelled], return_inverse=True)
    hue = (ids * _GOLDEN) % 1.0
    sat = 0.65 + 0.35 * ((ids // 7) % 3) / 2.0  # 0.65, 0.825, 1.0
    val = 0.95 - 0.25 * ((ids // 3) % 3) / 2.0  # 0.95, 0.825, 0.7
    out[~unlabelled] = _hsv_to_rgb(hue, sat, val)[inverse]
    return out


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    i = np.floor(h * 6.0).astype(int) % 6
    f = h * 6.0 - np.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    table = np.stack([
        np.stack([v, t, p], 1), np.stack([q, v, p], 1), np.stack([p, v, t], 1),
        np.stack([p, q, v], 1), np.stack([t, p, v], 1), np.stack([v, p, q], 1),
    ])  # (6, K, 3)
    return table[i, np.arange(len(h))].reshape(-1, 3)


def scene_colors(scene: Scene, spec: np.ndarray | str, what: str = "colours") -> np.ndarray:
    """Returns (N, 3) colours of `scene` for a colouring name (COLOR_BY) or an (N,) label array; DataError when the
    scene lacks those labels; `what` names the caller in the errors about `spec` itself."""
    if isinstance(spec, str):
        if spec == "rgb":
            return scene.rgb
        if spec in ("instance", "semantic"):
            labels = getattr(scene, spec)
            if labels is None:
                raise DataError(f"scene {scene.name} has no {spec} labels; colour it by rgb instead")
            return label_colors(labels)
        raise ConfigError(
            f"{what}: unknown colouring {spec!r}; use one of {', '.join(COLOR_BY)} or a label array"
        )
    labels = np.asarray(spec)
    if labels.ndim != 1 or len(labels) != scene.num_points:
        raise DataError(
            f"{what}: labels have shape {labels.shape} but scene {scene.name} has {scene.num_points} points"
        )
    return label_colors(labels)


def _plot_index(scene: Scene, max_points: int) -> np.ndarray:
    """Returns the points to draw: all below the cut height, or a seeded subsample of them; ordered
    bottom-up so tops cover floors."""
    # Cut the top 10 % of the height away (the ceiling), which would otherwise hide the room.
    z = scene.xyz[:, 2]
    index = np.flatnonzero(z <= z.min() + VIEW_CUT * (z.max() - z.min()))
    if len(index) > max_points:
        index = np.sort(np.random.default_rng(0).choice(index, max_points, replace=False))
    return index[np.argsort(scene.xyz[index, 2], kind="stable")]


def _marker_size(count: int, panel_inches: float) -> float:
    return float(np.clip(6e4 * panel_inches**2 / 36.0 / max(count, 1), 0.3, 12.0))


def _top_down(ax, xyz: np.ndarray, colors: np.ndarray, size: float, title: str | None) -> None:
    ax.scatter(xyz[:, 0], xyz[:, 1], c=colors, s=size, marker=".", linewidths=0, rasterized=True)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)


def _oblique(ax, xyz: np.ndarray, colors: np.ndarray, size: float) -> None:
    ax.scatter(xyz[:, 0], xyz[:, 1], xyz[:, 2], c=colors, s=size, marker=".", linewidths=0, depthshade=False)
    ax.view_init(elev=35, azim=-60)
    extent = xyz.max(axis=0) - xyz.min(axis=0)
    ax.set_box_aspect(np.maximum(extent, 1e-3))
    ax.set_axis_off()


def _save(fig, out_png: str | Path) -> Path:
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    plt.close(fig)
    return out_png


def render_scene(
    scene: Scene,
    out_png: str | Path,
    color_by: str = "instance",
    labels: np.ndarray | None = None,
    title: str | None = None,
    max_points: int = MAX_PLOT_POINTS,
) -> Path:
    """Returns the path of a 1200 x 600 px PNG: the scene top-down (left) and from an oblique view (right).

    Both views leave out the top 10 % of the height range (the ceiling), which would hide the room.

    color_by: "instance" (distinct colour per id, -1 grey), "semantic" (per class id) or "rgb";
    labels: (N,) ints that override color_by (e.g. pseudo masks). Scenes above max_points are
    subsampled for plotting.
    """
    if labels is None and color_by not in COLOR_BY:
        raise ConfigError(f"color_by {color_by!r}: use one of {', '.join(COLOR_BY)}")
    colors = scene_colors(scene, color_by if labels is None else labels, f"render {scene.name}")
    index = _plot_index(scene, max_points)
    xyz, colors = scene.xyz[index], colors[index]
    fig = plt.figure(figsize=SCENE_FIGSIZE, dpi=DPI)
    size = _marker_size(len(index), SCENE_FIGSIZE[1])
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.06, top=0.9, wspace=0.04)
    _top_down(fig.add_subplot(1, 2, 1), xyz, colors, size, "top-down")
    _oblique(fig.add_subplot(1, 2, 2, projection="3d"), xyz, colors, size)
    if title is None:
        title = f"{scene.name} ({'labels' if labels is not None else color_by})"
    fig.suptitle(title, fontsize=12)
    entry = catalogue.find(scene.meta.get("dataset"))
    if color_by == "semantic" and labels is None and entry is not None and entry.classes is not None \
            and entry.classes.semantic_names is not None:
        _semantic_legend(fig, scene.semantic, entry.classes.semantic_names)
    return _save(fig, out_png)


def _semantic_legend(fig, semantic: np.ndarray, names: tuple[str, ...]) -> None:
    from matplotlib.patches import Patch

    ids = [i for i in np.unique(semantic) if 0 <= i < len(names)]
    colors = label_colors(np.array(ids, dtype=np.int64))
    handles = [Patch(color=c, label=names[i]) for i, c in zip(ids, colors, strict=True)]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 7), fontsize=8, frameon=False)


def render_panels(
    scene: Scene,
    panels: dict[str, np.ndarray | str],
    out_png: str | Path,
    ncols: int | None = None,
    max_points: int = MAX_PLOT_POINTS,
) -> Path:
    """Returns the path of a PNG with one top-down view per panel, titled by its key, in a grid.

    panels: title → "instance" | "semantic" | "rgb" or an (N,) label array (e.g. ground truth beside
    pseudo masks, or one panel per σ). ncols: panels per row (default: all in one row, at most 4).
    Each panel is 450 x 450 px.
    """
    if not panels:
        raise ConfigError("render_panels: no panels given")
    ncols = min(len(panels), 4) if ncols is None else int(ncols)
    if ncols < 1:
        raise ConfigError(f"render_panels: ncols must be >= 1, got {ncols}")
    nrows = math.ceil(len(panels) / ncols)
    colorings = {title: scene_colors(scene, spec, f"panel {title!r}") for title, spec in panels.items()}
    index = _plot_index(scene, max_points)
    xyz = scene.xyz[index]
    fig, axes = plt.subplots(nrows, ncols, figsize=(PANEL_SIZE * ncols, PANEL_SIZE * nrows), dpi=DPI,
                             squeeze=False)
    size = _marker_size(len(index), PANEL_SIZE)
    for ax, (title, colors) in zip(axes.flat, colorings.items(), strict=False):
        _top_down(ax, xyz, colors[index], size, title)
    for ax in list(axes.flat)[len(colorings):]:
        ax.set_axis_off()
    fig.tight_layout()
    return _save(fig, out_png)


def write_colored_ply(scene: Scene, colors: np.ndarray, path: str | Path) -> Path:
    """Returns `path` after writing a binary PLY of the scene's points with `colors` (atomically).

    colors: (N, 3) floats in 0..1 or integers in 0..255. Vertex properties: x, y, z (float32), red,
    green, blue (uchar), and semantic / instance (int32) when the scene has them.
    """
    colors = np.asarray(colors)
    if colors.shape != (scene.num_points, 3):
        raise DataError(
            f"write_colored_ply: colors have shape {colors.shape}; "
            f"scene {scene.name} needs ({scene.num_points}, 3)"
        )
    if colors.dtype.kind == "f":
        colors = np.round(np.clip(colors, 0.0, 1.0) * 255.0)
    colors = np.clip(colors, 0, 255).astype(np.uint8)
    fields = [("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]
    extras = [(k, getattr(scene, k)) for k in ("semantic", "instance") if getattr(scene, k) is not None]
    fields += [(key, "i4") for key, _ in extras]
    vertex = np.empty(scene.num_points, dtype=fields)
    for k, axis in enumerate("xyz"):
        vertex[axis] = scene.xyz[:, k]
    for k, channel in enumerate(("red", "green", "blue")):
        vertex[channel] = colors[:, k]
    for key, values in extras:
        vertex[key] = values
    path = Path(path)
    with atomic_path(path) as tmp:
        PlyData([PlyElement.describe(vertex, "vertex")], text=False).write(str(tmp))
    return path
