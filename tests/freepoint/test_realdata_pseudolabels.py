"""Pseudo labels on a real ScanNet dev scan: floor and walls mostly removed, objects mostly kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from freepoint_bench.data.classes import SCANNET_INSTANCE_IDS
from freepoint_bench.freepoint.config import PseudoLabelConfig
from freepoint_bench.freepoint.pipeline import generate_pseudo_labels

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "scannet-dev"


@pytest.mark.realdata
def test_dev_scan_background_and_objects():
    if not (DATA / "scene0000_00_vert.npy").is_file():
        pytest.skip(f"ScanNet dev scans not found under {DATA}")
    from freepoint_bench.data.readers import get_reader

    scene = get_reader("scannet-npy").read_scene(DATA, "scene0000_00")
    result = generate_pseudo_labels(scene, PseudoLabelConfig())
    floor = scene.semantic == 2
    objects = np.isin(scene.semantic, SCANNET_INSTANCE_IDS)
    assert result.foreground[floor].mean() < 0.3  # most of the floor is background
    assert result.foreground[objects].mean() > 0.8  # objects survive plane removal
    low, high = result.labels[0.9], result.labels[1.2]
    assert 10 <= result.num_segments[1.2] <= result.num_segments[0.9] <= 300
    assert (low[~result.foreground] == -1).all() and (high[~result.foreground] == -1).all()


@pytest.mark.realdata
@pytest.mark.parametrize("preset, rules", [("default", False), ("default", True), ("plain", True)])
def test_dev_scan_labels_repeat_for_a_seed(preset, rules):
    if not (DATA / "scene0001_00_vert.npy").is_file():
        pytest.skip(f"ScanNet dev scans not found under {DATA}")
    from freepoint_bench.data.readers import get_reader

    scene = get_reader("scannet-npy").read_scene(DATA, "scene0001_00")
    config = PseudoLabelConfig.preset(preset, {"plane_rules": rules})
    first, second = (generate_pseudo_labels(scene, config) for _ in range(2))
    assert np.array_equal(first.foreground, second.foreground)
    for sigma in config.sigmas:
        assert np.array_equal(first.labels[sigma], second.labels[sigma])
    other = generate_pseudo_labels(scene, config.with_overrides({"seed": 1}))
    assert not np.array_equal(other.labels[config.sigma_low], first.labels[config.sigma_low])  # the seed acts
