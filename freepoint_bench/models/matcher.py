"""Hungarian matching of predicted masks to target masks on the weighted cost of the eq. 7 terms."""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from freepoint_bench.models.losses import (
    LossConfig,
    pairwise_bce,
    pairwise_box,
    pairwise_dice,
    pairwise_mean,
)


def matching_cost(
    logits: torch.Tensor,
    target: torch.Tensor,
    xyz: torch.Tensor,
    config: LossConfig,
    objectness: torch.Tensor | None = None,
    class_logits: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Returns the (Q, T) cost of pairing prediction q (mask logits (Q, N)) with target t (masks (T, N)).

    cost = bce * BCE + dice * Dice + mean * Lmean + box * Lbox + cls * (-p(class or object)),
    weak terms only when their weight is > 0; xyz (N, 3) are normalised scene coordinates.
    """
    with torch.no_grad():
        cost = config.bce * pairwise_bce(logits, target) + config.dice * pairwise_dice(logits, target)
        if config.mean > 0:
            cost = cost + config.mean * pairwise_mean(logits, target, xyz)
        if config.box > 0:
            cost = cost + config.box * pairwise_box(logits, target, xyz, config.box_temperature)
        if config.cls > 0:
            if class_logits is not None and labels is not None:
                cost = cost - config.cls * class_logits.softmax(-1)[:, labels]
            elif objectness is not None:
                cost = cost - config.cls * objectness.sigmoid()[:, None]
    return cost


def hungarian_match(cost: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Returns (prediction rows, target columns) int64 of the minimum-cost assignment of a (Q, T) cost."""
    c = cost.detach().cpu().double().numpy()
    if c.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if not np.isfinite(c).all():
        raise ValueError("matching cost has non-finite entries; the predictions diverged")
    rows, cols = linear_sum_assignment(c)
    return rows.astype(np.int64), cols.astype(np.int64)
