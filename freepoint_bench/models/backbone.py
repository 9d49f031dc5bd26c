"""Residual sparse UNet of the Res16UNet family (Mask3D, CSC and PointContrast use Res16UNet34C)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, model_serializer
from torch import nn

from freepoint_bench.config import omit_at_default
from freepoint_bench.models.sparse import DEFAULT_BACKEND, SparseBackend, SparseTensorLike, get_backend
from freepoint_bench.models.voxels import match_rows

Preset = Literal["tiny", "small", "14", "18", "34C"]


@dataclass(frozen=True)
class PresetSpec:
    """Widths and depths of one Res16UNet variant: 4 encoder then 4 decoder stages."""

    init_dim: int
    layers: tuple[int, int, int, int, int, int, int, int]
    planes: tuple[int, int, int, int, int, int, int, int]


PRESETS: dict[str, PresetSpec] = {
    # Few channels, one block per stage: for CPU tests.
    "tiny": PresetSpec(8, (1, 1, 1, 1, 1, 1, 1, 1), (8, 16, 16, 32, 16, 16, 16, 16)),
    # Twice tiny's widths (32-channel output): a CPU model with room for instance-discriminative features.
    "small": PresetSpec(16, (1, 1, 1, 1, 1, 1, 1, 1), (16, 32, 64, 64, 32, 32, 32, 32)),
    # Res16UNet14 / 18 of MinkowskiEngine's examples (Res16UNetBase planes).
    "14": PresetSpec(32, (1, 1, 1, 1, 1, 1, 1, 1), (32, 64, 128, 256, 256, 256, 256, 256)),
    "18": PresetSpec(32, (2, 2, 2, 2, 2, 2, 2, 2), (32, 64, 128, 256, 256, 256, 256, 256)),
    # Res16UNet34C, Mask3D's backbone (§3.3 trains Mask3D [41]).
    "34C": PresetSpec(32, (2, 3, 4, 6, 2, 2, 2, 2), (32, 64, 128, 256, 256, 128, 96, 96)),
}


class BackboneConfig(BaseModel):
    """Configuration of the sparse UNet backbone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    preset: Preset = "34C"  # §3.3: Mask3D [41] uses Res16UNet34C
    in_channels: int = Field(3, ge=1)  # rgb in 0..1; add 3 for normals
    backend: Literal["spconv", "minkowski"] = DEFAULT_BACKEND
    voxel_size: float = Field(0.02, gt=0)  # metres; Mask3D's ScanNet voxel size (2 cm)
    stem_kernel_size: int = Field(5, ge=1)  # Mask3D's conv1_kernel_size
    bn_momentum: float = Field(0.02, gt=0, le=1)  # Mask3D's bn_momentum
    # where an encoder stage widens: its first block's 1x1 projection (Res16UNet) or its strided conv (Pointcept's
    # SpUNet-v1m1, whose encoder blocks then keep one width). Left out of the record at "block", so configs and
    # architectures recorded before it existed stay what they were.
    widen: Literal["block", "down"] = "block"
    # The decoder levels also start with the stride-16 bottleneck (the last encoder stage's output), as Mask3D's
    # Res16UNet returns them (JonasSchult/Mask3D models/res16unet.py forward: feature_maps holds the pixel_dist 16
    # block4 output, then block5 to block8 at 8, 4, 2, 1; models/mask3d.py's hlevels index that list). The weights are
    # the same either way: only what the decoder may read changes, so the backbone's architecture record leaves it
    # out (a backbone checkpoint fits both) and the segmenter's records it. Left out of the record at False.
    bottleneck_level: bool = False

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> dict[str, Any]:
        return omit_at_default(self, handler(self), ("widen", "bottleneck_level"))


@dataclass
class LevelFeatures:
    """Features of one decoder level: feats (M_l, C_l), coords (M_l, 4) int32 [batch, x, y, z] in
    level units (input voxel index // stride), stride in input voxels."""

    feats: torch.Tensor
    coords: torch.Tensor
    stride: int


@dataclass
class BackboneOutput:
    """Per-voxel features at the input resolution and the decoder levels, coarse to fine."""

    feats: torch.Tensor  # (M, C_out) rows aligned with the input coords
    levels: list[LevelFeatures]  # strides 8, 4, 2, 1 (16 first with bottleneck_level); the last one holds `feats`


class BasicBlock(nn.Module):
    """Two 3x3x3 submanifold convs with a residual (1x1 projection when widths differ)."""

    def __init__(self, backend: SparseBackend, c_in: int, c_out: int, key: str, momentum: float) -> None:
        super().__init__()
        self.backend = backend
        self.conv1 = backend.subm_conv(c_in, c_out, 3, key)
        self.norm1 = backend.batch_norm(c_out, momentum)
        self.conv2 = backend.subm_conv(c_out, c_out, 3, key)
        self.norm2 = backend.batch_norm(c_out, momentum)
        self.relu = backend.relu()
        self.downsample = None
        if c_in != c_out:
            self.downsample = nn.Sequential(backend.subm_conv(c_in, c_out, 1, key), backend.batch_norm(c_out, momentum))

    def forward(self, x: SparseTensorLike) -> SparseTensorLike:
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        residual = self.downsample(x) if self.downsample is not None else x
        out = self.backend.replace_features(out, self.backend.features(out) + self.backend.features(residual))
        return self.relu(out)


