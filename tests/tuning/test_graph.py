"""The split pipeline (graph once, labels per α/σ) gives exactly what generate_pseudo_labels gives."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from freepoint_bench.data.synthetic import SyntheticConfig, generate_room
from freepoint_bench.freepoint.config import PseudoLabelConfig
from freepoint_bench.freepoint.pipeline import generate_pseudo_labels
from freepoint_bench.tuning.graph import (
    GRAPH_FIELDS,
    LABEL_FIELDS,
    GraphCache,
    build_scene_graph,
    graph_key,
    labels_from_graph,
)

FAST = {"plane_ransac_iterations": 60, "plane_fit_points": 1500, "plane_min_points": 100}


@pytest.fixture(scope="module")
def room():
    return generate_room(1, SyntheticConfig(num_points=3000))


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"alpha_norm": 1.0, "alpha_xyz": 0.2, "alpha_rgb": 0.0, "k1": 6, "solver": "gaec-kl"},
        {"alpha_rgb": 2.0, "plane_distance_threshold": 0.02, "min_segment_size": 10},
        {"superpoints": True, "normal_affinity": "abs", "superpoint_threshold": 0.1},
    ],
)
def test_split_pipeline_matches_generate_pseudo_labels(room, overrides):
    config = PseudoLabelConfig(**FAST).with_overrides(overrides)
    expected = generate_pseudo_labels(room, config, sigmas=(0.7, 0.9, 1.2)).labels
    got = labels_from_graph(build_scene_graph(room, config), config, (0.7, 0.9, 1.2))
    assert set(got) == set(expected)
    for sigma in expected:
        assert got[sigma].dtype == np.int64
        np.testing.assert_array_equal(got[sigma], expected[sigma])
    assert max(lab.max() for lab in got.values()) >= 1  # the room has objects: not a trivial all -1


def test_split_pipeline_matches_with_deep_features_and_without_colours(room):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(room.num_points, 5)).astype(np.float32)
    grey = dataclasses.replace(room, meta={**room.meta, "no_rgb": True})
    config = PseudoLabelConfig(**FAST, alpha_emb=0.7)
    for scene, feats in ((room, features), (grey, None), (grey, features)):
        expected = generate_pseudo_labels(scene, config, features=feats).labels
        got = labels_from_graph(build_scene_graph(scene, config, feats), config)
        for sigma in expected:
            np.testing.assert_array_equal(got[sigma], expected[sigma])


def test_all_plane_scene_gives_background(room):
    flat = dataclasses.replace(
        room,
        xyz=np.c_[room.xyz[:, :2], np.zeros(room.num_points)].astype(np.float32),
        normals=None,
    )
    config = PseudoLabelConfig(**FAST, plane_grid_size=0.0)
    graph = build_scene_graph(flat, config)
    labels = labels_from_graph(graph, config)
    assert graph.num_sampled == 0
    assert all((lab == -1).all() and lab.shape == (flat.num_points,) for lab in labels.values())


def test_graph_cache_reuses_graphs_until_a_graph_field_changes(room):
    calls = []

    def features_fn(scene):
        calls.append(scene.name)
        return np.ones((scene.num_points, 2), dtype=np.float32)

    cache = GraphCache(max_entries=2, features_fn=features_fn)
    base = PseudoLabelConfig(**FAST)
    first = cache.get(room, base)
    assert cache.get(room, base.with_overrides({"alpha_xyz": 3.0, "sigma_low": 0.5})) is first
    assert graph_key(base) != graph_key(base.with_overrides({"k1": 5}))
    other = cache.get(room, base.with_overrides({"k1": 5}))
    assert other is not first and len(other.edges) > len(first.edges)
    assert (cache.hits, cache.misses) == (1, 2)
    cache.get(room, base.with_overrides({"k1": 6}))  # evicts the least recently used (k1=4)
    assert cache.get(room, base) is not first
    assert calls == [room.name]  # deep features computed once per scene


def test_every_config_field_is_a_graph_or_a_label_field():
    # A field missing from GRAPH_FIELDS would let GraphCache hand a trial a graph built under another value.
    ranking_only = {"mask_score", "sigma_high"}  # ranks masks / names the second σ: no effect on σ_low labels
    fields = set(PseudoLabelConfig.model_fields)
    assert fields == set(GRAPH_FIELDS) | set(LABEL_FIELDS) | ranking_only
    assert not set(GRAPH_FIELDS) & set(LABEL_FIELDS)


def test_stage_timings_cover_the_run(room):
    result = generate_pseudo_labels(room, PseudoLabelConfig(**FAST, superpoints=True), sigmas=(0.9, 1.2))
    stages = ["planes", "fps", "features", "graph", "affinities", "superpoints", "multicut", "vote"]
    assert list(result.timings) == [*stages, "total"]
    assert all(result.timings[s] >= 0 for s in stages)
    assert sum(result.timings[s] for s in stages) <= result.timings["total"]
    assert sum(result.timings[s] for s in stages) >= 0.9 * result.timings["total"]
