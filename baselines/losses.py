"""The contrastive losses of the baselines: PointInfoNCE (PointContrast), ShapeContext-partitioned PointInfoNCE
(CSC) and MoCo's queue InfoNCE with its momentum encoder (DepthContrast).

Shapes: q, k (P, D) L2-normalised features of P matched points (row i of q matches row i of k); xyz (P, 3)
anchor positions in voxel units; partitions (P, P) int64, -1 = in no partition.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def point_info_nce(q: torch.Tensor, k: torch.Tensor, temperature: float,
                   exclude: torch.Tensor | None = None) -> torch.Tensor:
    """Returns the mean over anchors i of -log softmax_j(q_i · k_j / temperature)[i] (PointContrast's
    PointInfoNCE: the matched k_i is the positive, every other k_j a negative).

    exclude: optional (P, P) bool, True = k_j is not a negative of anchor i (never the diagonal)."""
    logits = q @ k.T / temperature
    if exclude is not None:
        logits = logits.masked_fill(exclude & ~torch.eye(len(q), dtype=torch.bool, device=q.device), float("-inf"))
    return F.cross_entropy(logits, torch.arange(len(q), device=q.device))


def shape_context_partitions(xyz: torch.Tensor, r1: float = 2.0, r2: float = 20.0, nbins_xy: int = 2,
                             nbins_zy: int = 2) -> torch.Tensor:
    """Returns (P, P) int64: the ShapeContext partition of point j around anchor i (CSC's compute_partitions).

    With d = xyz[j] - xyz[i]: the radial bin is 0 for r1 <= |d| < r2 and 1 for |d| >= r2 (closer: -1, none); the
    angular bin is floor(atan2(dy, dx) mod 2π / (2π / nbins_xy)) * nbins_zy + floor(atan2(dy, dz) mod π /
    (π / nbins_zy)); the partition is radial * nbins_xy * nbins_zy + angular, 2 * nbins_xy * nbins_zy in all.
    """
    d = xyz[None, :, :] - xyz[:, None, :]
    angle_xy = torch.remainder(torch.atan2(d[..., 1], d[..., 0]), 2 * math.pi)
    angle_zy = torch.remainder(torch.atan2(d[..., 1], d[..., 2]), math.pi)
    bin_xy = torch.floor(angle_xy / (2 * math.pi / nbins_xy)).long().clamp(max=nbins_xy - 1)
    bin_zy = torch.floor(angle_zy / (math.pi / nbins_zy)).long().clamp(max=nbins_zy - 1)
    dist = torch.sqrt((d**2).sum(-1) + 1e-7)
    radial = torch.full_like(bin_xy, -1)
    radial[(dist >= r1) & (dist < r2)] = 0
    radial[dist >= r2] = 1
    out = radial * (nbins_xy * nbins_zy) + bin_xy * nbins_zy + bin_zy
    return torch.where(radial >= 0, out, torch.full_like(out, -1))


def shape_context_partitions_fast(xyz: torch.Tensor, r1: float = 2.0, r2: float = 20.0) -> torch.Tensor:
    """Returns (P, P) int64: CSC's fast 4-way partition of point j around anchor i (compute_partitions_fast):
    0 / 1 for r1 < |d| <= r2 above / below the anchor (dz > 0 / dz < 0), 2 / 3 for |d| > r2; -1 otherwise."""
    d = xyz[None, :, :] - xyz[:, None, :]
    dist = torch.sqrt((d**2).sum(-1) + 1e-7)
    up, down = d[..., 2] > 0, d[..., 2] < 0
    inner, outer = (dist > r1) & (dist <= r2), dist > r2
    out = torch.full(dist.shape, -1, dtype=torch.long, device=xyz.device)
    out[inner & up], out[inner & down], out[outer & up], out[outer & down] = 0, 1, 2, 3
    return out


def partitioned_info_nce(q: torch.Tensor, k: torch.Tensor, partitions: torch.Tensor, num_partitions: int,
                         temperature: float) -> torch.Tensor:
    """Returns CSC's loss of one scene: the mean over the partitions p of PointInfoNCE where the negatives of
    anchor i are only the k_j with partitions[i, j] == p (an anchor with none there contributes 0).

    Equal to averaging point_info_nce(q, k, t, exclude=partitions != p) over p, in one pass: each row's
    exponentiated logits are summed per partition (scatter_add) instead of masking the matrix once per p.
    """
    logits = q @ k.T / temperature
    top = logits.detach().max(dim=1, keepdim=True).values  # a per-row shift for stable exponentials
    shifted = logits - top
    positive = shifted.diagonal()
    eye = torch.eye(len(q), dtype=torch.bool, device=q.device)
    valid = (partitions >= 0) & (partitions < num_partitions) & ~eye
    weights = torch.where(valid, shifted.exp(), torch.zeros_like(shifted))
    sums = shifted.new_zeros(len(q), num_partitions).scatter_add(1, partitions.clamp(0, num_partitions - 1), weights)
    per_partition = torch.log(positive.exp()[:, None] + sums) - positive[:, None]  # (P, partitions)
    return per_partition.mean()


# ---------------------------------------------------------------------------------------------- MoCo


class KeyQueue(nn.Module):
    """MoCo's queue of the last `size` keys (a ring buffer), each an L2-normalised `dim`-vector."""

    def __init__(self, size: int, dim: int, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("keys", F.normalize(torch.randn(size, dim, generator=generator), dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    def enqueue(self, keys: torch.Tensor) -> None:
        """Writes `keys` (B, dim) over the oldest entries from `ptr` on, wrapping around the end: the same as
        enqueueing them one by one (a batch longer than the queue leaves its last `size` keys)."""
        size = len(self.keys)
        rows = (self.ptr + torch.arange(len(keys), device=keys.device)) % size
        self.keys[rows[-size:]] = keys.detach()[-size:].to(self.keys.dtype)
        self.ptr.copy_((self.ptr + len(keys)) % size)


@torch.no_grad()
def momentum_update(key_model: nn.Module, query_model: nn.Module, momentum: float) -> None:
    """Sets every key parameter to momentum * key + (1 - momentum) * query (MoCo's key encoder update)."""
    for pk, pq in zip(key_model.parameters(), query_model.parameters(), strict=True):
        pk.mul_(momentum).add_(pq.detach(), alpha=1.0 - momentum)


def moco_info_nce(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float) -> torch.Tensor:
    """Returns the mean over rows b of -log of the softmax weight of q_b · k_b among [q_b · k_b, q_b · queue]
    / temperature (MoCo: its own key is the positive, the queued keys the negatives)."""
    positive = (q * k).sum(dim=1, keepdim=True)
    logits = torch.cat([positive, q @ queue.T], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long, device=q.device))
