"""ScanNet benchmark submission format: `<dir>/<scene>.txt` listing `pred_mask/<scene>_<k>.txt label conf`.

Each mask file holds one 0/1 line per point of the scene, in reader order. Paths in the scene file are
relative to the submission folder. Scene names are written by data/names.py's encode_name_underscored
('/' as '__': S3DIS `Area_5/office_1` → `Area_5__office_1.txt`; ScanNet names as they are), which every
name survives.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from freepoint_bench.atomic import write_bytes, write_text
from freepoint_bench.data.names import decode_name_underscored, encode_name_underscored
from freepoint_bench.errors import DataError
from freepoint_bench.evaluation.instance_ap import APAccumulator, EvalResult, EvalSpec
from freepoint_bench.evaluation.predictions import Predictions

MASK_DIR = "pred_mask"
RESULT_FILE = "semantic_instance_evaluation.txt"  # what the benchmark script writes into the folder


def write_predictions(pred_dir: str | os.PathLike, scene_name: str, preds: Predictions) -> Path:
    """Returns the scene file written (atomically, masks first) for `preds` in benchmark format.

    Confidences are written with 9 significant digits, so float32 scores (and their ties) read back exactly.
    """
    root = Path(pred_dir)
    stem = encode_name_underscored(scene_name)  # never holds whitespace, which separates a line's fields
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
    return sorted(decode_name_underscored(p.stem) for p in root.glob("*.txt") if p.name != RESULT_FILE)


# Byte classes of a mask file, for reading it without a Python loop over lines.
_OTHER, _ZERO, _DIGIT, _SIGN, _BLANK, _NEWLINE = range(6)
_KIND = np.full(256, _OTHER, np.uint8)
_KIND[ord("0")] = _ZERO
_KIND[ord("1") : ord("9") + 1] = _DIGIT  # a non-zero digit: the line's integer is non-zero
_KIND[[ord("+"), ord("-")]] = _SIGN
_KIND[[ord(" "), ord("\t"), ord("\r"), 0x0B, 0x0C]] = _BLANK  # what int() strips; '\r' of '\r\n' endings
_KIND[ord("\n")] = _NEWLINE
_ONE_LINE, _ZERO_LINE = np.frombuffer(b"1\n0\n", "<u2").tolist()  # the two lines as little-endian uint16s


def read_mask(path: str | os.PathLike, num_points: int, out: np.ndarray | None = None) -> np.ndarray:
    """Returns the (num_points,) bool mask (non-zero = in) of a one-integer-per-line mask file.

    Any integer is read (sign, leading zeros and surrounding blanks allowed; '\n' or '\r\n' endings, one
    blank line at the end tolerated), without a Python loop over lines; a file with other characters
    (decimals such as '1.0') is read line by line as numbers. DataError naming the file when it is
    missing or has another number of lines, and naming the file and line when a line is not a number.
    out: a (num_points,) bool array to write the mask into (returned), e.g. a row of a (K, N) array.
    """
    try:
        raw = _read_file(path)
    except OSError as exc:
        raise DataError(f"{path}: cannot read mask file ({exc.strerror}); is the submission complete?") from None
    if out is None:
        out = np.empty(num_points, bool)
    if len(raw) == 2 * num_points:  # the common layout, '0\n' / '1\n' lines: one uint16 comparison a line
        pairs = np.frombuffer(raw, "<u2")
        np.equal(pairs, _ONE_LINE, out=out)
        if np.count_nonzero(out) + np.count_nonzero(pairs == _ZERO_LINE) == num_points:
            return out
    out[:] = _parse_mask(raw, Path(path), num_points)
    return out


def _read_file(path: str | os.PathLike) -> bytes:
    """Returns a file's bytes with two system calls for a regular file (open() costs twice as much a mask)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = [os.read(fd, os.fstat(fd).st_size + 1)]
        while chunks[-1]:  # the first read takes a regular file whole; this one sees its end
            chunks.append(os.read(fd, 1 << 20))
    finally:
        os.close(fd)
    return chunks[0] if len(chunks) == 2 else b"".join(chunks)


