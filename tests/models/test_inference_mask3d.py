"""Mask3D's S3DIS inference (InferenceConfig.mode = "mask3d", issue 29 item 3) against a direct transcription of its
rule on hand-made logits; DBSCAN splitting; the default "query" mode bit for bit as before the mode existed."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from scipy.sparse.csgraph import connected_components
from sklearn.cluster import DBSCAN

from freepoint_bench.config import parse_overrides
from freepoint_bench.harness.finetune import finetune_config
from freepoint_bench.models.decoder import Prediction
from freepoint_bench.models.inference import InferenceConfig, dbscan_labels, eps_components, predict_instances
from freepoint_bench.models.segmenter import SegmenterOutput
from freepoint_bench.models.voxels import SparseBatch

FIXTURES = Path(__file__).parents[1] / "fixtures"


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def mask3d_rule(logits: list[list[float]], class_logits: list[list[float]], topk: int | None,
                parts: list[tuple[int, set[int]]] | None = None) -> list[tuple[float, int, set[int]]]:
    """The rule as Mask3D's trainer/trainer.py (eval_instance_step, get_mask_and_scores) states it, in plain Python:
    returns [(score, class, voxels of the mask)] best first. parts: the masks as (query, voxels), default each
    query's {v: logit > 0}."""
    probs = []
    for row in class_logits:  # softmax over every class with "no object" (last), which is then dropped
        z = sum(math.exp(v) for v in row)
        probs.append([math.exp(v) / z for v in row[:-1]])
    if parts is None:
        parts = [(q, {v for v, x in enumerate(row) if x > 0}) for q, row in enumerate(logits)]
    pairs = sorted(((probs[q][c], i, c) for i, (q, _) in enumerate(parts) for c in range(len(probs[q]))),
                   reverse=True)[: len(parts) if topk is None else topk]
    out = []
    for p, i, c in pairs:
        q, voxels = parts[i]
        heat = sum(_sig(logits[q][v]) for v in voxels) / (len(voxels) + 1e-6)
        out.append((p * heat, c, voxels))
    return sorted(out, key=lambda t: -t[0])


def _inputs(logits, class_logits, p2v, xyz=None):
    logits, class_logits = torch.tensor(logits), torch.tensor(class_logits)[None]
    p2v = torch.tensor(p2v)
    xyz = torch.zeros(len(p2v), 3) if xyz is None else torch.tensor(xyz, dtype=torch.float32)
    out = SegmenterOutput(Prediction([logits], torch.zeros(1, len(logits)), class_logits), [], [])
    coords = torch.zeros(logits.shape[1], 4, dtype=torch.int32)
    return out, SparseBatch(coords, torch.zeros(len(coords), 1), [p2v], [xyz])


def _check(res, want, p2v) -> None:
    """res (point masks) equals the rule's [(score, class, voxels)]."""
    p2v = np.asarray(p2v)
    assert res.labels.tolist() == [c for _, c, _ in want]
    assert res.masks.tolist() == [np.isin(p2v, sorted(v)).tolist() for _, _, v in want]
    np.testing.assert_allclose(res.scores, [s for s, _, _ in want], rtol=1e-6)


# 5 voxels, 7 points (points 0, 1 share voxel 0; points 5, 6 share voxel 4); 3 queries; 3 classes + no object
LOGITS = [[2.0, 1.0, -1.0, -3.0, 0.5], [-2.0, -1.0, 3.0, 4.0, -0.5], [0.3, -4.0, -4.0, 0.2, 0.1]]
CLASSES = [[2.0, 0.5, -1.0, 0.0], [0.1, 1.5, 1.2, -2.0], [-1.0, -0.7, 0.8, 1.0]]
P2V = [0, 0, 1, 2, 3, 4, 4]


def test_mask3d_pairs_and_scores_against_the_rule_by_hand():
    out, batch = _inputs(LOGITS, CLASSES, P2V)
    for topk in (None, 1, 4, 9, 12):
        res = predict_instances(out, batch, InferenceConfig(mode="mask3d", topk=topk))[0]
        _check(res, mask3d_rule(LOGITS, CLASSES, topk), P2V)
    # one query can give several pairs: topk 4 keeps query 1 twice (classes 1 and 2), query 0 once
    res = predict_instances(out, batch, InferenceConfig(mode="mask3d", topk=4))[0]
    assert sorted(res.labels.tolist()) == [0, 1, 2, 2] and len(res.scores) == 4
    # the top-k ranks pairs by class probability alone, then sorts by score: with k = 1 the best pair by p is
    # query 0's class 0 (p = 0.63), whatever the masks
    best = predict_instances(out, batch, InferenceConfig(mode="mask3d", topk=1))[0]
    assert best.labels.tolist() == [0] and best.masks[0].tolist() == [True, True, True, False, False, True, True]


