"""The per-point (per-voxel) classifier on a backbone: semantic segmentation and the linear probe.

    head = make_head(backbone.out_channels, num_classes)           # Linear(width, K); "mlp": Linear-BN-ReLU-Linear
    model = SemanticSegmenter(backbone, head, num_classes, "linear")
    logits = model(coords, feats)                                    # (M, K) per voxel of the unique coords

Used by the harness's semantic tasks (linear, semseg) and by the `supervised` baseline's pretraining.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from freepoint_bench.errors import ConfigError
from freepoint_bench.models.backbone import Res16UNet


def make_head(width: int, num_classes: int, kind: str = "linear", hidden: int = 64) -> nn.Module:
    """Returns the per-voxel classifier: Linear(width, K), or Linear-BN-ReLU-Linear for kind "mlp"."""
    if kind == "linear":
        return nn.Linear(width, num_classes)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(width, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                             nn.Linear(hidden, num_classes))
    raise ConfigError(f"unknown head {kind!r}; choose linear or mlp")


class SemanticSegmenter(nn.Module):
    """Res16UNet backbone + per-voxel classifier: forward(coords, feats) → (M, num_classes) logits."""

    def __init__(self, backbone: Res16UNet, head: nn.Module, num_classes: int, head_kind: str = "linear",
                 head_hidden: int = 64) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head
        self.num_classes, self.head_kind, self.head_hidden = int(num_classes), head_kind, int(head_hidden)

    def forward(self, coords: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        """Returns (M, num_classes) logits for unique coords (M, 4) int32 [batch, x, y, z] and feats (M, C)."""
        return self.head(self.backbone(coords, feats).feats)

    def architecture(self) -> dict[str, Any]:
        """Returns a JSON-able description (recorded in checkpoints)."""
        return {"name": "SemanticSegmenter", "backbone": self.backbone.architecture(), "head": self.head_kind,
                "head_hidden": self.head_hidden, "num_classes": self.num_classes}
