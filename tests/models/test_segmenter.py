"""Segmenter end to end on tiny synthetic scenes: shapes, gradients, overfitting, inference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from freepoint_bench.models.criterion import SetCriterion, targets_from_instance_ids
from freepoint_bench.models.decoder import (
    DecoderConfig,
    FourierEncoding,
    Prediction,
    fourier_kernel,
    fps,
    normalise_positions,
    position_frame,
)
from freepoint_bench.models.inference import InferenceConfig, predict_instances
from freepoint_bench.models.losses import LossConfig
from freepoint_bench.models.segmenter import TINY, InstanceSegmenter, SegmenterConfig, SegmenterOutput
from freepoint_bench.models.voxels import collate

BOXES = [
    ((0.5, 0.5, 0.2), (0.3, 0.3, 0.4)),
    ((1.4, 0.6, 0.2), (0.4, 0.2, 0.4)),
    ((1.0, 1.5, 0.3), (0.5, 0.3, 0.6)),
]


def _scene(seed: int = 0, n_floor: int = 300, n_box: int = 150):
    """Returns (xyz (N, 3) float32 metres, rgb (N, 3), instance (N,) int64) of a floor with three boxes."""
    rng = np.random.default_rng(seed)
    pts = [rng.uniform([0, 0, 0], [2, 2, 0.02], (n_floor, 3))]
    inst = [np.full(n_floor, -1)]
    for i, (c, s) in enumerate(BOXES):
        lo, hi = np.array(c) - np.array(s) / 2, np.array(c) + np.array(s) / 2
        pts.append(rng.uniform(lo, hi, (n_box, 3)))
        inst.append(np.full(n_box, i))
    xyz = np.concatenate(pts).astype(np.float32)
    inst = np.concatenate(inst).astype(np.int64)
    palette = np.array([[0.5, 0.5, 0.5], [0.9, 0.2, 0.2], [0.2, 0.8, 0.2], [0.2, 0.3, 0.9]], np.float32)
    rgb = palette[inst + 1] + rng.normal(0, 0.05, xyz.shape).astype(np.float32)
    return xyz, rgb, inst


def test_collate_maps_every_point_to_its_voxel_with_non_negative_coords_and_mean_features():
    xyz = np.array([[0.01, 0.01, 0.01], [0.04, 0.02, 0.0], [0.12, 0.0, 0.0], [-0.1, 0.0, 0.0]], np.float32)
    feats = np.array([[1.0], [3.0], [5.0], [7.0]], np.float32)
    batch = collate([xyz, xyz], [feats, feats], 0.05)
    coords, p2v = batch.coords[batch.coords[:, 0] == 1, 1:].numpy(), batch.point_to_voxel[1].numpy()
    assert coords.min() == 0 and len(coords) == 3
    assert p2v[0] == p2v[1] and len({p2v[0], p2v[2], p2v[3]}) == 3
    grid = np.floor(xyz.astype(np.float64) / 0.05).astype(int)  # divided in float64, as data.transforms.voxelize
    np.testing.assert_array_equal(coords[p2v], grid - grid.min(0))
    assert batch.feats[batch.coords[:, 0] == 1][p2v].flatten().tolist() == [2.0, 2.0, 5.0, 7.0]


def test_fps_spreads_and_repeats_when_short():
    pts = torch.tensor([[0.0, 0, 0], [0.1, 0, 0], [10, 0, 0], [5, 0, 0]])
    assert fps(pts, 3).tolist() == [0, 2, 3]
    assert fps(pts, 6).tolist() == [0, 2, 3, 1, 0, 2]


def test_forward_shapes_for_two_scenes_with_classes():
    xyz0, rgb0, _ = _scene(0)
    xyz1, rgb1, _ = _scene(1, n_floor=100, n_box=60)
    batch = collate([xyz0, xyz1], [rgb0, rgb1], voxel_size=0.08)
    config = SegmenterConfig(backbone=TINY.backbone, decoder=TINY.decoder.model_copy(update={"num_classes": 4}))
    model = InstanceSegmenter(config)
    out = model(batch)
    q = config.decoder.num_queries
    for b in range(2):
        assert out.final.masks[b].shape == (q, int(batch.scene_rows(b).sum()))
    assert out.final.objectness.shape == (2, q)
    assert out.final.class_logits.shape == (2, q, 5)
    assert len(out.aux) == config.decoder.num_decoders * len(config.decoder.levels) - 1
    arch = model.architecture()
    assert (arch["preset"], arch["backend"], arch["num_queries"], arch["num_classes"]) == (
        "tiny",
        "spconv",
        q,
        4,
    )


def test_loss_gradients_reach_backbone_and_decoder():
    xyz, rgb, inst = _scene(2)
    batch = collate([xyz], [rgb], voxel_size=0.08)
    model = InstanceSegmenter(TINY)
    losses = SetCriterion(LossConfig())(model(batch), [targets_from_instance_ids(torch.from_numpy(inst))], batch)
    losses["loss"].backward()
    for name in (
        "backbone.stem.0.weight",
        "backbone.block4.0.conv1.weight",
        "decoder.objectness_head.weight",
    ):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert set(losses) >= {"loss", "dice", "bce", "mean", "box", "objectness"}


@pytest.mark.slow  # ~8 s alone; minutes when the 2 shared cores are busy
def test_overfits_one_scene_and_recovers_the_boxes():
    torch.manual_seed(0)
    xyz, rgb, inst = _scene(3)
    batch = collate([xyz], [rgb], voxel_size=0.05)
    targets = [targets_from_instance_ids(torch.from_numpy(inst))]
    # BatchNorm running statistics must settle within the 40 steps for eval mode to see what training saw.
    config = TINY.model_copy(update={"backbone": TINY.backbone.model_copy(update={"bn_momentum": 0.3})})
    model = InstanceSegmenter(config)
    criterion = SetCriterion(LossConfig())
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    history = []
    for _ in range(40):
        losses = criterion(model(batch), targets, batch)
        opt.zero_grad()
        losses["loss"].backward()
        opt.step()
        history.append(float(losses["loss"]))
    assert np.mean(history[-3:]) < 0.5 * np.mean(history[:3])
    model.eval()
    with torch.no_grad():
        pred = predict_instances(model(batch), batch, InferenceConfig(topk=3, min_points=10))[0]
    assert pred.masks.shape[1] == len(xyz) and pred.masks.dtype == bool
    assert np.all(np.diff(pred.scores) <= 0)
    # Every box is found by some predicted mask with IoU > 0.5.
    for i in range(len(BOXES)):
        gt = inst == i
        ious = [(m & gt).sum() / (m | gt).sum() for m in pred.masks]
        assert max(ious) > 0.5, (i, ious)


def test_inference_scores_topk_and_min_size_by_hand():
    from freepoint_bench.models.decoder import Prediction
    from freepoint_bench.models.segmenter import SegmenterOutput
    from freepoint_bench.models.voxels import SparseBatch

    # 3 voxels, 4 points (points 0 and 1 share voxel 0); 3 queries.
    logits = torch.tensor([[2.0, 2.0, -5.0], [-5.0, 0.0, 3.0], [-5.0, -5.0, -5.0]])
    obj = torch.tensor([[0.0, 1.0, 3.0]])
    out = SegmenterOutput(Prediction([logits], obj, None), [], [])
    batch = SparseBatch(torch.zeros(3, 4, dtype=torch.int32), torch.zeros(3, 1), [torch.tensor([0, 0, 1, 2])], [])
    res = predict_instances(out, batch, InferenceConfig(topk=5, min_points=1, agnostic_label=7))[0]
    s = torch.sigmoid
    score0 = 0.5 * s(torch.tensor(2.0))  # query 0: points 0, 1, 2 all with p = sigmoid(2)
    score1 = s(torch.tensor(1.0)) * s(torch.tensor(3.0))  # query 1: only point 3 (p = 0.5 is not > 0.5)
    assert res.masks.tolist() == [[False, False, False, True], [True, True, True, False]]
    np.testing.assert_allclose(res.scores, [float(score1), float(score0)], rtol=1e-6)
    assert res.labels.tolist() == [7, 7]  # query 2 is empty and dropped
    assert len(predict_instances(out, batch, InferenceConfig(min_points=2))[0].scores) == 1
    assert len(predict_instances(out, batch, InferenceConfig(topk=1))[0].scores) == 1


def test_decoder_rejects_bad_levels():
    with pytest.raises(ValueError, match="out of range"):
        InstanceSegmenter(SegmenterConfig(backbone=TINY.backbone, decoder=DecoderConfig(levels=(0, 7), hidden_dim=32)))


def test_fourier_kernel_against_the_cosine_sum_it_stands_for():
    enc = FourierEncoding(64, scale=1.5, seed=3)
    rng = np.random.default_rng(0)
    a, b = torch.from_numpy(rng.uniform(0, 1, (5, 3))).float(), torch.from_numpy(rng.uniform(0, 1, (7, 3))).float()
    basis = enc.basis.double().numpy()  # (3, 32)
    brute = np.array([[np.mean(np.cos(2 * np.pi * (ai - bj) @ basis)) for bj in b.double().numpy()]
                      for ai in a.double().numpy()])
    np.testing.assert_allclose(fourier_kernel(enc(a), enc(b)).numpy(), brute, atol=1e-5)
    np.testing.assert_allclose(torch.diagonal(fourier_kernel(enc(a), enc(a))).numpy(), 1.0, atol=1e-5)
    # in expectation over the Gaussian basis the kernel is exp(-2 pi^2 s^2 d^2): ~0.01 at d = 0.5
    far = fourier_kernel(enc(torch.zeros(1, 3)), enc(torch.tensor([[0.5, 0.0, 0.0], [0.0, 0.0, 0.5]])))
    assert float(far.abs().max()) < 0.35


def test_spatial_prior_makes_first_masks_local_and_is_learnt():
    xyz, rgb, inst = _scene(4)
    batch = collate([xyz], [rgb], voxel_size=0.08)
    decoder = TINY.decoder.model_copy(update={"spatial_prior": True, "spatial_scale": 1.5})
    torch.manual_seed(0)
    model = InstanceSegmenter(SegmenterConfig(backbone=TINY.backbone, decoder=decoder))
    assert model.architecture()["spatial_prior"] is True
    out = model(batch)
    coords = batch.coords[:, 1:].float()
    iso = (coords - coords.amin(0)) / (coords.amax(0) - coords.amin(0)).max()
    query_xyz = iso[fps(coords + 0.5, decoder.num_queries)]
    dist = torch.cdist(query_xyz, iso)  # (Q, M) in scene sizes
    probs = out.aux[0].masks[0].sigmoid() if out.aux else out.final.masks[0].sigmoid()
    near, far = probs[dist < 0.1].mean(), probs[dist > 0.5].mean()
    assert float(near) > float(far) + 0.3, (float(near), float(far))
    losses = SetCriterion(LossConfig())(out, [targets_from_instance_ids(torch.from_numpy(inst))], batch)
    losses["loss"].backward()
    assert model.decoder.spatial_gain.grad is not None and float(model.decoder.spatial_gain.grad.abs()) > 0


def test_relative_spatial_prior_against_the_relative_position_sum():
    decoder = TINY.decoder.model_copy(update={"spatial_prior": True, "spatial_relative": True, "spatial_dim": 16})
    torch.manual_seed(0)
    model = InstanceSegmenter(SegmenterConfig(backbone=TINY.backbone, decoder=decoder))
    dec = model.decoder
    g = torch.Generator().manual_seed(1)
    xyz_v, xyz_q = torch.rand(9, 3, generator=g), torch.rand(4, 3, generator=g)
    enc_v, enc_q = dec.spatial_enc(xyz_v), dec.spatial_enc(xyz_q)
    q = torch.randn(4, decoder.hidden_dim, generator=g)
    # at initialisation the head is zero: the query-conditioned template is the fixed blob
    blob = dec.spatial_gain * fourier_kernel(enc_q, enc_v) + dec.spatial_bias
    torch.testing.assert_close(dec._spatial_prior(q, enc_q, enc_v), blob)
    # with a trained head: gain / F * sum_f r_sin sin(2 pi (v - q) B_f) + (1 + r_cos) cos(...) + bias, by brute force
    with torch.no_grad():
        dec.spatial_head.weight.normal_(generator=g)
        dec.spatial_head.bias.normal_(generator=g)
    r = dec.spatial_head(q).detach().double()
    freqs = decoder.spatial_dim // 2
    basis = dec.spatial_enc.basis.double()
    brute = torch.empty(4, 9, dtype=torch.float64)
    for i in range(4):
        for j in range(9):
            phase = 2 * math.pi * (xyz_v[j].double() - xyz_q[i].double()) @ basis
            total = (r[i, :freqs] * phase.sin() + (1 + r[i, freqs:]) * phase.cos()).sum()
            brute[i, j] = float(dec.spatial_gain) / freqs * total + float(dec.spatial_bias)
    torch.testing.assert_close(dec._spatial_prior(q, enc_q, enc_v).detach().double(), brute, atol=1e-4, rtol=1e-4)
    # translating queries and voxels together leaves the template unchanged (it sees only x_v - x_q)
    shift = torch.tensor([0.3, -0.2, 0.1])
    moved = dec._spatial_prior(q, dec.spatial_enc(xyz_q + shift), dec.spatial_enc(xyz_v + shift))
    torch.testing.assert_close(moved, dec._spatial_prior(q, enc_q, enc_v), atol=1e-4, rtol=1e-4)


def test_inference_pools_masks_over_superpoints_by_hand():
    from freepoint_bench.models.decoder import Prediction
    from freepoint_bench.models.segmenter import SegmenterOutput
    from freepoint_bench.models.voxels import SparseBatch

    # the hand-worked scene above, with superpoints {0, 1} and {2, 3}
    logits = torch.tensor([[2.0, 2.0, -5.0], [-5.0, 0.0, 3.0], [-5.0, -5.0, -5.0]])
    obj = torch.tensor([[0.0, 1.0, 3.0]])
    out = SegmenterOutput(Prediction([logits], obj, None), [], [])
    batch = SparseBatch(torch.zeros(3, 4, dtype=torch.int32), torch.zeros(3, 1), [torch.tensor([0, 0, 1, 2])], [])
    res = predict_instances(out, batch, InferenceConfig(topk=5), segments=[np.array([0, 0, 1, 1])])[0]
    s = torch.sigmoid
    # query 0: superpoint {2, 3} averages sigmoid(2) and sigmoid(-5) = 0.444 < 0.5, so only points 0, 1 remain
    # query 1: superpoint {2, 3} averages sigmoid(0) and sigmoid(3) = 0.726; superpoint {0, 1} sigmoid(-5)
    conf1 = (s(torch.tensor(0.0)) + s(torch.tensor(3.0))) / 2
    assert res.masks.tolist() == [[False, False, True, True], [True, True, False, False]]
    np.testing.assert_allclose(res.scores, [float(s(torch.tensor(1.0)) * conf1), float(0.5 * s(torch.tensor(2.0)))],
                               rtol=1e-6)
    with pytest.raises(ValueError, match="expected 4 ids"):
        predict_instances(out, batch, segments=[np.array([0, 0, 1])])
    with pytest.raises(ValueError, match="segment arrays"):
        predict_instances(out, batch, segments=[np.zeros(4, int), np.zeros(4, int)])


def test_pool_over_segments_matches_a_loop():
    from freepoint_bench.models.inference import pool_over_segments

    g = torch.Generator().manual_seed(0)
    probs = torch.rand(5, 50, generator=g)
    seg = torch.randint(0, 7, (50,), generator=g)
    seg[seg == 3] = 4  # an id with no points
    want = probs.clone()
    for k in seg.unique():
        want[:, seg == k] = probs[:, seg == k].mean(1, keepdim=True)
    torch.testing.assert_close(pool_over_segments(probs, seg), want)


def test_position_frame_box_or_fixed_scale():
    xyz = torch.tensor([[1.0, 2.0, 3.0], [5.0, 4.0, 3.5]])
    lo, hi = position_frame(xyz)
    assert lo.tolist() == [1.0, 2.0, 3.0] and hi.tolist() == [5.0, 4.0, 3.5]
    lo, hi = position_frame(xyz, 10.0)
    assert lo.tolist() == [1.0, 2.0, 3.0] and hi.tolist() == [11.0, 12.0, 13.0]
    torch.testing.assert_close(normalise_positions(xyz, lo, hi), torch.tensor([[0, 0, 0], [0.4, 0.2, 0.05]]))


def test_fixed_position_scale_keeps_the_spatial_kernel_when_the_scene_grows():
    """Two voxels 0.3 m apart: with position_scale their prior kernel is the same in a small scene and in
    one grown by a far-away wall (a crop vs the whole room); with the scene's box it changes."""
    dec = InstanceSegmenter(
        SegmenterConfig(backbone=TINY.backbone, decoder=TINY.decoder.model_copy(update={"spatial_prior": True}))
    ).decoder
    pair = torch.tensor([[0.0, 0.0, 0.0], [0.3, 0.0, 0.0], [1.0, 1.0, 1.0]])
    grown = torch.cat([pair, torch.tensor([[6.0, 3.0, 1.0]])])

    def kernel(xyz, scale):
        lo, hi = position_frame(xyz, scale)
        enc = dec.spatial_enc((xyz - lo) / (hi - lo).max())
        return float(fourier_kernel(enc[:1], enc[1:2]))

    assert kernel(pair, 2.0) == pytest.approx(kernel(grown, 2.0), abs=1e-5)
    assert abs(kernel(pair, None) - kernel(grown, None)) > 0.05


