"""RGB-D frames of a box room rendered from known poses: fixtures for the ScanNet frame readers and frame pairs.

    camera, images = box_room_sequence(num_frames=80)     # a camera turning in a 4 x 3 x 2.5 m room
    write_sens("room.sens", camera, images)               # data.readers.scannet_frames

Depth is ray-cast exactly against the six inner faces of an axis-aligned box (then stored in millimetres, as
ScanNet's depth), colour is ray-cast the same way with the colour camera (one colour per face), and poses are
camera-to-world in ScanNet's camera convention (x right, y down, z forward; world z up).
"""

from __future__ import annotations

import math

import numpy as np

from freepoint_bench.data.readers.scannet_frames import Camera, RGBDImage

# one colour per face: -x, +x, -y, +y, floor (-z), ceiling (+z)
FACE_COLOURS = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200], [200, 200, 40], [120, 120, 120],
                         [240, 240, 240]], dtype=np.uint8)


def look_pose(position: np.ndarray, yaw: float, pitch: float = 0.0) -> np.ndarray:
    """Returns the (4, 4) camera-to-world pose of a camera at `position` looking along yaw (radians about world
    z from +x) tilted down by pitch (radians)."""
    forward = np.array([math.cos(yaw) * math.cos(pitch), math.sin(yaw) * math.cos(pitch), -math.sin(pitch)])
    right = np.array([math.sin(yaw), -math.cos(yaw), 0.0])
    down = np.cross(forward, right)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([right, down, forward], axis=1)
    pose[:3, 3] = position
    return pose


def render_box(low: np.ndarray, high: np.ndarray, pose: np.ndarray, intrinsics: np.ndarray,
               size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Returns (depth (H, W) float64 metres along the camera z, face (H, W) int64 in 0..5 of FACE_COLOURS) of a
    camera inside the box [low, high] with `pose` (camera-to-world), pinhole `intrinsics` and size (W, H)."""
    w, h = size
    v, u = np.mgrid[0:h, 0:w]
    rays = np.stack([(u - intrinsics[0, 2]) / intrinsics[0, 0], (v - intrinsics[1, 2]) / intrinsics[1, 1],
                     np.ones((h, w))], axis=-1)
    d = rays @ pose[:3, :3].T  # world directions, camera z component 1: t is the depth
    o = pose[:3, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(d > 0, (np.asarray(high) - o) / d, np.where(d < 0, (np.asarray(low) - o) / d, np.inf))
    axis = np.argmin(t, axis=-1)
    depth = np.take_along_axis(t, axis[..., None], axis=-1)[..., 0]
    positive = np.take_along_axis(d, axis[..., None], axis=-1)[..., 0] > 0
    return depth, 2 * axis + positive


def box_room_sequence(num_frames: int = 80, depth_size: tuple[int, int] = (40, 30),
                      color_size: tuple[int, int] = (80, 60), yaw_step_deg: float = 1.2,
                      low: tuple[float, float, float] = (0.0, 0.0, 0.0),
                      high: tuple[float, float, float] = (4.0, 3.0, 2.5)) -> tuple[Camera, list[RGBDImage]]:
    """Returns (camera, frames) of a camera near the room's centre turning by yaw_step_deg per frame, pitched 20°
    down and drifting 1 cm per frame; depth in millimetres (depth_shift 1000), colour one colour per face."""
    fov = math.radians(60.0)

    def pinhole(size: tuple[int, int]) -> np.ndarray:
        f = size[0] / 2 / math.tan(fov / 2)
        k = np.array([[f, 0, (size[0] - 1) / 2], [0, f, (size[1] - 1) / 2], [0, 0, 1.0]])
        return k.astype(np.float32).astype(np.float64)  # .sens stores float32: both layouts hold the same values

    camera = Camera(depth_intrinsics=pinhole(depth_size), color_intrinsics=pinhole(color_size), depth_size=depth_size,
                    color_size=color_size, depth_shift=1000.0)
    low_a, high_a = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    centre = (low_a + high_a) / 2
    images = []
    for i in range(num_frames):
        position = centre + np.array([0.01 * i - 0.005 * num_frames, 0.0, -0.2])
        pose = look_pose(position, math.radians(yaw_step_deg * i), math.radians(20.0)).astype(np.float32)
        pose = pose.astype(np.float64)
        depth, _ = render_box(low_a, high_a, pose, camera.depth_intrinsics, depth_size)
        _, face = render_box(low_a, high_a, pose, camera.color_intrinsics, color_size)
        images.append(RGBDImage(number=i, depth=np.rint(depth * 1000.0).astype(np.uint16), color=FACE_COLOURS[face],
                                pose=pose))
    return camera, images
