"""ScanNet RGB-D frames: the raw ``.sens`` stream and the folder ScanNet's SensReader exports → data.views.Frame.

    sequence = open_sequence(find_sequence(root, "scene0000_00"))   # a .sens file or an exported folder
    for ref in sequence.scan(every=25):                             # frame numbers 0, 25, 50, ... (headers only)
        frame = sequence.frame(ref)                                  # Frame: camera xyz, rgb, camera-to-world pose
    frames = list(read_frames(path, every=25))                       # the same, streamed

Layouts (`find_sequence` looks for them in this order):

    <root>/<scene>.sens, <root>/<scene>/<scene>.sens, <root>/scans/<scene>/<scene>.sens      the raw stream
    <root>/<scene>/ (or <root>/scans/<scene>/) holding SensReader's export:
        depth/<i>.png     uint16, depth_shift units per metre (1000: millimetres; an export records no shift)
        color/<i>.jpg     8-bit colour (any size: registered to the depth image, see below)
        pose/<i>.txt      4x4 camera-to-world, row-major text
        intrinsic/intrinsic_depth.txt, intrinsic/intrinsic_color.txt     4x4, the pinhole matrix in [:3, :3]
        intrinsic/extrinsic_depth.txt, intrinsic/extrinsic_color.txt     optional 4x4 (identity when absent)

The .sens layout (little-endian; ScanNet's SensReader/sensorData.h, version 4): uint32 version, uint64 length
+ the sensor name, four float32 4x4 matrices (intrinsic_color, extrinsic_color, intrinsic_depth,
extrinsic_depth), int32 colour and depth compression types, uint32 colour width, height, depth width, height,
float32 depth_shift, uint64 frame count; then per frame a float32 4x4 camera_to_world, uint64 timestamp_color,
timestamp_depth, colour byte count, depth byte count, and the two payloads (colour: jpeg; depth: zlib of the
(H, W) uint16 image). Whatever follows the last frame (IMU records) is not read.

Reading streams: `scan` reads each frame's 96-byte header and seeks past its payloads, `frame` seeks to one frame.
Every-k sampling takes frame numbers 0, k, 2k, ... (in an export with gaps, the first frame at least k after the
previous pick), then drops the frames whose pose is not finite (ScanNet marks failed tracking with -inf), with one
warning per sequence. Colour is registered to the depth image by nearest-pixel lookup: each depth pixel's camera
ray (depth intrinsics, through the extrinsics, taken as sensor-to-rig) is projected with the colour intrinsics and
takes the colour pixel nearest to it (clamped to the image border). Malformed files are one-line DataErrors naming
the file and the fix.
"""

from __future__ import annotations

import io
import logging
import os
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from freepoint_bench.atomic import atomic_path, write_text
from freepoint_bench.data.views import Frame, backproject_depth, downsample_frame, frame_pairs
from freepoint_bench.errors import DataError

logger = logging.getLogger(__name__)

SENS_VERSION = 4
COLOR_CODECS = {0: "raw", 1: "png", 2: "jpeg"}  # .sens m_colorCompressionType
DEPTH_CODECS = {0: "raw_ushort", 1: "zlib_ushort"}  # .sens m_depthCompressionType (2, occi, is not supported)
_FRAME_HEADER = struct.Struct("<16f4Q")  # camera_to_world, timestamp colour / depth, colour / depth byte counts
_FIX_SENS = "re-download the scan's .sens (ScanNet's download-scannet.py --type .sens) or export it with SensReader"
_FIX_FOLDER = "export the scan with ScanNet's SensReader (reader.py --export_depth_images --export_color_images " \
              "--export_poses --export_intrinsics)"


