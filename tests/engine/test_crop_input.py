"""Mask3D's training crop and backbone input (issue 29 item 2): the RandomCuboid rule (engine.data.cuboid_crop) on
hand-made rooms against a brute-force window, its redraws and whole-room fallbacks; colour-only input normalised by a
mean and std against a per-point computation, its channels and checkpoint record, the refusal of a checkpoint of the
other input; and the defaults' samples and records as they were."""

from __future__ import annotations

import json

import numpy as np
import pytest

from freepoint_bench.atomic import stable_hash
from freepoint_bench.data.scene import Scene
from freepoint_bench.data.transforms import voxelize
from freepoint_bench.engine.data import (
    CUBOID_TRIES,
    augment_points,
    crop_points,
    cuboid_crop,
    feature_channels,
    make_sample,
    recorded_input_features,
    recorded_input_settings,
    train_crop,
    voxel_features,
)
from freepoint_bench.engine.presets import (
    MASK3D_SCANNET_COLOR_MEAN,
    MASK3D_SCANNET_COLOR_STD,
    TrainPreset,
    get_preset,
)
from freepoint_bench.errors import CheckpointError, ConfigError

NEW_FIELDS = {"crop", "crop_length_m", "crop_min_points", "color_mean", "color_std"}


class ScriptedOffsets:
    """Stands in for the Generator cuboid_crop draws its centre offsets from: each uniform(low, high) call returns
    low + f (high - low) for the next scripted fractions f (x, y), and records its bounds."""

    def __init__(self, fractions: list[tuple[float, float]]) -> None:
        self.fractions = list(fractions)
        self.bounds: list[tuple[np.ndarray, np.ndarray]] = []

    def uniform(self, low, high):
        low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
        self.bounds.append((low, high))
        f = np.asarray(self.fractions[min(len(self.bounds), len(self.fractions)) - 1])
        return low + f * (high - low)


def in_window(xyz: np.ndarray, centre: tuple[float, float], length: float) -> list[int]:
    """Brute force: the rows whose x and y both lie within length / 2 of the centre, bounds included."""
    half = length / 2
    return [i for i, (x, y, _) in enumerate(xyz.tolist())
            if centre[0] - half <= x <= centre[0] + half and centre[1] - half <= y <= centre[1] + half]


