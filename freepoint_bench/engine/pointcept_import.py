"""Import a Pointcept SpUNet-v1m1 state dict (spconv 2.x; e.g. MSC or CSC weights trained there) as our backbone.

    config = PointceptImportConfig(method="msc", dataset="scannet")
    path, meta = import_pointcept("model_best.pth", config, checkpoints_dir="checkpoints")
    backbone, meta = load_model(path, part="backbone")          # like any pretext method's checkpoint

SpUNet-v1m1 (Pointcept's pointcept/models/sparse_unet/spconv_unet_v1m1_base.py) and our Res16UNet share the stem (a
5x5x5 submanifold conv + BN + ReLU), the skips (stem and each encoder stage), the decoder (a k2 inverse conv + BN +
ReLU per stage, then blocks over [up | skip], the first with a 1x1 projection), and the block (two 3x3x3 submanifold
convs with BN, ReLU after the first and after the residual sum; the residual is a 1x1 submanifold conv + BN when the
widths differ). Names map one to one:

    conv_input.0 / .1          -> stem.0 / stem.1.module
    down.{s}.0 / .1            -> down{s+1}.0 / down{s+1}.1.module         (s = 0..3, k2 s2 convs)
    enc.{s}.block{j}.*         -> block{s+1}.{j}.*
    up.{s}.0 / .1              -> up{s+1}.0 / up{s+1}.1.module             (inverse convs; up.3 runs first)
    dec.{s}.block{j}.*         -> block{8-s}.{j}.*                         (dec.3 runs first)
    in a block: conv1 / bn1 / conv2 / bn2 / proj.0 / proj.1 -> conv1 / norm1.module / conv2 / norm2.module /
                downsample.0 / downsample.1.module

They differ in where the encoder widens. SpUNet's strided conv down.{s} goes from the previous width to channels[s]
and its encoder blocks keep that width (no projection); Res16UNet's strided conv keeps the previous width and the
stage's first block widens with a 1x1 projection. Those compute different functions, so a file whose encoder widens
in a strided conv (every published SpUNet-v1m1: 32 -> 32 -> 64 -> 128 -> 256) is built as the backbone variant
BackboneConfig(widen="down"), recorded in the checkpoint's architecture; fine-tuning it takes `--set widen=down`.

Layouts: spconv 2.x stores every kernel as (c_out, kx, ky, kz, c_in) (KRSC; its axes are the coordinates' x, y, z,
as ours); ours is the canonical (kx, ky, kz, c_in, c_out) of models.sparse.base. A 1x1 kernel is read as spconv
2.3's conv1x1 path computes it: `features @ weight.view(c_in, c_out)`, the stored (c_out, 1, 1, 1, c_in) memory
viewed as (c_in, c_out), not transposed (spconv issues #450 / #772, open since 2022), so the import keeps the function
the weights were trained as. BatchNorm: SpUNet's eps is 1e-3, ours torch's 1e-5; the difference is folded into
running_var, which gives the same eval-mode output (batch statistics in training use our eps). The head `final.*`
(a classifier, or absent when num_classes=0) is dropped and recorded; keys outside the backbone's prefix
(`seg_head.*`, a pretext's heads and tokens) are counted and left. Any other missing, unexpected or misshapen key is
a CheckpointError naming it.

Input: Pointcept feeds the `feat_keys` of its config (ScanNet / S3DIS: color, normal = 6 channels, colour as
color / 127.5 - 1 in [-1, 1]); ours is rgb - 0.5 and optionally normalised xyz. The import records the contract in
metadata["input"]["features"]; the stem's channel count must equal the features named. User's page: docs/checkpoints.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import Field
from torch import nn

from freepoint_bench.config import validated
from freepoint_bench.engine.imports import ImportConfig, check_method, match_keys, publish_import
from freepoint_bench.engine.minkowski_import import read_state_dict
from freepoint_bench.errors import CheckpointError, ConfigError
from freepoint_bench.models.backbone import PRESETS, BackboneConfig, Res16UNet

HEAD_PREFIX = "final."  # SpUNet's last 1x1 conv (the classifier; Identity, no keys, when num_classes=0)
STEM_KEY = "conv_input.0.weight"
POINTCEPT_BN_EPS = 1e-3  # SpUNet-v1m1's norm_fn: BatchNorm1d(eps=1e-3, momentum=0.01)
# channels each of Pointcept's feat_keys contributes (pointcept/datasets/transform.py Collect's feat_keys)
FEATURE_CHANNELS = {"color": 3, "normal": 3, "coord": 3, "strength": 1}
_BLOCK_PARTS = {"norm1.module.": "bn1.", "norm2.module.": "bn2.", "downsample.0.": "proj.0.",
                "downsample.1.module.": "proj.1."}


class PointceptImportConfig(ImportConfig):
    """How to read a Pointcept SpUNet-v1m1 checkpoint and what input its weights expect (prefix: after DDP's
    "module."; "" finds it from conv_input.0.weight; voxel_size_m: Pointcept's ScanNet / S3DIS GridSample grid_size;
    trust_pickle: Pointcept pickles its scheduler)."""

    bn_momentum: float = Field(0.01, gt=0, le=1)  # SpUNet-v1m1's BatchNorm momentum, for further training
    # the feat_keys of the Pointcept config the weights were trained with (ScanNet / S3DIS configs: color, normal)
    input_features: tuple[str, ...] = ("color", "normal")
    method: str = "pointcept-import"  # recorded as the checkpoint's method (e.g. msc, csc)


def pointcept_import_config(**fields: Any) -> PointceptImportConfig:
    """Returns a validated PointceptImportConfig; ConfigError (one line) for a bad field."""
    return validated(PointceptImportConfig, fields, "import settings")


@dataclass(frozen=True)
class SpUNetSpec:
    """A SpUNet-v1m1's constructor arguments as its state dict gives them."""

    in_channels: int
    base_channels: int
    stem_kernel_size: int
    channels: tuple[int, ...]  # 4 encoder then 4 decoder widths
    layers: tuple[int, ...]  # blocks per stage, same order

    def encoder_widenings(self) -> list[tuple[int, int, int]]:
        """Returns (s, c_in, c_out) of every strided conv down.{s} that changes the width."""
        widths = (self.base_channels, *self.channels[:3])
        return [(s, widths[s], self.channels[s]) for s in range(4) if widths[s] != self.channels[s]]


