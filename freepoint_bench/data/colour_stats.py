"""Colour normalisation statistics of a set of scenes, by Mask3D's rule (TrainPreset's color_mean / color_std).

Mask3D publishes its ScanNet values (the TrainPreset defaults) but not S3DIS's: its
datasets/preprocessing/s3dis_preprocessing.py computes them at preprocessing, per held-out area. process_file
records each room's mean of colour / 255 and mean of (colour / 255)² per channel; compute_color_mean_std then
writes Area_<k>_color_mean_std.yaml over the rooms of the other areas: mean = the average of the rooms' means,
std = sqrt(the average of the rooms' mean squares - mean²). Every room weighs the same, whatever its point count.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from freepoint_bench.data.scene import Scene
from freepoint_bench.errors import DataError

RGB = ("r", "g", "b")


@dataclass(frozen=True)
class ColourStats:
    """Colour statistics of `num_scenes` scenes, on 0..1 colours, per channel (r, g, b)."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    num_scenes: int


def colour_mean_std(scenes: Iterable[Scene],
                    progress: Callable[[int, str], None] | None = None) -> ColourStats:
    """Returns Mask3D's colour mean and std of `scenes` (rgb: (N, 3) in 0..1): the average over scenes of each
    scene's mean colour, and sqrt(average of each scene's mean squared colour - mean²). progress(done, name) after
    each scene. DataError for no scenes, a scene without colours, or a channel whose colours do not vary."""
    means, squares = [], []
    for scene in scenes:
        if scene.meta.get("no_rgb", False):
            raise DataError(f"{scene.name}: scene has no colours (its reader filled in grey); colour statistics "
                            "need coloured scans, so input_features=rgb does not suit this data")
        rgb = scene.rgb.astype(np.float64)  # Mask3D sums float64 colours / 255
        means.append(rgb.mean(axis=0))
        squares.append((rgb**2).mean(axis=0))
        if progress is not None:
            progress(len(means), scene.name)
    if not means:
        raise DataError("no scenes to compute colour statistics over; check --root and the groups asked for")
    mean = np.mean(means, axis=0)
    std = np.sqrt(np.maximum(np.mean(squares, axis=0) - mean**2, 0.0))  # rounding can take a flat channel below 0
    flat = [c for c, s in zip(RGB, std, strict=True) if not s > 0]
    if flat:
        raise DataError(f"colour std is 0 in channel {', '.join(flat)} over {len(means)} scenes: every point has "
                        "the same colour there, which input_features=rgb cannot divide by")
    return ColourStats(tuple(float(v) for v in mean), tuple(float(v) for v in std), len(means))