def _stage(backend: SparseBackend, c_in: int, c_out: int, blocks: int, key: str, momentum: float) -> nn.Sequential:
    layers = [BasicBlock(backend, c_in, c_out, key, momentum)]
    layers += [BasicBlock(backend, c_out, c_out, key, momentum) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class Res16UNet(nn.Module):
    """Sparse residual UNet: stem, 4 strided encoder stages, 4 transposed decoder stages with skips."""

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        self.config = config
        spec = PRESETS[config.preset]
        b = self.backend = get_backend(config.backend)
        m = config.bn_momentum
        init, planes, layers = spec.init_dim, spec.planes, spec.layers
        self.out_channels = planes[7]
        self.level_channels = [planes[4], planes[5], planes[6], planes[7]]
        self.level_strides = [8, 4, 2, 1]
        if config.bottleneck_level:  # block4's output, Mask3D's feature_maps[0]
            self.level_channels.insert(0, planes[3])
            self.level_strides.insert(0, 16)

        def cbr(conv: nn.Module, c: int) -> nn.Sequential:
            return nn.Sequential(conv, b.batch_norm(c, m), b.relu())

        self.stem = cbr(b.subm_conv(config.in_channels, init, config.stem_kernel_size, "p1"), init)
        widths = (init, planes[0], planes[1], planes[2])
        for i in range(4):
            down = planes[i] if config.widen == "down" else widths[i]
            setattr(self, f"down{i + 1}", cbr(b.down_conv(widths[i], down, f"s{i + 1}"), down))
            setattr(self, f"block{i + 1}", _stage(b, down, planes[i], layers[i], f"p{2 ** (i + 1)}", m))

        self.up4 = cbr(b.up_conv(planes[3], planes[4], "s4"), planes[4])
        self.block5 = _stage(b, planes[4] + planes[2], planes[4], layers[4], "p8", m)
        self.up3 = cbr(b.up_conv(planes[4], planes[5], "s3"), planes[5])
        self.block6 = _stage(b, planes[5] + planes[1], planes[5], layers[5], "p4", m)
        self.up2 = cbr(b.up_conv(planes[5], planes[6], "s2"), planes[6])
        self.block7 = _stage(b, planes[6] + planes[0], planes[6], layers[6], "p2", m)
        self.up1 = cbr(b.up_conv(planes[6], planes[7], "s1"), planes[7])
        self.block8 = _stage(b, planes[7] + init, planes[7], layers[7], "p1", m)

    def forward(self, coords: torch.Tensor, feats: torch.Tensor) -> BackboneOutput:
        """Returns per-voxel features for unique coords (M, 4) int32 [batch, x, y, z] and feats (M, C_in)."""
        b = self.backend
        x = b.make_tensor(coords, feats)
        p1 = self.stem(x)
        p2 = self.block1(self.down1(p1))
        p4 = self.block2(self.down2(p2))
        p8 = self.block3(self.down3(p4))
        p16 = self.block4(self.down4(p8))
        d8 = self.block5(b.cat_features(self.up4(p16), p8))
        d4 = self.block6(b.cat_features(self.up3(d8), p4))
        d2 = self.block7(b.cat_features(self.up2(d4), p2))
        d1 = self.block8(b.cat_features(self.up1(d2), p1))
        levels = [
            LevelFeatures(b.features(t), b.coords(t), stride) for t, stride in ((d8, 8), (d4, 4), (d2, 2), (d1, 1))
        ]
        if self.config.bottleneck_level:
            levels.insert(0, LevelFeatures(b.features(p16), b.coords(p16), 16))
        finest = levels[-1]
        coords = coords.to(finest.coords.dtype)
        if not torch.equal(finest.coords, coords):  # a backend that reorders sites: back to the input rows
            rows = match_rows(coords, finest.coords)
            levels[-1] = LevelFeatures(finest.feats[rows], coords, 1)
        return BackboneOutput(feats=levels[-1].feats, levels=levels)

    def architecture(self) -> dict:
        """Returns a JSON-able description of this backbone for checkpoint metadata."""
        return architecture_of(self.config)


def architecture_of(config: BackboneConfig) -> dict:
    """Returns the architecture a Res16UNet built from `config` records (without building it)."""
    spec = PRESETS[config.preset]
    return {
        "name": "Res16UNet",
        "preset": config.preset,
        "backend": config.backend,
        "in_channels": config.in_channels,
        "stem_kernel_size": config.stem_kernel_size,
        "init_dim": spec.init_dim,
        "layers": list(spec.layers),
        "planes": list(spec.planes),
        **({"widen": config.widen} if config.widen != "block" else {}),  # absent at the default: old records hold
    }


def build_backbone(config: BackboneConfig | None = None, **overrides) -> Res16UNet:
    """Returns a Res16UNet built from `config` (defaults: 34C on spconv) with field overrides applied."""
    config = (config or BackboneConfig()).model_copy(update=overrides) if overrides else (config or BackboneConfig())
    return Res16UNet(BackboneConfig.model_validate(config.model_dump()))