@dataclass(frozen=True, eq=False)
class Camera:
    """A sequence's calibration: (3, 3) pinhole matrices, (4, 4) sensor-to-rig extrinsics, image sizes (W, H),
    depth_shift (stored depth units per metre; 1000 = millimetres)."""

    depth_intrinsics: np.ndarray
    color_intrinsics: np.ndarray
    depth_size: tuple[int, int]
    color_size: tuple[int, int]
    depth_shift: float = 1000.0
    depth_extrinsics: np.ndarray = field(default_factory=lambda: np.eye(4))
    color_extrinsics: np.ndarray = field(default_factory=lambda: np.eye(4))


@dataclass(frozen=True)
class FrameRef:
    """Where one frame of a sequence is: its number and (.sens) the byte offset of its header."""

    number: int
    offset: int = -1


@dataclass(frozen=True, eq=False)
class RGBDImage:
    """One decoded frame: depth (H, W) uint16 in depth_shift units (0 = none), color (Hc, Wc, 3) uint8 or None,
    pose (4, 4) float64 camera-to-world."""

    number: int
    depth: np.ndarray
    color: np.ndarray | None
    pose: np.ndarray


# ---------------------------------------------------------------------------------------------- shared pieces


def _pose_ok(pose: np.ndarray) -> bool:
    return bool(np.isfinite(pose).all())


def every_kth(numbers: Iterable[int], every: int) -> list[int]:
    """Returns the frame numbers every-k sampling keeps: each the first at least `every` after the last pick
    (0, k, 2k, ... of a complete sequence)."""
    if every < 1:
        raise DataError(f"frame sampling: every must be >= 1, got {every}")
    picked: list[int] = []
    for n in sorted(numbers):
        if not picked or n >= picked[-1] + every:
            picked.append(n)
    return picked