def test_mask3d_on_random_logits_against_the_rule():
    g = torch.Generator().manual_seed(3)
    for _ in range(5):
        logits = (torch.randn(9, 40, generator=g) * 2).tolist()
        classes = (torch.randn(9, 6, generator=g) * 2).tolist()
        p2v = torch.randint(0, 40, (70,), generator=g).tolist()
        out, batch = _inputs(logits, classes, p2v)
        for topk in (None, 20):
            res = predict_instances(out, batch, InferenceConfig(mode="mask3d", topk=topk))[0]
            want = [w for w in mask3d_rule(logits, classes, topk) if np.isin(p2v, sorted(w[2])).any()]
            _check(res, want, p2v)  # min_points 1 drops the masks with no point


def test_mask3d_dbscan_splits_two_far_blobs_into_two_instances():
    # one query covers two blobs 5 m apart (voxels 0-2 and 3-5); the second query covers voxel 6 only
    xyz_vox = [[0, 0, 0], [0.1, 0, 0], [0, 0.1, 0], [5, 0, 0], [5.1, 0, 0], [5, 0, 0.2], [9, 9, 9]]
    logits = [[1.0, 2.0, 3.0, 1.5, 1.5, 1.5, -2.0], [-1.0] * 6 + [2.0]]
    classes = [[3.0, 0.0, -1.0], [0.0, 1.0, 0.5]]
    p2v = list(range(7))
    out, batch = _inputs(logits, classes, p2v, xyz_vox)
    res = predict_instances(out, batch, InferenceConfig(mode="mask3d", topk=None, dbscan_eps=0.6))[0]
    # three masks, so three pairs; each blob keeps its parent's class probabilities, its heat its own voxels'
    parts = [(0, {0, 1, 2}), (0, {3, 4, 5}), (1, {6})]
    want = mask3d_rule(logits, classes, None, parts)
    _check(res, want, p2v)
    assert sorted(tuple(sorted(v)) for _, _, v in want) == [(0, 1, 2), (3, 4, 5), (6,)]
    # the blob with uniform logits keeps its parent's score: the parent's p x sigmoid(1.5)
    p00 = math.exp(3) / (math.exp(3) + 1 + math.exp(-1))
    far = [s for s, _, v in want if v == {3, 4, 5}][0]
    assert math.isclose(far, p00 * _sig(1.5), rel_tol=1e-6)
    # without DBSCAN the same query is one instance over both blobs
    whole = predict_instances(out, batch, InferenceConfig(mode="mask3d", topk=None))[0]
    assert whole.masks.sum(1).tolist() == [6, 1]
    # eps larger than the gap joins them again
    joined = predict_instances(out, batch, InferenceConfig(mode="mask3d", topk=None, dbscan_eps=6.0))[0]
    assert sorted(joined.masks.sum(1).tolist()) == [1, 6]


def test_mask3d_dbscan_min_points_drops_noise():
    # a blob of 4 voxels and a lone voxel 3 m away, in one query's mask; min_points counts the point itself
    xyz_vox = [[0, 0, 0], [0.2, 0, 0], [0, 0.2, 0], [0.2, 0.2, 0], [3, 0, 0]]
    logits = [[2.0, 2.0, 2.0, 2.0, 4.0]]
    classes = [[1.0, 0.0]]
    out, batch = _inputs(logits, classes, list(range(5)), xyz_vox)
    one = predict_instances(out, batch, InferenceConfig(mode="mask3d", topk=None, dbscan_eps=0.6))[0]
    assert sorted(one.masks.sum(1).tolist()) == [1, 4]  # min_points 1: the lone voxel is its own instance
    res = predict_instances(out, batch, InferenceConfig(mode="mask3d", topk=None, dbscan_eps=0.6,
                                                        dbscan_min_points=4))[0]
    assert res.masks.tolist() == [[True, True, True, True, False]]  # noise leaves the mask
    _check(res, mask3d_rule(logits, classes, None, [(0, {0, 1, 2, 3})]), list(range(5)))
    # 5 neighbours needed: every voxel is noise, nothing is left
    none = predict_instances(out, batch, InferenceConfig(mode="mask3d", dbscan_eps=0.6, dbscan_min_points=5))[0]
    assert none.masks.shape == (0, 5) and none.scores.shape == (0,)


