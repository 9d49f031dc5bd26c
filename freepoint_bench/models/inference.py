"""From segmenter outputs to scored point masks, in one of two modes (`InferenceConfig.mode`).

query (the default): one instance per query, its most likely class, score = sigmoid(objectness) x mask confidence
(x class probability), top-k by score, minimum size, NMS-free.

mask3d: Mask3D's evaluation (trainer/trainer.py, eval_instance_step and get_mask_and_scores), as its S3DIS scripts
run it: each query's mask is optionally split by DBSCAN into its spatial components, each a new mask with the
parent's class probabilities; the top-k (mask, class) pairs by class probability are kept, each scored class
probability x mean mask probability over its voxels; no objectness.

Optionally each mask is smoothed over label-free superpoints (`geometry.superpoints`): query mode averages its
probabilities within each superpoint before thresholding (so masks follow surfaces instead of voxel noise); mask3d
mode keeps a superpoint where most of its points are in the mask (Mask3D's eval_on_segments).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from freepoint_bench.config import omit_at_default
from freepoint_bench.data.classes import OBJECT_LABEL_ID
from freepoint_bench.geometry.superpoints import SuperpointConfig
from freepoint_bench.models.segmenter import SegmenterOutput
from freepoint_bench.models.voxels import SparseBatch


class InferenceConfig(BaseModel):
    """How predictions become instances."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    mode: Literal["query", "mask3d"] = "query"  # see the module docstring
    # query: the best-scored instances kept; mask3d: the (mask, class) pairs kept, by class probability (Mask3D's
    # topk_per_image: 100 in conf/config_base_instance_segmentation.yaml; -1, as many pairs as masks, in
    # scripts/s3dis/*.sh). None: query, every instance; mask3d, as many pairs as masks (Mask3D's -1).
    topk: int | None = Field(100, ge=1)
    mask_threshold: float = Field(0.5, gt=0, lt=1)  # a point belongs to a mask where sigmoid(logit) > 0.5
    # smaller masks (points) are dropped; mask3d: after the top-k, where an empty mask held a pair (Mask3D keeps it
    # at score 0; the evaluator skips it)
    min_points: int = Field(1, ge=1)
    # query: scores <= this are dropped; mask3d: scores < this (Mask3D's scores_threshold 0.0, which it applies only
    # with filter_out_instances, false in conf/config_base_instance_segmentation.yaml and the S3DIS scripts)
    score_threshold: float = Field(0.0, ge=0, le=1)
    agnostic_label: int = OBJECT_LABEL_ID  # label written for class-agnostic predictions (query mode)
    # Superpoints to pool masks over (None: per point). Callers that have the points (engine.predict) compute them
    # and pass `segments` to predict_instances.
    superpoints: SuperpointConfig | None = None
    # mask3d: split each mask into DBSCAN clusters of its voxels (metres; None: no split). Mask3D's S3DIS scripts
    # (scripts/s3dis/s3dis_from_scratch.sh, s3dis_pretrained.sh) set use_dbscan=true, dbscan_eps=0.6. Like Mask3D
    # it clusters voxels, not points; a voxel stands at its points' mean here, at one of its points' raw
    # coordinates there (datasets/utils.py voxelize keeps the features of sparse_quantize's unique_map).
    dbscan_eps: float | None = Field(None, gt=0)
    # DBSCAN's min_samples (Mask3D's dbscan_min_points: 1 in conf/config_base_instance_segmentation.yaml, not
    # overridden by its S3DIS scripts). At 1 no voxel is noise and the clusters are the connected components of
    # the eps-graph; above 1, points without min_points neighbours are noise and leave the split masks.
    dbscan_min_points: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _dbscan_needs_mask3d(self) -> InferenceConfig:
        if self.mode == "query" and (self.dbscan_eps is not None or self.dbscan_min_points != 1):
            raise ValueError("dbscan_eps / dbscan_min_points apply to mode 'mask3d' only; with mode 'query' set "
                             "dbscan_eps=none and dbscan_min_points=1")
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> dict[str, Any]:
        # fields added after results were recorded are left out at their defaults, so the fine-tuning configs
        # that result.json files hold (and compare on resume) stay the same for unchanged behaviour
        return omit_at_default(self, handler(self), _LATER_FIELDS)


