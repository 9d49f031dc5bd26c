"""ScanNet benchmark submission format: `<dir>/<scene>.txt` listing `pred_mask/<scene>_<k>.txt label conf`.

Each mask file holds one 0/1 line per point of the scene, in reader order. Paths in the scene file are
relative to the submission folder. Scene names with '/' (S3DIS `Area_5/office_1`) are written with '__'
(so a name that itself contains '__' does not round-trip).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from freepoint_bench.atomic import write_bytes, write_text
from freepoint_bench.errors import DataError
from freepoint_bench.evaluation.predictions import Predictions

MASK_DIR = "pred_mask"
RESULT_FILE = "semantic_instance_evaluation.txt"  # what the benchmark script writes into the folder


def _file_stem(scene_name: str) -> str:
    return scene_name.replace("/", "__")


def _scene_name(stem: str) -> str:
    return stem.replace("__", "/")


def write_predictions(pred_dir: str | os.PathLike, scene_name: str, preds: Predictions) -> Path:
    """Returns the scene file written (atomically, masks first) for `preds` in benchmark format.

    Confidences are written with 9 significant digits, so float32 scores (and their ties) read back exactly.
    """
    root = Path(pred_dir)
    stem = _file_stem(scene_name)
    if not stem or any(ch.isspace() for ch in stem):
        raise DataError(f"scene name {scene_name!r}: the benchmark format needs a non-empty name without spaces")
    lines = []
    for k in range(len(preds)):
        rel = f"{MASK_DIR}/{stem}_{k:03d}.txt"
        # '0\n'/'1\n' per point: build the bytes directly (np.savetxt is ~50x slower).
        out = np.full(2 * preds.num_points, ord("\n"), np.uint8)
        out[0::2] = np.where(preds.masks[k], ord("1"), ord("0"))
        write_bytes(root / rel, out.tobytes())
        lines.append(f"{rel} {int(preds.labels[k])} {float(preds.scores[k]):.9g}")
    return write_text(root / f"{stem}.txt", "".join(line + "\n" for line in lines))


def list_prediction_scenes(pred_dir: str | os.PathLike) -> list[str]:
    """Returns the scene names that have a scene file in pred_dir (sorted; the benchmark's result file skipped)."""
    root = Path(pred_dir)
    if not root.is_dir():
        raise DataError(f"{root}: predictions folder not found; pass the folder holding <scene>.txt files")
    return sorted(_scene_name(p.stem) for p in root.glob("*.txt") if p.name != RESULT_FILE)


def read_mask(path: Path, num_points: int) -> np.ndarray:
    """Returns the (num_points,) bool mask (non-zero = in) of a one-integer-per-line mask file.

    DataError naming the file when it is missing, has another number of lines, or a non-numeric line.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read mask file ({exc.strerror}); is the submission complete?") from None
    if len(raw) == 2 * num_points and raw[1::2] == b"\n" * num_points:  # the fast, common case: 0/1 lines
        digits = np.frombuffer(raw, np.uint8)[0::2]
        if np.isin(digits, (ord("0"), ord("1"))).all():
            return digits == ord("1")
    lines = raw.splitlines()
    if lines and not lines[-1].strip():  # tolerate one blank line at the end
        lines = lines[:-1]
    if len(lines) != num_points:
        raise DataError(
            f"{path}: {len(lines)} lines but the scene has {num_points} points; write one 0/1 line per point "
            "in the scene's point order"
        )
    try:
        values = np.array([float(t) for t in lines])
    except ValueError:
        bad = next(i for i, t in enumerate(lines, start=1) if not _is_number(t))
        text = lines[bad - 1][:40].decode(errors="replace")
        raise DataError(f"{path}:{bad}: {text!r} is not a number; each line must be 0 or 1") from None
    if not np.isfinite(values).all():
        raise DataError(f"{path}: non-finite value in mask file; each line must be 0 or 1")
    return values != 0


def _is_number(token: bytes) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def read_predictions(pred_dir: str | os.PathLike, scene_name: str, num_points: int) -> Predictions:
    """Returns the predictions of `scene_name` from a benchmark-format folder (masks in file order).

    Follows the benchmark's reader: three space-separated fields a line, the mask path relative to
    pred_dir and inside it, the label id an integer (written as int or float), the confidence a float.
    """
    root = Path(pred_dir)
    scene_file = root / f"{_file_stem(scene_name)}.txt"
    if not scene_file.is_file():
        raise DataError(f"{scene_file}: no predictions for scene {scene_name}; write one file per scene")
    root_abs = root.resolve()
    masks, labels, scores, seen = [], [], [], set()
    for lineno, line in enumerate(scene_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{scene_file}:{lineno}"
        parts = line.split()
        try:
            if len(parts) != 3:
                raise ValueError
            rel, label_f, conf = parts[0], float(parts[1]), float(parts[2])
            if label_f != int(label_f):
                raise ValueError
        except (ValueError, OverflowError):
            raise DataError(f"{where}: expected `<mask file> <label id> <confidence>`, got {line.strip()!r}") from None
        if not np.isfinite(conf):
            raise DataError(f"{where}: confidence {parts[2]} is not finite; give every mask a finite score")
        if Path(rel).is_absolute():
            raise DataError(f"{where}: mask path {rel} is absolute; write it relative to {root}")
        mask_path = (root_abs / rel).resolve()
        if not mask_path.is_relative_to(root_abs):
            raise DataError(f"{where}: mask path {rel} points outside {root}; keep masks inside the folder")
        if mask_path in seen:
            raise DataError(f"{where}: mask file {rel} is listed twice; list each mask once")
        seen.add(mask_path)
        masks.append(read_mask(mask_path, num_points))
        labels.append(int(label_f))
        scores.append(conf)
    if not masks:
        return Predictions.empty(num_points)
    return Predictions(np.stack(masks), np.array(labels, np.int64), np.array(scores))
