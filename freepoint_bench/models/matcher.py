"""Hungarian matching of predicted masks to target masks on the weighted cost of the eq. 7 terms."""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from freepoint_bench.models.losses import (
    Corners,
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
    corners: Corners | None = None,
    soft: Corners | None = None,
) -> torch.Tensor:
    """Returns the (Q, T) cost of pairing prediction q (mask logits (Q, N)) with target t (masks (T, N)).

    cost = bce * BCE + dice * Dice + mean * Lmean + box * Lbox + cls * (-p(class or object)),
    weak terms only when their weight is > 0; xyz (N, 3) are normalised scene coordinates; `corners` are the
    targets' `hard_corners` and `soft` the predictions' `soft_corners` when already known. Give float32
    inputs (SetCriterion does): the products sum per-point terms over all N points and overflow float16 above
    ~95k points.
    """
    with torch.no_grad():
        cost = config.bce * pairwise_bce(logits, target) + config.dice * pairwise_dice(logits, target)
        if config.mean > 0:
            cost = cost + config.mean * pairwise_mean(logits, target, xyz)
        if config.box > 0:
            cost = cost + config.box * pairwise_box(logits, target, xyz, config.box_temperature, corners, soft)
        if config.cls > 0:
            if class_logits is not None and labels is not None:
                cost = cost - config.cls * class_logits.softmax(-1)[:, labels]
            elif objectness is not None:
                cost = cost - config.cls * objectness.sigmoid()[:, None]
    return cost


def hungarian_match(cost: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Returns (prediction rows, target columns) int64 of the minimum-cost assignment of a (Q, T) cost."""
    return _assign(cost.detach().cpu().double().numpy())


def hungarian_match_all(
    costs: list[torch.Tensor], columns: list[torch.Tensor | None] | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Returns hungarian_match of every (Q_i, T_i) cost, its columns restricted to those where the bool (T_i,)
    `columns[i]` is True (None: all), with the column ids of the full cost.

    The costs and column masks reach the host in one transfer: the solver runs on the CPU, and a transfer per
    cost would wait for the device once per decoder step and scene."""
    columns = columns if columns is not None else [None] * len(costs)
    if not costs:
        return []
    parts = [c.detach().double().reshape(-1) for c in costs]
    parts += [(torch.ones(c.shape[1], device=c.device) if m is None else m).double()
              for c, m in zip(costs, columns, strict=True)]
    flat = torch.cat(parts).cpu().numpy()
    sizes = [c.numel() for c in costs] + [c.shape[1] for c in costs]
    pieces = np.split(flat, np.cumsum(sizes)[:-1])
    result = []
    for cost, values, keep in zip(costs, pieces[: len(costs)], pieces[len(costs) :], strict=True):
        ids = np.flatnonzero(keep > 0.5)
        rows, cols = _assign(values.reshape(cost.shape)[:, ids])
        result.append((rows, ids[cols].astype(np.int64)))
    return result


def _assign(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if c.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if not np.isfinite(c).all():
        raise ValueError("matching cost has non-finite entries; the predictions diverged")
    rows, cols = linear_sum_assignment(c)
    return rows.astype(np.int64), cols.astype(np.int64)
