"""Mask3D's colour statistics (data.colour_stats) against a direct computation, and `bench.py data color-stats`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from freepoint_bench.config import parse_overrides
from freepoint_bench.data.colour_stats import colour_mean_std
from freepoint_bench.data.scene import Scene
from freepoint_bench.data.synthetic import SyntheticConfig, write_synthetic_s3dis
from freepoint_bench.engine.presets import TrainPreset
from freepoint_bench.errors import DataError


def _scene(name: str, rgb255: np.ndarray, **meta) -> Scene:
    return Scene(name=name, xyz=np.zeros((len(rgb255), 3), np.float32), rgb=rgb255 / 255.0, meta=meta)


def _mask3d(rooms: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mask3D's s3dis_preprocessing.py written out: process_file's per-room mean of c / 255 and of (c / 255)²,
    then compute_color_mean_std's mean of the room means and sqrt(mean of the room squares - mean²)."""
    room_mean = np.array([(c / 255).mean(axis=0) for c in rooms])
    room_sq = np.array([((c / 255) ** 2).mean(axis=0) for c in rooms])
    mean = room_mean.mean(axis=0)
    return mean, np.sqrt(room_sq.mean(axis=0) - mean**2)


def test_rooms_weigh_the_same_whatever_their_size():
    rng = np.random.default_rng(0)
    rooms = [rng.integers(0, 256, (n, 3)).astype(np.float64) for n in (5, 40, 1000)]
    rooms[0][:] = [250, 10, 128]  # a small, bright-red room: pulls the per-room mean, barely the per-point one
    stats = colour_mean_std([_scene(f"Area_{i}/r", c) for i, c in enumerate(rooms)])
    mean, std = _mask3d(rooms)
    np.testing.assert_allclose(stats.mean, mean, rtol=1e-6)
    np.testing.assert_allclose(stats.std, std, rtol=1e-6)
    assert stats.num_scenes == 3
    per_point = np.concatenate(rooms).mean(axis=0) / 255
    assert abs(stats.mean[0] - per_point[0]) > 0.05  # not the per-point statistic


def test_progress_reports_each_scene():
    seen = []
    rooms = [np.full((4, 3), 10.0 * (i + 1)) for i in range(3)]
    colour_mean_std((_scene(f"s{i}", c) for i, c in enumerate(rooms)), progress=lambda d, n: seen.append((d, n)))
    assert seen == [(1, "s0"), (2, "s1"), (3, "s2")]


@pytest.mark.parametrize(
    "scenes, message",
    [
        ([], "no scenes"),
        ([_scene("grey", np.full((10, 3), 127.5), no_rgb=True)], "grey: scene has no colours"),
        ([_scene("a", np.tile([[10.0, 0, 0], [20, 0, 0]], (5, 1))), _scene("b", np.full((3, 3), 0.0))],
         "std is 0 in channel g, b"),
    ],
)
def test_errors(scenes, message):
    with pytest.raises(DataError, match=message):
        colour_mean_std(scenes)


@pytest.fixture(scope="module")
def s3dis_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("s3dis")
    write_synthetic_s3dis(root, 6, seed=1, config=SyntheticConfig(num_points=600))  # one room per area
    return root


def _set_values(out: str) -> dict:
    words = out.split()
    return parse_overrides([words[i + 1] for i, w in enumerate(words) if w == "--set"])


def test_cli_protocol_training_areas_paste_into_the_preset(bench_cli, s3dis_root, tmp_path):
    from freepoint_bench.data.open import open_dataset

    cache, out_json = tmp_path / "cache", tmp_path / "stats.json"
    code, out, err = bench_cli("data", "color-stats", "--dataset", "s3dis", "--root", s3dis_root, "--cache", cache,
                               "--protocol", "s3dis-10pct-masks", "--json", out_json)
    assert code == 0, err
    assert "5 scenes of Area_1, Area_2, Area_3, Area_4, Area_6" in out
    values = _set_values(out)
    preset = TrainPreset(input_features="rgb", **values)  # what --set gives the preset parses back
    store, names = open_dataset("s3dis", s3dis_root, cache)
    rooms = [store.load(n).rgb.astype(np.float64) * 255 for n in names if not n.startswith("Area_5/")]
    mean, std = _mask3d(rooms)
    np.testing.assert_allclose(preset.color_mean, mean, rtol=1e-6)
    np.testing.assert_allclose(preset.color_std, std, rtol=1e-6)
    doc = json.loads(out_json.read_text())
    assert doc["color_mean"] == list(values["color_mean"]) and doc["scenes"] == 5

    code, out, _ = bench_cli("data", "color-stats", "--dataset", "s3dis", "--root", s3dis_root, "--cache", cache,
                             "--group", "Area_5")
    assert code == 0 and "1 scenes of Area_5" in out
    area5 = [store.load(n).rgb.astype(np.float64) * 255 for n in names if n.startswith("Area_5/")]
    np.testing.assert_allclose(_set_values(out)["color_mean"], _mask3d(area5)[0], rtol=1e-6)


def test_cli_synthetic_every_scene(bench_cli, tmp_path):
    code, out, err = bench_cli("data", "color-stats", "--dataset", "synthetic", "--cache", tmp_path / "cache")
    assert code == 0, err
    preset = TrainPreset(input_features="rgb", **_set_values(out))
    assert all(0 < m < 1 for m in preset.color_mean) and all(0 < s < 1 for s in preset.color_std)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--group", "Area_9"], "no scenes of the groups Area_9"),
        (["--group", "Area_1", "--protocol", "s3dis-10pct-masks"], "give one of them"),
        (["--protocol", "scannet-de-lr1-insseg"], "give --dataset scannet"),
    ],
)
def test_cli_errors_are_one_line(bench_cli, s3dis_root, tmp_path, extra, message):
    code, _, err = bench_cli("data", "color-stats", "--dataset", "s3dis", "--root", s3dis_root,
                             "--cache", tmp_path / "cache", *extra)
    assert code == 2 and message in err and "Traceback" not in err