def read_pointcept(path: str | Path, prefix: str = "",
                   trust_pickle: bool = False) -> tuple[dict[str, torch.Tensor], str, int]:
    """Returns (the backbone's tensors with DDP's "module." and the backbone prefix stripped, that prefix, the number
    of tensors outside it). `prefix` "" finds it from conv_input.0.weight; CheckpointError when none or several
    backbones are found."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file; pass the Pointcept checkpoint (e.g. model_best.pth) to import")
    state = read_state_dict(path, "", trust_pickle)
    if not prefix:
        found = sorted(k[: -len(STEM_KEY)] for k in state if k.endswith(STEM_KEY))
        if not found:
            raise CheckpointError(f"{path}: no key ending in {STEM_KEY}; not a Pointcept SpUNet-v1m1 checkpoint "
                                  f"(first keys: {sorted(state)[:4]})")
        if len(found) > 1:
            raise CheckpointError(f"{path}: holds {len(found)} SpUNets ({', '.join(repr(p) for p in found)}); pass "
                                  "--prefix to pick one")
        prefix = found[0]
    inside = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not inside:
        raise CheckpointError(f"{path}: no tensor key starts with the prefix {prefix!r}; check --prefix")
    return inside, prefix, len(state) - len(inside)


def _count(state: dict[str, torch.Tensor], pattern: str) -> int:
    return len({m.group(1) for k in state if (m := re.match(pattern, k))})


def spunet_spec(state: dict[str, torch.Tensor], source: str = "<state dict>") -> SpUNetSpec:
    """Returns the SpUNet-v1m1 a state dict holds; CheckpointError naming the first key that is not there."""
    stem = state.get(STEM_KEY)
    if stem is None or stem.ndim != 5:
        raise CheckpointError(f"{source}: no 5-d {STEM_KEY}; not a SpUNet-v1m1 state dict (first keys: "
                              f"{sorted(state)[:4]}); check --prefix")
    stages, ups = _count(state, r"down\.(\d+)\.0\.weight$"), _count(state, r"up\.(\d+)\.0\.weight$")
    if (stages, ups) != (4, 4):
        raise CheckpointError(f"{source}: a SpUNet with {stages} encoder and {ups} decoder stages (cls_mode has no "
                              "decoder); our Res16UNet has 4 of each (channels and layers of 8 entries)")
    enc, dec = [], []
    for s in range(4):
        for name, out in (("down", enc), ("up", dec)):
            kernel = state.get(f"{name}.{s}.0.weight")
            if kernel is None or kernel.ndim != 5:
                got = "no such key" if kernel is None else f"shape {tuple(kernel.shape)}"
                raise CheckpointError(f"{source}: {name}.{s}.0.weight: {got}; a SpUNet-v1m1 has stages 0..3, each a "
                                      "spconv 2.x kernel (c_out, kx, ky, kz, c_in)")
            out.append(int(kernel.shape[0]))
    layers = [_count(state, rf"enc\.{s}\.block(\d+)\.") for s in range(4)]
    layers += [_count(state, rf"dec\.{3 - s}\.block(\d+)\.") for s in range(4)]
    if 0 in layers:
        where = layers.index(0)
        name = f"enc.{where}" if where < 4 else f"dec.{7 - where}"
        raise CheckpointError(f"{source}: no key {name}.block0.*; not a SpUNet-v1m1 state dict")
    return SpUNetSpec(in_channels=int(stem.shape[-1]), base_channels=int(stem.shape[0]),
                      stem_kernel_size=int(stem.shape[1]), channels=(*enc, *reversed(dec)), layers=tuple(layers))


def match_preset(spec: SpUNetSpec, source: str = "<state dict>") -> str:
    """Returns our Res16UNet preset of the same widths and depths; CheckpointError naming them when none has."""
    for name, preset in PRESETS.items():
        if (preset.init_dim, preset.planes, preset.layers) == (spec.base_channels, spec.channels, spec.layers):
            return name
    known = "; ".join(f"{n}: init {p.init_dim}, layers {p.layers}, planes {p.planes}" for n, p in PRESETS.items())
    raise CheckpointError(f"{source}: a SpUNet with base_channels {spec.base_channels}, channels {spec.channels}, "
                          f"layers {spec.layers} is none of our presets ({known})")


def pointcept_name(key: str) -> str:
    """Returns the SpUNet-v1m1 key of our Res16UNet's state-dict key."""
    if key.startswith("stem."):
        return "conv_input." + key[len("stem."):].replace("1.module.", "1.", 1)
    if m := re.match(r"(down|up)(\d)\.(.*)$", key):
        return f"{m.group(1)}.{int(m.group(2)) - 1}.{m.group(3).replace('1.module.', '1.', 1)}"
    m = re.match(r"block(\d)\.(\d+)\.(.*)$", key)
    if m is None:
        raise ValueError(f"not a Res16UNet key: {key}")
    n, j, rest = int(m.group(1)), m.group(2), m.group(3)
    for ours, theirs in _BLOCK_PARTS.items():
        if rest.startswith(ours):
            rest = theirs + rest[len(ours):]
            break
    return f"enc.{n - 1}.block{j}.{rest}" if n <= 4 else f"dec.{8 - n}.block{j}.{rest}"


