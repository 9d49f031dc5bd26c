"""RANSAC plane removal: floor and walls out, objects in; all-planes scene; patch check."""

from __future__ import annotations

import numpy as np
import pytest

from freepoint_bench.errors import ConfigError
from freepoint_bench.geometry.planes import remove_planes


def _floor_wall_box(seed: int = 0):
    rng = np.random.default_rng(seed)
    floor = np.c_[rng.random((3000, 2)) * 4, np.zeros(3000)]
    wall = np.c_[np.zeros(1500), rng.random(1500) * 4, rng.random(1500) * 2]
    # A 0.4 m box on the floor, five faces, denser than the floor.
    faces = []
    for _ in range(5):
        faces.append(rng.random((200, 3)) * 0.4 + [1.8, 1.8, 0.0])
    box = np.concatenate(faces)
    box[:200, 2] = 0.4  # top face
    xyz = np.concatenate([floor, wall, box]) + rng.normal(0, 0.002, (5500, 3))
    is_box = np.r_[np.zeros(4500, bool), np.ones(1000, bool)]
    return xyz, is_box


def test_floor_and_wall_removed_box_kept():
    xyz, is_box = _floor_wall_box()
    seg = remove_planes(xyz, distance_threshold=0.02, min_plane_points=300, min_plane_fraction=0.05, seed=0)
    assert seg.foreground.shape == (len(xyz),) and seg.foreground.dtype == bool
    assert not seg.foreground[~is_box].any()  # floor and wall gone
    assert seg.foreground[is_box].mean() > 0.9  # only the box's bottom rim lies on the floor plane
    assert len(seg.planes) == 2 and np.allclose(np.linalg.norm(seg.planes[:, :3], axis=1), 1)
    normals = np.abs(seg.planes[:, :3])
    assert {int(np.argmax(n)) for n in normals} == {0, 2}  # a wall x = 0 and a floor z = 0
    assert seg.inlier_counts.sum() == (~seg.foreground).sum()


def test_seeded_runs_repeat():
    xyz, _ = _floor_wall_box(1)
    a = remove_planes(xyz, seed=3, min_plane_points=300)
    b = remove_planes(xyz, seed=3, min_plane_points=300)
    assert np.array_equal(a.foreground, b.foreground)


def test_all_planes_gives_empty_foreground():
    rng = np.random.default_rng(0)
    floor = np.c_[rng.random((2000, 2)) * 3, np.zeros(2000)]
    wall = np.c_[rng.random(2000) * 3, np.zeros(2000), rng.random(2000) * 2]
    seg = remove_planes(np.concatenate([floor, wall]), min_plane_points=100, min_plane_fraction=0.01)
    assert not seg.foreground.any()


def test_patch_check_keeps_small_coplanar_patches():
    # A big floor and, far away, a small separate patch at the same height (e.g. a low shelf board):
    # plain RANSAC removes both, the patch check only the floor.
    rng = np.random.default_rng(2)
    floor = np.c_[rng.random((4000, 2)) * 3, np.zeros(4000)]
    patch = np.c_[rng.random((150, 2)) * 0.3 + 5.0, np.zeros(150)]
    blob = rng.normal([1.5, 1.5, 1.0], 0.1, (600, 3))
    xyz = np.concatenate([floor, patch, blob])
    kw = dict(distance_threshold=0.01, min_plane_points=500, min_plane_fraction=0.0, seed=0)
    plain = remove_planes(xyz, grid_size=None, **kw).foreground
    patched = remove_planes(xyz, grid_size=0.2, **kw).foreground
    assert not plain[4000:4150].any()
    assert patched[4000:4150].all() and not patched[:4000].any()


def test_bad_parameters():
    with pytest.raises(ConfigError):
        remove_planes(np.zeros((10, 3)), distance_threshold=0)


def _rule_counts(scene, seg):
    from freepoint_bench.geometry.planes import RULES

    parts = scene.meta["parts"]
    return {
        part: {RULES[k]: int(c) for k, c in enumerate(np.bincount(seg.removed_by[scene.instance == i], minlength=6))}
        for i, part in parts.items()
    }


def test_rules_strip_structure_and_loaded_table_tops_but_keep_faces():
    from freepoint_bench.freepoint.probes import support_probe_scene

    scene = support_probe_scene(0)
    n = scene.num_points
    seg = remove_planes(scene.xyz, distance_threshold=0.05, min_plane_points=500, min_plane_fraction=0.03,
                        grid_size=0.1, seed=0, rules=True)
    counts = _rule_counts(scene, seg)
    kept = {p: seg.foreground[scene.instance == i].mean() for i, p in scene.meta["parts"].items()}
    assert counts["floor"]["floor"] == (scene.instance == 0).sum()
    assert counts["ceiling"]["ceiling"] == (scene.instance == 1).sum()
    for wall in ("wall_x0", "wall_x5", "wall_y0", "wall_y4"):
        assert kept[wall] == 0 and counts[wall]["wall"] > 0.9 * sum(counts[wall].values())
    assert counts["table_top"]["support"] > 0.7 * sum(counts["table_top"].values())  # the box stands on it
    assert kept["box_on_table"] > 0.75 and kept["empty_table_top"] == 1.0  # nothing on it: it stays
    assert kept["cabinet"] > 0.85 and counts["cabinet"]["support"] == 0  # 1 m tall face, not a wall
    assert kept["floor_box"] > 0.85 and kept["table_legs"] > 0.85
    assert (seg.removed_by > 0).sum() == (~seg.foreground).sum() == seg.inlier_counts.sum()
    assert len(seg.foreground) == n
    again = remove_planes(scene.xyz, distance_threshold=0.05, min_plane_points=500, min_plane_fraction=0.03,
                          grid_size=0.1, seed=0, rules=True)
    assert np.array_equal(seg.removed_by, again.removed_by)  # seeded: the same cut every run


def test_without_rules_every_large_patch_goes_and_is_marked_plane():
    from freepoint_bench.freepoint.probes import support_probe_scene

    scene = support_probe_scene(0)
    seg = remove_planes(scene.xyz, distance_threshold=0.05, min_plane_points=500, min_plane_fraction=0.03,
                        grid_size=0.1, seed=0)
    assert set(np.unique(seg.removed_by)) == {0, 1}  # kept or "plane"
    kept = {p: seg.foreground[scene.instance == i].mean() for i, p in scene.meta["parts"].items()}
    assert kept["cabinet"] < 0.8  # plain removal takes the cabinet's front with it


def test_missing_open3d_is_a_config_error_naming_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "open3d", None)  # what an install without the cpu / cuda extra has
    with pytest.raises(ConfigError, match=r"pip install -e '\.\[cpu\]'"):
        remove_planes(np.zeros((10, 3)))
