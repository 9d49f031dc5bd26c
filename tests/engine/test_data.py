"""Training data: samples, targets at voxel and point level, seeding, batching, empty-target scenes."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from freepoint_bench.engine.data import (
    EpochSampler,
    GroundTruthTargets,
    SceneDataModule,
    SceneDataset,
    Targets,
    collate,
    crop_points,
    feature_channels,
    make_sample,
)
from freepoint_bench.engine.presets import get_preset
from freepoint_bench.errors import DataError

PRESET = get_preset("cpu-small", voxel_size_m=0.1, batch_size=2, max_points=None)


class ArrayTargets:
    """Targets from a dict name → (N,) labels (pseudo-label stand-in)."""

    def __init__(self, labels: dict[str, np.ndarray]) -> None:
        self.labels = labels

    def __call__(self, scene):
        return Targets(instance=self.labels[scene.name])

    def describe(self) -> dict:
        return {"kind": "test"}


def test_sample_without_augmentation_matches_independent_voxelisation(make_room):
    scene = make_room(0)
    s = make_sample(scene, PRESET, GroundTruthTargets()(scene), train=False)
    expected = np.unique(np.floor((scene.xyz - scene.xyz.min(0)) / 0.1).astype(np.int64), axis=0)
    assert len(s["coords"]) == len(expected)
    assert s["feats"].shape == (len(expected), feature_channels(PRESET))
    # every point's voxel holds the point
    vox_of_point = s["coords"][s["inverse"]]
    assert np.array_equal(vox_of_point, np.floor((scene.xyz - scene.xyz.min(0)) / 0.1).astype(np.int64))
    # one voxel mask per box; each box's points map (mostly) into its mask
    assert s["masks"].shape == (3, len(expected))
    for k in range(3):
        pts = scene.instance == k
        assert s["masks"][k][s["inverse"][pts]].mean() > 0.8
        assert (s["loss_target"][pts] == k).all()
    assert (s["loss_target"][scene.instance == -1] == -1).all()
    assert np.allclose(s["loss_xyz"], scene.xyz - scene.xyz.min(0))  # metres, shifted
    assert np.array_equal(s["classes"], np.zeros(3))


def test_semantic_classes_by_majority(make_room):
    scene = make_room(0)
    s = make_sample(scene, PRESET, GroundTruthTargets(class_agnostic=False)(scene), train=False)
    assert s["classes"].tolist() == [5, 6, 5]


def test_augmentation_is_seeded_by_epoch_and_index(rooms):
    ds = SceneDataset(rooms, rooms.names(), GroundTruthTargets(), PRESET)
    a, b, c = ds[(0, 0)], ds[(0, 0)], ds[(1, 0)]
    assert np.array_equal(a["feats"], b["feats"]) and np.array_equal(a["coords"], b["coords"])
    assert not (len(a["coords"]) == len(c["coords"]) and np.array_equal(a["coords"], c["coords"]))


def test_crop_keeps_the_nearest_column():
    rng = np.random.default_rng(0)
    xyz = rng.uniform(0, 10, (1000, 3))
    idx = crop_points(xyz, 100, np.random.default_rng(1))
    assert len(idx) == 100 and len(np.unique(idx)) == 100
    centre_idx = np.random.default_rng(1).integers(1000)
    d = np.linalg.norm(xyz[:, :2] - xyz[centre_idx, :2], axis=1)
    assert d[idx].max() <= np.sort(d)[99] + 1e-12


def test_loss_points_are_capped(make_room):
    scene = make_room(0)
    preset = PRESET.with_(max_loss_points=300)
    s = make_sample(scene, preset, GroundTruthTargets()(scene), rng=np.random.default_rng(0), train=True)
    assert len(s["loss_xyz"]) == len(s["loss_inverse"]) == len(s["loss_target"]) == 300


def test_collate_batches_variable_size_scenes(rooms):
    ds = SceneDataset(rooms, rooms.names(), GroundTruthTargets(), PRESET)
    samples = [ds[0], ds[1]]
    out = collate(samples)
    batch, sizes = out["batch"], [len(s["coords"]) for s in samples]
    assert sizes[0] != sizes[1]
    assert batch.coords.shape == (sum(sizes), 4) and batch.coords.dtype == torch.int32
    assert batch.coords[: sizes[0], 0].eq(0).all() and batch.coords[sizes[0]:, 0].eq(1).all()
    assert torch.equal(batch.coords[sizes[0]:, 1:], torch.from_numpy(samples[1]["coords"]))
    assert batch.feats.shape[0] == sum(sizes)
    assert out["voxel_counts"].tolist() == sizes
    assert [len(t.masks) for t in out["targets"]] == [3, 2]
    assert [m.shape for m in out["voxel_masks"]] == [(3, sizes[0]), (2, sizes[1])]
    for b, s in enumerate(samples):
        n_loss = len(s["loss_target"])
        assert batch.point_to_voxel[b].shape == (n_loss,) and batch.point_xyz[b].shape == (n_loss, 3)
        assert out["targets"][b].masks.shape == (len(s["classes"]), n_loss)
        # the point masks are the scene's own instances (not their voxelised version)
        scene = rooms.load(rooms.names()[b])
        for k in range(len(s["classes"])):
            assert torch.equal(out["targets"][b].masks[k], torch.from_numpy(scene.instance == k))


def test_collate_without_targets_keeps_every_point(make_room):
    scene = make_room(0)
    out = collate([make_sample(scene, PRESET, None, train=False)])
    assert out["targets"] is None
    assert out["batch"].point_to_voxel[0].shape == (scene.num_points,)


def test_sampler_is_seeded_per_epoch_and_covers_every_scene():
    s = EpochSampler(7, seed=4)
    first = list(s)
    assert sorted(i for _, i in first) == list(range(7)) and {e for e, _ in first} == {0}
    s.set_epoch(1)
    second = list(s)
    assert {e for e, _ in second} == {1} and [i for _, i in second] != [i for _, i in first]
    s.set_epoch(0)
    assert list(s) == first


def test_datamodule_batches_and_skips_scenes_without_targets(rooms, caplog, make_room, store_of):
    empty = make_room(2)
    store = store_of([*rooms.scenes.values(), empty])
    labels = {n: store.scenes[n].instance for n in rooms.names()}
    labels[empty.name] = np.full(empty.num_points, -1)
    dm = SceneDataModule(store, store.names(), ArrayTargets(labels), PRESET)
    with caplog.at_level(logging.WARNING):
        dm.setup("fit")
    assert dm.train_set.names == rooms.names()
    assert "room2" in caplog.text
    batches = list(dm.train_dataloader())
    assert len(batches) == 1 and sorted(batches[0]["names"]) == rooms.names()


def test_all_targets_empty_is_a_data_error(rooms):
    labels = {n: np.full(s.num_points, -1) for n, s in rooms.scenes.items()}
    dm = SceneDataModule(rooms, rooms.names(), ArrayTargets(labels), PRESET)
    with pytest.raises(DataError, match="none of the 2 scenes"):
        dm.setup("fit")


def test_ground_truth_needs_instances(make_room):
    scene = make_room(0).with_(instance=None, semantic=None)
    with pytest.raises(DataError, match="room0"):
        GroundTruthTargets()(scene)