def to_canonical(kernel: torch.Tensor, kernel_size: int, c_in: int, c_out: int) -> torch.Tensor | None:
    """Returns a spconv 2.x kernel (c_out, k, k, k, c_in) in the canonical (k, k, k, c_in, c_out) layout, or None when
    its shape does not fit. A 1x1 kernel keeps spconv's conv1x1 reading (its memory viewed as (c_in, c_out))."""
    if tuple(kernel.shape) != (c_out, kernel_size, kernel_size, kernel_size, c_in):
        return None
    if kernel_size == 1:
        return kernel.reshape(1, 1, 1, c_in, c_out).contiguous()
    return kernel.permute(1, 2, 3, 4, 0).contiguous()


def file_shape(want: torch.Tensor) -> tuple[int, ...]:
    """Returns the shape SpUNet stores the tensor of our shape `want` in (a kernel: (c_out, kx, ky, kz, c_in))."""
    if want.ndim != 5:
        return tuple(want.shape)
    return (want.shape[4], *want.shape[:3], want.shape[3])


def convert_state_dict(state: dict[str, torch.Tensor], config: PointceptImportConfig,
                       source: str = "<state dict>") -> tuple[Res16UNet, list[str]]:
    """Returns (our Res16UNet holding the SpUNet weights, built with widen="down" when the file's strided convs widen;
    the dropped head keys). CheckpointError (one line) naming every missing, unexpected or misshapen key."""
    spec = spunet_spec(state, source)
    preset = match_preset(spec, source)
    if config.preset is not None and config.preset != preset:
        raise CheckpointError(f"{source}: the file holds a SpUNet of our {preset}'s widths, not the {config.preset} "
                              "asked for")
    if spec.stem_kernel_size % 2 == 0:
        raise CheckpointError(f"{source}: {STEM_KEY} has an even kernel ({spec.stem_kernel_size}); a submanifold stem "
                              "needs an odd one")
    model = Res16UNet(BackboneConfig(preset=preset, in_channels=spec.in_channels, backend=config.backend,
                                     voxel_size=config.voxel_size_m, stem_kernel_size=spec.stem_kernel_size,
                                     bn_momentum=config.bn_momentum,
                                     # SpUNet widens in its strided convs; where none widens, both variants are
                                     # the same network and the default keeps the record plain
                                     widen="down" if spec.encoder_widenings() else "block"))
    expected = model.state_dict()
    names = {key: pointcept_name(key) for key in expected}
    dropped = match_keys(state, names.values(), HEAD_PREFIX, f"{source}: does not fit a SpUNet-v1m1 of our {preset}'s "
                         "widths", "; a SpUNet-v1m2 / v1m3 (PDNorm) file has other norm keys: pass a v1m1 one, or "
                         "--prefix")
    eps = {f"{name}.running_var": m.eps for name, m in model.named_modules() if isinstance(m, nn.BatchNorm1d)}
    converted, wrong = {}, []
    for ours, theirs in names.items():
        want, have = expected[ours], state[theirs]
        if want.ndim == 5:
            k, c_in, c_out = want.shape[0], want.shape[3], want.shape[4]
            value, shape = to_canonical(have, k, c_in, c_out), str(file_shape(want))
        else:
            value, shape = (have if have.shape == want.shape else None), str(tuple(want.shape))
        if value is None:
            wrong.append(f"{theirs}: {tuple(have.shape)} in the file, {shape} expected")
            continue
        if ours in eps:  # same eval-mode output: var + eps_theirs = (var + eps_theirs - eps_ours) + eps_ours
            value = value + (POINTCEPT_BN_EPS - eps[ours])
        converted[ours] = value.to(want.dtype)
    if wrong:
        raise CheckpointError(f"{source}: tensors of other shapes than a SpUNet-v1m1 of our {preset}'s widths "
                              f"(kernels as spconv 2.x's (c_out, kx, ky, kz, c_in)): {'; '.join(wrong[:5])}"
                              f"{' ...' if len(wrong) > 5 else ''}")
    model.load_state_dict(converted, strict=True)
    return model.eval(), dropped


