"""Losses of eq. 5-7 on hand-computed tensors, pairwise vs per-pair consistency, and gradcheck."""

from __future__ import annotations

import math

import pytest
import torch

from freepoint_bench.models.losses import (
    bce_loss,
    box_loss,
    dice_loss,
    hard_corners,
    mask_iou,
    mean_loss,
    normalise_scene,
    pairwise_bce,
    pairwise_box,
    pairwise_dice,
    pairwise_mean,
    soft_max_corner,
)

D = torch.float64
XYZ = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [1.0, 2.0, 1.0]], dtype=D)


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def test_dice_hand_computed():
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0]], dtype=D)  # p = 0.5 everywhere
    target = torch.tensor([[1.0, 1.0, 0.0, 0.0]], dtype=D)
    # 1 - (2 * 1.0 + 1) / (2.0 + 2 + 1) = 1 - 3/5
    torch.testing.assert_close(dice_loss(logits, target), torch.tensor([0.4], dtype=D))


def test_bce_hand_computed():
    logits = torch.tensor([[_logit(0.8), _logit(0.25)]], dtype=D)
    target = torch.tensor([[1.0, 0.0]], dtype=D)
    expected = -(math.log(0.8) + math.log(0.75)) / 2
    torch.testing.assert_close(bce_loss(logits, target), torch.tensor([expected], dtype=D))


def test_mean_loss_hand_computed():
    # Prediction: p = 0.75 on points 0 and 1, p = 0.25 on points 2 and 3.
    logits = torch.tensor([[_logit(0.75), _logit(0.75), _logit(0.25), _logit(0.25)]], dtype=D)
    target = torch.tensor([[0.0, 0.0, 1.0, 1.0]], dtype=D)
    soft = (0.75 * XYZ[0] + 0.75 * XYZ[1] + 0.25 * XYZ[2] + 0.25 * XYZ[3]) / 2.0  # (0.5, 0.5, 0.125)
    hard = (XYZ[2] + XYZ[3]) / 2  # (0.5, 2, 0.5)
    expected = torch.linalg.norm(soft - hard)
    torch.testing.assert_close(mean_loss(logits, target, XYZ), expected[None], atol=1e-6, rtol=0)


def test_soft_max_tends_to_the_max_of_the_support_and_box_loss_to_zero():
    logits = torch.tensor([[1e4, 1e4, -1e4, -1e4]], dtype=D)  # p = 1 on points 0 and 1, log p = -1e4 elsewhere
    target = torch.tensor([[1.0, 1.0, 0.0, 0.0]], dtype=D)
    hi = soft_max_corner(logits, XYZ, temperature=1e-3)
    # Off the exact maximum by at most tau * log(number of points in the mask).
    torch.testing.assert_close(hi, torch.tensor([[1.0, 0.0, 0.0]], dtype=D), atol=1e-3 * math.log(2), rtol=0)
    assert box_loss(logits, target, XYZ, 1e-3).item() <= 2 * 1e-3 * math.log(2) + 1e-5
    # The soft max of equal-probability points at a finite temperature, by hand: tau log(mean exp(x / tau)).
    tau = 0.5
    half = torch.zeros(1, 4, dtype=D)
    expected_x = tau * math.log((2 * math.exp(0) + 2 * math.exp(1 / tau)) / 4)
    torch.testing.assert_close(soft_max_corner(half, XYZ, tau)[0, 0], torch.tensor(expected_x, dtype=D))


def test_soft_box_ignores_improbable_points_outside_the_predicted_mask():
    # p = 0.99 on points 0 and 1, p = 1e-6 on the far points 2 and 3: the predicted mask is {0, 1}.
    logits = torch.tensor([[_logit(0.99), _logit(0.99), _logit(1e-6), _logit(1e-6)]], dtype=D)
    hi = soft_max_corner(logits, XYZ, temperature=1e-3)
    torch.testing.assert_close(hi, torch.tensor([[1.0, 0.0, 0.0]], dtype=D), atol=1e-3, rtol=0)
    target = torch.tensor([[1.0, 1.0, 0.0, 0.0]], dtype=D)
    assert box_loss(logits, target, XYZ, 1e-3).item() < 3e-3
    # no point reaches 0.5: the most probable one (point 3) stands for the mask
    low = torch.tensor([[_logit(0.1), _logit(0.2), _logit(0.1), _logit(0.3)]], dtype=D)
    torch.testing.assert_close(soft_max_corner(low, XYZ, 0.1), XYZ[3:4])


def _dense_soft_max_corner(logits, xyz, temperature):
    """The dense reference: a masked (K, 3, N) log-sum-exp over every point."""
    log_p = torch.nn.functional.logsigmoid(logits)
    outside = logits < logits.amax(-1, keepdim=True).clamp(max=0.0)
    log_p = log_p.masked_fill(outside, float("-inf"))
    lse = torch.logsumexp(log_p[:, None, :] + xyz.T[None] / temperature, dim=-1)
    return temperature * (lse - torch.logsumexp(log_p, dim=-1, keepdim=True))


