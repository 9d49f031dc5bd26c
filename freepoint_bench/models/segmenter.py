"""The instance segmenter of §3.3: a sparse UNet backbone and a Mask3D-style query decoder."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from freepoint_bench.models.backbone import BackboneConfig, Res16UNet
from freepoint_bench.models.decoder import DecoderConfig, Prediction, QueryDecoder
from freepoint_bench.models.voxels import SparseBatch


class SegmenterConfig(BaseModel):
    """Backbone and decoder configuration of the segmenter."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backbone: BackboneConfig = Field(default_factory=BackboneConfig)
    decoder: DecoderConfig = Field(default_factory=DecoderConfig)


TINY = SegmenterConfig(
    backbone=BackboneConfig(preset="tiny", stem_kernel_size=3),
    decoder=DecoderConfig(hidden_dim=32, num_queries=8, num_heads=4, dim_feedforward=64, num_decoders=1),
)


@dataclass
class SegmenterOutput:
    """Final and auxiliary predictions; masks are (Q, M_b) logits over each scene's voxels (batch rows)."""

    final: Prediction
    aux: list[Prediction]
    query_xyz: list[torch.Tensor]


class InstanceSegmenter(nn.Module):
    """Backbone + query decoder: voxel batch in, per-query masks, objectness and class logits out."""

    def __init__(self, config: SegmenterConfig | None = None) -> None:
        super().__init__()
        self.config = config or SegmenterConfig()
        self.backbone = Res16UNet(self.config.backbone)
        self.decoder = QueryDecoder(self.config.decoder, self.backbone.level_channels, self.backbone.out_channels)

    def forward(self, batch: SparseBatch) -> SegmenterOutput:
        """Returns the predictions for a batch of voxelised scenes."""
        features = self.backbone(batch.coords, batch.feats)
        out = self.decoder(features)
        return SegmenterOutput(final=out.final, aux=out.aux, query_xyz=out.query_xyz)

    def architecture(self) -> dict:
        """Returns a JSON-able description (preset, backend, channels, queries, classes) for checkpoints."""
        d = self.config.decoder
        return {
            "name": "InstanceSegmenter",
            "backbone": self.backbone.architecture(),
            "backend": self.config.backbone.backend,
            "preset": self.config.backbone.preset,
            "in_channels": self.config.backbone.in_channels,
            "hidden_dim": d.hidden_dim,
            "num_queries": d.num_queries,
            "num_heads": d.num_heads,
            "num_decoders": d.num_decoders,
            "shared_decoder": d.shared_decoder,
            "levels": list(d.levels),
            "num_classes": d.num_classes,
            "spatial_prior": d.spatial_prior,
            # the strides `levels` pick: recorded when the backbone also offers its stride-16 bottleneck (then levels
            # (0, 1, 2, 3) are strides 16, 8, 4, 2, Mask3D's), so a checkpoint of one choice is refused under the other
            # (left out for the default strides 8, 4, 2, 1: earlier records stay as they were)
            **({"attended_strides": [self.backbone.level_strides[lvl] for lvl in d.levels]}
               if self.config.backbone.bottleneck_level else {}),
            # the threshold mask's rule (DecoderConfig.attn_mask_rule): no weight depends on it, but it decides which
            # voxels each query attends, so a decoder trained under one rule computes another function under the
            # other (as num_heads, also recorded without changing a shape); a strict load into a model of the other
            # rule is refused. Left out at "probability-mean", so earlier records stay as they were
            **({"attn_mask_rule": d.attn_mask_rule} if d.attn_mask_rule != "probability-mean" else {}),
        }


def build_segmenter(config: SegmenterConfig | None = None) -> InstanceSegmenter:
    """Returns an InstanceSegmenter for `config` (default: Res16UNet34C on spconv, Mask3D decoder)."""
    return InstanceSegmenter(config)
