"""Training presets: every knob of a training run as one validated, frozen pydantic model."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, model_serializer, model_validator

from freepoint_bench.config import apply_overrides, omit_at_default, validated
from freepoint_bench.errors import ConfigError

# AugmentConfig fields its record leaves out at their defaults (elastic, a tuple, is left out by its value in _dump)
AUGMENT_OMITTED_AT_DEFAULT = ("elastic_p", "scale_per_axis", "tilt_max_rad", "brightness", "contrast", "rgb_shift")
_Granularity = Annotated[float, Field(gt=0)]
_Magnitude = Annotated[float, Field(ge=0)]


class AugmentConfig(BaseModel):
    """Training-time augmentation (data.transforms.augment, which states the order and each rule).

    Mask3D's S3DIS training values and sources: datasets/semseg.py (flips, elastic distortion),
    conf/augmentation/volumentations_aug.yaml (scale, rotations), conf/augmentation/albumentations_aug.yaml
    (colour). The fields after color_jitter are off by default: a default config draws and returns what it did
    before they existed."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    rotate_z: bool = True  # random rotation about the up axis, uniform in [0, 2π) (Mask3D: RotateAroundAxis3d z ±π)
    flip_xy: bool = True  # random mirror along x and/or y, p 0.5 each (Mask3D: semseg.py, p 0.5 each)
    scale_min: float = Field(0.9, gt=0)  # uniform scale range (Mask3D: Scale3d scale_limit ±0.1 per axis)
    scale_max: float = Field(1.1, gt=0)
    jitter_sigma_m: float = Field(0.005, ge=0)  # Gaussian position jitter, metres (Mask3D: none)
    color_jitter: float = Field(0.05, ge=0)  # additive Gaussian colour noise std on 0..1 colours (Mask3D: none)
    # elastic distortion passes (granularity, magnitude), metres, applied with probability elastic_p (() = off;
    # Mask3D semseg.py: ((0.2, 0.4), (0.8, 1.6)) with p 0.95; data.transforms.elastic_distortion)
    elastic: tuple[tuple[_Granularity, _Magnitude], ...] = ()
    elastic_p: float = Field(0.95, ge=0, le=1)
    scale_per_axis: bool = False  # one scale factor per axis, before the rotation (Mask3D: Scale3d, per axis)
    # tilts about y then x, each uniform in ±tilt_max_rad (0 = off; Mask3D: RotateAroundAxis3d ±π/24 about y, x)
    tilt_max_rad: float = Field(0.0, ge=0, lt=1.5707963267948966)
    # colour on 0..1 (albumentations_aug.yaml, Mask3D's on 0..255): rgb * U(1 ± contrast) + U(±brightness), then
    # + U(±rgb_shift) per channel, clipped after each (Mask3D: RandomBrightnessContrast ±0.2 brightness_by_max,
    # RGBShift ±20 of 255 = 0.0784)
    brightness: float = Field(0.0, ge=0, le=1)
    contrast: float = Field(0.0, ge=0, lt=1)
    rgb_shift: float = Field(0.0, ge=0, le=1)

    @model_validator(mode="after")
    def _scale_order(self) -> AugmentConfig:
        if self.scale_min > self.scale_max:
            raise ValueError(f"scale_min {self.scale_min} > scale_max {self.scale_max}")
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> dict[str, Any]:
        # fields added after presets were first recorded are left out at their defaults, so every config hash,
        # checkpoint id and protocol hash that embeds an AugmentConfig stays what it was
        data = omit_at_default(self, handler(self), AUGMENT_OMITTED_AT_DEFAULT)
        if not self.elastic:  # a tuple, which a JSON dump holds as a list: compared as the model's
            data.pop("elastic", None)
        return data


OMITTED_AT_DEFAULT = ("widen", "input_features", "crop", "crop_length_m", "crop_min_points", "color_mean",
                      "color_std", "attention_sample_sizes", "attention_levels",
                      "attention_mask_rule")  # omitted from the record at default