def _brute_components(xyz: np.ndarray, eps: float) -> np.ndarray:
    dist = np.linalg.norm(xyz[:, None] - xyz[None], axis=-1)
    labels = connected_components(dist <= eps, directed=False)[1]
    _, first, ids = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    return rank[ids]


def test_eps_components_against_brute_force_and_sklearn():
    rng = np.random.default_rng(0)
    clouds = [
        rng.uniform(0, 3, (400, 3)),  # sparse: about one point per cell
        # clumps of 6 points (spread 0.3 eps) with gaps near eps: several points per cell, so the cell pairs the
        # first points' balls miss are tested point by point
        (rng.uniform(0, 2, (80, 1, 3)) + rng.normal(0, 0.03, (80, 6, 3))).reshape(-1, 3),
        np.concatenate([rng.normal(0, 0.05, (300, 3)), rng.normal(2, 0.05, (300, 3))]),  # two dense blobs
        np.zeros((5, 3)),  # one cell
        np.array([[0.0, 0, 0], [0.1, 0, 0]]),  # exactly eps apart: joined (DBSCAN counts d <= eps)
        # two cells 2 apart (side eps / sqrt 3), each first point more than eps from the other cell: only the
        # point-by-point test joins them (0.057 to 0.150); then the same with that pair apart (0.057 to 0.158)
        np.array([[0.001, 0.03, 0.03], [0.057, 0.03, 0.03], [0.159, 0.03, 0.03], [0.150, 0.03, 0.03]]),
        np.array([[0.001, 0.03, 0.03], [0.057, 0.03, 0.03], [0.159, 0.03, 0.03], [0.158, 0.03, 0.03]]),
    ]
    for xyz in clouds:
        got = eps_components(xyz, 0.1)
        np.testing.assert_array_equal(got, _brute_components(xyz, 0.1))
        np.testing.assert_array_equal(got, DBSCAN(eps=0.1, min_samples=1).fit(xyz).labels_)
    assert eps_components(clouds[-2], 0.1).tolist() == [0, 0, 0, 0]
    assert eps_components(clouds[-1], 0.1).tolist() == [0, 0, 1, 1]
    assert eps_components(np.zeros((0, 3)), 0.1).shape == (0,)
    xyz = clouds[1]
    np.testing.assert_array_equal(dbscan_labels(xyz, 0.1, 4), DBSCAN(eps=0.1, min_samples=4).fit(xyz).labels_)


def test_mask3d_superpoints_keep_the_majority_of_each():
    # points 0-3 (voxels 0-3) in superpoint 0, points 4-6 (voxel 4) in superpoint 1; query 0's mask is voxels 0-2:
    # 3 of superpoint 0's 4 points, so all of superpoint 0; query 1 (voxels 2, 3) has 2 of 4: not a majority
    logits = [[2.0, 2.0, 2.0, -2.0, -2.0], [-2.0, -2.0, 2.0, 2.0, -2.0]]
    classes = [[2.0, 0.0], [1.0, 0.0]]
    p2v = [0, 1, 2, 3, 4, 4, 4]
    out, batch = _inputs(logits, classes, p2v)
    res = predict_instances(out, batch, InferenceConfig(mode="mask3d", topk=None),
                            segments=[np.array([0, 0, 0, 0, 1, 1, 1])])[0]
    plain = predict_instances(out, batch, InferenceConfig(mode="mask3d", topk=None))[0]
    np.testing.assert_array_equal(res.scores, plain.scores[:1])  # scores are the voxels' (Mask3D's)
    assert res.masks.tolist() == [[True] * 4 + [False] * 3]