def test_voxels_per_query_grows_the_queries_with_the_largest_scene():
    xyz0, rgb0, _ = _scene(0)
    xyz1, rgb1, _ = _scene(1, n_floor=100, n_box=60)
    batch = collate([xyz0, xyz1], [rgb0, rgb1], voxel_size=0.08)
    voxels = [int(batch.scene_rows(b).sum()) for b in range(2)]
    decoder = TINY.decoder.model_copy(update={"voxels_per_query": 7.0, "num_queries": 4})
    out = InstanceSegmenter(SegmenterConfig(backbone=TINY.backbone, decoder=decoder))(batch)
    q = math.ceil(max(voxels) / 7.0)
    assert q > 4
    assert out.final.objectness.shape == (2, q)
    assert [m.shape for m in out.final.masks] == [(q, voxels[0]), (q, voxels[1])]
    few = TINY.decoder.model_copy(update={"voxels_per_query": 1e6, "num_queries": 4})  # num_queries is the floor
    out = InstanceSegmenter(SegmenterConfig(backbone=TINY.backbone, decoder=few))(batch)
    assert out.final.objectness.shape == (2, 4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: mixed precision on GPU")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_mixed_precision_step_on_cuda_is_finite_and_close_to_fp32(dtype):  # pragma: no cover - GPU only
    xyz, rgb, inst = _scene(6)
    batch = collate([xyz], [rgb], voxel_size=0.08).to("cuda")
    torch.manual_seed(0)
    model = InstanceSegmenter(TINY).cuda()
    targets = [targets_from_instance_ids(torch.from_numpy(inst)).to("cuda")]
    criterion = SetCriterion(LossConfig())
    full = criterion(model(batch), targets, batch)["loss"]
    with torch.autocast("cuda", dtype=dtype):
        mixed = criterion(model(batch), targets, batch)["loss"]
    mixed.backward()
    assert torch.isfinite(mixed) and abs(float(mixed) - float(full)) < 0.05 * abs(float(full)) + 0.05
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("mode", ["matched", "iou"])
def test_objectness_target_is_one_or_the_matched_masks_iou(mode):
    # six points 1 m apart (one voxel each); target {0, 1, 2, 3}; query 0 predicts {2, 3, 4, 5}: IoU 2 / 6;
    # query 1 predicts nothing (unmatched: target 0 either way)
    xyz = np.c_[np.arange(6.0), np.zeros(6), np.zeros(6)].astype(np.float32)
    batch = collate([xyz], [np.zeros_like(xyz)], voxel_size=0.5)
    order = batch.point_to_voxel[0]  # voxel of each point
    point_logits = torch.tensor([[-4.0, -4.0, 4.0, 4.0, 4.0, 4.0], [-4.0] * 6])
    voxel_logits = torch.empty(2, len(xyz))
    voxel_logits[:, order] = point_logits
    objectness = torch.tensor([[1.0, -2.0]])
    out = SegmenterOutput(final=Prediction([voxel_logits], objectness, None), aux=[], query_xyz=[])
    target = targets_from_instance_ids(torch.tensor([0, 0, 0, 0, -1, -1]))
    terms = SetCriterion(LossConfig(aux=False, objectness_target=mode))(out, [target], batch)
    t0 = 1.0 if mode == "matched" else 2 / 6
    sig = torch.sigmoid(objectness[0])
    expected = -(t0 * torch.log(sig[0]) + (1 - t0) * torch.log(1 - sig[0])) - torch.log(1 - sig[1])
    assert float(terms["objectness"]) == pytest.approx(float(expected) / 2, rel=1e-5)