# Mask3D's colour normalisation of ScanNet (A.Normalize(mean, std) on colours / 255): the default color_mean_std of
# SemanticSegmentationDataset in Mask3D's datasets/semseg.py, "mean std values from scannet". Its S3DIS values are not
# in its repository: datasets/preprocessing/s3dis_preprocessing.py (compute_color_mean_std) writes them per held-out
# area at preprocessing (Area_<k>_color_mean_std.yaml: over the other five areas' rooms, the mean of the rooms' mean
# colours and the square root of the mean of their mean squared colours minus that mean squared).
MASK3D_SCANNET_COLOR_MEAN = (0.47793125906962, 0.4303257521323044, 0.3749598901421883)
MASK3D_SCANNET_COLOR_STD = (0.2834475483823543, 0.27566157565723015, 0.27018971370874995)
_Std = Annotated[float, Field(gt=0)]


class TrainPreset(BaseModel):
    """One training recipe: backbone size, voxels, queries, epochs, optimisation and data handling.

    The two shipped presets are `cpu-small` (a tiny model that trains on a laptop CPU in minutes) and
    `paper` (the FreePoint / Mask3D setting of §4 for GPUs). Use `get_preset(name, **overrides)`.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    name: str = "custom"  # preset name, recorded in checkpoint metadata
    # -- model
    backbone: str = "34C"  # Res16UNet preset of models.backbone ("small" on CPU; Mask3D uses 34C, §3.3)
    num_queries: int = Field(100, ge=1)  # instance queries of the Mask3D decoder (Mask3D ScanNet: 100)
    decoder_hidden: int = Field(128, ge=8)  # query/feature width of the decoder (Mask3D: 128)
    decoder_layers: int = Field(3, ge=1)  # decoder rounds over the backbone levels (Mask3D: 3)
    decoder_heads: int = Field(8, ge=1)  # attention heads (Mask3D: 8)
    decoder_ffn: int = Field(1024, ge=1)  # feed-forward width of the decoder layers (Mask3D: 1024)
    stem_kernel_size: int = Field(5, ge=1)  # first backbone conv kernel (Mask3D: 5)
    bn_momentum: float = Field(0.02, gt=0, le=1)  # BatchNorm running-statistics momentum (Mask3D: 0.02)
    # where each encoder stage widens (models.backbone.BackboneConfig.widen): "down" is Pointcept's SpUNet-v1m1, for
    # fine-tuning its imported weights (docs/checkpoints.md)
    widen: Literal["block", "down"] = "block"
    query_features: bool = False  # queries start from backbone features (Mask3D use_np_features; ScanNet: off)
    spatial_prior: bool = False  # mask logits get a learnt Gaussian blob around each query (not in Mask3D)
    spatial_scale: float = Field(1.5, gt=0)  # its Fourier scale (models.decoder.DecoderConfig.spatial_scale)
    spatial_relative: bool = False  # each query shapes its own relative-position template (DecoderConfig)
    # Scale-consistent positions for crop training (models.decoder.DecoderConfig; also the xyz input features):
    # off in both presets, no better held out (README, "Does it learn?", docs/studies/learning-curve.md).
    position_scale_m: float | None = Field(None, gt=0)  # positions / this length, metres (None: scene box, Mask3D)
    voxels_per_query: float | None = Field(None, gt=0)  # queries grow with the scene (None: num_queries, Mask3D)
    # The backbone strides the decoder's cross-attention reads, coarse to fine: "8-1" strides 8, 4, 2, 1; "16-2"
    # Mask3D's 16, 8, 4, 2 (hlevels [0, 1, 2, 3] of conf/model/mask3d.yaml over its Res16UNet's feature_maps, strides
    # 16, 8, 4, 2, 1: models/res16unet.py forward, models/mask3d.py forward). Masks are computed on the stride-1
    # features either way (models.backbone.BackboneConfig.bottleneck_level, models.decoder.DecoderConfig.levels).
    attention_levels: Literal["8-1", "16-2"] = "8-1"
    # Mask3D's training-time sampling of the cross-attention's keys (models.decoder.DecoderConfig.sample_sizes): at
    # most this many voxels per attended level, coarse to fine (the strides of attention_levels), per step; None:
    # every voxel
    attention_sample_sizes: tuple[PositiveInt, ...] | None = None
    # How the cross-attention's threshold mask pools the previous prediction's masks onto an attended level
    # (models.decoder.DecoderConfig.attn_mask_rule): "probability-mean" averages the sigmoid over the level voxel's
    # input voxels; "mask3d" is Mask3D's (models/mask3d.py mask_module): the logits average-pooled 2x at a time up to
    # the level (MinkowskiAvgPooling, a mean of means), then sigmoid < 0.5
    attention_mask_rule: Literal["probability-mean", "mask3d"] = "probability-mean"
    # -- data
    voxel_size_m: float = Field(0.02, gt=0)  # voxel edge, metres (Mask3D/FreePoint: 2 cm)
    use_xyz_features: bool = True  # append normalised xyz to the rgb features (Mask3D: add_raw_coordinates)
    # "rgb+xyz": rgb - 0.5, then normalised xyz when use_xyz_features; "rgb+normal": Pointcept's ScanNet / S3DIS input
    # (feat_keys color, normal: colour in [-1, 1], then PCA normals; use_xyz_features is not read), for fine-tuning
    # its imported weights (engine.data.voxel_features); "rgb": Mask3D's backbone input, colour alone normalised as
    # (rgb - color_mean) / color_std (A.Normalize in Mask3D's datasets/semseg.py; the raw coordinates it appends are
    # split off before its backbone, data.features[:, :-3] in trainer/trainer.py, and feed only the queries'
    # positional encoding, which models.decoder takes from the voxel coordinates here; use_xyz_features is not read)
    input_features: Literal["rgb+xyz", "rgb+normal", "rgb"] = "rgb+xyz"
    color_mean: tuple[float, float, float] = MASK3D_SCANNET_COLOR_MEAN  # input_features=rgb, on 0..1 colours
    color_std: tuple[_Std, _Std, _Std] = MASK3D_SCANNET_COLOR_STD  # input_features=rgb, on 0..1 colours
    # Training crop (train=True only; prediction keeps every point). "column": with max_points, the max_points points
    # nearest in xy to a random point (engine.data.crop_points). "cuboid": Mask3D's RandomCuboid of S3DIS training
    # rooms (datasets/random_cuboid.py, applied in datasets/semseg.py; conf/data/indoor.yaml crop_length 6.0,
    # crop_min_size 20000, cropping_v1 true): a crop_length_m square in xy, full height, centred within ±1/4 of the
    # room's xy extent around its centre, redrawn up to 100 times until it holds crop_min_points, else the whole room;
    # max_points, when set, then caps the cuboid's points by the column rule (a memory guard; Mask3D has none).
    crop: Literal["column", "cuboid"] = "column"
    crop_length_m: float = Field(6.0, gt=0)  # cuboid: the square's side, metres (Mask3D crop_length: 6.0)
    crop_min_points: int = Field(20_000, ge=1)  # cuboid: fewest points of a crop (Mask3D crop_min_size: 20000)
    max_points: int | None = Field(None, ge=1000)  # crop scenes above this many points (None: whole scene)
    max_loss_points: int | None = Field(200_000, ge=100)  # points sampled per scene for Lmean/Lbox
    min_instance_voxels: int = Field(1, ge=1)  # drop target masks smaller than this after voxelisation
    augment: AugmentConfig = AugmentConfig()  # training augmentation (off at prediction time)
    batch_size: int = Field(5, ge=1)  # scenes per batch per device (Mask3D ScanNet: 5)
    num_workers: int = Field(4, ge=0)  # DataLoader worker processes
    # -- optimisation
    epochs1: int = Field(100, ge=1)  # step 1 epochs on σ_low (over-segmented) masks (§4: 100)
    epochs2: int = Field(10, ge=1)  # step 2 epochs on σ_high (under-segmented) masks (§4: 10)
    lr: float = Field(1e-4, gt=0)  # AdamW peak learning rate (Mask3D: 1e-4)
    weight_decay: float = Field(1e-4, ge=0)  # AdamW weight decay
    schedule: Literal["onecycle", "cosine", "constant"] = "onecycle"  # per-step LR schedule (Mask3D)
    onecycle_pct_start: float = Field(0.3, gt=0, lt=1)  # OneCycle warm-up fraction (torch default)
    grad_clip: float | None = Field(None, gt=0)  # gradient-norm clip (None: off)
    # -- engineering
    accelerator: Literal["cpu", "gpu", "auto"] = "gpu"  # Lightning accelerator
    precision: str = "16-mixed"  # Lightning precision flag ("32-true" on CPU, "16-mixed"/"bf16-mixed" on GPU)
    backend: Literal["spconv", "minkowski"] = "spconv"  # sparse-convolution backend (models seam)
    seed: int = 0  # seeds weights, shuffling and augmentation

    @model_validator(mode="after")
    def _one_sample_size_per_attended_level(self) -> TrainPreset:
        if self.attention_sample_sizes is not None and len(self.attention_sample_sizes) != 4:
            raise ValueError(f"attention_sample_sizes has {len(self.attention_sample_sizes)} entries: give one per "
                             f"attended level, strides {self.attention_levels} coarse to fine (4), or none")
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> dict[str, Any]:
        # fields added after presets were first recorded are left out at their defaults, so every config hash,
        # checkpoint id, run folder and protocol hash that embeds a TrainPreset stays what it was
        data = omit_at_default(self, handler(self), OMITTED_AT_DEFAULT)
        for name in ("color_mean", "color_std"):  # tuples, which a JSON dump holds as lists: compared as the model's
            if name in data and getattr(self, name) == type(self).model_fields[name].default:
                del data[name]
        return data

    def with_(self, **changes) -> TrainPreset:
        """Returns a validated copy with `changes` applied (dotted `augment.x` keys allowed)."""
        return make_preset(self.model_dump(), changes)


PRESETS: dict[str, dict] = {
    # A small model on coarse voxels: trains in minutes on a CPU; for tests, demos and the CPU benchmark.
    "cpu-small": dict(
        name="cpu-small",
        # twice tiny's widths: fitting two dev scans' σ_low masks for 30 steps (docs/studies/overfit.md,
        # "fixed sample"), the mean best IoU per target reached 0.37 (tiny: 0.27)
        backbone="small",
        # More queries than pseudo masks: the held-out dev scans' σ_low masks number 42.5 per scan
        # (benchmarks/bench_pretrain_quality.py, masks/scene); with 16 queries an early 10-epoch run predicted
        # one shared, empty mask (all 16 queries alike).
        num_queries=100,
        decoder_hidden=32,
        decoder_layers=1,
        decoder_heads=4,
        decoder_ffn=64,
        stem_kernel_size=3,
        # BatchNorm running statistics must settle within a CPU run's few dozen optimiser steps: at Mask3D's
        # 0.02 they are still ~50% the initial (0, 1) after 30 steps and eval mode (prediction) sees features
        # the decoder never saw in training (an early run's eval-mode queries all gave the same mask while
        # train mode gave distinct ones). After 20 steps on two box rooms
        # (tests/engine/test_module.py, this preset) the mean |train - eval| mask probability is 0.024-0.037 at
        # 0.02 and at 0.1, 0.001-0.002 at 0.3.
        bn_momentum=0.3,
        # Queries start from their voxels' features (zero-initialised ones collapsed onto one shared mask in
        # early synthetic runs); on two dev scans the difference is small: docs/studies/overfit.md "fixed
        # sample" best IoU per target 0.37 vs 0.35 with zero queries.
        query_features=True,
        voxel_size_m=0.05,
        # Random crops of 20k points (a disc in xy around a random point, ~40% of a 50k-point dev scan) give
        # the three training rooms more variety and halve the step time: held-out AP / AP50 / AP25 at steps
        # 100 / 200 / 300 of docs/studies/learning-curve.md 0.3/2.6/30.3, 2.4/9.1/35.1, 1.7/5.8/30.4 (whole
        # scans: 0.1/0.5/19.4, 0.4/2.4/27.8, 0.2/1.0/22.5; 10k-point crops: AP50 3.1 / 1.5 / 3.0).
        max_points=20_000,
        max_loss_points=20_000,
        batch_size=2,
        num_workers=0,
        epochs1=10,
        epochs2=2,
        # Local first masks (models.decoder spatial prior): fitting two dev scans for 30 steps
        # (docs/studies/overfit.md), the mean best IoU per target reached 0.37 with the prior and 0.000
        # without (training Dice 0.52 vs 0.97: no mask forms).
        spatial_prior=True,
        spatial_scale=1.5,  # width ~10% of the scene; a narrower prior was not better in early probes
        # Each query shapes its own relative-position template: docs/studies/overfit.md, best IoU per target
        # 0.37 vs 0.25 with the fixed blob on a fixed sample; under full augmentation Dice 0.81 vs 0.88.
        spatial_relative=True,
        lr=3e-3,  # docs/studies/overfit.md, full augmentation: 1e-3 left Dice at 0.86 (3e-3: 0.81)
        accelerator="cpu",
        precision="32-true",
    ),
    # FreePoint §4 on GPUs: Mask3D's 34C backbone, 2 cm voxels, 100 queries, 100 + 10 epochs, and Mask3D's training
    # recipe (issue 29 items 2 and 4; docs/fidelity.md states each value's source):
    "paper": dict(
        name="paper",
        # colour alone, normalised by Mask3D's ScanNet statistics (in_channels 3 in conf/data/indoor.yaml; the raw
        # coordinates only feed the queries' positions): every paper checkpoint's input. Fine-tuning on S3DIS keeps
        # them (`bench.py data color-stats` gives a copy's own, Mask3D's per-area rule, for --set color_mean/std)
        input_features="rgb",
        # torch's AdamW default: conf/optimizer/adamw.yaml sets only lr 1e-4
        weight_decay=0.01,
        # datasets/semseg.py (flips, elastic distortion p 0.95), conf/augmentation/volumentations_aug.yaml (per-axis
        # scale 1 ± 0.1, rotation about z ±π, tilts ±π/24 about y and x), albumentations_aug.yaml (brightness and
        # contrast ±0.2, RGB shift ±20 of 255); no position or colour noise (conf/data/datasets/s3dis.yaml)
        augment=dict(rotate_z=True, flip_xy=True, scale_min=0.9, scale_max=1.1, scale_per_axis=True,
                     jitter_sigma_m=0.0, color_jitter=0.0, elastic=((0.2, 0.4), (0.8, 1.6)), elastic_p=0.95,
                     tilt_max_rad=math.pi / 24, brightness=0.2, contrast=0.2, rgb_shift=20 / 255),
        # the decoder attends Mask3D's levels, strides 16, 8, 4, 2 (hlevels [0, 1, 2, 3], conf/model/mask3d.yaml), and
        # samples Mask3D's sample_sizes[hlevel] voxels of each in training (200, 800, 3200, 12800 of its
        # [200, 800, 3200, 12800, 51200], 2 cm voxels)
        attention_levels="16-2",
        attention_sample_sizes=(200, 800, 3200, 12800),
        # its threshold mask: the stride-1 mask logits average-pooled 2x per level, blocked where sigmoid < 0.5
        # (models/mask3d.py mask_module)
        attention_mask_rule="mask3d",
    ),
}


def make_preset(base: dict, overrides: dict | None = None) -> TrainPreset:
    """Returns a TrainPreset from a dict plus overrides; dotted keys address nested fields, unknown keys refused."""
    data = apply_overrides(base, overrides or {}, TrainPreset, "training preset")
    return validated(TrainPreset, data, "training preset")


def preset_values(name: str) -> dict:
    """Returns a copy of the named preset's values (`cpu-small`, `paper`), for configs that embed a TrainPreset
    and apply their overrides to it together with their own fields; ConfigError for an unknown name."""
    if name not in PRESETS:
        raise ConfigError(f"unknown training preset {name!r}; choose one of {sorted(PRESETS)}")
    return dict(PRESETS[name])


def get_preset(name: str, **overrides) -> TrainPreset:
    """Returns the named preset (`cpu-small`, `paper`) with `overrides` applied and validated."""
    return make_preset(preset_values(name), overrides)

