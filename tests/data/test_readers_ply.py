"""PLY / NPZ reader for users' own scans, and the write_ply helper."""

from __future__ import annotations

import numpy as np
import pytest
from plyfile import PlyData, PlyElement

from freepoint_bench.data.readers import get_reader
from freepoint_bench.data.readers.ply import PlyReader, read_point_file, write_ply
from freepoint_bench.errors import DataError


def _cloud(n: int = 25, seed: int = 0):
    rng = np.random.default_rng(seed)
    xyz = rng.normal(size=(n, 3)).astype(np.float32)
    rgb = rng.integers(0, 256, (n, 3)) / 255.0
    normals = rng.normal(size=(n, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    return xyz, rgb, normals.astype(np.float32)


def _write_vertices(path, columns: dict[str, np.ndarray], text: bool = False):
    dtype = [(k, v.dtype.str) for k, v in columns.items()]
    vertex = np.empty(len(next(iter(columns.values()))), dtype=dtype)
    for k, v in columns.items():
        vertex[k] = v
    PlyData([PlyElement.describe(vertex, "vertex")], text=text).write(str(path))


def test_write_ply_round_trip_is_binary_little_endian(tmp_path):
    xyz, rgb, normals = _cloud()
    path = write_ply(tmp_path / "scan.ply", xyz, rgb, normals)
    ply = PlyData.read(str(path))
    assert ply.byte_order == "<" and not ply.text
    assert ply["vertex"]["red"].dtype == np.uint8
    scene = get_reader("ply").read_scene(tmp_path, "scan")
    np.testing.assert_array_equal(scene.xyz, xyz)
    np.testing.assert_allclose(scene.rgb, rgb, atol=0.5 / 255 + 1e-7)
    np.testing.assert_allclose(scene.normals, normals, atol=1e-6)
    assert scene.meta["no_rgb"] is False and scene.semantic is None


def test_missing_colours_become_grey_and_are_flagged(tmp_path):
    xyz, _, _ = _cloud()
    write_ply(tmp_path / "plain.ply", xyz, None)
    scene = PlyReader().read_scene(tmp_path, "plain")
    assert scene.meta["no_rgb"] is True and np.all(scene.rgb == 0.5) and scene.normals is None


@pytest.mark.parametrize(
    ("dtype", "values", "expected"),
    [
        (np.uint8, [0, 1, 255], [0, 1 / 255, 1]),  # uchar is 0..255 even when every value is <= 1
        (np.float32, [0.0, 0.5, 1.0], [0, 0.5, 1]),  # float within 0..1 stays
        (np.float32, [0.0, 128.0, 255.0], [0, 128 / 255, 1]),  # float beyond 1 is 0..255
    ],
)
def test_colour_types(tmp_path, dtype, values, expected):
    xyz = np.zeros((3, 3), dtype=np.float32)
    cols = np.asarray(values, dtype=dtype)
    _write_vertices(
        tmp_path / "c.ply",
        {"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2], "red": cols, "green": cols, "blue": cols},
        text=True,
    )
    scene = read_point_file(tmp_path / "c.ply")
    np.testing.assert_allclose(scene.rgb[:, 0], expected, atol=1e-6)


def test_npz_with_optional_labels_and_unnormalised_normals(tmp_path):
    xyz, rgb, normals = _cloud(seed=1)
    semantic = np.arange(25) % 3 - 1
    np.savez(
        tmp_path / "a.npz",
        xyz=xyz,
        rgb=(rgb * 255).astype(np.uint8),
        normals=normals * 3.0,
        semantic=semantic,
    )
    np.savez(tmp_path / "b.npz", xyz=xyz)
    reader = PlyReader()
    assert reader.list_scenes(tmp_path) == ["a", "b"]
    a = reader.read_scene(tmp_path, "a")
    np.testing.assert_allclose(a.rgb, rgb, atol=1e-6)
    np.testing.assert_allclose(a.normals, normals, atol=1e-6)
    np.testing.assert_array_equal(a.semantic, semantic)
    assert a.instance is None
    assert reader.read_scene(tmp_path, "b").meta["no_rgb"] is True
    assert reader.list_scenes(tmp_path / "a.npz") == ["a"]  # a single file works as root


def test_ply_and_npz_bad_input(tmp_path):
    reader = PlyReader()
    with pytest.raises(DataError, match="does not exist"):
        reader.list_scenes(tmp_path / "nope")
    with pytest.raises(DataError, match="no \\*.ply or \\*.npz"):
        reader.list_scenes(tmp_path)
    np.savez(tmp_path / "k.npz", points=np.zeros((3, 3)))
    with pytest.raises(DataError, match="k.npz: no 'xyz' array \\(keys: \\['points'\\]\\)"):
        reader.read_scene(tmp_path, "k")
    (tmp_path / "broken.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 9\n")
    with pytest.raises(DataError, match="broken.ply: not a readable PLY"):
        reader.read_scene(tmp_path, "broken")
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DataError, match="broken.npz and broken.ply .*rename one"):
        reader.list_scenes(tmp_path)
    (tmp_path / "broken.ply").unlink()
    with pytest.raises(DataError, match="broken.npz: not a readable .npz"):
        reader.read_scene(tmp_path, "broken")
    _write_vertices(tmp_path / "noz.ply", {"x": np.zeros(2, "f4"), "y": np.zeros(2, "f4")})
    with pytest.raises(DataError, match="noz.ply: PLY vertices lack x/y/z"):
        reader.read_scene(tmp_path, "noz")
    np.savez(tmp_path / "nan.npz", xyz=np.array([[0, 0, np.nan]]))
    with pytest.raises(DataError, match="nan.npz.*NaN"):
        reader.read_scene(tmp_path, "nan")
    with pytest.raises(DataError, match="rgb has shape"):
        write_ply(tmp_path / "x.ply", np.zeros((2, 3)), np.zeros((3, 3)))