_LATER_FIELDS = ("mode", "dbscan_eps", "dbscan_min_points")


@dataclass
class InstanceArrays:
    """Instances of one scene: masks (K, N) bool over points, labels (K,) int64, scores (K,) float32."""

    masks: np.ndarray
    labels: np.ndarray
    scores: np.ndarray


def pool_over_segments(probs: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
    """Returns probs (Q, N) with each row averaged within each segment of segments (N,) int64 ids >= 0."""
    segments = segments.to(probs.device).long()
    count = torch.bincount(segments).clamp(min=1).to(probs.dtype)
    sums = probs.new_zeros(probs.shape[0], count.numel()).index_add_(1, segments, probs)
    return (sums / count)[:, segments]


def eps_components(xyz: np.ndarray, eps: float) -> np.ndarray:
    """Returns (N,) int64 connected-component ids of xyz (N, 3), two points joined when within eps (<=), numbered
    by first point: DBSCAN's labels at min_samples=1, without holding every eps-neighbourhood at once.

    On a grid of side eps/sqrt(3) the points of one cell are within eps of each other, so cells are the nodes.
    Edges: every point within eps of each cell's first point (one ball per cell); then the candidate cell pairs
    (up to 2 cells apart per axis) that this leaves in different components and that both hold several points
    are tested exactly, nearest point to nearest point. sklearn's DBSCAN holds every neighbourhood: on a 10 m x
    3 m wall of 2 cm voxels (75k points, ~2,800 neighbours each at eps 0.6 m) it took 6.1 s and 2.7 GB."""
    xyz = np.asarray(xyz, dtype=np.float64)
    if not len(xyz):
        return np.zeros(0, dtype=np.int64)
    grid = np.floor((xyz - xyz.min(0)) / (eps / math.sqrt(3))).astype(np.int64) + 2  # +2: offsets stay >= 0
    cells, first, cell_of = np.unique(grid, axis=0, return_index=True, return_inverse=True)
    cell_of, size = cell_of.reshape(-1), np.bincount(cell_of.reshape(-1))
    tree = cKDTree(xyz)
    near = cKDTree(xyz[first]).sparse_distance_matrix(tree, eps, output_type="ndarray")
    edges = coo_matrix((np.ones(len(near)), (near["i"], cell_of[near["j"]])), shape=(len(cells), len(cells)))
    comp = connected_components(edges, directed=False)[1]
    # the cell pairs the balls may have missed: both cells with several points, in different components
    dims = cells.max(0) + 3
    keys = (cells[:, 0] * dims[1] + cells[:, 1]) * dims[2] + cells[:, 2]  # sorted: np.unique sorts rows
    pairs = []
    for o in _HALF_OFFSETS:
        target = keys + (o[0] * dims[1] + o[1]) * dims[2] + o[2]
        pos = np.minimum(np.searchsorted(keys, target), len(keys) - 1)
        c = np.flatnonzero(keys[pos] == target)
        pairs.append(np.stack([c, pos[c]], 1))
    pairs = np.concatenate(pairs)
    pairs = pairs[(size[pairs[:, 0]] > 1) & (size[pairs[:, 1]] > 1) & (comp[pairs[:, 0]] != comp[pairs[:, 1]])]
    if len(pairs):
        order = np.argsort(cell_of, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(size)])
        parent = np.arange(comp.max() + 1)

        def find(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        trees: dict[int, cKDTree] = {}
        for c, d in pairs.tolist():
            a, b = find(comp[c]), find(comp[d])
            if a == b:
                continue
            if d not in trees:
                trees[d] = cKDTree(xyz[order[bounds[d]:bounds[d + 1]]])
            if trees[d].query(xyz[order[bounds[c]:bounds[c + 1]]], k=1)[0].min() <= eps:
                parent[a] = b
        comp = np.array([find(i) for i in range(len(parent))])[comp]
    _, first_point, ids = np.unique(comp[cell_of], return_index=True, return_inverse=True)
    rank = np.empty(len(first_point), dtype=np.int64)
    rank[np.argsort(first_point)] = np.arange(len(first_point))
    return rank[ids.reshape(-1)]


# one of each +-pair of grid offsets up to 2 cells per axis (cells 3 apart are more than eps apart)
_HALF_OFFSETS = [o for o in (np.array(o) - 2 for o in np.ndindex(5, 5, 5)) if tuple(o) > (0, 0, 0)]


def dbscan_labels(xyz: np.ndarray, eps: float, min_points: int) -> np.ndarray:
    """Returns (N,) int64 DBSCAN cluster ids of xyz (N, 3), -1 = noise (eps in xyz's units, min_points counting
    the point itself, as sklearn's min_samples)."""
    if min_points == 1:
        return eps_components(xyz, eps)
    from sklearn.cluster import DBSCAN  # here: its import took 2.5 s, which every importer of this module would pay

    return DBSCAN(eps=eps, min_samples=min_points).fit(np.asarray(xyz, dtype=np.float64)).labels_.astype(np.int64)


def split_masks(keep: torch.Tensor, voxel_xyz: np.ndarray, eps: float,
                min_points: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (parent (P,) int64 query of each part, parts (P, M) bool): each row of keep (Q, M) bool split into
    the DBSCAN clusters of its voxels' voxel_xyz (M, 3), in query order then cluster id; noise and empty rows
    give no part (Mask3D's use_dbscan block in trainer/trainer.py eval_instance_step)."""
    parent, parts = [], []
    for q in range(keep.shape[0]):
        rows = torch.nonzero(keep[q]).flatten().cpu().numpy()
        if not len(rows):
            continue
        ids = dbscan_labels(voxel_xyz[rows], eps, min_points)
        for k in np.unique(ids[ids >= 0]):
            part = torch.zeros(keep.shape[1], dtype=torch.bool)
            part[torch.from_numpy(rows[ids == k])] = True
            parent.append(q)
            parts.append(part)
    if not parts:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, keep.shape[1], dtype=torch.bool)
    return torch.tensor(parent, dtype=torch.long), torch.stack(parts).to(keep.device)


def voxel_xyz(batch: SparseBatch, b: int, num_voxels: int) -> np.ndarray:
    """Returns (M_b, 3) float64 metres: the mean of each of scene b's voxels' points."""
    rows = batch.point_to_voxel[b].cpu().long()
    xyz = batch.point_xyz[b].cpu().double()
    count = torch.bincount(rows, minlength=num_voxels).clamp(min=1).double()
    return (xyz.new_zeros(num_voxels, 3).index_add_(0, rows, xyz) / count[:, None]).numpy()


def mask3d_scene(logits: torch.Tensor, class_logits: torch.Tensor, xyz: np.ndarray | None,
                 cfg: InferenceConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns (masks (K, M) bool over voxels, labels (K,) int64 class indices, scores (K,) float32) best first, by
    Mask3D's rule from one scene's mask logits (Q, M) and class logits (Q, C + 1), the last "no object":

    p = softmax over the C + 1 classes, the last dropped (not renormalised); each query's mask {v: logit > 0} (at
    mask_threshold 0.5), split into its DBSCAN clusters over xyz (M, 3) metres when cfg.dbscan_eps is set, each
    cluster a mask with its query's p; the k pairs (mask i, class c) of highest p[i, c] (k = cfg.topk, or the
    number of masks when None); score = p[i, c] x mean sigmoid(logit) over mask i's voxels."""
    logits = logits.float()
    probs = class_logits.float().softmax(-1)[:, :-1]  # (Q, C)
    keep = logits > math.log(cfg.mask_threshold / (1 - cfg.mask_threshold))
    parent = torch.arange(logits.shape[0], device=logits.device)
    if cfg.dbscan_eps is not None:
        if xyz is None:
            raise ValueError("mode 'mask3d' with dbscan_eps needs the voxels' coordinates")
        parent, keep = split_masks(keep, xyz, cfg.dbscan_eps, cfg.dbscan_min_points)
        parent = parent.to(logits.device)
    num_masks, num_classes = len(parent), probs.shape[1]
    heat = logits[parent].sigmoid()
    mask_score = (heat * keep).sum(1) / (keep.sum(1) + 1e-6)  # Mask3D's get_mask_and_scores, its 1e-6 included
    k = min(num_masks if cfg.topk is None else cfg.topk, num_masks * num_classes)
    cls_score, flat = probs[parent].flatten().topk(k, sorted=True)
    rows, labels = flat // num_classes, flat % num_classes
    scores = cls_score * mask_score[rows]
    order = torch.argsort(scores, descending=True, stable=True)
    return keep[rows[order]], labels[order], scores[order]


@torch.no_grad()
def predict_instances(
    output: SegmenterOutput,
    batch: SparseBatch,
    config: InferenceConfig | None = None,
    segments: list[np.ndarray | torch.Tensor] | None = None,
) -> list[InstanceArrays]:
    """Returns per-scene instances sorted by score (best first), masks mapped from voxels to points.

    query mode: score = sigmoid(objectness) x mean mask probability over the mask's points (x class probability
    when the model has classes; each query then takes its most likely non-"no object" class). mask3d mode:
    mask3d_scene (needs class logits). segments: per scene, (N_b,) superpoint ids of its points (None: per point).
    """
    cfg = config or InferenceConfig()
    final = output.final
    if segments is not None and len(segments) != len(final.masks):
        raise ValueError(f"{len(segments)} segment arrays for a batch of {len(final.masks)} scenes")
    if cfg.mode == "mask3d" and final.class_logits is None:
        raise ValueError("mode 'mask3d' ranks (mask, class) pairs: the model has no class head; use mode 'query'")
    results = []
    for b in range(len(final.masks)):
        seg = None
        if segments is not None:
            num_points = len(batch.point_to_voxel[b])
            seg = torch.as_tensor(np.asarray(segments[b]), dtype=torch.long)
            if seg.shape != (num_points,) or (len(seg) and int(seg.min()) < 0):
                raise ValueError(f"segments of scene {b}: expected {num_points} ids >= 0, got shape {tuple(seg.shape)}")
        if cfg.mode == "mask3d":
            results.append(_mask3d_points(final, batch, b, cfg, seg))
        else:
            results.append(_query_points(final, batch, b, cfg, seg))
    return results


def _query_points(final: Any, batch: SparseBatch, b: int, cfg: InferenceConfig,
                  seg: torch.Tensor | None) -> InstanceArrays:
    probs = final.masks[b].float().sigmoid()[:, batch.point_to_voxel[b]]  # (Q, N)
    if seg is not None:
        probs = pool_over_segments(probs, seg)
    masks = probs > cfg.mask_threshold
    sizes = masks.sum(1)
    mask_conf = (probs * masks).sum(1) / sizes.clamp(min=1)
    scores = final.objectness[b].float().sigmoid() * mask_conf
    if final.class_logits is not None:
        cls_prob, labels = final.class_logits[b].float().softmax(-1)[:, :-1].max(-1)
        scores = scores * cls_prob
    else:
        labels = torch.full_like(sizes, cfg.agnostic_label)
    keep = (sizes >= cfg.min_points) & (scores > cfg.score_threshold)
    idx = torch.nonzero(keep).flatten()
    idx = idx[torch.argsort(scores[idx], descending=True, stable=True)][: cfg.topk]
    return _arrays(masks[idx], labels[idx], scores[idx])


def _mask3d_points(final: Any, batch: SparseBatch, b: int, cfg: InferenceConfig,
                   seg: torch.Tensor | None) -> InstanceArrays:
    logits = final.masks[b]
    xyz = voxel_xyz(batch, b, logits.shape[1]) if cfg.dbscan_eps is not None else None
    voxel_masks, labels, scores = mask3d_scene(logits, final.class_logits[b], xyz, cfg)
    masks = voxel_masks[:, batch.point_to_voxel[b]]  # (K, N) points
    if seg is not None:  # Mask3D's eval_on_segments: a superpoint is in the mask where most of its points are
        masks = pool_over_segments(masks.float(), seg) > 0.5
    keep = (masks.sum(1) >= cfg.min_points) & (scores >= cfg.score_threshold)
    return _arrays(masks[keep], labels[keep], scores[keep])


def _arrays(masks: torch.Tensor, labels: torch.Tensor, scores: torch.Tensor) -> InstanceArrays:
    return InstanceArrays(
        masks=masks.cpu().numpy().astype(bool),
        labels=labels.cpu().numpy().astype(np.int64),
        scores=scores.cpu().numpy().astype(np.float32),
    )
