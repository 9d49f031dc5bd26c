"""Mask losses of eq. 5-7: Dice, BCE, the weak Lmean (mask centres) and Lbox (mask extents), computed on points.

Every loss takes mask logits (K, N) over N points and targets (K, N) in {0, 1} (row k of the prediction
is paired with row k of the target) and returns (K,) per-pair losses; the `pairwise_*` variants return
the (Q, T) cost of every prediction against every target for matching.

Positions `xyz` (N, 3) are normalised per scene (`normalise_scene`): shifted to the minimum corner and
divided by the largest side, so distances are in units of the scene size and isotropic.

Lmean (eq. 5): || sum_i p_i x_i / sum_i p_i  -  mean_{i in m*} x_i ||_2 with p = sigmoid(logits).
Lbox (eq. 6): || smax(m) - max(m*) ||_2 + || smin(m) - min(m*) ||_2, per axis maxima/minima.
The prediction's max is the probability-weighted log-sum-exp over the predicted mask S,
    smax(m) = tau * log( sum_{i in S} p_i exp(x_i / tau) / sum_{i in S} p_i ),
S = the points with p_i >= 0.5 (the mask inference keeps; the row's most probable point when none
reaches 0.5). It lies between the mean and the largest x of S, tends to that maximum as tau -> 0 and is
differentiable in the logits of S; smin(m) = -smax of -x. The target's max/min are exact. S matters: over
all points, exp(x / tau) with tau = 0.02 scene sizes outweighs any probability a sigmoid reaches (a point
half a scene away with p = 1e-10 still sets the max), so every soft box spanned the scene (Lbox ~1.0
throughout a cpu-small run on the ScanNet dev scans) and the loss only pushed background logits down.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

_EPS = 1e-12  # inside square roots: the gradient of |d| at d = 0 is otherwise NaN
Corners = tuple[torch.Tensor, torch.Tensor]  # ((K, 3) max corner, (K, 3) min corner)


class LossConfig(BaseModel):
    """Weights of eq. 7 plus Mask3D's classification/objectness terms; the same weights drive matching."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    dice: float = Field(2.0, ge=0)  # λ_dice, eq. 7; Mask3D's value (paper gives none)
    bce: float = Field(5.0, ge=0)  # λ_BCE, eq. 7; Mask3D's value
    mean: float = Field(1.0, ge=0)  # λ_mean, eq. 5/7; not given in the paper: 1 (our choice), 0 disables
    box: float = Field(1.0, ge=0)  # λ_box, eq. 6/7; not given in the paper: 1 (our choice), 0 disables
    cls: float = Field(2.0, ge=0)  # Mask3D's class weight; with no classes it weights the objectness term
    no_object_weight: float = Field(0.1, ge=0)  # Mask3D's eos_coef for the "no object" class
    box_temperature: float = Field(0.02, gt=0)  # tau of the soft max/min, in scene-size units
    aux: bool = True  # Mask3D: the same loss on every decoder step's prediction
    # what the objectness of a matched query learns: "matched" (1, Mask3D's no-object scheme) or "iou" (the
    # IoU of its binarised mask with its target, SPFormer-style IoU-aware score, so that the inference score
    # ranks masks by expected quality); unmatched queries learn 0 either way
    objectness_target: Literal["matched", "iou"] = "matched"


def normalise_scene(xyz: torch.Tensor) -> torch.Tensor:
    """Returns xyz (N, 3) shifted to its minimum corner and divided by its largest side (so in [0, 1])."""
    lo = xyz.amin(0)
    return (xyz - lo) / (xyz.amax(0) - lo).max().clamp(min=1e-6)


