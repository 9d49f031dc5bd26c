"""The training loss of the segmenter: match, then eq. 7 on matched pairs plus objectness/class terms."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from freepoint_bench.models.decoder import Prediction
from freepoint_bench.models.losses import (
    LossConfig,
    bce_loss,
    box_loss,
    dice_loss,
    mask_iou,
    mean_loss,
    normalise_scene,
)
from freepoint_bench.models.matcher import hungarian_match, matching_cost
from freepoint_bench.models.segmenter import SegmenterOutput
from freepoint_bench.models.voxels import SparseBatch


@dataclass
class InstanceTargets:
    """Target instances of one scene: masks (T, N) bool over the scene's points, labels (T,) int64."""

    masks: torch.Tensor
    labels: torch.Tensor

    def to(self, device: torch.device | str) -> InstanceTargets:
        return InstanceTargets(self.masks.to(device), self.labels.to(device))


def targets_from_instance_ids(instance: torch.Tensor, semantic: torch.Tensor | None = None) -> InstanceTargets:
    """Returns the targets of a per-point instance id array (N,) (-1 = none) and optional semantics (N,)."""
    ids = torch.unique(instance[instance >= 0])
    masks = instance[None] == ids[:, None]
    if semantic is None:
        labels = torch.zeros(len(ids), dtype=torch.long)
    else:
        labels = torch.stack([torch.mode(semantic[m]).values for m in masks]) if len(ids) else ids.long()
    return InstanceTargets(masks, labels.long())


class SetCriterion:
    """Computes the losses of eq. 7 (on points, via each scene's point->voxel map) for every decoder step."""

    def __init__(self, config: LossConfig | None = None, num_classes: int = 0) -> None:
        self.config = config or LossConfig()
        self.num_classes = num_classes

    def __call__(
        self, outputs: SegmenterOutput, targets: list[InstanceTargets], batch: SparseBatch
    ) -> dict[str, torch.Tensor]:
        """Returns {"loss": total, "<term>": final-step value, ...}; total sums every step when aux is on."""
        xyz = [normalise_scene(p.to(outputs.final.objectness.dtype)) for p in batch.point_xyz]
        steps = outputs.aux + [outputs.final] if self.config.aux else [outputs.final]
        total = outputs.final.objectness.new_zeros(())
        last: dict[str, torch.Tensor] = {}
        for pred in steps:
            terms = self._step(pred, targets, batch, xyz)
            total = total + terms["weighted"]
            last = terms
        result = {"loss": total}
        result.update({k: v.detach() for k, v in last.items() if k != "weighted"})
        return result

    def _step(self, pred: Prediction, targets, batch: SparseBatch, xyz) -> dict[str, torch.Tensor]:
        cfg = self.config
        zero = pred.objectness.new_zeros(())
        sums = {"dice": zero, "bce": zero, "mean": zero, "box": zero}
        obj_terms, cls_terms = [], []
        n_targets = max(sum(len(t.masks) for t in targets), 1)
        for b, tgt in enumerate(targets):
            logits = pred.masks[b][:, batch.point_to_voxel[b]]  # (Q, N_b) on points
            target = tgt.masks.to(logits.dtype)
            keep = target.sum(-1) > 0  # an empty target mask has no centre or box
            target, labels = target[keep], tgt.labels[keep]
            cls_logits = pred.class_logits[b] if pred.class_logits is not None else None
            cost = matching_cost(logits, target, xyz[b], cfg, pred.objectness[b], cls_logits, labels)
            rows, cols = hungarian_match(cost)
            rows_t = torch.as_tensor(rows, device=logits.device)
            cols_t = torch.as_tensor(cols, device=logits.device)
            ml, mt = logits[rows_t], target[cols_t]
            sums["dice"] = sums["dice"] + dice_loss(ml, mt).sum()
            sums["bce"] = sums["bce"] + bce_loss(ml, mt).sum()
            if cfg.mean > 0:
                sums["mean"] = sums["mean"] + mean_loss(ml, mt, xyz[b]).sum()
            if cfg.box > 0:
                sums["box"] = sums["box"] + box_loss(ml, mt, xyz[b], cfg.box_temperature).sum()
            obj_target = torch.zeros_like(pred.objectness[b])
            obj_target[rows_t] = mask_iou(ml, mt) if cfg.objectness_target == "iou" else 1.0
            obj_terms.append(F.binary_cross_entropy_with_logits(pred.objectness[b], obj_target))
            if cls_logits is not None:
                cls_target = torch.full((cls_logits.shape[0],), self.num_classes, dtype=torch.long)
                cls_target = cls_target.to(cls_logits.device)
                cls_target[rows_t] = labels[cols_t]
                weight = torch.ones(self.num_classes + 1, dtype=cls_logits.dtype, device=cls_logits.device)
                weight[-1] = cfg.no_object_weight
                cls_terms.append(F.cross_entropy(cls_logits, cls_target, weight=weight))
        terms = {k: v / n_targets for k, v in sums.items()}
        terms["objectness"] = torch.stack(obj_terms).mean()
        weighted = cfg.dice * terms["dice"] + cfg.bce * terms["bce"] + cfg.mean * terms["mean"]
        weighted = weighted + cfg.box * terms["box"]
        if cls_terms:
            terms["class"] = torch.stack(cls_terms).mean()
            weighted = weighted + cfg.cls * terms["class"] + terms["objectness"]
        else:
            weighted = weighted + cfg.cls * terms["objectness"]
        terms["weighted"] = weighted
        return terms
