"""ScanNet benchmark submission format: `<dir>/<scene>.txt` listing `pred_mask/<scene>_<k>.txt label conf`.

Each mask file holds one 0/1 line per point of the scene, in reader order. Paths in the scene file are
relative to the submission folder. Scene names with '/' (S3DIS `Area_5/office_1`) are written with '__'.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from freepoint_bench.atomic import write_bytes, write_text
from freepoint_bench.errors import DataError
from freepoint_bench.evaluation.predictions import Predictions

MASK_DIR = "pred_mask"


def _file_stem(scene_name: str) -> str:
    return scene_name.replace("/", "__")


def _scene_name(stem: str) -> str:
    return stem.replace("__", "/")


def write_predictions(pred_dir: str | os.PathLike, scene_name: str, preds: Predictions) -> Path:
    """Returns the scene file written (atomically, masks first) for `preds` in benchmark format."""
    root = Path(pred_dir)
    stem = _file_stem(scene_name)
    lines = []
    for k in range(len(preds)):
        rel = f"{MASK_DIR}/{stem}_{k:03d}.txt"
        # '0\n'/'1\n' per point: build the bytes directly (np.savetxt is ~50x slower).
        body = np.where(preds.masks[k], ord("1"), ord("0")).astype(np.uint8)
        out = np.empty(2 * len(body), np.uint8)
        out[0::2] = body
        out[1::2] = ord("\n")
        write_bytes(root / rel, out.tobytes())
        lines.append(f"{rel} {int(preds.labels[k])} {float(preds.scores[k]):.6f}")
    return write_text(root / f"{stem}.txt", "".join(line + "\n" for line in lines))


def list_prediction_scenes(pred_dir: str | os.PathLike) -> list[str]:
    """Returns the scene names that have a scene file in pred_dir (sorted)."""
    return sorted(_scene_name(p.stem) for p in Path(pred_dir).glob("*.txt"))


def read_mask(path: Path, num_points: int) -> np.ndarray:
    """Returns the (num_points,) bool mask in a 0/1-per-line mask file; DataError naming the file otherwise."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read mask file ({exc.strerror}); is the submission complete?") from None
    if len(raw) == 2 * num_points and raw[1::2] == b"\n" * num_points:  # the fast, common case
        digits = np.frombuffer(raw, np.uint8)[0::2]
        if np.isin(digits, (ord("0"), ord("1"))).all():
            return digits == ord("1")
    tokens = raw.split()
    if len(tokens) != num_points:
        raise DataError(f"{path}: {len(tokens)} lines but the scene has {num_points} points; one 0/1 line per point")
    try:
        values = np.array([float(t) for t in tokens])
    except ValueError:
        raise DataError(f"{path}: non-numeric line in mask file; each line must be 0 or 1") from None
    return values != 0


def read_predictions(pred_dir: str | os.PathLike, scene_name: str, num_points: int) -> Predictions:
    """Returns the predictions of `scene_name` from a benchmark-format folder (masks in file order)."""
    root = Path(pred_dir)
    scene_file = root / f"{_file_stem(scene_name)}.txt"
    if not scene_file.is_file():
        raise DataError(f"{scene_file}: no predictions for scene {scene_name}; write one file per scene")
    masks, labels, scores = [], [], []
    for lineno, line in enumerate(scene_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        try:
            rel, label, conf = parts[0], int(parts[1]), float(parts[2])
            if len(parts) != 3:
                raise ValueError
        except (ValueError, IndexError):
            raise DataError(
                f"{scene_file}:{lineno}: expected `<mask file> <label id> <confidence>`, got {line.strip()!r}"
            ) from None
        if not np.isfinite(conf):
            raise DataError(f"{scene_file}:{lineno}: confidence {parts[2]} is not finite")
        masks.append(read_mask(root / rel, num_points))
        labels.append(label)
        scores.append(conf)
    if not masks:
        return Predictions.empty(num_points)
    return Predictions(np.stack(masks), np.array(labels), np.array(scores))