def _decode_image(data: bytes, path: Path, what: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return np.array(image)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(f"{path}: {what} is not a readable image ({e}); {_FIX_SENS}") from None


def _rgb(image: np.ndarray) -> np.ndarray:
    return np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image[..., :3]


def register_color(depth: np.ndarray, color: np.ndarray, camera: Camera) -> np.ndarray:
    """Returns (H, W, 3) uint8: for every depth pixel the nearest colour pixel its ray projects to (module doc)."""
    h, w = depth.shape
    v, u = np.mgrid[0:h, 0:w]
    kd, kc = camera.depth_intrinsics, camera.color_intrinsics
    rays = np.stack([(u - kd[0, 2]) / kd[0, 0], (v - kd[1, 2]) / kd[1, 1], np.ones((h, w))], axis=-1)
    z = np.where(depth > 0, depth / camera.depth_shift, 1.0)[..., None]  # depth-free mapping when the centres agree
    to_color = np.linalg.inv(camera.color_extrinsics) @ camera.depth_extrinsics
    p = (rays * z) @ to_color[:3, :3].T + to_color[:3, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        uc = kc[0, 0] * p[..., 0] / p[..., 2] + kc[0, 2]
        vc = kc[1, 1] * p[..., 1] / p[..., 2] + kc[1, 2]
    hc, wc = color.shape[:2]
    uc = np.clip(np.nan_to_num(np.rint(uc), nan=0.0), 0, wc - 1).astype(np.int64)
    vc = np.clip(np.nan_to_num(np.rint(vc), nan=0.0), 0, hc - 1).astype(np.int64)
    return color[vc, uc, :3]


def to_frame(image: RGBDImage, camera: Camera, name: str = "frame", max_depth_m: float | None = None) -> Frame:
    """Returns the Frame of a decoded image: its valid depth pixels back-projected (camera metres), coloured by
    register_color (grey without colour), with the image's camera-to-world pose."""
    rgb = None if image.color is None else register_color(image.depth, image.color, camera) / 255.0
    xyz, colours = backproject_depth(image.depth / camera.depth_shift, camera.depth_intrinsics, rgb, max_depth_m)
    if len(xyz) == 0:
        raise DataError(f"{name}: frame {image.number} has no valid depth pixel; drop the frame or the sequence")
    return Frame(xyz=xyz, rgb=colours, pose=image.pose, name=f"{name}/{image.number}")


def _check_camera(camera: Camera, path: Path) -> Camera:
    for what, k in (("depth", camera.depth_intrinsics), ("color", camera.color_intrinsics)):
        if k.shape != (3, 3) or not np.isfinite(k).all() or k[0, 0] <= 0 or k[1, 1] <= 0:
            raise DataError(f"{path}: the {what} intrinsics are not a pinhole matrix (fx, fy > 0); {_FIX_FOLDER}")
    if min(camera.depth_size) < 1 or not (np.isfinite(camera.depth_shift) and camera.depth_shift > 0):
        raise DataError(f"{path}: depth size {camera.depth_size} / depth_shift {camera.depth_shift} invalid; "
                        f"{_FIX_SENS}")
    return camera


class _Sequence:
    """What both layouts share: sampling with the invalid-pose warning, frames as data.views.Frame."""

    path: Path
    camera: Camera

    @property
    def name(self) -> str:
        """Returns the scene name (the file's stem or the folder's name)."""
        return self.path.stem if self.path.suffix == ".sens" else self.path.name

    def _refs(self) -> list[tuple[FrameRef, np.ndarray]]:
        raise NotImplementedError

    def read(self, ref: FrameRef | int, color: bool = True) -> RGBDImage:
        """Returns the decoded frame `ref` (a FrameRef from scan, or a frame number)."""
        raise NotImplementedError

    def scan(self, every: int = 1) -> list[FrameRef]:
        """Returns the refs of every-k sampled frames with finite poses (one warning when some were dropped)."""
        refs = self._refs()
        keep = set(every_kth([r.number for r, _ in refs], every))
        sampled = [(r, pose) for r, pose in refs if r.number in keep]
        good = [r for r, pose in sampled if _pose_ok(pose)]
        if len(good) < len(sampled):
            bad = [r.number for r, pose in sampled if not _pose_ok(pose)]
            logger.warning("%s: %d of %d sampled frames have invalid (inf/NaN) poses and are skipped (frames %s)",
                           self.path, len(bad), len(sampled), ", ".join(map(str, bad[:5])) + (", ..." if
                                                                                              len(bad) > 5 else ""))
        return good

    def frame(self, ref: FrameRef | int, color: bool = True, max_depth_m: float | None = None) -> Frame:
        """Returns frame `ref` as a Frame (camera metres, rgb 0..1, camera-to-world pose); color=False: grey."""
        image = self.read(ref, color=color)
        if not _pose_ok(image.pose):
            raise DataError(f"{self.path}: frame {image.number} has an invalid (inf/NaN) pose; sample with scan()")
        return to_frame(image, self.camera, self.name, max_depth_m)


# ---------------------------------------------------------------------------------------------- .sens


def _read_exact(f, count: int, path: Path, what: str) -> bytes:
    data = f.read(count)
    if len(data) != count:
        raise DataError(f"{path}: truncated in the {what} ({len(data)} of {count} bytes); {_FIX_SENS}")
    return data


class SensSequence(_Sequence):
    """A raw ScanNet .sens stream (module docstring): the header is read on open, frames on demand."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            with open(self.path, "rb") as f:
                self._read_header(f)
                self._data_start = f.tell()
            self._size = os.path.getsize(self.path)
        except OSError as e:
            raise DataError(f"{self.path}: cannot read it ({e.strerror or e}); check the path") from None

    def _read_header(self, f) -> None:
        p = self.path
        (version,) = struct.unpack("<I", _read_exact(f, 4, p, "header"))
        if version != SENS_VERSION:
            raise DataError(f"{p}: .sens version {version}, expected {SENS_VERSION} (not a ScanNet .sens?); "
                            f"{_FIX_SENS}")
        (name_len,) = struct.unpack("<Q", _read_exact(f, 8, p, "header"))
        if name_len > 4096:
            raise DataError(f"{p}: sensor name of {name_len} bytes: the header is corrupt; {_FIX_SENS}")
        self.sensor = _read_exact(f, name_len, p, "header").decode("utf-8", "replace")
        mats = np.frombuffer(_read_exact(f, 4 * 64, p, "header"), dtype="<f4").astype(np.float64).reshape(4, 4, 4)
        color_codec, depth_codec, cw, ch, dw, dh, shift, count = struct.unpack(
            "<2i4IfQ", _read_exact(f, 4 * 7 + 8, p, "header"))
        if color_codec not in COLOR_CODECS or depth_codec not in DEPTH_CODECS:
            raise DataError(f"{p}: compression colour {color_codec} / depth {depth_codec} unsupported (colour: "
                            f"{COLOR_CODECS}, depth: {DEPTH_CODECS}); export the frames with SensReader instead")
        self.color_codec, self.depth_codec = COLOR_CODECS[color_codec], DEPTH_CODECS[depth_codec]
        self.num_frames = int(count)
        self.camera = _check_camera(Camera(
            depth_intrinsics=mats[2, :3, :3].copy(), color_intrinsics=mats[0, :3, :3].copy(),
            depth_size=(int(dw), int(dh)), color_size=(int(cw), int(ch)), depth_shift=float(shift),
            depth_extrinsics=mats[3].copy(), color_extrinsics=mats[1].copy()), p)

    def _frame_header(self, f, number: int) -> tuple[np.ndarray, int, int]:
        raw = f.read(_FRAME_HEADER.size)
        if len(raw) != _FRAME_HEADER.size:
            raise DataError(f"{self.path}: truncated at frame {number} of {self.num_frames} (the header promises "
                            f"{self.num_frames} frames); {_FIX_SENS}")
        values = _FRAME_HEADER.unpack(raw)
        pose = np.asarray(values[:16], dtype=np.float64).reshape(4, 4)
        color_bytes, depth_bytes = int(values[18]), int(values[19])
        if f.tell() + color_bytes + depth_bytes > self._size:
            raise DataError(f"{self.path}: truncated at frame {number} of {self.num_frames} (its payload runs past "
                            f"the end of the file); {_FIX_SENS}")
        return pose, color_bytes, depth_bytes

    def _refs(self) -> list[tuple[FrameRef, np.ndarray]]:
        out = []
        with open(self.path, "rb") as f:
            f.seek(self._data_start)
            for number in range(self.num_frames):
                offset = f.tell()
                pose, color_bytes, depth_bytes = self._frame_header(f, number)
                out.append((FrameRef(number, offset), pose))
                f.seek(color_bytes + depth_bytes, os.SEEK_CUR)
        return out

    def read(self, ref: FrameRef | int, color: bool = True) -> RGBDImage:
        """Returns the decoded frame `ref`; a bare frame number walks the headers up to it."""
        if not isinstance(ref, FrameRef):
            number = int(ref)
            if not 0 <= number < self.num_frames:
                raise DataError(f"{self.path}: no frame {number} (it has {self.num_frames})")
            ref = next(r for r, _ in self._refs() if r.number == number)
        with open(self.path, "rb") as f:
            f.seek(ref.offset)
            pose, color_bytes, depth_bytes = self._frame_header(f, ref.number)
            color_data = f.read(color_bytes) if color else None
            if not color:
                f.seek(color_bytes, os.SEEK_CUR)
            depth_data = f.read(depth_bytes)
        w, h = self.camera.depth_size
        try:
            raw = zlib.decompress(depth_data) if self.depth_codec == "zlib_ushort" else depth_data
        except zlib.error as e:
            raise DataError(f"{self.path}: frame {ref.number}'s depth does not decompress ({e}); {_FIX_SENS}") from None
        if len(raw) != 2 * w * h:
            raise DataError(f"{self.path}: frame {ref.number}'s depth holds {len(raw)} bytes, expected {2 * w * h} "
                            f"({w}x{h} uint16); {_FIX_SENS}")
        depth = np.frombuffer(raw, dtype="<u2").reshape(h, w).copy()
        image = None
        if color_data is not None:
            if self.color_codec == "raw":
                cw, ch = self.camera.color_size
                if len(color_data) != 3 * cw * ch:
                    raise DataError(f"{self.path}: frame {ref.number}'s raw colour holds {len(color_data)} bytes, "
                                    f"expected {3 * cw * ch}; {_FIX_SENS}")
                image = np.frombuffer(color_data, dtype=np.uint8).reshape(ch, cw, 3).copy()
            else:
                image = _rgb(_decode_image(color_data, self.path, f"frame {ref.number}'s colour"))
        return RGBDImage(number=ref.number, depth=depth, color=image, pose=pose)


def write_sens(path: str | Path, camera: Camera, images: Iterable[RGBDImage], sensor: str = "synthetic",
               jpeg_quality: int = 95) -> Path:
    """Returns `path` after writing `images` as a .sens stream (jpeg colour, zlib depth; module docstring),
    atomically. Frame numbers are their order in `images`; every image needs colour."""
    from PIL import Image

    images = list(images)
    header = struct.pack("<I", SENS_VERSION) + struct.pack("<Q", len(sensor.encode())) + sensor.encode()
    for m in (_pad4(camera.color_intrinsics), camera.color_extrinsics, _pad4(camera.depth_intrinsics),
              camera.depth_extrinsics):
        header += np.asarray(m, dtype="<f4").tobytes()
    header += struct.pack("<2i4IfQ", 2, 1, *camera.color_size, *camera.depth_size, camera.depth_shift, len(images))
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(header)
        for i, image in enumerate(images):
            if image.color is None:
                raise DataError(f"{path}: frame {i} has no colour; write_sens needs colour for every frame")
            buffer = io.BytesIO()
            Image.fromarray(np.asarray(image.color, dtype=np.uint8)).save(buffer, format="JPEG", quality=jpeg_quality)
            color = buffer.getvalue()
            depth = zlib.compress(np.asarray(image.depth, dtype="<u2").tobytes())
            f.write(_FRAME_HEADER.pack(*np.asarray(image.pose, dtype=np.float32).ravel(), i, i, len(color), len(depth)))
            f.write(color)
            f.write(depth)
    return Path(path)


def _pad4(k: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[:3, :3] = k
    return out


# ---------------------------------------------------------------------------------------------- exported folder


def _read_matrix(path: Path, fix: str) -> np.ndarray:
    try:
        values = np.array(path.read_text().split(), dtype=np.float64)
    except FileNotFoundError:
        raise DataError(f"{path}: missing; {fix}") from None
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a 4x4 matrix of numbers ({e}); {fix}") from None
    if values.size != 16:
        raise DataError(f"{path}: holds {values.size} numbers, expected a 4x4 matrix (16); {fix}")
    return values.reshape(4, 4)


class FolderSequence(_Sequence):
    """A folder in SensReader's export layout (module docstring); depth_shift is taken as 1000 (millimetres)."""

    def __init__(self, path: str | Path, depth_shift: float = 1000.0) -> None:
        self.path = Path(path)
        intrinsic = self.path / "intrinsic"
        k_depth = _read_matrix(intrinsic / "intrinsic_depth.txt", _FIX_FOLDER)
        k_color = _read_matrix(intrinsic / "intrinsic_color.txt", _FIX_FOLDER)
        extrinsics = [_read_matrix(intrinsic / f"extrinsic_{w}.txt", _FIX_FOLDER)
                      if (intrinsic / f"extrinsic_{w}.txt").is_file() else np.eye(4) for w in ("depth", "color")]
        depth_dir = self.path / "depth"
        try:
            self.numbers = sorted(int(p.stem) for p in depth_dir.iterdir() if p.suffix == ".png" and p.stem.isdigit())
        except FileNotFoundError:
            raise DataError(f"{depth_dir}: missing; {_FIX_FOLDER}") from None
        if not self.numbers:
            raise DataError(f"{depth_dir}: holds no <i>.png depth images; {_FIX_FOLDER}")
        first = self._depth(self.numbers[0])
        color_size = (0, 0)
        color_path = self.path / "color" / f"{self.numbers[0]}.jpg"
        if color_path.is_file():
            color_size = self._color(self.numbers[0]).shape[1::-1]
        self.num_frames = len(self.numbers)
        self.camera = _check_camera(Camera(
            depth_intrinsics=k_depth[:3, :3].copy(), color_intrinsics=k_color[:3, :3].copy(),
            depth_size=(first.shape[1], first.shape[0]), color_size=tuple(int(s) for s in color_size),
            depth_shift=float(depth_shift), depth_extrinsics=extrinsics[0], color_extrinsics=extrinsics[1]), self.path)

    def _image(self, path: Path, what: str) -> np.ndarray:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise DataError(f"{path}: missing; {_FIX_FOLDER}") from None
        return _decode_image(data, path, what)

    def _depth(self, number: int) -> np.ndarray:
        path = self.path / "depth" / f"{number}.png"
        depth = self._image(path, "the depth image")
        if depth.ndim != 2 or depth.dtype not in (np.uint16, np.int32):
            raise DataError(f"{path}: depth must be a 16-bit single-channel png (millimetres), got {depth.dtype} "
                            f"{depth.shape}; {_FIX_FOLDER}")
        return depth.astype(np.uint16)

    def _color(self, number: int) -> np.ndarray:
        return _rgb(self._image(self.path / "color" / f"{number}.jpg", "the colour image"))

    def _pose(self, number: int) -> np.ndarray:
        return _read_matrix(self.path / "pose" / f"{number}.txt", _FIX_FOLDER)

    def _refs(self) -> list[tuple[FrameRef, np.ndarray]]:
        return [(FrameRef(n), self._pose(n)) for n in self.numbers]

    def read(self, ref: FrameRef | int, color: bool = True) -> RGBDImage:
        """Returns the decoded frame `ref` (colour only when color=True)."""
        number = ref.number if isinstance(ref, FrameRef) else int(ref)
        depth = self._depth(number)
        if depth.shape[::-1] != self.camera.depth_size:
            raise DataError(f"{self.path / 'depth' / f'{number}.png'}: {depth.shape[::-1]} differs from the first "
                            f"depth image's {self.camera.depth_size}; {_FIX_FOLDER}")
        return RGBDImage(number=number, depth=depth, color=self._color(number) if color else None,
                         pose=self._pose(number))


def write_frame_folder(path: str | Path, camera: Camera, images: Iterable[RGBDImage], jpeg_quality: int = 95) -> Path:
    """Returns `path` after writing `images` in SensReader's export layout (module docstring; depth in the
    camera's depth_shift units, which should be 1000 for the reader to read metres back)."""
    from PIL import Image

    path = Path(path)
    for name, m in (("intrinsic_depth", _pad4(camera.depth_intrinsics)), ("intrinsic_color",
                    _pad4(camera.color_intrinsics)), ("extrinsic_depth", camera.depth_extrinsics),
                    ("extrinsic_color", camera.color_extrinsics)):
        write_text(path / "intrinsic" / f"{name}.txt", _matrix_text(m))
    for image in images:
        for sub in ("depth", "color", "pose"):
            (path / sub).mkdir(parents=True, exist_ok=True)
        with atomic_path(path / "depth" / f"{image.number}.png") as tmp:
            Image.fromarray(np.asarray(image.depth, dtype=np.uint16)).save(tmp, format="PNG")
        if image.color is not None:
            with atomic_path(path / "color" / f"{image.number}.jpg") as tmp:
                Image.fromarray(np.asarray(image.color, dtype=np.uint8)).save(tmp, format="JPEG", quality=jpeg_quality)
        write_text(path / "pose" / f"{image.number}.txt", _matrix_text(image.pose))
    return path


def _matrix_text(m: np.ndarray) -> str:
    return "".join(" ".join(repr(float(v)) for v in row) + "\n" for row in np.asarray(m))


# ---------------------------------------------------------------------------------------------- finding and opening


def sequence_candidates(root: str | Path, scene: str) -> list[Path]:
    """Returns the places find_sequence looks for `scene`'s frames under `root`, in order."""
    root = Path(root)
    return [root / f"{scene}.sens", root / scene / f"{scene}.sens", root / "scans" / scene / f"{scene}.sens",
            root / scene, root / "scans" / scene]


def find_sequence(root: str | Path, scene: str) -> Path:
    """Returns the .sens file or exported folder (with depth/) of `scene` under `root` (module docstring)."""
    for candidate in sequence_candidates(root, scene):
        if candidate.suffix == ".sens" and candidate.is_file():
            return candidate
        if candidate.suffix != ".sens" and (candidate / "depth").is_dir():
            return candidate
    raise DataError(f"no RGB-D frames of scene {scene} under {root}: expected {root}/{scene}.sens, "
                    f"{root}/{scene}/{scene}.sens or SensReader's export "
                    f"{root}/{scene}/{{depth,color,pose,intrinsic}}/; point views.frames_root at them or train on "
                    "the scenes that have frames (--scene)")


def open_sequence(path: str | Path) -> SensSequence | FolderSequence:
    """Returns the sequence of a .sens file or an exported folder."""
    path = Path(path)
    if path.is_dir():
        return FolderSequence(path)
    if path.suffix == ".sens":
        return SensSequence(path)
    raise DataError(f"{path}: neither a .sens file nor a folder of SensReader's export; check the path")


def read_frames(path: str | Path, every: int = 1, color: bool = True,
                max_depth_m: float | None = None) -> Iterator[Frame]:
    """Yields the every-k sampled frames with valid poses of a .sens file or exported folder, one at a time."""
    sequence = open_sequence(path)
    for ref in sequence.scan(every):
        yield sequence.frame(ref, color=color, max_depth_m=max_depth_m)


# ---------------------------------------------------------------------------------------------- frame pairs


def select_pairs(sequence: SensSequence | FolderSequence, gap: int = 25, min_overlap: float = 0.3,
                 voxel_m: float = 0.05, radius_m: float = 0.075,
                 reduce: str = "max") -> tuple[list[FrameRef], list[tuple[int, int]]]:
    """Returns (refs, pairs): the every-`gap` sampled frames with valid poses and some depth, and the pairs
    (i, j), i < j, of rows of refs whose frame_overlap (radius_m, reduce) is at least min_overlap, computed on the
    frames thinned to voxel_m centroids (data.views.downsample_frame). The defaults are PointContrast's
    preprocessing: every 25th frame, 5 cm voxels, matches within 1.5 voxels, the larger direction >= 30%.
    Reads depth only."""
    refs, frames, empty = [], [], []
    for ref in sequence.scan(gap):
        image = sequence.read(ref, color=False)
        if not (image.depth > 0).any():
            empty.append(ref.number)
            continue
        refs.append(ref)
        frames.append(downsample_frame(to_frame(image, sequence.camera, sequence.name), voxel_m))
    if empty:
        logger.warning("%s: %d sampled frames have no valid depth and are skipped", sequence.path, len(empty))
    return refs, frame_pairs(frames, gap=1, min_overlap=min_overlap, radius_m=radius_m, reduce=reduce)


def sequence_fingerprint(path: str | Path) -> list[int]:
    """Returns what changes when a sequence on disk changes: (size, mtime_ns) of a .sens; (depth images, depth/
    and pose/ mtime_ns) of an exported folder."""
    path = Path(path)
    try:
        if path.is_dir():
            return [sum(1 for _ in (path / "depth").iterdir()), (path / "depth").stat().st_mtime_ns,
                    (path / "pose").stat().st_mtime_ns]
        stat = path.stat()
        return [stat.st_size, stat.st_mtime_ns]
    except OSError as e:
        raise DataError(f"{path}: cannot read it ({e.strerror or e}); check views.frames_root") from None