def _parse_mask(raw: bytes, path: Path, num_points: int) -> np.ndarray:
    """Returns the mask of a mask file's bytes in any layout (see read_mask)."""
    buf = np.frombuffer(raw, np.uint8)
    kind = _KIND[buf]
    lone_cr = (buf[:-1] == ord("\r")) & (buf[1:] != ord("\n"))  # an old-Mac line end: splitlines' business
    if (kind == _OTHER).any() or lone_cr.any():
        return _read_mask_lines(raw, path, num_points)  # decimals, words, '\r' endings: read line by line
    newline = kind == _NEWLINE
    piece = np.cumsum(newline) - newline  # the line each byte belongs to (a '\n' to the line it ends)
    prev_kind = np.concatenate([[_NEWLINE], kind[:-1]])
    token = (kind <= _SIGN) & (prev_kind >= _BLANK)  # a digit or sign after a blank, a newline or the start
    pieces = int(newline.sum()) + 1
    tokens = np.bincount(piece[token], minlength=pieces)
    lines = pieces - (len(raw) == 0 or raw.endswith(b"\n"))  # the '\n' of the last line starts no line
    if lines and tokens[lines - 1] == 0:  # tolerate one blank line at the end
        lines -= 1
    if lines != num_points:
        raise DataError(
            f"{path}: {lines} lines but the scene has {num_points} points; write one 0/1 line per point "
            "in the scene's point order"
        )
    sign = kind == _SIGN
    next_kind = np.concatenate([kind[1:], [_NEWLINE]])
    bad_sign = sign & (~token | (next_kind > _DIGIT))  # a sign must start a token and precede a digit
    bad_line = np.flatnonzero(tokens[:lines] != 1)
    if bad_sign.any() or len(bad_line):
        first = min(piece[np.flatnonzero(bad_sign)].min(initial=lines), bad_line.min(initial=lines))
        starts = np.concatenate([[0], np.flatnonzero(newline) + 1])
        text = raw[starts[first] : starts[first + 1] if first + 1 < len(starts) else len(raw)].strip()[:40]
        raise DataError(
            f"{path}:{first + 1}: {text.decode(errors='replace')!r} is not an integer; each line must be 0 or 1"
        )
    mask = np.zeros(lines, bool)
    mask[piece[kind == _DIGIT]] = True
    return mask


def _read_mask_lines(raw: bytes, path: Path, num_points: int) -> np.ndarray:
    """Returns the mask of a mask file whose lines are numbers of any form, parsed one line at a time."""
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
    masks, labels, scores = _read_scene(Path(pred_dir), scene_name, num_points)
    return Predictions(masks, labels, scores)


def _read_scene(root: Path, scene_name: str, num_points: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Returns (masks (K, N) bool, labels (K,) int64, confidences (K,) float64 as written) of one scene file."""
    scene_file = root / f"{encode_name_underscored(scene_name)}.txt"
    if not scene_file.is_file():
        raise DataError(f"{scene_file}: no predictions for scene {scene_name}; write one file per scene")
    root_abs = os.path.realpath(root)
    paths, labels, scores, seen = [], [], [], set()
    real_dirs: dict[str, str] = {}  # each mask folder resolved once, not once a mask
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
        if os.path.isabs(rel):
            raise DataError(f"{where}: mask path {rel} is absolute; write it relative to {root}")
        folder, file_name = os.path.split(os.path.join(root_abs, rel))
        if folder not in real_dirs:
            real_dirs[folder] = os.path.realpath(folder)
        mask_path = os.path.normpath(os.path.join(real_dirs[folder], file_name))
        if os.path.islink(mask_path):
            mask_path = os.path.realpath(mask_path)
        if not mask_path.startswith(root_abs + os.sep):
            raise DataError(f"{where}: mask path {rel} points outside {root}; keep masks inside the folder")
        if mask_path in seen:
            raise DataError(f"{where}: mask file {rel} is listed twice; list each mask once")
        seen.add(mask_path)
        paths.append(mask_path)
        labels.append(int(label_f))
        scores.append(conf)
    masks = np.empty((len(paths), num_points), bool)
    for k, mask_path in enumerate(paths):
        read_mask(mask_path, num_points, out=masks[k])
    return masks, np.array(labels, np.int64), np.array(scores, np.float64)


def evaluate_submission(
    pred_dir: str | os.PathLike,
    names: Sequence[str],
    ground_truth: Callable[[str], tuple[np.ndarray, np.ndarray]],
    spec: EvalSpec,
    progress: Callable[[int, int, str], None] | None = None,
) -> EvalResult:
    """Returns ScanNet-style AP of the benchmark-format folder pred_dir over the scenes `names`.

    ground_truth(name) returns the scene's (semantic, instance) (N,) ids (e.g. SceneStore.load_labels).
    One scene at a time: its labels and masks are read, matched and dropped, so memory is one scene's
    masks plus a few numbers per mask. progress(done, total, name) is called after each scene.
    """
    acc = APAccumulator(spec)
    for done, name in enumerate(names, start=1):
        semantic, instance = ground_truth(name)
        # Confidences at the precision they are written in, as the benchmark's script compares them.
        acc.add_masks(name, semantic, instance, *_read_scene(Path(pred_dir), name, len(semantic)))
        if progress is not None:
            progress(done, len(names), name)
    return acc.result()