def hall(n: int = 40_000, seed: int = 0) -> np.ndarray:
    """A 20 m x 12 m room, 3 m high: uniform points, a quarter on the floor (z 0), a quarter on the ceiling (z 3),
    two at opposite corners of the box, two on the edges of the central 6 m square."""
    rng = np.random.default_rng(seed)
    xyz = rng.uniform(0, 1, (n, 3)) * [20.0, 12.0, 3.0]
    xyz[: n // 4, 2] = 0.0
    xyz[n // 4: n // 2, 2] = 3.0
    xyz[-4:] = [[7.0, 3.0, 1.5], [13.0, 9.0, 1.5], [0.0, 0.0, 1.0], [20.0, 12.0, 1.0]]
    return xyz


def test_the_cuboid_is_a_full_height_square_whose_centre_is_drawn_within_a_quarter_of_the_room():
    xyz = hall()
    for fractions in [(0.5, 0.5), (0.0, 1.0), (1.0, 0.0), (0.13, 0.71)]:
        rng = ScriptedOffsets([fractions])
        rows = cuboid_crop(xyz, 6.0, 100, rng)
        (low, high), = rng.bounds  # one draw: the first square holds enough points
        assert np.allclose(low, [-5.0, -3.0]) and np.allclose(high, [5.0, 3.0])  # ±1/4 of the 20 x 12 extent
        centre = (10.0 + low[0] + fractions[0] * 10.0, 6.0 + low[1] + fractions[1] * 6.0)
        assert rows.tolist() == in_window(xyz, centre, 6.0)  # sorted rows, the brute-force window
        kept = xyz[rows]
        assert kept[:, 2].min() == 0.0 and kept[:, 2].max() == 3.0  # full height: floor and ceiling kept
        assert np.ptp(kept[:, 0]) <= 6.0 and np.ptp(kept[:, 1]) <= 6.0
        if fractions == (0.5, 0.5):  # the central square [7, 13] x [3, 9]: its bounds are inside
            assert {len(xyz) - 4, len(xyz) - 3} <= set(rows.tolist())
    # the extent is the room's own (not from the origin): a shifted room gives the shifted rows
    rng = ScriptedOffsets([(0.3, 0.8)])
    assert cuboid_crop(xyz + [100.0, -50.0, 7.0], 6.0, 100, rng).tolist() == \
        cuboid_crop(xyz, 6.0, 100, ScriptedOffsets([(0.3, 0.8)])).tolist()
    # a real generator: every centre within the quarter range, the range covered
    centres = []
    for seed in range(200):
        kept = xyz[cuboid_crop(xyz, 6.0, 100, np.random.default_rng(seed))]
        centres.append((kept[:, :2].min(0) + kept[:, :2].max(0)) / 2)  # the window lies inside the room
    centres = np.array(centres)
    assert (centres[:, 0] > 5 - 0.1).all() and (centres[:, 0] < 15 + 0.1).all()
    assert (centres[:, 1] > 3 - 0.1).all() and (centres[:, 1] < 9 + 0.1).all()
    assert np.ptp(centres[:, 0]) > 8 and np.ptp(centres[:, 1]) > 4.5


def test_a_square_short_of_min_points_is_redrawn_then_the_whole_room_is_kept():
    rng = np.random.default_rng(1)
    # a dense 6 m x 6 m corner (4,000 points) in a sparse 24 m x 12 m room (400 more points)
    dense = np.c_[rng.uniform(0, 6, (4000, 2)), rng.uniform(0, 3, 4000)]
    sparse = np.c_[rng.uniform(0, 1, (400, 2)) * [24, 12], rng.uniform(0, 3, 400)]
    xyz = np.concatenate([dense, sparse, [[0, 0, 0], [24, 12, 3]]])
    # the far corner (centre (18, 9)) holds a few dozen points, the near one (centre (6, 3)) half the dense block
    assert len(in_window(xyz, (18, 9), 6)) < 1000 <= len(in_window(xyz, (6, 3), 6))
    scripted = ScriptedOffsets([(1.0, 1.0), (1.0, 1.0), (0.0, 0.0)])
    assert cuboid_crop(xyz, 6.0, 1000, scripted).tolist() == in_window(xyz, (6, 3), 6)
    assert len(scripted.bounds) == 3
    # never enough: CUBOID_TRIES draws, then the whole room
    scripted = ScriptedOffsets([(1.0, 1.0)])
    assert cuboid_crop(xyz, 6.0, 1000, scripted).tolist() == list(range(len(xyz)))
    assert len(scripted.bounds) == CUBOID_TRIES == 100
    # a room of fewer points than min_points: whole, nothing drawn
    scripted = ScriptedOffsets([(0.5, 0.5)])
    assert cuboid_crop(xyz, 6.0, len(xyz) + 1, scripted).tolist() == list(range(len(xyz)))
    assert scripted.bounds == []
    # exactly min_points in the square is enough
    exact = len(in_window(xyz, (6, 3), 6))
    assert cuboid_crop(xyz, 6.0, exact, ScriptedOffsets([(0.0, 0.0)])).tolist() == in_window(xyz, (6, 3), 6)
    # a 4 m room: a 6 m square centred within ±1 m of its centre holds every point, on the first draw
    room = dense * [4 / 6, 4 / 6, 1]
    small = ScriptedOffsets([(1.0, 0.0)])
    assert cuboid_crop(room, 6.0, 100, small).tolist() == list(range(len(room))) and len(small.bounds) == 1


def test_cuboid_samples_are_seeded_train_only_and_capped_by_max_points():
    xyz = hall(30_000)
    scene = Scene(name="hall", xyz=xyz.astype(np.float32), rgb=np.full((len(xyz), 3), 0.5, dtype=np.float32))
    preset = get_preset("cpu-small", crop="cuboid", crop_min_points=2000, max_points=None)
    a = make_sample(scene, preset, rng=np.random.default_rng(3))
    b = make_sample(scene, preset, rng=np.random.default_rng(3))
    c = make_sample(scene, preset, rng=np.random.default_rng(4))
    assert np.array_equal(a["point_index"], b["point_index"]) and np.array_equal(a["feats"], b["feats"])
    assert not np.array_equal(a["point_index"], c["point_index"])
    assert np.array_equal(a["point_index"], cuboid_crop(xyz, 6.0, 2000, np.random.default_rng(3)))
    assert len(make_sample(scene, preset, train=False)["point_index"]) == len(xyz)  # prediction: every point
    # max_points caps the cuboid by the column rule, drawn after the cuboid from the same generator
    capped = preset.with_(max_points=2500)
    rows = train_crop(xyz, capped, np.random.default_rng(3))
    cuboid = cuboid_crop(xyz, 6.0, 2000, np.random.default_rng(3))
    assert len(cuboid) > 2500 and len(rows) == 2500 and np.isin(rows, cuboid).all()
    rng = np.random.default_rng(3)
    first = cuboid_crop(xyz, 6.0, 2000, rng)
    assert np.array_equal(rows, first[crop_points(xyz[first], 2500, rng)])
    assert np.array_equal(make_sample(scene, capped, rng=np.random.default_rng(3))["point_index"], rows)


def test_the_default_column_crop_gives_the_samples_it_gave():
    rng = np.random.default_rng(7)
    xyz = (rng.random((30_000, 3)) * [8, 5, 3]).astype(np.float32)
    scene = Scene(name="s", xyz=xyz, rgb=rng.random((30_000, 3)).astype(np.float32))
    preset = get_preset("cpu-small")  # max_points 20,000: the column crop fires
    assert preset.crop == "column" and preset.input_features == "rgb+xyz"
    for seed in range(3):
        sample = make_sample(scene, preset, rng=np.random.default_rng(seed))
        # the column path as make_sample ran it before crop and rgb existed
        ref = np.random.default_rng(seed)
        index = crop_points(scene.xyz, preset.max_points, ref)
        pts, rgb = augment_points(scene.xyz[index], scene.rgb[index], preset.augment, ref)
        pts = pts - pts.min(axis=0)
        coords, _, inverse = voxelize(pts, preset.voxel_size_m)
        assert np.array_equal(sample["point_index"], index) and np.array_equal(sample["coords"], coords)
        assert np.array_equal(sample["feats"], voxel_features(pts, rgb, inverse, len(coords), preset))
        assert sample["feats"].shape[1] == 6


def test_colour_input_is_the_normalised_colour_alone():
    rng = np.random.default_rng(2)
    xyz, rgb = rng.random((3000, 3)), rng.random((3000, 3))
    inverse = rng.integers(0, 50, 3000)
    mean, std = (0.4, 0.45, 0.5), (0.2, 0.25, 0.3)
    preset = TrainPreset(input_features="rgb", color_mean=mean, color_std=std)  # use_xyz_features True: unread
    feats = voxel_features(xyz, rgb, inverse, 50, preset)
    # Mask3D normalises every point's colour (A.Normalize); here each voxel's mean of them
    expected = np.zeros((50, 3))
    for v in range(50):
        expected[v] = np.mean([(rgb[i] - np.array(mean)) / np.array(std) for i in np.flatnonzero(inverse == v)], 0)
    assert feats.shape == (50, 3) == (50, feature_channels(preset)) and feats.dtype == np.float32
    assert np.allclose(feats, expected, atol=1e-5)
    # the default statistics are Mask3D's ScanNet ones; the features of a whole sample take 3 channels
    scannet = TrainPreset(input_features="rgb", voxel_size_m=0.1)
    assert scannet.color_mean == MASK3D_SCANNET_COLOR_MEAN and scannet.color_std == MASK3D_SCANNET_COLOR_STD
    grey = Scene(name="g", xyz=xyz.astype(np.float32), rgb=np.full((3000, 3), 0.5, dtype=np.float32))
    sample = make_sample(grey, scannet, train=False)
    assert sample["feats"].shape == (len(sample["coords"]), 3)
    assert np.allclose(sample["feats"], (0.5 - np.array(MASK3D_SCANNET_COLOR_MEAN)) / MASK3D_SCANNET_COLOR_STD)
    assert feature_channels(TrainPreset()) == 6 and feature_channels(TrainPreset(use_xyz_features=False)) == 3
    with pytest.raises(ConfigError, match="color_std"):
        get_preset("paper", input_features="rgb", color_std=(0.2, 0.0, 0.2))


def test_the_colour_input_is_recorded_and_read_back_from_a_checkpoint():
    from freepoint_bench.engine.checkpoints import input_metadata

    s3dis = get_preset("paper", input_features="rgb", color_mean=(0.5, 0.5, 0.5), color_std=(0.25, 0.25, 0.25))
    record = json.loads(json.dumps(input_metadata(s3dis)))  # as a checkpoint's metadata stores it
    assert record["features"] == ["rgb"] and record["use_xyz_features"] is False
    assert record["color_mean"] == [0.5, 0.5, 0.5] and record["color_std"] == [0.25, 0.25, 0.25]
    assert recorded_input_features(record) == "rgb"
    settings = recorded_input_settings(record)
    assert settings == {"input_features": "rgb", "color_mean": (0.5, 0.5, 0.5), "color_std": (0.25, 0.25, 0.25)}
    assert TrainPreset(**settings).color_std == s3dis.color_std
    # the other inputs' records are what they were; features "rgb" without statistics is no setting's
    assert recorded_input_settings(input_metadata(TrainPreset())) == {"input_features": "rgb+xyz"}
    assert recorded_input_features({"features": ["rgb"]}) is None
    # prediction and feature extraction rebuild the input from the record (engine.checkpoints.input_preset): the
    # checkpoint's own statistics, not the defaults
    from pathlib import Path

    from freepoint_bench.engine.checkpoints import input_preset

    fed = input_preset({"input": record}, Path("x.ckpt"))
    assert (fed.input_features, fed.color_mean, fed.color_std) == ("rgb", s3dis.color_mean, s3dis.color_std)


def test_a_checkpoint_of_the_other_input_is_refused_for_fine_tuning(tmp_path):
    from freepoint_bench.engine.checkpoints import input_metadata, save_model_checkpoint
    from freepoint_bench.engine.module import segmenter_from_preset
    from freepoint_bench.harness.finetune import load_backbone, settings_that_fit

    xyz_input = get_preset("cpu-small", backbone="tiny", use_xyz_features=False)  # rgb - 0.5: 3 channels too
    colour = xyz_input.with_(input_features="rgb")
    saved = {}
    for name, preset in (("rgbxyz", xyz_input), ("rgb", colour)):
        model = segmenter_from_preset(preset)
        saved[name] = save_model_checkpoint(tmp_path / f"{name}.ckpt", model.backbone,
                                            {"method": "scratch", "input": input_metadata(preset)})
        assert model.backbone.architecture()["in_channels"] == 3
    with pytest.raises(CheckpointError) as e:
        load_backbone(segmenter_from_preset(xyz_input), saved["rgb"], xyz_input)
    text = str(e.value)
    assert "\n" not in text and "trained on the input features rgb and the fine-tuning model feeds rgb+xyz" in text
    assert "pass --set input_features=rgb" in text and "input_features=rgb+" not in text
    with pytest.raises(CheckpointError, match=r"input features rgb and the fine-tuning model feeds rgb; "
                                              r"pass --set input_features=rgb\+xyz$"):
        load_backbone(segmenter_from_preset(colour), saved["rgbxyz"], colour)
    # what harness.run.check_recipe asks of a given checkpoint, before anything trains
    architecture = segmenter_from_preset(colour).backbone.architecture()
    assert settings_that_fit(architecture, input_metadata(xyz_input), architecture, colour)[0] == \
        "input_features=rgb+xyz"
    # the same input under other colour statistics loads: Mask3D fine-tunes its ScanNet weights under S3DIS's
    s3dis = colour.with_(color_mean=(0.5, 0.5, 0.5), color_std=(0.25, 0.25, 0.25))
    assert load_backbone(segmenter_from_preset(s3dis), saved["rgb"], s3dis)["method"] == "scratch"


def test_the_defaults_stay_out_of_every_record():
    for preset in (TrainPreset(), get_preset("paper"), get_preset("cpu-small")):
        assert not NEW_FIELDS & set(preset.model_dump()) and not NEW_FIELDS & set(preset.model_dump(mode="json"))
    paper = get_preset("paper")
    same = paper.with_(crop="column", crop_length_m=6.0, crop_min_points=20_000,
                       color_mean=list(MASK3D_SCANNET_COLOR_MEAN), color_std=MASK3D_SCANNET_COLOR_STD)
    assert stable_hash(same.model_dump(mode="json")) == stable_hash(paper.model_dump(mode="json"))
    changed = paper.with_(crop="cuboid", input_features="rgb", color_mean=(0.5, 0.5, 0.5))
    dumped = changed.model_dump(mode="json")
    assert dumped["crop"] == "cuboid" and dumped["color_mean"] == [0.5, 0.5, 0.5] and "color_std" not in dumped
    assert TrainPreset.model_validate(json.loads(json.dumps(dumped))) == changed