def _dense_hard_corners(target, xyz):
    t = target.bool()[:, :, None]
    big = torch.finfo(xyz.dtype).max
    return (torch.where(t, xyz[None], torch.full_like(xyz[None], -big)).amax(1),
            torch.where(t, xyz[None], torch.full_like(xyz[None], big)).amin(1))


def test_sparse_soft_box_equals_the_dense_log_sum_exp_in_value_and_gradient():
    g = torch.Generator().manual_seed(3)
    xyz = torch.rand(300, 3, generator=g, dtype=D)
    logits = (torch.randn(7, 300, generator=g, dtype=D) * 3 - 2).requires_grad_()
    with torch.no_grad():
        logits[2] = -5.0 + torch.rand(300, generator=g, dtype=D)  # no point reaches 0.5
    for tau in (0.02, 0.3):
        ours = soft_max_corner(logits, xyz, tau)
        ref = _dense_soft_max_corner(logits, xyz, tau)
        torch.testing.assert_close(ours, ref)
        w = torch.randn(7, 3, generator=g, dtype=D)
        (g_ours,) = torch.autograd.grad((ours * w).sum(), logits)
        (g_ref,) = torch.autograd.grad((ref * w).sum(), logits)
        torch.testing.assert_close(g_ours, g_ref)
    target = torch.rand(5, 300, generator=g) < 0.1
    target[4] = False  # an empty mask
    for a, b in zip(hard_corners(target, xyz), _dense_hard_corners(target, xyz), strict=True):
        torch.testing.assert_close(a, b)


def test_box_loss_hand_computed():
    logits = torch.tensor([[1e4, 1e4, 1e4, -1e4]], dtype=D)  # prediction = points 0..2
    target = torch.tensor([[1.0, 1.0, 1.0, 1.0]], dtype=D)
    # Prediction box [0,1]x[0,2]x[0,0], target box [0,1]x[0,2]x[0,1]: max corners differ by 1 in z.
    torch.testing.assert_close(box_loss(logits, target, XYZ, 1e-3), torch.tensor([1.0], dtype=D), atol=3e-3, rtol=0)
    hi, lo = hard_corners(target, XYZ)
    assert hi.tolist() == [[1.0, 2.0, 1.0]] and lo.tolist() == [[0.0, 0.0, 0.0]]


def test_normalise_scene_is_isotropic_in_unit_box():
    n = normalise_scene(torch.tensor([[1.0, 1.0, 1.0], [3.0, 2.0, 1.5]], dtype=D))
    torch.testing.assert_close(n, torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.5, 0.25]], dtype=D))


@pytest.mark.parametrize(
    "pairwise, single",
    [
        (pairwise_dice, dice_loss),
        (pairwise_bce, bce_loss),
        (lambda lg, t: pairwise_mean(lg, t, XYZ), lambda lg, t: mean_loss(lg, t, XYZ)),
        (lambda lg, t: pairwise_box(lg, t, XYZ, 0.1), lambda lg, t: box_loss(lg, t, XYZ, 0.1)),
    ],
)
def test_pairwise_costs_equal_the_per_pair_losses(pairwise, single):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, generator=g, dtype=D)
    target = torch.tensor([[1, 1, 0, 0], [0, 1, 1, 1]], dtype=D)
    cost = pairwise(logits, target)
    assert cost.shape == (3, 2)
    for q in range(3):
        for t in range(2):
            torch.testing.assert_close(cost[q, t], single(logits[q : q + 1], target[t : t + 1])[0])


@pytest.mark.parametrize(
    "fn",
    [
        dice_loss,
        bce_loss,
        lambda lg, t: mean_loss(lg, t, XYZ),
        lambda lg, t: box_loss(lg, t, XYZ, 0.3),
    ],
)
def test_gradcheck(fn):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 4, generator=g, dtype=D, requires_grad=True)
    target = torch.tensor([[1, 0, 1, 0], [0, 1, 1, 1]], dtype=D)
    assert torch.autograd.gradcheck(lambda lg: fn(lg, target), (logits,))


def test_gradcheck_box_loss_in_the_positions():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 4, generator=g, dtype=D)
    target = torch.tensor([[1, 0, 1, 0], [0, 1, 1, 1]], dtype=D)
    # at a generic point: jittered so no two positions tie on an axis (the exact target min/max has a kink
    # there) and no predicted corner sits exactly on the target's (|d| has one at d = 0)
    xyz = (XYZ + 0.1 * torch.rand(XYZ.shape, generator=g, dtype=D)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: box_loss(logits, target, x, 0.3) + mean_loss(logits, target, x), (xyz,))


def test_mask_iou_hand_computed():
    logits = torch.tensor([[2.0, 2.0, -1.0, -1.0, 3.0], [-1.0, -1.0, -1.0, -1.0, -1.0]])
    target = torch.tensor([[1.0, 0.0, 1.0, 0.0, 1.0], [1.0, 0.0, 0.0, 0.0, 0.0]])
    # row 0: predicted {0, 1, 4}, target {0, 2, 4}: 2 / 4; row 1: nothing predicted: 0 / 1
    assert mask_iou(logits, target).tolist() == pytest.approx([0.5, 0.0])
