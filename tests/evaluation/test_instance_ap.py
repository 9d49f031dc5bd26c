"""ScanNet-style AP: oracles, hand-worked cases, and a loop-by-loop reference on random inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from freepoint_bench.evaluation import (
    OVERLAPS,
    Predictions,
    evaluate,
    predictions_from_labels,
    s3dis_spec,
    scannet_spec,
)

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


# ------------------------------------------------------------------ reference implementation


def _reference_ap(gts, preds_by_scene, spec) -> np.ndarray:
    """Returns (classes, thresholds) AP by following the benchmark script's loops and dicts literally."""
    labels = spec.labels
    names = ["object"] * len(spec.class_ids) if spec.class_agnostic else spec.class_names
    id_to_label = dict(zip(spec.class_ids, names, strict=True))
    matches = {}
    for name, sem, ins in gts:
        # GT ids as the benchmark encodes them: label * 1000 + instance + 1 (0 = unannotated).
        sem_of_inst = {}
        for i in np.unique(ins[ins >= 0]):
            vals, counts = np.unique(sem[ins == i], return_counts=True)
            sem_of_inst[i] = vals[np.argmax(counts)]
        gt_ids = np.array([sem_of_inst[i] * 1000 + i + 1 if i >= 0 else 0 for i in ins])
        gt2pred = {lab: [] for lab in labels}
        for gid in np.unique(gt_ids):
            if gid == 0 or gid // 1000 not in id_to_label:
                continue
            gt2pred[id_to_label[gid // 1000]].append(
                {"instance_id": gid, "vert_count": int((gt_ids == gid).sum()), "matched_pred": []}
            )
        pred2gt = {lab: [] for lab in labels}
        bool_void = ~np.isin(gt_ids // 1000, list(id_to_label)) | (gt_ids == 0)
        p = preds_by_scene.get(name)
        for k in range(0 if p is None else len(p)):
            label_id = int(p.labels[k])
            if spec.class_agnostic:
                label_name = "object"
            elif label_id in id_to_label:
                label_name = id_to_label[label_id]
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

    ap = np.zeros((len(labels), len(OVERLAPS)))
    for oi, th in enumerate(OVERLAPS):
        visited = {p["filename"]: False for m in matches.values() for lab in labels for p in m["pred"][lab]}
        for li, lab in enumerate(labels):
            y_true, y_score = np.empty(0), np.empty(0)
            hard_fn, has_gt, has_pred = 0, False, False
            for m in matches.values():
                preds = m["pred"][lab]
                gts_ = [g for g in m["gt"][lab] if g["vert_count"] >= spec.min_region_size]
                has_gt |= bool(gts_)
                has_pred |= bool(preds)
                cur_true = np.ones(len(gts_))
                cur_score = np.full(len(gts_), -np.inf)
                cur_match = np.zeros(len(gts_), bool)
                for gi, g in enumerate(gts_):
                    found = False
                    for pr in g["matched_pred"]:
                        if visited[pr["filename"]]:
                            continue
                        iou = pr["intersection"] / (g["vert_count"] + pr["vert_count"] - pr["intersection"])
                        if iou > th:
                            c = pr["confidence"]
                            if cur_match[gi]:
                                lo, hi = min(cur_score[gi], c), max(cur_score[gi], c)
                                cur_score[gi] = hi
                                cur_true = np.append(cur_true, 0)
                                cur_score = np.append(cur_score, lo)
                                cur_match = np.append(cur_match, True)
                            else:
                                found = True
                                cur_match[gi] = True
                                cur_score[gi] = c
                                visited[pr["filename"]] = True
                    if not found:
                        hard_fn += 1
                cur_true, cur_score = cur_true[cur_match], cur_score[cur_match]
                for pr in preds:
                    found_gt = any(
                        g["intersection"] / (g["vert_count"] + pr["vert_count"] - g["intersection"]) > th
                        for g in pr["matched_gt"]
                    )
                    if not found_gt:
                        ignore = pr["void_intersection"] + sum(
                            g["intersection"] for g in pr["matched_gt"] if g["vert_count"] < spec.min_region_size
                        )
                        if ignore / pr["vert_count"] <= th:
                            cur_true = np.append(cur_true, 0)
                            cur_score = np.append(cur_score, pr["confidence"])
                y_true, y_score = np.append(y_true, cur_true), np.append(y_score, cur_score)
            if has_gt and has_pred:
                order = np.argsort(y_score)
                ys, yt = y_score[order], y_true[order]
                cs = np.cumsum(yt)
                _, uidx = np.unique(ys, return_index=True)
                n_pr = len(uidx) + 1
                n_ex, n_true = len(ys), (cs[-1] if len(cs) else 0)
                prec, rec = np.zeros(n_pr), np.zeros(n_pr)
                cs = np.append(cs, 0)
                for ri, si in enumerate(uidx):
                    c = cs[si - 1]
                    tp = n_true - c
                    fp = n_ex - si - tp
                    fn = c + hard_fn
                    prec[ri], rec[ri] = tp / (tp + fp), tp / (tp + fn)
                prec[-1], rec[-1] = 1.0, 0.0
                rc = np.append(np.append(rec[0], rec), 0.0)
                widths = np.convolve(rc, [-0.5, 0, 0.5], "valid")
                ap[li, oi] = np.dot(prec, widths)
            elif has_gt:
                ap[li, oi] = 0.0
            else:
                ap[li, oi] = np.nan
    return ap


def _random_case(rng, n_scenes=3, n=400):
    gts, preds = [], {}
    classes = [CHAIR, TABLE, 3, WALL]
    for s in range(n_scenes):
        n_inst = rng.integers(1, 7)
        ins = rng.integers(-1, n_inst, size=n)
        # spatially coherent-ish instances: sort so instances are blocks with noise
        ins = np.sort(ins)
        noise = rng.random(n) < 0.1
        ins[noise] = rng.integers(-1, n_inst, size=noise.sum())
        inst_cls = rng.choice(classes, size=n_inst)
        sem = np.where(ins >= 0, inst_cls[np.maximum(ins, 0)], rng.choice(classes, size=n))
        gts.append((f"s{s}", sem, ins))
        k = rng.integers(0, 9)
        masks = []
        for _ in range(k):
            if rng.random() < 0.7 and n_inst:
                base = ins == rng.integers(0, n_inst)
                flip = rng.random(n) < rng.uniform(0, 0.3)
                masks.append(base ^ flip)
            else:
                start = rng.integers(0, n)
                m = np.zeros(n, bool)
                m[start : start + rng.integers(20, 200)] = True
                masks.append(m)
        scores = np.round(rng.random(k), 1)  # ties on purpose
        labels = rng.choice(classes + [99], size=k)
        preds[f"s{s}"] = Predictions(np.array(masks, bool).reshape(k, n), labels, scores)
    return gts, preds


@pytest.mark.parametrize("seed", range(25))
@pytest.mark.parametrize("agnostic", [False, True])
def test_matches_the_reference_on_random_inputs(seed, agnostic):
    rng = np.random.default_rng(seed)
    gts, preds = _random_case(rng)
    spec = scannet_spec(class_agnostic=agnostic, min_region_size=int(rng.choice([1, 20, 60])))
    result = evaluate(gts, preds, spec)
    ref = _reference_ap(gts, preds, spec)
    np.testing.assert_allclose(result.ap_table, ref, rtol=1e-9, atol=1e-12, equal_nan=True)
    with np.errstate(all="ignore"):
        expected_ap = np.nanmean(ref[:, :9]) if not np.isnan(ref[:, :9]).all() else math.nan
    assert result.ap == pytest.approx(expected_ap, nan_ok=True)