def input_contract(features: tuple[str, ...], in_channels: int, source: str = "<state dict>") -> list[str]:
    """Returns the feature names as recorded; CheckpointError when unknown or when their channels are not the stem's."""
    unknown = [f for f in features if f not in FEATURE_CHANNELS]
    if unknown:
        raise ConfigError(f"unknown input feature(s) {unknown}; Pointcept's feat_keys are among "
                          f"{', '.join(FEATURE_CHANNELS)}")
    channels = sum(FEATURE_CHANNELS[f] for f in features)
    if channels != in_channels:
        raise CheckpointError(f"{source}: the stem takes {in_channels} input channels, the features "
                              f"{','.join(features)} give {channels}; pass --input-features with the feat_keys of "
                              "the Pointcept config the weights were trained with")
    return list(features)


def import_pointcept(path: str | Path, config: PointceptImportConfig, checkpoints_dir: str | Path = "checkpoints",
                     out: str | Path | None = None) -> tuple[Path, dict[str, Any]]:
    """Returns (written backbone checkpoint, its metadata) of a Pointcept SpUNet-v1m1 file, published
    (publish_checkpoints) into checkpoints_dir/index.json under `<method>-<dataset>-<hash>` (out: the file, default
    checkpoints_dir/<id>-backbone.ckpt). The "input" entry says what the weights expect: voxel_size_m and the
    Pointcept features (use_xyz_features is False: our normalised xyz is none of them)."""
    path = Path(path)
    check_method(config, "msc")
    state, prefix, outside = read_pointcept(path, config.prefix, config.trust_pickle)
    model, dropped = convert_state_dict(state, config, str(path))
    features = input_contract(config.input_features, model.config.in_channels, str(path))
    return publish_import(path, config, model, checkpoints_dir=Path(checkpoints_dir), out=out,
                          input={"voxel_size_m": config.voxel_size_m, "use_xyz_features": False,
                                 "features": features, "color_range": [-1.0, 1.0], "backend": config.backend},
                          source={"format": "pointcept-spunet-v1m1", "prefix": prefix, "dropped_keys": dropped,
                                  "keys_outside_prefix": outside,
                                  "bn_eps": {"file": POINTCEPT_BN_EPS, "folded_into": "running_var"}})
