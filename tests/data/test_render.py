"""Rendering: PNGs of the right size, label colours, panels, coloured PLY."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.image import imread
from plyfile import PlyData

from freepoint_bench.data.render import (
    UNLABELLED_COLOR,
    label_colors,
    render_panels,
    render_scene,
    scene_colors,
    write_colored_ply,
)
from freepoint_bench.data.scene import Scene
from freepoint_bench.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def scene() -> Scene:
    """Two coloured boxes on a floor: small, so rendering is quick."""
    rng = np.random.default_rng(0)
    floor = np.column_stack([rng.uniform(0, 4, 600), rng.uniform(0, 3, 600), np.zeros(600)])
    box_a = rng.uniform([0.5, 0.5, 0.0], [1.0, 1.0, 0.8], (300, 3))
    box_b = rng.uniform([2.5, 1.5, 0.0], [3.2, 2.2, 0.5], (300, 3))
    xyz = np.concatenate([floor, box_a, box_b])
    instance = np.repeat([-1, 0, 1], [600, 300, 300])
    return Scene(
        name="Area_1/boxes",
        xyz=xyz,
        rgb=rng.random((1200, 3)),
        semantic=np.repeat([1, 7, 8], [600, 300, 300]),
        instance=instance,
        meta={"dataset": "s3dis"},
    )


def _png_size(path) -> tuple[int, int]:
    image = imread(path)
    return image.shape[1], image.shape[0]


@pytest.mark.parametrize("color_by", ["instance", "semantic", "rgb"])
def test_render_scene_writes_a_png_of_the_right_size(tmp_path, scene, color_by):
    out = render_scene(scene, tmp_path / "sub" / f"{color_by}.png", color_by=color_by, title="t")
    assert out.is_file() and out.stat().st_size > 5000
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert _png_size(out) == (1200, 600)


def test_render_scene_with_label_override_and_bad_arguments(tmp_path, scene):
    labels = np.arange(scene.num_points) % 5
    assert _png_size(render_scene(scene, tmp_path / "labels.png", labels=labels)) == (1200, 600)
    with pytest.raises(ConfigError, match="color_by"):
        render_scene(scene, tmp_path / "x.png", color_by="height")
    with pytest.raises(DataError, match="1200 points"):
        render_scene(scene, tmp_path / "x.png", labels=np.zeros(3, int))
    unlabelled = Scene(name="u", xyz=scene.xyz, rgb=scene.rgb)
    with pytest.raises(DataError, match="no instance labels"):
        render_scene(unlabelled, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_render_panels_grid_size(tmp_path, scene):
    ids = np.arange(1200)
    panels = {"ground truth": "instance", "σ = 0.9": ids // 100, "σ = 1.2": ids // 400}
    out = render_panels(scene, panels, tmp_path / "panels.png")
    assert _png_size(out) == (3 * 450, 450)
    more = {**panels, "rgb": "rgb", "semantic": "semantic"}
    out = render_panels(scene, more, tmp_path / "grid.png", ncols=2)
    assert _png_size(out) == (2 * 450, 3 * 450)
    with pytest.raises(ConfigError):
        render_panels(scene, {}, tmp_path / "none.png")


def test_subsampling_keeps_rendering_bounded(tmp_path, scene):
    out = render_scene(scene, tmp_path / "few.png", max_points=100)
    assert _png_size(out) == (1200, 600)


def test_label_colors_distinct_grey_and_stable():
    labels = np.array([-1, 0, 1, 2, 1, 57, 1000, -1])
    colors = label_colors(labels)
    assert colors.shape == (8, 3) and colors.dtype == np.float32
    np.testing.assert_allclose(colors[0], UNLABELLED_COLOR)
    np.testing.assert_allclose(colors[-1], UNLABELLED_COLOR)
    np.testing.assert_array_equal(colors[2], colors[4])  # same label, same colour
    distinct = {tuple(np.round(c, 4)) for c in colors[1:7]}
    assert len(distinct) == 5  # labels 0, 1, 2, 57, 1000
    assert all(np.ptp(c) > 0.1 for c in colors[1:7])  # saturated: never mistaken for the grey of -1
    assert np.all((colors >= 0) & (colors <= 1))
    # a label's colour does not depend on which other labels are present
    np.testing.assert_array_equal(label_colors(np.array([57]))[0], colors[5])
    # neighbouring ids are clearly apart
    many = label_colors(np.arange(40))
    gaps = np.abs(many[1:] - many[:-1]).sum(axis=1)
    assert gaps.min() > 0.2


def test_scene_colors_by_name_or_labels(scene):
    assert np.array_equal(scene_colors(scene, "rgb"), scene.rgb)
    assert np.array_equal(scene_colors(scene, "semantic"), label_colors(scene.semantic))
    assert np.array_equal(scene_colors(scene, scene.instance), scene_colors(scene, "instance"))
    unlabelled = Scene(name="bare", xyz=scene.xyz, rgb=scene.rgb)
    with pytest.raises(DataError, match="scene bare has no semantic labels"):
        scene_colors(unlabelled, "semantic", "--ply x.ply")


def test_write_colored_ply_round_trip(tmp_path, scene):
    colors = label_colors(scene.instance)
    path = write_colored_ply(scene, colors, tmp_path / "out" / "boxes.ply")
    ply = PlyData.read(str(path))
    assert not ply.text
    vertex = ply["vertex"]
    assert vertex.count == scene.num_points
    np.testing.assert_allclose(np.column_stack([vertex["x"], vertex["y"], vertex["z"]]), scene.xyz)
    rgb = np.column_stack([vertex["red"], vertex["green"], vertex["blue"]])
    np.testing.assert_array_equal(rgb, np.round(colors * 255).astype(np.uint8))
    np.testing.assert_array_equal(vertex["instance"], scene.instance)
    np.testing.assert_array_equal(vertex["semantic"], scene.semantic)
    with pytest.raises(DataError, match="colors have shape"):
        write_colored_ply(scene, colors[:10], tmp_path / "bad.ply")
    uint_colors = (colors * 255).astype(np.uint8)
    write_colored_ply(scene, uint_colors, tmp_path / "u8.ply")
    vertex = PlyData.read(str(tmp_path / "u8.ply"))["vertex"]
    np.testing.assert_array_equal(vertex["red"], uint_colors[:, 0])
