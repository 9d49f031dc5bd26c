"""ScanNet benchmark submission format: round trip, the exact layout, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from freepoint_bench.errors import DataError
from freepoint_bench.evaluation import (
    Predictions,
    evaluate,
    evaluate_submission,
    list_prediction_scenes,
    predictions_from_labels,
    read_mask,
    read_predictions,
    scannet_spec,
    write_predictions,
)


def _preds(rng, k=4, n=300):
    return Predictions(rng.random((k, n)) < 0.3, rng.integers(1, 40, k), rng.random(k).astype(np.float32))


def test_round_trip_and_layout(tmp_path):
    rng = np.random.default_rng(0)
    p = _preds(rng)
    scene_file = write_predictions(tmp_path, "scene0000_00", p)
    lines = scene_file.read_text().splitlines()
    assert lines[0].startswith("pred_mask/scene0000_00_000.txt ")
    mask0 = (tmp_path / lines[0].split()[0]).read_text().splitlines()
    assert mask0 == ["1" if v else "0" for v in p.masks[0]]
    q = read_predictions(tmp_path, "scene0000_00", 300)
    np.testing.assert_array_equal(q.masks, p.masks)
    np.testing.assert_array_equal(q.labels, p.labels)
    np.testing.assert_allclose(q.scores, p.scores, atol=1e-6)
    assert list_prediction_scenes(tmp_path) == ["scene0000_00"]


def test_scene_names_with_slash_and_empty_predictions(tmp_path):
    write_predictions(tmp_path, "Area_5/office_1", Predictions.empty(10))
    assert list_prediction_scenes(tmp_path) == ["Area_5/office_1"]
    assert len(read_predictions(tmp_path, "Area_5/office_1", 10)) == 0


def test_every_scene_name_gets_its_own_submission_files(tmp_path):
    # '/' is written '__': before one encoding owned this, 'a__b' and 'a/b' shared a file and 'a b' was refused
    names = ["a/b", "a__b", "a b", "a_b", "a_/b"]
    rng = np.random.default_rng(0)
    for k, name in enumerate(names):
        write_predictions(tmp_path, name, _preds(rng, k=k + 1, n=5))
    assert list_prediction_scenes(tmp_path) == sorted(names)
    assert [len(read_predictions(tmp_path, name, 5)) for name in names] == [1, 2, 3, 4, 5]
    assert all(len(line.split()) == 3 for p in tmp_path.glob("*.txt") for line in p.read_text().splitlines())


def test_masks_written_by_other_tools_are_read(tmp_path):
    (tmp_path / "pred_mask").mkdir()
    (tmp_path / "pred_mask" / "a.txt").write_text("0\n1\n1.0\n0\n")  # no trailing-format assumptions
    (tmp_path / "s.txt").write_text("pred_mask/a.txt 5 0.5\n\n")
    q = read_predictions(tmp_path, "s", 4)
    assert q.masks.tolist() == [[False, True, True, False]] and q.labels.tolist() == [5]


def test_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="no predictions for scene x"):
        read_predictions(tmp_path, "x", 5)
    (tmp_path / "s.txt").write_text("pred_mask/missing.txt 5 0.5\n")
    with pytest.raises(DataError, match="missing.txt"):
        read_predictions(tmp_path, "s", 5)
    (tmp_path / "pred_mask").mkdir()
    (tmp_path / "pred_mask" / "m.txt").write_text("0\n1\n")
    (tmp_path / "s.txt").write_text("pred_mask/m.txt 5 0.5\n")
    with pytest.raises(DataError, match="2 lines but the scene has 5 points"):
        read_predictions(tmp_path, "s", 5)
    (tmp_path / "s.txt").write_text("pred_mask/m.txt five 0.5\n")
    with pytest.raises(DataError, match=r"s.txt:1: expected"):
        read_predictions(tmp_path, "s", 2)


def test_predictions_from_labels():
    labels = np.array([-1, 0, 0, 2, 2, 2])
    p = predictions_from_labels(labels, scores=np.array([0.5, 0.1, 0.9]))
    assert p.masks.tolist() == [[False, True, True, False, False, False], [False, False, False, True, True, True]]
    assert p.scores.tolist() == pytest.approx([0.5, 0.9])
    assert len(predictions_from_labels(np.full(4, -1))) == 0
    with pytest.raises(DataError):
        Predictions(np.zeros((2, 3), bool), [1], [0.5, 0.5])


def test_scores_round_trip_exactly_and_ties_survive(tmp_path):
    scores = np.array([1e-7, 0.1, 0.1, 0.123456789, 1.0, 3.4e38], np.float32)
    p = Predictions(np.eye(6, 8, dtype=bool), np.arange(6), scores)
    write_predictions(tmp_path, "s", p)
    q = read_predictions(tmp_path, "s", 8)
    np.testing.assert_array_equal(q.scores, scores)
    np.testing.assert_array_equal(q.masks, p.masks)


def test_reader_follows_the_benchmark_rules(tmp_path):
    (tmp_path / "pred_mask").mkdir()
    (tmp_path / "pred_mask" / "a.txt").write_bytes(b"0\r\n2\r\n-1\r\n0\r\n")  # non-zero = in, CRLF tolerated
    (tmp_path / "s.txt").write_text("pred_mask/a.txt 5.0 1\n")  # label written as a float, as the script allows
    q = read_predictions(tmp_path, "s", 4)
    assert q.masks.tolist() == [[False, True, True, False]] and q.labels.tolist() == [5] and q.scores[0] == 1.0
    (tmp_path / "semantic_instance_evaluation.txt").write_text("class,class id,ap,ap50,ap25\n")
    assert list_prediction_scenes(tmp_path) == ["s"]  # the script's result file is not a scene
    with pytest.raises(DataError, match="predictions folder not found"):
        list_prediction_scenes(tmp_path / "nope")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("pred_mask/a.txt 5.5 0.5", r"s.txt:1: expected"),
        ("pred_mask/a.txt 5 0.5 extra", r"s.txt:1: expected"),
        ("pred_mask/a.txt 5", r"s.txt:1: expected"),
        ("pred_mask/a.txt 5 nan", "not finite"),
        ("ABS 5 0.5", "is absolute"),
        ("../outside.txt 5 0.5", "points outside"),
        ("pred_mask/a.txt 5 0.5\npred_mask/../pred_mask/a.txt 7 0.2", r"s.txt:2: mask file .* listed twice"),
    ],
)
def test_malformed_scene_files_name_the_line(tmp_path, line, message):
    (tmp_path / "pred_mask").mkdir()
    (tmp_path / "pred_mask" / "a.txt").write_text("0\n1\n")
    (tmp_path.parent / "outside.txt").write_text("0\n1\n")
    (tmp_path / "s.txt").write_text(line.replace("ABS", str(tmp_path / "pred_mask" / "a.txt")) + "\n")
    with pytest.raises(DataError, match=message):
        read_predictions(tmp_path, "s", 2)


def test_malformed_mask_files_name_the_file_and_line(tmp_path):
    (tmp_path / "pred_mask").mkdir()
    (tmp_path / "s.txt").write_text("pred_mask/a.txt 5 0.5\n")
    (tmp_path / "pred_mask" / "a.txt").write_text("0\nyes\n1\n")
    with pytest.raises(DataError, match=r"a.txt:2: 'yes' is not a number"):
        read_predictions(tmp_path, "s", 3)
    (tmp_path / "pred_mask" / "a.txt").write_text("0\n\n1\n")  # an empty line inside is a wrong line
    with pytest.raises(DataError, match=r"a.txt:2"):
        read_predictions(tmp_path, "s", 3)


# ------------------------------------------------------------------ the vectorised mask reader


def _write_mask(tmp_path, data: bytes):
    path = tmp_path / "m.txt"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("seed", range(6))
def test_any_integer_is_read_as_python_reads_it(tmp_path, seed):
    """Random integers in random spellings (sign, leading zeros, blanks, CRLF, no final newline) give the
    mask int(line) != 0 that a plain Python loop computes."""
    rng = np.random.default_rng(seed)
    n = 500
    values = rng.choice([0, 0, 1, 2, -1, 7, 10, 100, -20, 10**30], size=n)
    lines = []
    for v in values.tolist():
        text = str(abs(v)).zfill(int(rng.integers(1, 5)))  # leading zeros: '007', '0000'
        sign = "-" if v < 0 else str(rng.choice(["", "+", "-"])) if v == 0 else str(rng.choice(["", "+"]))
        pad = lambda: " " * int(rng.integers(0, 3)) + "\t" * int(rng.integers(0, 2))  # noqa: E731
        lines.append(pad() + sign + text + pad())
    ending = str(rng.choice(["\n", "\r\n"]))
    data = ending.join(lines) + (ending if seed % 2 else "")  # even seeds: no newline after the last line
    expected = [int(t) != 0 for t in data.splitlines()]
    got = read_mask(_write_mask(tmp_path, data.encode()), n)
    assert got.dtype == bool and got.tolist() == expected


def test_fast_and_general_layouts_agree(tmp_path):
    rng = np.random.default_rng(1)
    mask = rng.random(1000) < 0.3
    zero_one = "".join("1\n" if m else "0\n" for m in mask)
    assert read_mask(_write_mask(tmp_path, zero_one.encode()), 1000).tolist() == mask.tolist()
    other = "".join("+1\r\n" if m else "-0\r\n" for m in mask) + "\r\n"  # one blank line at the end
    assert read_mask(_write_mask(tmp_path, other.encode()), 1000).tolist() == mask.tolist()
    out = np.zeros((2, 1000), bool)
    row = out[1]
    assert read_mask(_write_mask(tmp_path, zero_one.encode()), 1000, out=row) is row
    assert out[1].tolist() == mask.tolist() and not out[0].any()
    # a file of the right length with a byte other than 0/1 in a digit place is not taken for 0/1 lines
    assert read_mask(_write_mask(tmp_path, b"2\n0\n"), 2).tolist() == [True, False]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"0\n1 1\n0\n", r"m.txt:2: '1 1' is not an integer"),
        (b"0\n1\n+-1\n", r"m.txt:3: '\+-1' is not an integer"),
        (b"1-\n0\n1\n", r"m.txt:1: '1-' is not an integer"),
        (b"0\n-\n1\n", r"m.txt:2: '-' is not an integer"),
        (b"0\n \n1\n", r"m.txt:2: '' is not an integer"),
        (b"0\n1\n0x1\n", r"m.txt:3: '0x1' is not a number"),
        (b"0\n1\n1\n\n\n", "4 lines but the scene has 3 points"),  # one blank line at the end, not two
        (b"0\n1\n", "2 lines but the scene has 3 points"),
        (b"0\r1\r1\r0\r", "4 lines but the scene has 3 points"),  # '\r' endings: read line by line
        (b"0\n1\nnan\n", "non-finite value"),
    ],
)
def test_malformed_mask_file_is_one_error_naming_the_file_and_line(tmp_path, data, message):
    with pytest.raises(DataError, match=message) as exc:
        read_mask(_write_mask(tmp_path, data), 3)
    assert "\n" not in str(exc.value) and str(tmp_path / "m.txt") in str(exc.value)


def test_malformed_mask_in_a_submission_names_its_file(tmp_path):
    """Through the submission reader and evaluate_submission: the error names the mask file and its line."""
    (tmp_path / "pred_mask").mkdir()
    (tmp_path / "s.txt").write_text("pred_mask/good.txt 5 0.5\npred_mask/bad.txt 5 0.4\n")
    (tmp_path / "pred_mask" / "good.txt").write_text("0\n1\n1\n")
    (tmp_path / "pred_mask" / "bad.txt").write_text("0\n1\n2 0\n")
    gt = (np.array([5, 5, 5]), np.array([0, 0, 0]))
    with pytest.raises(DataError, match=r"bad.txt:3: '2 0' is not an integer"):
        evaluate_submission(tmp_path, ["s"], lambda name: gt, scannet_spec(min_region_size=1))
    with pytest.raises(DataError, match="cannot read mask file"):
        read_mask(tmp_path / "pred_mask", 3)  # a folder, not a file


def test_mask_paths_through_symlinks_stay_inside(tmp_path):
    root, outside = tmp_path / "sub", tmp_path / "elsewhere"
    (root / "pred_mask").mkdir(parents=True)
    outside.mkdir()
    (outside / "m.txt").write_text("1\n0\n")
    (root / "pred_mask" / "link.txt").symlink_to(outside / "m.txt")
    (root / "s.txt").write_text("pred_mask/link.txt 5 0.5\n")
    with pytest.raises(DataError, match="points outside"):
        read_predictions(root, "s", 2)
    (root / "pred_mask" / "m.txt").write_text("1\n0\n")
    (root / "alias").symlink_to(root / "pred_mask")  # a folder link inside the submission is fine
    (root / "s.txt").write_text("alias/m.txt 5 0.5\n")
    assert read_predictions(root, "s", 2).masks.tolist() == [[True, False]]


# ------------------------------------------------------------------ evaluating a submission folder


def test_evaluate_submission_matches_evaluate_on_what_was_written(tmp_path):
    rng = np.random.default_rng(3)
    gts, preds = [], {}
    for s in range(4):
        ins = np.sort(rng.integers(-1, 6, 600))
        sem = np.where(ins >= 0, rng.choice([5, 7, 3], 6)[np.maximum(ins, 0)], 1)
        masks = (ins[None, :] == rng.integers(0, 6, 8)[:, None]) ^ (rng.random((8, 600)) < 0.05)
        preds[f"s{s}"] = Predictions(masks, rng.choice([5, 7, 3, 99], 8), rng.random(8).astype(np.float32))
        gts.append((f"s{s}", sem, ins))
        write_predictions(tmp_path, f"s{s}", preds[f"s{s}"])
    labels = {name: (sem, ins) for name, sem, ins in gts}
    for agnostic in (False, True):
        spec = scannet_spec(class_agnostic=agnostic, min_region_size=20)
        seen: list[tuple] = []
        got = evaluate_submission(
            tmp_path, list(labels), labels.__getitem__, spec, progress=lambda *a, seen=seen: seen.append(a)
        )
        want = evaluate(gts, preds, spec)
        np.testing.assert_array_equal(got.ap_table, want.ap_table)
        assert (got.ap, got.ap50, got.ap25, got.num_scenes) == (want.ap, want.ap50, want.ap25, 4)
        assert seen[-1] == (4, 4, "s3")


def test_evaluate_submission_compares_confidences_as_written(tmp_path):
    """Two confidences that float32 would merge into a tie stay apart, as in the benchmark's script: the true
    positive ranks above the false positive (AP 1), where a tie would give AP 0.75."""
    (tmp_path / "pred_mask").mkdir()
    (tmp_path / "pred_mask" / "hit.txt").write_text("1\n" * 200 + "0\n" * 200)
    (tmp_path / "pred_mask" / "miss.txt").write_text("0\n" * 200 + "1\n" * 200)
    (tmp_path / "s.txt").write_text("pred_mask/hit.txt 5 0.50000000002\npred_mask/miss.txt 5 0.50000000001\n")
    sem = np.array([5] * 200 + [7] * 200)  # the miss lies on a table: a false positive for chair
    ins = np.array([0] * 200 + [1] * 200)
    r = evaluate_submission(tmp_path, ["s"], lambda name: (sem, ins), scannet_spec())
    assert r.per_class["chair"]["ap50"] == 1.0
    assert np.float32(0.50000000002) == np.float32(0.50000000001)  # what reading them as float32 would do
    tied = evaluate([("s", sem, ins)], {"s": read_predictions(tmp_path, "s", 400)}, scannet_spec())
    assert tied.per_class["chair"]["ap50"] == 0.75  # precision 0.5 at recall 1, the end point at recall 0
