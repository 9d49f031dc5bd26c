"""ScanNet benchmark submission format: round trip, the exact layout, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from freepoint_bench.errors import DataError
from freepoint_bench.evaluation import (
    Predictions,
    list_prediction_scenes,
    predictions_from_labels,
    read_predictions,
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
    with pytest.raises(DataError, match="without spaces"):
        write_predictions(tmp_path, "my scene", Predictions.empty(3))