def test_mask3d_config_refusals_and_the_paper_preset():
    with pytest.raises(ValidationError, match="mode 'mask3d' only"):
        InferenceConfig(dbscan_eps=0.6)
    out = SegmenterOutput(Prediction([torch.zeros(2, 3)], torch.zeros(1, 2), None), [], [])
    batch = SparseBatch(torch.zeros(3, 4, dtype=torch.int32), torch.zeros(3, 1), [torch.arange(3)], [torch.zeros(3, 3)])
    with pytest.raises(ValueError, match="no class head"):
        predict_instances(out, batch, InferenceConfig(mode="mask3d"))
    paper = finetune_config("paper").inference
    assert (paper.mode, paper.topk, paper.dbscan_eps, paper.dbscan_min_points) == ("mask3d", None, 0.6, 1)
    assert finetune_config("cpu-small").inference == InferenceConfig()
    # the query mode stays one --set away on the paper preset
    back = finetune_config("paper", **parse_overrides(["inference.mode=query", "inference.dbscan_eps=none",
                                                       "inference.topk=100"])).inference
    assert back == InferenceConfig()


def test_default_config_records_as_before_the_mode_existed():
    """A result.json's fine-tuning config holds the inference config; at the defaults it is the one recorded before
    the mode and DBSCAN fields existed, so finished cells still match on resume."""
    recorded = json.loads((FIXTURES / "result-masks-f5fcfa2.json").read_text())["config"]["inference"]
    assert InferenceConfig().model_dump(mode="json") == recorded
    assert InferenceConfig(**recorded) == InferenceConfig()
    paper = finetune_config("paper").inference
    assert InferenceConfig(**paper.model_dump(mode="json")) == paper
    assert paper.model_dump(mode="json")["mode"] == "mask3d"


# (classes, superpoints, config) of each case in inference-query-mode.npz, whose outputs predict_instances gave
# before the mask3d mode existed (commit b819567)
QUERY_CASES = [
    (None, False, {}),
    (6, False, {}),
    (6, False, {"topk": 5, "min_points": 4, "score_threshold": 0.05}),
    (6, True, {"mask_threshold": 0.4}),
    (None, True, {"topk": 3, "agnostic_label": 9}),
]


def test_query_mode_is_bit_identical_to_before():
    saved = np.load(FIXTURES / "inference-query-mode.npz")
    for c, (ncls, seg, kw) in enumerate(QUERY_CASES):
        masks = [torch.from_numpy(saved[f"c{c}_masks{b}"]) for b in range(2)]
        cls = torch.from_numpy(saved[f"c{c}_cls"]) if ncls is not None else None
        out = SegmenterOutput(Prediction(masks, torch.from_numpy(saved[f"c{c}_obj"]), cls), [], [])
        coords = torch.from_numpy(saved[f"c{c}_coords"])
        batch = SparseBatch(coords, torch.zeros(len(coords), 3), [torch.from_numpy(saved[f"c{c}_p2v{b}"]) for b in
                                                                  range(2)],
                            [torch.from_numpy(saved[f"c{c}_xyz{b}"]) for b in range(2)])
        segs = [saved[f"c{c}_seg{b}"] for b in range(2)] if seg else None
        for b, res in enumerate(predict_instances(out, batch, InferenceConfig(**kw), segs)):
            for name in ("masks", "labels", "scores"):
                want = saved[f"c{c}_out_{name}{b}"]
                got = getattr(res, name)
                assert got.dtype == want.dtype and got.tobytes() == want.tobytes(), (c, b, name)


def test_mask3d_mode_end_to_end_on_a_synthetic_room():
    """predict_scene with the paper preset's inference on an untrained model: every instance is one DBSCAN cluster
    of its voxels (one component at eps), scores best first, at most as many instances as masks."""
    from freepoint_bench.data.synthetic import SyntheticConfig, generate_room
    from freepoint_bench.engine.module import segmenter_from_preset
    from freepoint_bench.engine.predict import predict_scene

    scene = generate_room(0, SyntheticConfig(num_points=3000), name="synth_0000")
    config = finetune_config("cpu-small", num_queries=8, **{"inference.mode": "mask3d", "inference.topk": None,
                                                            "inference.dbscan_eps": 0.3})
    torch.manual_seed(0)
    model = segmenter_from_preset(config.train, num_classes=5).eval()
    found = predict_scene(model, scene, config.train, config.inference, "cpu")
    assert len(found.scores) > 8  # the untrained masks are scattered: DBSCAN splits them into more than 8
    assert np.all(np.diff(found.scores) <= 0) and found.labels.max() < 5
    for mask in found.masks:
        # a point lies within a voxel diagonal of its voxel's mean
        reach = 0.3 + 2 * math.sqrt(3) * config.train.voxel_size_m
        assert len(np.unique(eps_components(scene.xyz[mask], reach))) == 1
