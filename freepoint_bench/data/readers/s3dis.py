"""S3DIS raw reader: ``Area_N/<room>/Annotations/<class>_<k>.txt`` → Scene, repairing defects by rule.

Layout (root is ``Stanford3dDataset_v1.2_Aligned_Version`` or its parent)::

    Area_5/office_1/office_1.txt                     room-level cloud (never read)
    Area_5/office_1/Annotations/chair_3.txt          one instance; lines ``x y z r g b`` (rgb 0..255)

Repair rules (each repair is logged and recorded in ``scene.meta["repairs"]`` as a dict with
file, line (1-based, None for whole-file repairs), problem, action):

- bytes outside ``0-9 . - + e E`` and whitespace mark a line as suspect; non-printable bytes in it are
  replaced by a space; the line is kept if it then holds exactly 6 finite numbers with rgb in 0..255,
  otherwise that single line is dropped;
- an annotation file named with a copy suffix (``wall_3 (1).txt``) whose bytes equal another file's is a
  duplicate and skipped; if it differs it is read as one more instance of its class;
- a class name outside S3DIS_CLASSES (``stairs``) becomes clutter;
- files in the room folder other than Annotations/ (e.g. the misnamed ``copy_Room_1.txt``) are never read.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from freepoint_bench.atomic import write_text
from freepoint_bench.data.classes import S3DIS_CLASS_ID, S3DIS_CLASSES
from freepoint_bench.data.scene import Scene
from freepoint_bench.errors import DataError

logger = logging.getLogger(__name__)

DATASET_FOLDERS = ("Stanford3dDataset_v1.2_Aligned_Version", "Stanford3dDataset_v1.2")
CLUTTER_ID = S3DIS_CLASS_ID["clutter"]
_AREA_RE = re.compile(r"^Area_(\d+)$")
# "<class>_<k>.txt" with an optional copy suffix " (j)" before the extension.
_ANNOTATION_RE = re.compile(r"^(?P<cls>.+?)(?:_(?P<k>\d+))?(?P<copy>\s*\(\d+\))?\.txt$", re.IGNORECASE)
_LAYOUT = "Stanford3dDataset_v1.2_Aligned_Version/Area_N/<room>/Annotations/<class>_<k>.txt"
_MAX_LOGGED_PER_FILE = 20  # beyond this, one summary warning per file (all repairs stay in meta)

_NUMERIC = np.zeros(256, dtype=bool)
_NUMERIC[np.frombuffer(b"0123456789.-+eE", dtype=np.uint8)] = True
_SPACE = np.zeros(256, dtype=bool)
_SPACE[np.frombuffer(b" \t\r\n", dtype=np.uint8)] = True
_SUSPECT = ~(_NUMERIC | _SPACE)  # any byte a clean "x y z r g b" line never holds
# Non-printable bytes: controls other than tab/CR/LF, DEL, and non-ASCII.
_CONTROL = np.zeros(256, dtype=bool)
_CONTROL[:32] = True
_CONTROL[127:] = True
_CONTROL[np.frombuffer(b"\t\r\n", dtype=np.uint8)] = False
_CONTROL_TO_SPACE = bytes(32 if _CONTROL[b] else b for b in range(256))


def _repair(file: str, line: int | None, problem: str, action: str) -> dict:
    return {"file": file, "line": line, "problem": problem, "action": action}


def parse_s3dis_txt(data: bytes, source: str) -> tuple[np.ndarray, list[dict]]:
    """Returns ((M, 6) float64 ``x y z r g b`` rows, repair records) parsed from one annotation file's bytes.

    Clean lines are parsed in one vectorised pass; only suspect lines (bad bytes or not 6 fields) go
    through the per-line repair rule. `source` names the file in repair records.
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    if buf.size == 0:
        return np.zeros((0, 6)), []
    ends = np.flatnonzero(buf == 10)  # index of each "\n"
    if ends.size == 0 or ends[-1] != buf.size - 1:
        ends = np.append(ends, buf.size)  # last line without a trailing newline
    starts = np.concatenate(([0], ends[:-1] + 1))
    n_lines = len(ends)

    space = _SPACE[buf]
    token_start = ~space
    token_start[1:] &= space[:-1]
    token_pos = np.flatnonzero(token_start)
    fields = np.diff(np.searchsorted(token_pos, ends), prepend=0)  # tokens per line
    suspect_pos = np.flatnonzero(_SUSPECT[buf])
    suspect = np.zeros(n_lines, dtype=bool)
    suspect[np.searchsorted(ends, suspect_pos)] = True
    blank = (fields == 0) & ~suspect
    good = (fields == 6) & ~suspect

    values = np.full((n_lines, 6), np.nan)
    if good.all():
        clean = data  # the common case: no copy of a ~40 MB buffer
    else:
        clean = buf[np.repeat(good, ends - starts + 1)[: buf.size]].tobytes()
    parsed = _parse_clean(clean, int(good.sum()))
    if parsed is None:
        # Something numeric-looking but malformed ("1.2.3"): slow path over every line.
        parsed_lines = [
            _parse_fields(data[a:b].split()) for a, b in zip(starts[good], ends[good], strict=True)
        ]
        ok = np.array([p is not None for p in parsed_lines], dtype=bool)
        good_idx = np.flatnonzero(good)
        if ok.any():
            values[good_idx[ok]] = np.array([p for p in parsed_lines if p is not None])
        good[good_idx[~ok]] = False  # re-examined below by the per-line rule
    else:
        values[good] = parsed

    repairs: list[dict] = []
    for i in np.flatnonzero(~good & ~blank):
        line = data[starts[i] : ends[i]]
        n_ctrl = int(_CONTROL[np.frombuffer(line, dtype=np.uint8)].sum())
        tokens = line.translate(_CONTROL_TO_SPACE).split()
        row = _parse_fields(tokens) if len(tokens) == 6 else None
        what = [f"{n_ctrl} non-printable byte(s)"] if n_ctrl else []
        if row is None:
            what.append(
                f"{len(tokens)} fields, not 6 finite numbers"
                if len(tokens) != 6
                else "non-numeric or non-finite values"
            )
        problem = "; ".join(what) + f": {line[:80]!r}"
        if row is not None:
            values[i] = row
            good[i] = True
            action = "replaced non-printable bytes by spaces; kept" if n_ctrl else "kept"
            repairs.append(_repair(source, int(i) + 1, problem, action))
        else:
            action = "replaced non-printable bytes by spaces; " if n_ctrl else ""
            repairs.append(_repair(source, int(i) + 1, problem, action + "dropped the line"))
    for i in np.flatnonzero(blank):
        # A blank line mid-file is harmless but unexpected: note it, skip it.
        repairs.append(_repair(source, int(i) + 1, "blank line", "skipped"))

    rgb = values[:, 3:6]
    bad_rgb = good & ((rgb < 0) | (rgb > 255)).any(axis=1)
    for i in np.flatnonzero(bad_rgb):
        repairs.append(
            _repair(source, int(i) + 1, f"colour {rgb[i].tolist()} outside 0..255", "dropped the line")
        )
    keep = good & ~bad_rgb
    repairs.sort(key=lambda r: r["line"])
    return values[keep], repairs