def _norm(d: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(d.square().sum(-1) + _EPS)


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Returns (K,) 1 - (2 sum p t + 1) / (sum p + sum t + 1), p = sigmoid(logits) (Mask3D's smoothed Dice)."""
    p = logits.sigmoid()
    return 1 - (2 * (p * target).sum(-1) + 1) / (p.sum(-1) + target.sum(-1) + 1)


def bce_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Returns (K,) binary cross-entropy averaged over the N points."""
    return F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), reduction="none").mean(-1)


def mask_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Returns (K,) the IoU of each binarised mask (logits > 0) with its target (no gradient)."""
    with torch.no_grad():
        pred = logits > 0
        tgt = target > 0.5
        inter = (pred & tgt).sum(-1).to(logits.dtype)
        union = (pred | tgt).sum(-1).to(logits.dtype)
        return inter / union.clamp(min=1)


def soft_centre(logits: torch.Tensor, xyz: torch.Tensor) -> torch.Tensor:
    """Returns (K, 3) probability-weighted mean positions of soft masks (K, N) over xyz (N, 3)."""
    p = logits.sigmoid()
    return (p @ xyz) / p.sum(-1, keepdim=True).clamp(min=_EPS)


def hard_centre(target: torch.Tensor, xyz: torch.Tensor) -> torch.Tensor:
    """Returns (T, 3) mean positions of binary masks (T, N) over xyz (N, 3)."""
    t = target.to(xyz.dtype)
    return (t @ xyz) / t.sum(-1, keepdim=True).clamp(min=1)


def soft_max_corner(logits: torch.Tensor, xyz: torch.Tensor, temperature: float) -> torch.Tensor:
    """Returns (K, 3) per-axis soft maxima tau * log(sum p exp(x / tau) / sum p) of soft masks (K, N), the
    sums over each row's predicted mask (p >= 0.5, or its most probable point; see the module docstring)."""
    return soft_corners(logits, xyz, temperature)[0]


def soft_corners(logits: torch.Tensor, xyz: torch.Tensor, temperature: float) -> Corners:
    """Returns ((K, 3) soft max corner, (K, 3) soft min corner) of soft masks (K, N) over xyz (N, 3); the min
    corner is -(the soft max of -x).

    Computed on the (row, point) pairs of the predicted masks only (a segmented log-sum-exp), which equals the
    dense (K, 3, N) log-sum-exp over all points with -inf outside the masks; predicted masks cover a small part
    of a scene, so it is much cheaper (a cpu-small step on two whole dev scans, benchmarks/bench_training.py:
    4.5 -> 2.55 s). Both corners share one selection of the pairs (a device->host sync each) and one
    segmented reduction over the columns [max, min, normaliser]."""
    with torch.no_grad():
        cut = logits.amax(-1, keepdim=True).clamp(max=0.0)  # logit 0 is p = 0.5
        rows, cols = torch.nonzero(logits >= cut, as_tuple=True)
    log_p = F.logsigmoid(logits[rows, cols])[:, None]  # (S, 1) over the pairs of the predicted masks
    scaled = xyz[cols] / temperature  # (S, 3)
    lse = _segment_logsumexp(torch.cat([log_p + scaled, log_p - scaled, log_p], dim=1), rows, logits.shape[0])
    norm = lse[:, 6:]
    return temperature * (lse[:, :3] - norm), -temperature * (lse[:, 3:6] - norm)


def _segment_logsumexp(values: torch.Tensor, rows: torch.Tensor, k: int) -> torch.Tensor:
    """Returns (k, D) log sum exp of values (S, D) over the entries of each row id 0..k-1 (every row has one)."""
    index = rows[:, None].expand_as(values)
    with torch.no_grad():  # the stabiliser cancels out of the value and the gradient
        top = values.new_full((k, values.shape[1]), float("-inf")).scatter_reduce(0, index, values, "amax")
    # the sums take exp's dtype, not the values': CUDA autocast runs exp in float32 on half values, and
    # index_add refuses a source of another dtype
    terms = (values - top[rows]).exp()
    sums = terms.new_zeros(k, values.shape[1]).index_add(0, rows, terms)
    return top + sums.log()


def hard_corners(target: torch.Tensor, xyz: torch.Tensor) -> Corners:
    """Returns ((T, 3) max corner, (T, 3) min corner) of binary masks (T, N) over xyz (N, 3); an empty mask
    gets (-big, +big) with big the dtype's largest value."""
    rows, cols = torch.nonzero(target.bool(), as_tuple=True)
    index = rows[:, None].expand(-1, 3)
    big = torch.finfo(xyz.dtype).max
    hi = xyz.new_full((target.shape[0], 3), -big).scatter_reduce(0, index, xyz[cols], "amax")
    lo = xyz.new_full((target.shape[0], 3), big).scatter_reduce(0, index, xyz[cols], "amin")
    return hi, lo


def mean_loss(logits: torch.Tensor, target: torch.Tensor, xyz: torch.Tensor) -> torch.Tensor:
    """Returns (K,) Lmean (eq. 5): distance between soft and target mask centres."""
    return _norm(soft_centre(logits, xyz) - hard_centre(target, xyz))


def box_loss(logits: torch.Tensor, target: torch.Tensor, xyz: torch.Tensor, temperature: float,
             corners: Corners | None = None, soft: Corners | None = None) -> torch.Tensor:
    """Returns (K,) Lbox (eq. 6): distance of max corners plus distance of min corners; `corners` are the
    targets' `hard_corners` and `soft` the predictions' `soft_corners` when already known."""
    hi, lo = hard_corners(target, xyz) if corners is None else corners
    soft_hi, soft_lo = soft_corners(logits, xyz, temperature) if soft is None else soft
    return _norm(soft_hi - hi) + _norm(soft_lo - lo)


def pairwise_dice(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Returns (Q, T) Dice loss of each prediction (Q, N) against each target (T, N)."""
    p = logits.sigmoid()
    t = target.to(p.dtype)
    return 1 - (2 * p @ t.T + 1) / (p.sum(-1)[:, None] + t.sum(-1)[None] + 1)


def pairwise_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Returns (Q, T) mean BCE of each prediction (Q, N) against each target (T, N)."""
    t = target.to(logits.dtype)
    pos = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
    neg = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
    return (pos @ t.T + neg @ (1 - t).T) / logits.shape[-1]


def pairwise_mean(logits: torch.Tensor, target: torch.Tensor, xyz: torch.Tensor) -> torch.Tensor:
    """Returns (Q, T) Lmean of each prediction against each target."""
    return _norm(soft_centre(logits, xyz)[:, None] - hard_centre(target, xyz)[None])


def pairwise_box(logits: torch.Tensor, target: torch.Tensor, xyz: torch.Tensor, temperature: float,
                 corners: Corners | None = None, soft: Corners | None = None) -> torch.Tensor:
    """Returns (Q, T) Lbox of each prediction against each target (`corners`, `soft`: see box_loss)."""
    hi, lo = hard_corners(target, xyz) if corners is None else corners
    soft_hi, soft_lo = soft_corners(logits, xyz, temperature) if soft is None else soft
    return _norm(soft_hi[:, None] - hi[None]) + _norm(soft_lo[:, None] - lo[None])
