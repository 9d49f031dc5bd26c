"""ScanNet RGB-D frame readers on a box room rendered from known poses: a .sens packed by hand from the format's
description and a SensReader-style folder written by hand read back onto the room's walls, equal between layouts;
every-k sampling, invalid poses, malformed files, and frame-pair selection against brute force."""

from __future__ import annotations

import io
import logging
import struct
import zlib

import numpy as np
import pytest
from PIL import Image
from synthetic_frames import FACE_COLOURS, box_room_sequence

from freepoint_bench.data.readers.scannet_frames import (
    FolderSequence,
    SensSequence,
    every_kth,
    find_sequence,
    open_sequence,
    read_frames,
    select_pairs,
    write_frame_folder,
    write_sens,
)
from freepoint_bench.errors import DataError

LOW, HIGH = np.zeros(3), np.array([4.0, 3.0, 2.5])
NUM_FRAMES = 60


def jpeg(color: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(color).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def pack_sens(path, camera, images, poses=None):
    """Writes a .sens by hand, field by field as ScanNet's sensorData.h lays it out (little-endian)."""
    def mat(m):
        full = np.eye(4)
        full[: m.shape[0], : m.shape[1]] = m
        return struct.pack("<16f", *full.ravel())

    name = b"hand-packed"
    out = [struct.pack("<I", 4), struct.pack("<Q", len(name)), name, mat(camera.color_intrinsics), mat(np.eye(4)),
           mat(camera.depth_intrinsics), mat(np.eye(4)), struct.pack("<i", 2), struct.pack("<i", 1),
           struct.pack("<I", camera.color_size[0]), struct.pack("<I", camera.color_size[1]),
           struct.pack("<I", camera.depth_size[0]), struct.pack("<I", camera.depth_size[1]),
           struct.pack("<f", 1000.0), struct.pack("<Q", len(images))]
    for i, image in enumerate(images):
        color, depth = jpeg(image.color), zlib.compress(image.depth.astype("<u2").tobytes())
        pose = image.pose if poses is None else poses[i]
        out += [mat(pose), struct.pack("<Q", 1000 * i), struct.pack("<Q", 1000 * i), struct.pack("<Q", len(color)),
                struct.pack("<Q", len(depth)), color, depth]
    path.write_bytes(b"".join(out))
    return path


def write_folder(path, camera, images):
    """Writes SensReader's export layout by hand: depth/<i>.png uint16, color/<i>.jpg, pose/<i>.txt, intrinsic/."""
    for sub in ("depth", "color", "pose", "intrinsic"):
        (path / sub).mkdir(parents=True, exist_ok=True)
    for name, k in (("intrinsic_depth", camera.depth_intrinsics), ("intrinsic_color", camera.color_intrinsics)):
        full = np.eye(4)
        full[:3, :3] = k
        np.savetxt(path / "intrinsic" / f"{name}.txt", full, fmt="%.17g")
    for image in images:
        Image.fromarray(image.depth.astype(np.uint16)).save(path / "depth" / f"{image.number}.png")
        (path / "color" / f"{image.number}.jpg").write_bytes(jpeg(image.color))
        np.savetxt(path / "pose" / f"{image.number}.txt", image.pose, fmt="%.17g")
    return path


@pytest.fixture(scope="module")
def room(tmp_path_factory):
    root = tmp_path_factory.mktemp("frames")
    camera, images = box_room_sequence(num_frames=NUM_FRAMES)
    return {"camera": camera, "images": images, "root": root, "sens": pack_sens(root / "room.sens", camera, images),
            "folder": write_folder(root / "room", camera, images)}


def face_distance(world: np.ndarray) -> np.ndarray:
    """(N, 2) distances of points inside the box to their nearest and second-nearest face."""
    d = np.sort(np.concatenate([np.abs(world - LOW), np.abs(world - HIGH)], axis=1), axis=1)
    return d[:, :2]


def test_sens_header_and_frames_are_what_was_packed(room):
    seq = SensSequence(room["sens"])
    camera = room["camera"]
    assert seq.num_frames == NUM_FRAMES and seq.sensor == "hand-packed"
    assert seq.camera.depth_size == (40, 30) and seq.camera.color_size == (80, 60) and seq.camera.depth_shift == 1000
    np.testing.assert_array_equal(seq.camera.depth_intrinsics, camera.depth_intrinsics)
    np.testing.assert_array_equal(seq.camera.color_intrinsics, camera.color_intrinsics)
    for number in (0, 7, NUM_FRAMES - 1):
        image, truth = seq.read(number), room["images"][number]
        np.testing.assert_array_equal(image.depth, truth.depth)
        np.testing.assert_array_equal(image.pose, truth.pose)
        assert np.abs(image.color.astype(int) - truth.color).mean() < 3  # jpeg


@pytest.mark.parametrize("layout", ["sens", "folder"])
def test_backprojected_points_land_on_the_walls_with_their_colour(room, layout):
    frames = list(read_frames(room[layout], every=20))
    assert [f.name for f in frames] == ["room/0", "room/20", "room/40"]
    for frame in frames:
        world = frame.world()
        assert len(world) == 40 * 30  # the room is closed: every pixel sees a wall
        dist = face_distance(world)
        assert dist[:, 0].max() < 0.003  # on a wall, within the millimetre depth quantisation
        # points well inside one face carry that face's colour (colour registered to depth, nearest pixel)
        inner = dist[:, 1] > 0.15
        face = np.argmin(np.concatenate([np.abs(world - LOW), np.abs(world - HIGH)], axis=1), axis=1)
        face = 2 * (face % 3) + face // 3  # column order -x, -y, -z, +x, +y, +z -> FACE_COLOURS order
        assert inner.sum() > 100
        np.testing.assert_allclose(frame.rgb[inner], FACE_COLOURS[face[inner]] / 255.0, atol=0.08)


def test_the_two_layouts_and_the_writers_give_equal_frames(room, tmp_path):
    camera, images = room["camera"], room["images"]
    layouts = [room["sens"], room["folder"], write_sens(tmp_path / "w.sens", camera, images),
               write_frame_folder(tmp_path / "w", camera, images)]
    reference = list(read_frames(layouts[0], every=10))
    for layout in layouts[1:]:
        frames = list(read_frames(layout, every=10))
        assert len(frames) == len(reference) == 6
        for a, b in zip(reference, frames, strict=True):
            np.testing.assert_array_equal(a.xyz, b.xyz)
            np.testing.assert_array_equal(a.rgb, b.rgb)
            np.testing.assert_array_equal(a.pose, b.pose)


def test_every_kth_sampling(room, tmp_path):
    assert [r.number for r in SensSequence(room["sens"]).scan(25)] == [0, 25, 50]
    assert [r.number for r in FolderSequence(room["folder"]).scan(25)] == [0, 25, 50]
    assert len(SensSequence(room["sens"]).scan(1)) == NUM_FRAMES
    # an export with frame_skip 10 holds 0, 10, 20, ...: every 25 takes the first frame at least 25 on
    sparse = write_folder(tmp_path / "sparse", room["camera"], room["images"][::10])
    assert [r.number for r in open_sequence(sparse).scan(25)] == [0, 30]
    assert every_kth([0, 1, 2, 3, 4, 5, 6], 3) == [0, 3, 6]
    assert every_kth([0, 4, 5, 9, 13], 4) == [0, 4, 9, 13]
    with pytest.raises(DataError, match="every"):
        every_kth([0], 0)


def test_invalid_poses_are_skipped_with_one_warning(room, tmp_path, caplog):
    poses = [image.pose for image in room["images"]]
    poses[25] = np.full((4, 4), -np.inf)
    poses[50] = np.where(np.eye(4) > 0, np.nan, 0.0)
    poses[30] = np.full((4, 4), np.inf)  # not sampled at every 25: no warning of its own
    path = pack_sens(tmp_path / "bad.sens", room["camera"], room["images"], poses)
    with caplog.at_level(logging.WARNING):
        numbers = [f.name for f in read_frames(path, every=25)]
    assert numbers == ["bad/0"]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "bad.sens" in warnings[0].getMessage() and "2 of 3" in warnings[0].getMessage()
    with pytest.raises(DataError, match="invalid"):
        SensSequence(path).frame(25)


def one_line_error(call, *patterns):
    with pytest.raises(DataError) as exc:
        call()
    message = str(exc.value)
    assert "\n" not in message
    for pattern in patterns:
        assert pattern in message
    return message


def test_malformed_files_are_one_line_data_errors(room, tmp_path):
    data = room["sens"].read_bytes()
    cut = tmp_path / "cut.sens"
    cut.write_bytes(data[: len(data) // 2])  # inside a frame's payload
    one_line_error(lambda: SensSequence(cut).scan(25), "cut.sens", "truncated at frame", "re-download")
    cut.write_bytes(data[:40])
    one_line_error(lambda: SensSequence(cut), "cut.sens", "truncated in the header")
    cut.write_bytes(struct.pack("<I", 3) + data[4:])
    one_line_error(lambda: SensSequence(cut), "cut.sens", "version 3")
    broken = write_folder(tmp_path / "broken", room["camera"], room["images"][:3])
    (broken / "intrinsic" / "intrinsic_depth.txt").unlink()
    one_line_error(lambda: FolderSequence(broken), "intrinsic_depth.txt", "missing", "SensReader")
    partial = write_folder(tmp_path / "partial", room["camera"], room["images"][:3])
    (partial / "pose" / "1.txt").write_text("1 0 0\n0 1 0\n")
    one_line_error(lambda: FolderSequence(partial).scan(1), "1.txt", "16")
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(partial / "depth" / "2.png")
    one_line_error(lambda: FolderSequence(partial).read(2), "2.png", "16-bit")
    one_line_error(lambda: find_sequence(tmp_path, "scene0123_00"), "scene0123_00", "frames_root")
    assert find_sequence(room["root"], "room") == room["sens"]


def brute_force_pairs(room, gap, min_overlap, voxel, radius, reduce):
    """Pairs of every gap-th frame by dense distances on frames back-projected and thinned (voxel centroids)
    here, independently."""
    camera, images = room["camera"], room["images"]
    k = camera.depth_intrinsics
    clouds = []
    for image in images[::gap]:
        v, u = np.nonzero(image.depth > 0)
        z = image.depth[v, u] / 1000.0
        cam = np.stack([(u - k[0, 2]) * z / k[0, 0], (v - k[1, 2]) * z / k[1, 1], z], axis=1).astype(np.float32)
        world = cam.astype(np.float64) @ image.pose[:3, :3].T + image.pose[:3, 3]
        cells = {}
        for point, cell in zip(world, map(tuple, np.floor(world / voxel).astype(np.int64)), strict=True):
            cells.setdefault(cell, []).append(point)
        clouds.append(np.array([np.mean(points, axis=0) for points in cells.values()]))
    pairs = []
    for i in range(len(clouds)):
        for j in range(i + 1, len(clouds)):
            d = np.linalg.norm(clouds[i][:, None] - clouds[j][None], axis=2)
            shares = [(d.min(axis=1) <= radius).mean(), (d.min(axis=0) <= radius).mean()]
            if (min(shares) if reduce == "min" else max(shares)) >= min_overlap:
                pairs.append((i, j))
    return pairs


@pytest.mark.parametrize("gap, min_overlap, radius, reduce", [(10, 0.3, 0.075, "max"), (25, 0.3, 0.075, "max"),
                                                               (10, 0.6, 0.05, "min"), (10, 0.5, 0.075, "max")])
def test_frame_pair_selection_matches_brute_force(room, gap, min_overlap, radius, reduce):
    refs, pairs = select_pairs(SensSequence(room["sens"]), gap, min_overlap, 0.05, radius, reduce)
    assert [r.number for r in refs] == list(range(0, NUM_FRAMES, gap))
    expected = brute_force_pairs(room, gap, min_overlap, 0.05, radius, reduce)
    assert pairs == expected
    assert 0 < len(pairs) < len(refs) * (len(refs) - 1) // 2  # the threshold keeps some pairs and drops some
