"""Input features of the data path (engine.data.voxel_features, used by training and prediction alike): Pointcept's
colour and PCA normals (rgb+normal) against analytic normals, their record in a checkpoint, and that the default
leaves every TrainPreset record as it was."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from freepoint_bench.atomic import stable_hash
from freepoint_bench.data.scene import Scene
from freepoint_bench.engine.checkpoints import input_metadata, input_preset
from freepoint_bench.engine.data import feature_channels, make_sample, recorded_input_features, voxel_features
from freepoint_bench.engine.presets import TrainPreset, get_preset
from freepoint_bench.errors import CheckpointError

NORMAL = get_preset("cpu-small", voxel_size_m=0.02, input_features="rgb+normal")


def _scene(xyz: np.ndarray, rgb: float = 0.25) -> Scene:
    return Scene(name="s", xyz=xyz.astype(np.float32), rgb=np.full((len(xyz), 3), rgb, dtype=np.float32))


def test_a_tilted_planes_voxels_get_its_normal():
    rng = np.random.default_rng(0)
    uv = rng.random((30_000, 2)) * 1.5
    normal = np.array([0.3, -0.2, 1.0]) / np.linalg.norm([0.3, -0.2, 1.0])
    # z = -(0.3 x - 0.2 y): the plane through the origin with that normal (offset so coordinates stay positive)
    xyz = np.c_[uv, -(normal[0] * uv[:, 0] + normal[1] * uv[:, 1]) / normal[2] + 1.0]
    sample = make_sample(_scene(xyz), NORMAL, train=False)
    feats = sample["feats"]
    assert feats.shape == (len(sample["coords"]), 6) == (len(sample["coords"]), feature_channels(NORMAL))
    assert np.allclose(feats[:, :3], 0.25 * 2 - 1)  # Pointcept's colour range: color / 127.5 - 1
    cos = np.abs(feats[:, 3:] @ normal)  # voxel means of coplanar points are coplanar: exact up to float32
    assert cos.min() > 0.9999, cos.min()


def test_a_spheres_voxels_get_radial_normals_facing_its_centre():
    rng = np.random.default_rng(1)
    v = rng.normal(size=(60_000, 3))
    centre = np.array([0.7, 0.7, 0.7])
    xyz = centre + 0.5 * v / np.linalg.norm(v, axis=1, keepdims=True)
    sample = make_sample(_scene(xyz), NORMAL, train=False)
    centres = np.stack([np.bincount(sample["inverse"], sample["xyz"][:, i]) for i in range(3)], 1)
    centres /= np.bincount(sample["inverse"])[:, None]
    inward = sample["xyz"].mean(axis=0) - centres  # make_sample shifts xyz; the centre moves with it
    inward /= np.linalg.norm(inward, axis=1, keepdims=True)
    cos = np.einsum("ij,ij->i", sample["feats"][:, 3:], inward)
    # measured: median 0.99998, 1st percentile 0.99988, min 0.99977 over 9,767 voxels of a 0.5 m sphere
    assert np.median(cos) > 0.9999 and np.percentile(cos, 1) > 0.999 and cos.min() > 0.999


def test_default_features_are_the_projects_and_normals_turn_with_the_points():
    rng = np.random.default_rng(2)
    xyz, rgb = rng.random((5000, 3)), rng.random((5000, 3))
    inverse = rng.integers(0, 40, 5000)
    plain = voxel_features(xyz, rgb, inverse, 40, TrainPreset(use_xyz_features=False))
    assert np.allclose(plain, np.stack([np.bincount(inverse, rgb[:, i]) for i in range(3)], 1)
                       / np.bincount(inverse)[:, None] - 0.5, atol=1e-6)
    # rotating the points rotates their normals (computed from the geometry as fed, after augmentation)
    uv = rng.random((20_000, 2))
    curved = np.c_[uv, 0.3 * np.sin(2 * uv[:, 0])] + 1
    a = np.deg2rad(40)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    ids = np.arange(len(curved))
    n0 = voxel_features(curved, curved, ids, len(ids), NORMAL)[:, 3:]
    n1 = voxel_features(curved @ rot.T, curved, ids, len(ids), NORMAL)[:, 3:]
    assert np.median(np.abs(np.einsum("ij,ij->i", n0 @ rot.T, n1))) > 0.9999


def test_the_record_drives_prediction_and_defaults_stay_out_of_every_hash():
    meta = {"input": input_metadata(NORMAL)}
    assert meta["input"]["features"] == ["color", "normal"] and meta["input"]["color_range"] == [-1.0, 1.0]
    assert input_preset(meta, Path("x.ckpt")).input_features == "rgb+normal"  # engine.predict's preset
    assert "features" not in input_metadata(TrainPreset())
    assert input_preset({"input": input_metadata(TrainPreset())}, Path("x.ckpt")).input_features == "rgb+xyz"
    imported = {"voxel_size_m": 0.02, "use_xyz_features": False, "features": ["color", "normal"],
                "color_range": [-1.0, 1.0], "backend": "spconv"}  # engine.pointcept_import's record
    assert recorded_input_features(imported) == "rgb+normal"
    with pytest.raises(CheckpointError, match=r"records input features \['color'\], which no input_features"):
        input_preset({"input": {**imported, "features": ["color"]}}, Path("x.ckpt"))
    # widen and input_features are left out of a TrainPreset's record at their defaults (the paper preset's input is
    # Mask3D's colour alone, so it records input_features)
    paper = get_preset("paper", input_features="rgb+xyz")
    assert not {"widen", "input_features"} & set(paper.model_dump())
    assert get_preset("paper").model_dump()["input_features"] == "rgb"
    assert stable_hash(paper.model_dump()) == stable_hash(paper.with_(widen="block").model_dump())
    changed = paper.with_(widen="down", input_features="rgb+normal").model_dump()
    assert changed["widen"] == "down" and changed["input_features"] == "rgb+normal"
    assert TrainPreset.model_validate(changed) == paper.with_(widen="down", input_features="rgb+normal")
