"""From segmenter outputs to scored point masks: objectness x mask confidence, top-k, minimum size, NMS-free.

Optionally (Mask3D's segment pooling on ScanNet) each mask's probabilities are first averaged within
label-free superpoints (`geometry.superpoints`), so masks follow surfaces instead of voxel noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from freepoint_bench.data.classes import OBJECT_LABEL_ID
from freepoint_bench.geometry.superpoints import SuperpointConfig
from freepoint_bench.models.segmenter import SegmenterOutput
from freepoint_bench.models.voxels import SparseBatch


class InferenceConfig(BaseModel):
    """How predictions become instances."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    topk: int = Field(100, ge=1)  # Mask3D: topk_per_image 100 on ScanNet
    mask_threshold: float = Field(0.5, gt=0, lt=1)  # a point belongs to a mask where sigmoid(logit) > 0.5
    min_points: int = Field(1, ge=1)  # smaller masks are dropped
    score_threshold: float = Field(0.0, ge=0, le=1)  # lower-scored masks are dropped
    agnostic_label: int = OBJECT_LABEL_ID  # label written for class-agnostic predictions
    # Superpoints to pool mask probabilities over (None: per point). Callers that have the points
    # (engine.predict) compute them and pass `segments` to predict_instances.
    superpoints: SuperpointConfig | None = None


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


@torch.no_grad()
def predict_instances(
    output: SegmenterOutput,
    batch: SparseBatch,
    config: InferenceConfig | None = None,
    segments: list[np.ndarray | torch.Tensor] | None = None,
) -> list[InstanceArrays]:
    """Returns per-scene instances sorted by score (best first), masks mapped from voxels to points.

    score = sigmoid(objectness) x mean mask probability over the mask's points (x class probability
    when the model has classes; each query then takes its most likely non-"no object" class).
    segments: per scene, (N_b,) superpoint ids of its points; each mask's probabilities are averaged
    within every superpoint before thresholding (None: per point).
    """
    cfg = config or InferenceConfig()
    final = output.final
    if segments is not None and len(segments) != len(final.masks):
        raise ValueError(f"{len(segments)} segment arrays for a batch of {len(final.masks)} scenes")
    results = []
    for b in range(len(final.masks)):
        probs = final.masks[b].float().sigmoid()[:, batch.point_to_voxel[b]]  # (Q, N)
        if segments is not None:
            seg = torch.as_tensor(np.asarray(segments[b]), dtype=torch.long)
            if seg.shape != (probs.shape[1],) or (len(seg) and int(seg.min()) < 0):
                raise ValueError(
                    f"segments of scene {b}: expected {probs.shape[1]} ids >= 0, got shape {tuple(seg.shape)}"
                )
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
        results.append(
            InstanceArrays(
                masks=masks[idx].cpu().numpy().astype(bool),
                labels=labels[idx].cpu().numpy().astype(np.int64),
                scores=scores[idx].cpu().numpy().astype(np.float32),
            )
        )
    return results