def _parse_clean(clean: bytes, expected_rows: int) -> np.ndarray | None:
    """Returns (expected_rows, 6) floats from whitespace-separated clean text, None if it doesn't parse so."""
    if expected_rows == 0:
        return np.zeros((0, 6))
    try:
        frame = pd.read_csv(
            io.BytesIO(clean), sep=r"\s+", header=None, dtype=np.float64, engine="c", skip_blank_lines=True
        )
    except (ValueError, pd.errors.ParserError):
        return None
    arr = frame.to_numpy(dtype=np.float64)
    if arr.shape != (expected_rows, 6) or not np.isfinite(arr).all():
        return None
    return arr


def _parse_fields(tokens: list[bytes]) -> list[float] | None:
    """Returns 6 finite floats from 6 tokens, None otherwise."""
    if len(tokens) != 6:
        return None
    try:
        row = [float(t) for t in tokens]
    except ValueError:
        return None
    return row if all(np.isfinite(row)) else None


def find_dataset_folder(root: Path) -> Path:
    """Returns the folder holding ``Area_N`` under `root` (root itself or its Stanford3dDataset child)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"S3DIS root {root} does not exist or is not a folder; expected {_LAYOUT}")
    for candidate in (root, *(root / name for name in DATASET_FOLDERS)):
        if candidate.is_dir() and any(_AREA_RE.match(p.name) and p.is_dir() for p in candidate.iterdir()):
            return candidate
    raise DataError(
        f"{root} has no Area_N folders; expected {_LAYOUT} (point root at the "
        "Stanford3dDataset_v1.2_Aligned_Version folder or its parent)"
    )


def class_of_annotation(filename: str) -> tuple[str, bool]:
    """Returns (class name as written, has copy suffix) of an annotation file name like ``wall_3 (1).txt``."""
    match = _ANNOTATION_RE.match(filename)
    if match is None:
        return Path(filename).stem, False
    return match["cls"].lower(), match["copy"] is not None


class S3DISReader:
    """Reads raw S3DIS rooms; scene names are ``Area_N/<room>``; semantic ids index S3DIS_CLASSES."""

    name = "s3dis"

    def list_scenes(self, root: Path) -> list[str]:
        """Returns ``Area_N/<room>`` of every room with an Annotations folder (others: a warning)."""
        folder = find_dataset_folder(root)
        names = []
        for area in sorted(p for p in folder.iterdir() if p.is_dir() and _AREA_RE.match(p.name)):
            for room in sorted(p for p in area.iterdir() if p.is_dir()):
                if (room / "Annotations").is_dir():
                    names.append(f"{area.name}/{room.name}")
                else:
                    logger.warning(
                        "S3DIS room %s has no Annotations/ folder; skipped (re-extract the area)", room
                    )
        if not names:
            raise DataError(f"{folder} has Area_N folders but no rooms with Annotations/; expected {_LAYOUT}")
        return names

    def read_scene(self, root: Path, name: str) -> Scene:
        """Returns the room `name` (``Area_N/<room>``) with semantic and one instance per annotation file."""
        folder = find_dataset_folder(root)
        parts = name.split("/")
        if len(parts) != 2 or not _AREA_RE.match(parts[0]):
            raise DataError(
                f"S3DIS scene name {name!r} is not of the form Area_N/<room> (e.g. Area_5/office_1)"
            )
        room_dir = folder / parts[0] / parts[1]
        ann_dir = room_dir / "Annotations"
        if not ann_dir.is_dir():
            raise DataError(f"{ann_dir} is missing; expected {_LAYOUT} (list rooms with the s3dis reader)")
        return _read_room(ann_dir, name, room_dir)


def _read_room(ann_dir: Path, name: str, room_dir: Path) -> Scene:
    files = sorted(
        (p for p in ann_dir.iterdir() if p.is_file() and p.suffix.lower() == ".txt"), key=lambda p: p.name
    )
    others = [p.name for p in ann_dir.iterdir() if p.is_file() and p.suffix.lower() != ".txt"]
    if others:
        logger.info("%s: ignoring non-.txt files %s", ann_dir, sorted(others))
    # Originals first, so a copy-suffixed file is compared with every original.
    files.sort(key=lambda p: class_of_annotation(p.name)[1])
    repairs: list[dict] = []
    seen: dict[str, str] = {}  # content hash -> file name
    chunks, semantic, instance, instance_classes, instance_names = [], [], [], [], []
    for path in files:
        rel = f"{name}/Annotations/{path.name}"
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DataError(f"{path}: cannot read ({exc}); check permissions or re-extract the area") from exc
        digest = hashlib.blake2b(data, digest_size=16).hexdigest()
        cls, is_copy = class_of_annotation(path.name)
        if is_copy:
            if digest in seen:
                repairs.append(
                    _repair(rel, None, f"copy-suffixed file identical to {seen[digest]}", "skipped")
                )
                continue
            repairs.append(
                _repair(
                    rel,
                    None,
                    "copy-suffixed file differing from every other file",
                    "read as an extra instance",
                )
            )
        seen.setdefault(digest, path.name)
        rows, file_repairs = parse_s3dis_txt(data, rel)
        repairs.extend(file_repairs)
        if cls in S3DIS_CLASS_ID:
            class_id = S3DIS_CLASS_ID[cls]
        else:
            class_id = CLUTTER_ID
            repairs.append(_repair(rel, None, f"unknown class {cls!r}", "labelled clutter"))
        if len(rows) == 0:
            repairs.append(_repair(rel, None, "no points", "skipped the file"))
            continue
        inst_id = len(chunks)
        chunks.append(rows)
        semantic.append(np.full(len(rows), class_id, dtype=np.int64))
        instance.append(np.full(len(rows), inst_id, dtype=np.int64))
        instance_classes.append(S3DIS_CLASSES[class_id])
        instance_names.append(path.stem)  # e.g. chair_3: stable across machines, what protocol selections key on
    _log_repairs(repairs)
    if not chunks:
        raise DataError(f"{ann_dir}: no readable points in any annotation file; re-extract this room")
    values = np.concatenate(chunks)
    return Scene(
        name=name,
        xyz=values[:, :3].astype(np.float32),
        rgb=(values[:, 3:6] / 255.0).astype(np.float32),  # explicit: dark rooms must not look like 0..1 input
        semantic=np.concatenate(semantic),
        instance=np.concatenate(instance),
        meta={
            "dataset": "s3dis",
            "source": str(room_dir),
            "area": int(_AREA_RE.match(name.split("/")[0])[1]),
            "room": name.split("/")[1],
            "instance_classes": instance_classes,
            "instance_names": instance_names,
            "repairs": repairs,
        },
    )


def _log_repairs(repairs: list[dict]) -> None:
    per_file: dict[str, int] = {}
    for r in repairs:
        per_file[r["file"]] = per_file.get(r["file"], 0) + 1
        if per_file[r["file"]] <= _MAX_LOGGED_PER_FILE:
            where = r["file"] if r["line"] is None else f"{r['file']}:{r['line']}"
            logger.warning("S3DIS repair %s: %s -> %s", where, r["problem"], r["action"])
    for file, count in per_file.items():
        if count > _MAX_LOGGED_PER_FILE:
            logger.warning("S3DIS repair %s: %d repairs in all (see scene.meta['repairs'])", file, count)


def write_s3dis_room(
    root: Path, area: int | str, room: str, scene: Scene, *, decimals: int = 3, room_txt: bool = True
) -> Path:
    """Returns the room folder ``root/Area_N/<room>`` after writing `scene` there in the raw S3DIS layout.

    scene.semantic holds S3DIS class ids (index of S3DIS_CLASSES) and scene.instance instance ids; each
    instance becomes ``Annotations/<class>_<k>.txt`` (k counts from 1 per class). Points with instance -1
    become one file per class. Coordinates are written with `decimals` decimals (S3DIS uses 3, i.e. mm);
    with `room_txt`, the room-level ``<room>.txt`` is written too, as in the real dataset.
    """
    area_name = area if isinstance(area, str) and area.startswith("Area_") else f"Area_{int(area)}"
    room_dir = Path(root) / area_name / room
    if scene.semantic is None or scene.instance is None:
        raise DataError(
            f"scene {scene.name}: S3DIS layout needs semantic and instance labels; label it first"
        )
    sem, inst = scene.semantic, scene.instance
    if (sem < 0).any() or (sem >= len(S3DIS_CLASSES)).any():
        raise DataError(
            f"scene {scene.name}: semantic ids must be S3DIS ids 0..{len(S3DIS_CLASSES) - 1} for every point "
            "(S3DIS has no unlabelled points; label them clutter)"
        )
    # Instances -1 are grouped per class under fresh ids above the largest given id.
    groups = np.where(inst >= 0, inst, inst.max(initial=0) + 1 + sem)
    ids, inverse = np.unique(groups, return_inverse=True)
    counts_per_class: dict[str, int] = {}
    values = np.concatenate([scene.xyz.astype(np.float64), np.round(scene.rgb * 255.0)], axis=1)
    fmt = f"%.{decimals}f %.{decimals}f %.{decimals}f %d %d %d"
    for j, gid in enumerate(ids):
        members = inverse == j
        classes = np.unique(sem[members])
        if len(classes) != 1:
            raise DataError(
                f"scene {scene.name}: instance {gid} mixes S3DIS classes "
                f"{[S3DIS_CLASSES[c] for c in classes]}; give each instance one class"
            )
        cls = S3DIS_CLASSES[int(classes[0])]
        counts_per_class[cls] = counts_per_class.get(cls, 0) + 1
        write_text(
            room_dir / "Annotations" / f"{cls}_{counts_per_class[cls]}.txt",
            _format_rows(values[members], fmt),
        )
    if room_txt:
        write_text(room_dir / f"{room}.txt", _format_rows(values, fmt))
    return room_dir


def _format_rows(values: np.ndarray, fmt: str) -> str:
    out = io.StringIO()
    np.savetxt(out, values, fmt=fmt)
    return out.getvalue()
