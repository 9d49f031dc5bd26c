"""The training loss of the segmenter: match, then eq. 7 on matched pairs plus objectness/class terms."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from freepoint_bench.models.losses import (
    LossConfig,
    bce_loss,
    box_loss,
    dice_loss,
    hard_corners,
    mask_iou,
    mean_loss,
    normalise_scene,
    soft_corners,
)
from freepoint_bench.models.matcher import hungarian_match_all, matching_cost
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
    """Computes the losses of eq. 7 (on points, via each scene's point->voxel map) for every decoder step.

    Matching and every loss run in float32 with autocast off, as Mask3D's criterion does: under 16-mixed the
    (Q, T) matching products sum per-point terms over every loss point and overflow float16 above ~95k points
    (S3DIS crops have 200k), CUDA autocast runs exp and log in float32 against half operands, and positions
    in metres keep their centimetres only in float32. The predictions are cast up; their gradients flow back
    in the predictions' dtype.

    Host syncs per call: one transfer of every step's and scene's matching cost to the Hungarian solver (and
    one upload of the matches), one per scene for the targets' corners, and one per step and scene for the
    predicted masks' points of the weak Lbox term (its soft corners serve the matching and the loss).
    """

    def __init__(self, config: LossConfig | None = None, num_classes: int = 0) -> None:
        self.config = config or LossConfig()
        self.num_classes = num_classes

    def __call__(
        self, outputs: SegmenterOutput, targets: list[InstanceTargets], batch: SparseBatch
    ) -> dict[str, torch.Tensor]:
        """Returns {"loss": total, "<term>": final-step value, ...} in float32; total sums every step when aux
        is on."""
        with torch.autocast(device_type=outputs.final.objectness.device.type, enabled=False):
            return self._losses(outputs, targets, batch)

    def _losses(self, outputs: SegmenterOutput, targets: list[InstanceTargets], batch: SparseBatch):
        cfg = self.config
        xyz = [normalise_scene(p.float()) for p in batch.point_xyz]  # never half: see the class docstring
        scenes = [_ScenePoints(t, x, cfg.box > 0) for t, x in zip(targets, xyz, strict=True)]
        steps = outputs.aux + [outputs.final] if cfg.aux else [outputs.final]
        logits = [[pred.masks[b].float()[:, batch.point_to_voxel[b]] for b in range(len(targets))] for pred in steps]
        objectness = [pred.objectness.float() for pred in steps]
        class_logits = [None if pred.class_logits is None else pred.class_logits.float() for pred in steps]
        # the soft box corners of every query, once for the matching (detached) and the loss (matched rows)
        soft = [[soft_corners(lg, scene.xyz, cfg.box_temperature) if cfg.box > 0 else None
                 for lg, scene in zip(step, scenes, strict=True)] for step in logits]
        costs = [
            matching_cost(logits[s][b], scene.masks, scene.xyz, cfg, objectness[s][b],
                          None if class_logits[s] is None else class_logits[s][b], scene.labels, scene.corners,
                          None if soft[s][b] is None else (soft[s][b][0].detach(), soft[s][b][1].detach()))
            for s in range(len(steps)) for b, scene in enumerate(scenes)
        ]
        matches = _to_device(hungarian_match_all(costs, [scene.nonempty for scene in scenes] * len(steps)),
                             objectness[0].device)
        total = objectness[0].new_zeros(())
        last: dict[str, torch.Tensor] = {}
        for s in range(len(steps)):
            step_matches = matches[s * len(scenes) : (s + 1) * len(scenes)]
            terms = self._step(logits[s], objectness[s], class_logits[s], soft[s], scenes, step_matches)
            total = total + terms["weighted"]
            last = terms
        result = {"loss": total}
        result.update({k: v.detach() for k, v in last.items() if k != "weighted"})
        return result

    def _step(self, logits, objectness, class_logits, soft, scenes, matches) -> dict[str, torch.Tensor]:
        cfg = self.config
        zero = objectness.new_zeros(())
        sums = {"dice": zero, "bce": zero, "mean": zero, "box": zero}
        obj_terms, cls_terms = [], []
        n_targets = max(sum(len(scene.masks) for scene in scenes), 1)
        for b, (scene, (rows_t, cols_t)) in enumerate(zip(scenes, matches, strict=True)):
            ml, mt = logits[b][rows_t], scene.masks[cols_t]
            sums["dice"] = sums["dice"] + dice_loss(ml, mt).sum()
            sums["bce"] = sums["bce"] + bce_loss(ml, mt).sum()
            if cfg.mean > 0:
                sums["mean"] = sums["mean"] + mean_loss(ml, mt, scene.xyz).sum()
            if cfg.box > 0:
                corners = (scene.corners[0][cols_t], scene.corners[1][cols_t])
                matched = (soft[b][0][rows_t], soft[b][1][rows_t])
                sums["box"] = sums["box"] + box_loss(ml, mt, scene.xyz, cfg.box_temperature, corners, matched).sum()
            obj_target = torch.zeros_like(objectness[b])
            obj_target[rows_t] = mask_iou(ml, mt) if cfg.objectness_target == "iou" else 1.0
            obj_terms.append(F.binary_cross_entropy_with_logits(objectness[b], obj_target))
            if class_logits is not None:
                cls = class_logits[b]
                cls_target = torch.full((cls.shape[0],), self.num_classes, dtype=torch.long, device=cls.device)
                cls_target[rows_t] = scene.labels[cols_t]
                weight = torch.ones(self.num_classes + 1, dtype=cls.dtype, device=cls.device)
                weight[-1] = cfg.no_object_weight
                cls_terms.append(F.cross_entropy(cls, cls_target, weight=weight))
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


class _ScenePoints:
    """One scene's targets on its points, prepared once per call for every decoder step: masks (T, N) float32,
    labels (T,), normalised xyz (N, 3), which masks are non-empty (an empty mask has no centre or box and is
    never matched), and the masks' hard corners when Lbox needs them."""

    def __init__(self, targets: InstanceTargets, xyz: torch.Tensor, corners: bool) -> None:
        self.masks = targets.masks.float()
        self.labels = targets.labels
        self.xyz = xyz
        self.nonempty = targets.masks.any(-1)
        self.corners = hard_corners(targets.masks, xyz) if corners else None


def _to_device(matches: list[tuple[np.ndarray, np.ndarray]], device: torch.device) -> list[tuple[torch.Tensor, ...]]:
    """Returns the (rows, cols) index pairs on `device`, uploaded in one copy that does not wait for the device
    (from pageable memory the copy is staged before it returns)."""
    sizes = [len(rows) for rows, _ in matches]
    flat = np.concatenate([np.concatenate([rows, cols]) for rows, cols in matches] or [np.zeros(0, np.int64)])
    ids = torch.from_numpy(flat.astype(np.int64)).to(device, non_blocking=True)
    pieces = ids.split([2 * n for n in sizes])
    return [(piece[:n], piece[n:]) for piece, n in zip(pieces, sizes, strict=True)]
