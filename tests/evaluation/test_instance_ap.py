"""ScanNet-style AP: oracles, hand-worked cases, and a loop-by-loop reference on random inputs."""

from __future__ import annotations

import json
import math
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from freepoint_bench.data.classes import SCANNET_INSTANCE_IDS
from freepoint_bench.data.scene import Scene
from freepoint_bench.errors import ConfigError, DataError
from freepoint_bench.evaluation import (
    OVERLAPS,
    APAccumulator,
    EvalSpec,
    Predictions,
    dataset_spec,
    evaluate,
    predictions_from_labels,
    s3dis_spec,
    scannet_spec,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_evaluator as official  # noqa: E402

CHAIR, TABLE, WALL = 5, 7, 1


def _scene(sizes_classes, void=0):
    """Returns (semantic, instance) with one block of points per (size, class) instance, then `void` wall points."""
    sem, ins = [], []
    for i, (size, cls) in enumerate(sizes_classes):
        sem += [cls] * size
        ins += [i] * size
    sem += [WALL] * void
    ins += [-1] * void
    return np.array(sem), np.array(ins)


def _pred(masks, labels, scores):
    return Predictions(np.array(masks, bool), np.array(labels), np.array(scores, float))


# ------------------------------------------------------------------ oracles


def test_perfect_predictions_score_exactly_one():
    sem, ins = _scene([(150, CHAIR), (200, TABLE), (120, CHAIR)], void=300)
    preds = _pred([ins == i for i in range(3)], [CHAIR, TABLE, CHAIR], [0.9, 0.8, 0.7])
    for spec in (scannet_spec(), scannet_spec(class_agnostic=True)):
        r = evaluate([("s", sem, ins)], {"s": preds}, spec)
        assert (r.ap, r.ap50, r.ap25) == (1.0, 1.0, 1.0)


def test_no_predictions_score_exactly_zero_and_classes_without_gt_are_nan():
    sem, ins = _scene([(150, CHAIR)], void=100)
    r = evaluate([("s", sem, ins)], {}, scannet_spec())
    assert (r.ap, r.ap50, r.ap25) == (0.0, 0.0, 0.0)
    assert r.per_class["chair"]["ap"] == 0.0 and math.isnan(r.per_class["table"]["ap"])
    assert r.to_dict()["per_class"]["table"]["ap"] is None


def test_nine_thresholds_and_strictly_greater():
    assert len(OVERLAPS) == 10 and np.isclose(OVERLAPS[-1], 0.25) and np.isclose(OVERLAPS[:9].max(), 0.9)
    # IoU exactly 0.5 (100 of 200 points) must not match at 0.5 but matches at 0.25.
    sem, ins = _scene([(200, CHAIR)])
    mask = np.zeros(200, bool)
    mask[:100] = True
    r = evaluate([("s", sem, ins)], {"s": _pred([mask], [CHAIR], [1.0])}, scannet_spec())
    assert r.ap50 == 0.0 and r.ap25 == 1.0


def test_duplicate_prediction_is_a_false_positive_with_the_lower_score():
    sem, ins = _scene([(200, CHAIR), (200, CHAIR)])
    a, b = ins == 0, ins == 1
    # a matched twice: the duplicate (score 0.9 > 0.5 of the first) leaves 0.9 with the GT, 0.5 as FP.
    preds = _pred([a, a, b], [CHAIR] * 3, [0.5, 0.9, 0.7])
    r = evaluate([("s", sem, ins)], {"s": preds}, scannet_spec())
    # Sorted by score: TP .9, TP .7, FP .5 → precision stays 1 until recall 1: AP = 1.
    assert r.ap50 == 1.0
    # With the duplicate's lower score above a TP, precision drops: TP .9, FP .8, TP .7
    preds = _pred([a, a, b], [CHAIR] * 3, [0.9, 0.8, 0.7])
    r = evaluate([("s", sem, ins)], {"s": preds}, scannet_spec())
    # Ascending scores .7 T, .8 F, .9 T → curve points (p, r): (2/3, 1), (1/2, 1/2), (1, 1/2), then the
    # artificial (1, 0). Step widths 0.5 * (r[i-1] - r[i+1]) = 1/4 each → AP = (2/3 + 1/2 + 1 + 1) / 4 = 19/24.
    assert r.ap50 == pytest.approx(19 / 24, abs=1e-12)
    chair = scannet_spec().class_names.index("chair")
    assert r.ap50 == pytest.approx(_reference_ap([("s", sem, ins)], {"s": preds}, scannet_spec())[chair, 0])


def test_prediction_mostly_on_void_is_ignored_not_a_false_positive():
    sem, ins = _scene([(200, CHAIR)], void=400)
    on_wall = np.zeros(600, bool)
    on_wall[200:500] = True  # entirely void points
    good = ins == 0
    preds = _pred([good, on_wall], [CHAIR, CHAIR], [0.5, 0.9])
    r = evaluate([("s", sem, ins)], {"s": preds}, scannet_spec())
    assert r.ap == 1.0  # the high-scoring wall mask is ignored


def test_missed_gt_with_only_ignored_predictions_scores_zero():
    # An empty precision/recall curve (the GT missed, the only prediction ignored) scores 0, not an error.
    sem, ins = _scene([(200, CHAIR)], void=300)
    r = evaluate([("s", sem, ins)], {"s": _pred([ins < 0], [CHAIR], [0.9])}, scannet_spec())
    assert (r.ap, r.ap50, r.ap25) == (0.0, 0.0, 0.0)


def test_tiny_gt_is_dropped_and_predictions_on_it_ignored():
    sem, ins = _scene([(50, CHAIR), (200, CHAIR)])
    preds = _pred([ins == 0, ins == 1], [CHAIR, CHAIR], [0.9, 0.8])
    r = evaluate([("s", sem, ins)], {"s": preds}, scannet_spec(min_region_size=100))
    assert r.ap == 1.0  # the 50-point mask is below min_region_size: dropped
    r = evaluate([("s", sem, ins)], {"s": preds}, scannet_spec(min_region_size=10))
    assert r.ap == 1.0


def test_ties_in_confidence_match_the_reference():
    rng = np.random.default_rng(3)
    sem, ins = _scene([(150, CHAIR), (150, CHAIR), (150, CHAIR)], void=150)
    masks = [(ins == i) & (rng.random(600) < 0.8) for i in range(3)] + [rng.random(600) < 0.3]
    preds = _pred(masks, [CHAIR] * 4, [0.5, 0.5, 0.5, 0.5])
    r = evaluate([("s", sem, ins)], {"s": preds}, scannet_spec())
    ref = _reference_ap([("s", sem, ins)], {"s": preds}, scannet_spec())
    assert r.ap_table[scannet_spec().class_names.index("chair")] == pytest.approx(ref[2], nan_ok=True)


def test_wrong_class_prediction_does_not_match_but_counts_class_agnostically():
    sem, ins = _scene([(200, CHAIR)])
    preds = _pred([ins == 0], [TABLE], [1.0])
    assert evaluate([("s", sem, ins)], {"s": preds}, scannet_spec()).ap == 0.0
    assert evaluate([("s", sem, ins)], {"s": preds}, scannet_spec(class_agnostic=True)).ap == 1.0


def test_s3dis_spec_structure_and_clutter_void():
    spec = s3dis_spec()
    assert len(spec.class_ids) == 13
    assert "wall" not in s3dis_spec(structure_void=True).class_names
    assert "clutter" not in s3dis_spec(clutter_void=True).class_names
    # class-agnostic object masks: a missed wall does not count once structure is void
    sem = np.array([2] * 300 + [8] * 200)  # wall, chair
    ins = np.array([0] * 300 + [1] * 200)
    preds = predictions_from_labels(np.where(ins == 1, 0, -1))
    assert evaluate([("s", sem, ins)], {"s": preds}, s3dis_spec(class_agnostic=True)).ap25 < 1.0
    assert evaluate([("s", sem, ins)], {"s": preds}, s3dis_spec(class_agnostic=True, structure_void=True)).ap == 1.0


def test_prediction_on_a_tiny_gt_is_ignored_only_while_that_share_exceeds_the_threshold():
    # A: 200 chair points, B: a 60-point chair (below min_region_size 100). P covers B and 50 points of A:
    # IoU(P, A) = 50 / 260 < 0.25; its ignored share is 60 / 110 = 0.545, so P is ignored at 0.25 and 0.5
    # and a false positive (score 0.9, above A's true positive at 0.5) from 0.55 on.
    sem, ins = _scene([(200, CHAIR), (60, CHAIR)])
    p_mask = (ins == 1) | (np.arange(len(ins)) < 50)
    r = evaluate([("s", sem, ins)], {"s": _pred([ins == 0, p_mask], [CHAIR, CHAIR], [0.5, 0.9])}, scannet_spec())
    # From 0.55: ascending .5 TP, .9 FP → (p, r) = (1/2, 1), (0, 0), artificial (1, 0); widths 1/2, 1/2, 0.
    assert r.ap50 == 1.0 and r.ap25 == 1.0
    np.testing.assert_allclose(r.ap_table[scannet_spec().class_names.index("chair"), 1:9], 0.25, rtol=1e-15)
    assert r.ap == pytest.approx((1 + 8 * 0.25) / 9, rel=1e-15)


def test_gt_class_is_the_majority_of_annotated_points_and_points_take_their_instance_class():
    # 70 unannotated + 50 chair points: a chair (unannotated points do not vote); 20 wall-labelled points
    # inside a 180-point chair are chair points, not void.
    sem = np.array([-1] * 70 + [CHAIR] * 50 + [CHAIR] * 160 + [WALL] * 20)
    ins = np.array([0] * 120 + [1] * 180)
    preds = _pred([ins == 0, ins == 1], [CHAIR, CHAIR], [0.9, 0.8])
    r = evaluate([("s", sem, ins)], {"s": preds}, scannet_spec())
    assert (r.ap, r.ap50, r.ap25) == (1.0, 1.0, 1.0)
    first = [("s", sem[:120], ins[:120])]
    assert evaluate(first, {}, scannet_spec()).per_class["chair"]["ap25"] == 0.0  # a chair to find, not NaN
    # a wall-majority instance is void: a mask on it is ignored, not a false positive
    sem2 = np.array([WALL] * 120 + [CHAIR] * 180)
    r = evaluate([("s", sem2, ins)], {"s": preds}, scannet_spec())
    assert (r.ap, r.ap50, r.ap25) == (1.0, 1.0, 1.0)


def test_class_agnostic_gt_order_is_instance_id_order():
    # Two 150-point instances, a table and a chair; a mask merging both has IoU 0.5 with each, so at 0.25
    # the GT with the smaller instance id takes it, whatever its class id.
    sem = np.array([TABLE] * 150 + [CHAIR] * 150)
    ins = np.array([0] * 150 + [1] * 150)
    preds = _pred([np.ones(300, bool), sem == CHAIR], [CHAIR, CHAIR], [0.9, 0.8])
    spec = scannet_spec(class_agnostic=True)
    assert evaluate([("s", sem, ins)], {"s": preds}, spec).ap25 == 1.0  # merged → table, chair mask → chair
    # Chair first: it takes the merged mask (.9), its own mask is a duplicate FP (.8), the table is missed.
    # Ascending .8 F, .9 T with one hard FN → (p, r) = (1/2, 1/2), (1, 1/2), (1, 0): AP = 0 + 1/4 + 1/4.
    flipped = [("s", sem, 1 - ins)]
    assert evaluate(flipped, {"s": preds}, spec).ap25 == 0.5
    assert _reference_ap(flipped, {"s": preds}, spec)[0, 9] == pytest.approx(0.5)


def test_accepts_scene_objects_and_checks_its_inputs():
    sem, ins = _scene([(150, CHAIR)], void=50)
    scene = Scene("scene0000_00", np.zeros((200, 3), np.float32), np.zeros((200, 3), np.float32),
                  semantic=sem, instance=ins)
    preds = {"scene0000_00": _pred([ins == 0], [CHAIR], [1.0])}
    assert evaluate([scene], preds, scannet_spec()).ap == 1.0
    assert evaluate([scene], preds, scannet_spec()).num_scenes == 1
    with pytest.raises(DataError, match="twice"):
        evaluate([scene, scene], preds, scannet_spec())
    with pytest.raises(DataError, match="without ground truth"):
        evaluate([scene], {**preds, "other": preds["scene0000_00"]}, scannet_spec())
    with pytest.raises(DataError, match="cover 199 points but the scene has 200"):
        evaluate([scene], {"scene0000_00": _pred([ins[:199] == 0], [CHAIR], [1.0])}, scannet_spec())
    with pytest.raises(DataError, match="must be"):
        evaluate([("s", sem, ins[:10])], {}, scannet_spec())
    with pytest.raises(DataError, match="no ground-truth labels"):
        evaluate([Scene("u", np.zeros((3, 3), np.float32), np.zeros((3, 3), np.float32))], {}, scannet_spec())
    with pytest.raises(ConfigError, match="min_region_size"):
        scannet_spec(min_region_size=0)
    with pytest.raises(ConfigError):
        EvalSpec((1, 1), ("a", "b"))


def test_to_dict_is_json_ready():
    sem, ins = _scene([(150, CHAIR)])
    d = evaluate([("s", sem, ins)], {}, scannet_spec()).to_dict()
    text = json.dumps(d, allow_nan=False)
    assert json.loads(text)["ap"] == 0.0 and d["per_class"]["table"]["ap50"] is None and d["num_scenes"] == 1


# ------------------------------------------------------------------ reference implementation


def _reference_ap(gts, preds_by_scene, spec) -> np.ndarray:
    """Returns (classes, thresholds) AP by following the benchmark script's loops and dicts literally:
    its assign_instances_for_scan here (for any spec), its evaluate_matches from benchmarks/bench_evaluator."""
    labels = spec.labels
    # GT ids as the benchmark encodes them, label * ENC + instance + 1 (0 = unannotated), with the label
    # code = class index + 1 (so that class id 0 of S3DIS stays apart from "unannotated") and one code for
    # all classes when class-agnostic; ENC instead of 1000 because random instance ids exceed 999.
    enc = 1_000_000
    code_of = {cid: 1 if spec.class_agnostic else ci + 1 for ci, cid in enumerate(spec.class_ids)}
    label_of_code = {code: labels[code - 1] for code in set(code_of.values())}
    matches = {}
    for name, sem, ins in gts:
        code_of_inst = {}
        for i in np.unique(ins[ins >= 0]):
            vals, counts = np.unique(sem[(ins == i) & (sem >= 0)], return_counts=True)
            majority = vals[np.argmax(counts)] if len(vals) else -1
            code_of_inst[i] = code_of.get(int(majority), 0)
        gt_ids = np.array([code_of_inst[i] * enc + i + 1 if i >= 0 else 0 for i in ins], np.int64)
        gt2pred = {lab: [] for lab in labels}
        for gid in np.unique(gt_ids):
            if gid == 0 or gid // enc not in label_of_code:
                continue
            gt2pred[label_of_code[gid // enc]].append(
                {"instance_id": gid, "vert_count": int((gt_ids == gid).sum()), "matched_pred": []}
            )
        for lab in labels:
            assert all(g["instance_id"] >= enc for g in gt2pred[lab])  # no "groups": the script's rule is moot
        pred2gt = {lab: [] for lab in labels}
        # void: points whose GT label is not evaluated (the `gt_ids // 1000` rule of the script's forks)
        bool_void = ~np.isin(gt_ids // enc, list(label_of_code))
        p = preds_by_scene.get(name)
        for k in range(0 if p is None else len(p)):
            label_id = int(p.labels[k])
            if spec.class_agnostic:
                label_name = "object"
            elif label_id in code_of:
                label_name = labels[code_of[label_id] - 1]
            else:
                continue
            mask = p.masks[k]
            num = int(mask.sum())
            if num < spec.min_region_size:
                continue
            pred = {"filename": f"{name}_{k}", "vert_count": num, "confidence": float(p.scores[k])}
            pred["void_intersection"] = int((bool_void & mask).sum())
            matched_gt = []
            for gt in gt2pred[label_name]:
                inter = int(((gt_ids == gt["instance_id"]) & mask).sum())
                if inter > 0:
                    gt_copy, pred_copy = dict(gt), dict(pred)
                    gt_copy["intersection"] = pred_copy["intersection"] = inter
                    matched_gt.append(gt_copy)
                    gt["matched_pred"].append(pred_copy)
            pred["matched_gt"] = matched_gt
            pred2gt[label_name].append(pred)
        matches[name] = {"gt": gt2pred, "pred": pred2gt}

    # The matching and AP integration: the benchmark script's evaluate_matches as bench_evaluator transcribes
    # it for its timing (which this test thereby checks too).
    return official.official_ap(matches, labels, spec.min_region_size)


def _random_case(rng, classes, n_scenes=3, n=400):
    """Returns (gts, preds): blocky instances with label noise, id gaps, and masks that copy, merge, cut
    or miss GT instances, with tied scores and labels inside and outside `classes`."""
    gts, preds = [], {}
    for s in range(n_scenes):
        n_inst = int(rng.integers(1, 7))
        ins = np.sort(rng.integers(-1, n_inst, size=n))  # blocks ...
        noise = rng.random(n) < 0.1
        ins[noise] = rng.integers(-1, n_inst, size=noise.sum())  # ... with noise
        inst_cls = rng.choice(classes, size=n_inst)
        sem = np.where(ins >= 0, inst_cls[np.maximum(ins, 0)], rng.choice(classes, size=n))
        # semantic labels that disagree with the instance's majority, unannotated points inside instances
        flip = rng.random(n) < rng.uniform(0, 0.3)
        sem[flip] = rng.choice(list(classes) + [-1], size=flip.sum())
        ins = np.where(ins >= 0, ins * int(rng.integers(1, 4)) + int(rng.integers(0, 3)), -1)  # id gaps
        gts.append((f"s{s}", sem, ins))
        ids = np.unique(ins[ins >= 0])
        k = int(rng.integers(0, 10))
        masks = []
        for _ in range(k):
            u = rng.random()
            if u < 0.5 and len(ids):
                base = ins == rng.choice(ids)
                masks.append(base ^ (rng.random(n) < rng.uniform(0, 0.3)))
            elif u < 0.7 and len(ids):  # two GT instances merged: above 0.25 with both
                masks.append(np.isin(ins, rng.choice(ids, size=2)))
            elif u < 0.8 and masks:  # a duplicate of an earlier mask
                masks.append(masks[int(rng.integers(0, len(masks)))].copy())
            else:
                start = rng.integers(0, n)
                m = np.zeros(n, bool)
                m[start : start + rng.integers(0, 200)] = True
                masks.append(m)
        scores = np.round(rng.random(k), 1)  # ties on purpose
        labels = rng.choice(list(classes) + [99], size=k)
        preds[f"s{s}"] = Predictions(np.array(masks, bool).reshape(k, n), labels, scores)
    return gts, preds


def _check_against_reference(gts, preds, spec):
    result = evaluate(gts, preds, spec)
    ref = _reference_ap(gts, preds, spec)
    np.testing.assert_allclose(result.ap_table, ref, rtol=1e-9, atol=1e-12, equal_nan=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = [np.nanmean(ref[:, :9]), np.nanmean(ref[:, 9]), np.nanmean(ref[:, 0])]
    assert [result.ap, result.ap25, result.ap50] == pytest.approx(expected, nan_ok=True, rel=1e-12)


@pytest.mark.parametrize("seed", range(25))
@pytest.mark.parametrize("agnostic", [False, True])
def test_matches_the_reference_on_random_inputs(seed, agnostic):
    rng = np.random.default_rng(seed)
    gts, preds = _random_case(rng, [CHAIR, TABLE, 3, WALL])
    spec = scannet_spec(class_agnostic=agnostic, min_region_size=int(rng.choice([1, 20, 60])))
    _check_against_reference(gts, preds, spec)


@pytest.mark.parametrize("seed", range(10))
def test_matches_the_reference_on_random_s3dis_inputs(seed):
    rng = np.random.default_rng(100 + seed)
    gts, preds = _random_case(rng, [0, 2, 7, 8, 12])  # ceiling (id 0), wall, table, chair, clutter
    agnostic, clutter_void = bool(seed % 2), bool(seed // 2 % 2)
    spec = s3dis_spec(class_agnostic=agnostic, clutter_void=clutter_void, min_region_size=int(rng.choice([1, 40])))
    _check_against_reference(gts, preds, spec)


# ------------------------------------------------------------------ real ScanNet development scans

DEV = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "scannet-dev"


@pytest.mark.realdata
def test_real_scans_oracle_round_trip_and_reference(tmp_path):
    if not (DEV / "scene0000_00_vert.npy").is_file():
        pytest.skip(f"ScanNet dev scans not found under {DEV}")
    from freepoint_bench.data.readers import get_reader
    from freepoint_bench.evaluation import read_predictions, write_predictions

    reader = get_reader("scannet-npy")
    scenes = [reader.read_scene(DEV, name) for name in reader.list_scenes(DEV)[:2]]
    rng = np.random.default_rng(0)
    perfect, noisy = {}, {}
    for s in scenes:
        ids = np.unique(s.instance[s.instance >= 0])
        masks = s.instance[None, :] == ids[:, None]
        labels = np.array([np.bincount(s.semantic[m] + 1).argmax() - 1 for m in masks])
        perfect[s.name] = Predictions(masks, labels, rng.random(len(ids)))
        # eroded, merged and relabelled copies: every rule of the matching gets exercised on real layouts
        eroded = masks & (rng.random(masks.shape) < rng.uniform(0.3, 1.0, (len(ids), 1)))
        merged = masks[rng.permutation(len(ids))] | masks
        relabelled = np.where(rng.random(len(ids)) < 0.2, rng.choice(SCANNET_INSTANCE_IDS, len(ids)), labels)
        noisy[s.name] = Predictions(
            np.concatenate([eroded, merged]), np.concatenate([relabelled, labels]), rng.random(2 * len(ids)).round(2)
        )
    for agnostic in (False, True):
        spec = scannet_spec(class_agnostic=agnostic)
        r = evaluate(scenes, perfect, spec)
        assert (r.ap, r.ap50, r.ap25) == (1.0, 1.0, 1.0)
        gts = [(s.name, s.semantic, s.instance) for s in scenes]
        _check_against_reference(gts, noisy, spec)
    for s in scenes:
        write_predictions(tmp_path, s.name, noisy[s.name])
    back = {s.name: read_predictions(tmp_path, s.name, s.num_points) for s in scenes}
    np.testing.assert_array_equal(evaluate(scenes, back, scannet_spec()).ap_table,
                                  evaluate(scenes, noisy, scannet_spec()).ap_table)


# ------------------------------------------------------------------ streaming and the counting fast paths


def test_accumulator_one_scene_at_a_time_equals_evaluate():
    rng = np.random.default_rng(7)
    gts, preds = _random_case(rng, [CHAIR, TABLE, 3, WALL], n_scenes=5)
    spec = scannet_spec(min_region_size=20)
    acc = APAccumulator(spec)
    for name, sem, ins in gts:
        acc.add(name, sem, ins, preds.get(name))
    np.testing.assert_array_equal(acc.result().ap_table, evaluate(gts, preds, spec).ap_table)
    assert acc.names == {name for name, _, _ in gts}
    with pytest.raises(DataError, match="given twice"):
        acc.add(*gts[0], None)


@pytest.mark.parametrize("seed", range(5))
def test_huge_ids_and_labels_below_minus_one_take_the_sorting_path_with_the_same_result(seed):
    """Instance ids up to 1e12 and unannotated points written as -7 leave the counting tables for np.unique:
    the AP table must not change (the id order, hence the GT order, is kept by the monotone map)."""
    rng = np.random.default_rng(200 + seed)
    gts, preds = _random_case(rng, [CHAIR, TABLE, 3, WALL])
    spec = scannet_spec(min_region_size=int(rng.choice([1, 20])))
    big = [(name, np.where(sem < 0, -7, sem), np.where(ins >= 0, ins * 10**11 + 3, -1)) for name, sem, ins in gts]
    np.testing.assert_array_equal(evaluate(big, preds, spec).ap_table, evaluate(gts, preds, spec).ap_table)
    _check_against_reference(gts, preds, spec)  # (the reference's id encoding cannot hold ids of 1e11)


def test_dataset_spec_names_the_datasets_and_refuses_others():
    assert dataset_spec("scannet-npy").class_ids == scannet_spec().class_ids
    assert dataset_spec("ScanNet", class_agnostic=True, min_region_size=7).labels == ("object",)
    assert dataset_spec("scannet", min_region_size=7).min_region_size == 7
    agnostic = dataset_spec("synthetic", class_agnostic=True)
    assert "clutter" not in agnostic.class_names and "wall" not in agnostic.class_names
    assert len(dataset_spec("s3dis").class_ids) == 13
    with pytest.raises(ConfigError, match="no ground truth"):
        dataset_spec("ply")


def test_store_labels_only_read_scores_like_whole_scenes(tmp_path):
    """Evaluation from the scene cache's labels-only read equals evaluation on the loaded Scenes."""
    from freepoint_bench.data.store import SceneStore
    from freepoint_bench.evaluation import evaluate_submission, write_predictions

    rng = np.random.default_rng(5)
    gts, preds = _random_case(rng, [CHAIR, TABLE, 3], n_scenes=3)
    store = SceneStore(tmp_path / "cache")
    for name, sem, ins in gts:
        xyz = rng.random((len(sem), 3)).astype(np.float32)
        store.save(Scene(name, xyz, np.zeros_like(xyz), semantic=np.maximum(sem, -1), instance=ins))
        write_predictions(tmp_path / "sub", name, preds[name])
    spec = scannet_spec(min_region_size=20)
    scenes = [store.load(name) for name, _, _ in gts]
    got = evaluate_submission(tmp_path / "sub", [s.name for s in scenes], store.load_labels, spec)
    np.testing.assert_array_equal(got.ap_table, evaluate(scenes, preds, spec).ap_table)
    semantic, instance = store.load_labels("s0")
    assert semantic.dtype == instance.dtype == np.int64 and np.array_equal(instance, scenes[0].instance)
    store.save(Scene("bare", np.zeros((4, 3), np.float32), np.zeros((4, 3), np.float32)))
    with pytest.raises(DataError, match="no ground-truth labels"):
        store.load_labels("bare")
    with pytest.raises(DataError, match="not in the scene cache"):
        store.load_labels("nope")
    store.path_of("s1").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="corrupt scene cache file"):
        store.load_labels("s1")
