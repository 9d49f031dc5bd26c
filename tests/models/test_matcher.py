"""Hungarian matching against brute force over every assignment on tiny inputs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from freepoint_bench.models.losses import LossConfig, pairwise_bce, pairwise_dice
from freepoint_bench.models.matcher import hungarian_match, matching_cost


def _brute_force(cost: np.ndarray) -> float:
    q, t = cost.shape
    return min(sum(cost[p[j], j] for j in range(t)) for p in itertools.permutations(range(q), t))


@pytest.mark.parametrize("seed", range(5))
def test_hungarian_matches_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    xyz = torch.rand(12, 3, generator=g, dtype=torch.float64)
    logits = torch.randn(5, 12, generator=g, dtype=torch.float64) * 3
    target = (torch.rand(3, 12, generator=g) > 0.5).double()
    target[:, 0] = 1  # no empty target
    objectness = torch.randn(5, generator=g, dtype=torch.float64)
    cost = matching_cost(logits, target, xyz, LossConfig(), objectness=objectness)
    rows, cols = hungarian_match(cost)
    assert len(rows) == 3 and len(set(rows)) == 3 and sorted(cols) == [0, 1, 2]
    c = cost.numpy()
    assert c[rows, cols].sum() == pytest.approx(_brute_force(c))


def test_cost_terms_follow_the_weights():
    g = torch.Generator().manual_seed(7)
    xyz = torch.rand(6, 3, generator=g, dtype=torch.float64)
    logits = torch.randn(2, 6, generator=g, dtype=torch.float64)
    target = torch.tensor([[1, 1, 1, 0, 0, 0]], dtype=torch.float64)
    only_masks = LossConfig(mean=0, box=0, cls=0)
    expected = 5 * pairwise_bce(logits, target) + 2 * pairwise_dice(logits, target)
    torch.testing.assert_close(matching_cost(logits, target, xyz, only_masks), expected)
    # The class term: -cls * p(label).
    cls_logits = torch.randn(2, 4, generator=g, dtype=torch.float64)
    labels = torch.tensor([2])
    with_cls = matching_cost(logits, target, xyz, LossConfig(mean=0, box=0), class_logits=cls_logits, labels=labels)
    torch.testing.assert_close(with_cls, expected - 2 * cls_logits.softmax(-1)[:, [2]])


def test_perfect_prediction_is_matched_to_its_target():
    xyz = torch.rand(8, 3, dtype=torch.float64)
    target = torch.tensor([[1, 1, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1, 1, 0]], dtype=torch.float64)
    logits = torch.full((4, 8), -20.0, dtype=torch.float64)
    logits[3] = target[0] * 40 - 20
    logits[1] = target[1] * 40 - 20
    rows, cols = hungarian_match(matching_cost(logits, target, xyz, LossConfig()))
    assert dict(zip(cols.tolist(), rows.tolist(), strict=True)) == {0: 3, 1: 1}
