"""Import a MinkowskiEngine Res16UNet state dict (released PointContrast / CSC / Mask3D weights) as our backbone.

    config = MinkowskiImportConfig(stem_kernel_size=3)          # released PointContrast / CSC: 3; Mask3D: 5
    path, meta = import_minkowski("pointcontrast.pth", config, checkpoints_dir="checkpoints")
    backbone, meta = load_model(path, part="backbone")          # like any pretext method's checkpoint

The networks are the same (Res16UNet of PointContrast's / CSC's models/res16unet.py and our models.backbone):
a stem conv + BN, four stride-2 convs each followed by a stage of BasicBlocks, four transposed convs each followed
by a stage over the concatenated skip. Names map one to one (conv0p1s1 → stem.0, bn0.bn → stem.1.module,
conv{i}p{2^(i-1)}s2 → down{i}.0, convtr{i}p{2^(8-i)}s2 → up{8-i}.0, block{n}.{j}.conv1 → block{n}.{j}.conv1, ...).
ME stores a kernel as (K^3, c_in, c_out) with x fastest over the kernel offsets, or (c_in, c_out) for K = 1; ours
is the canonical (K, K, K, c_in, c_out) of models.sparse.base. The final 1x1 conv (`final.*`, the pretext's
projection or the classifier) is no part of the backbone and is dropped (recorded in the metadata). Any other
missing or unexpected key, or any shape that does not fit the architecture the file implies, is a CheckpointError
naming the keys and shapes.

The kernel layout is MinkowskiEngine 0.5's (tests/engine/test_import_minkowski.py checks it against ME 0.5.4's own
network). PointContrast and CSC were trained with ME 0.4.3, which cannot be built against today's torch; its
source (the PyPI release) enumerates a HYPERCUBE kernel the same way (first axis fastest from the lower bound;
odd kernels centred, the stride-2 kernel 2 at offsets 0 and 1), keeps 1x1 stride-1 kernels as a (c_in, c_out)
matrix, and names BatchNorm state `<name>.bn.*`, so the same mapping applies (the 0.4.3 enumeration, restated, is
tested against the permutation).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from pydantic import Field

from freepoint_bench.config import validated
from freepoint_bench.engine.imports import ImportConfig, check_method, match_keys, publish_import
from freepoint_bench.errors import CheckpointError, DataError
from freepoint_bench.models.backbone import PRESETS, BackboneConfig, Res16UNet
from freepoint_bench.models.checkpoint import load_failure

# the one place that knows ME's kernel-offset order (its backend feeds ME from the canonical layout with it)
from freepoint_bench.models.sparse.minkowski_backend import kernel_permutation

HEAD_PREFIX = "final."  # ME Res16UNet's last 1x1 conv: a head, not part of the backbone
WRAPPER_PREFIX = "module."  # DistributedDataParallel's prefix in saved state dicts


class MinkowskiImportConfig(ImportConfig):
    """How to read a MinkowskiEngine Res16UNet checkpoint and what input its weights expect (prefix: e.g.
    "model.backbone." for Mask3D; bn_momentum: ME's Res16UNet's 0.02)."""

    stem_kernel_size: int = Field(3, ge=1)  # first conv's kernel (PointContrast / CSC conv1_kernel_size=3; Mask3D 5)
    # voxel edge the weights were trained on, metres (PointContrast's and CSC's pretraining: data.voxel_size=0.025)
    voxel_size_m: float = Field(0.025, gt=0)
    method: str = "minkowski-import"  # recorded as the checkpoint's method (e.g. pointcontrast, csc)


def import_config(**fields: Any) -> MinkowskiImportConfig:
    """Returns a validated MinkowskiImportConfig; ConfigError (one line) for a bad field."""
    return validated(MinkowskiImportConfig, fields, "import settings")


def read_scene_list(path: str | Path) -> tuple[str, ...]:
    """Returns the scene names of a text file, one per line (blank lines and # comments skipped)."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise DataError(f"{path}: cannot read the scene list ({e.strerror}); pass a text file, one scene a "
                        "line") from None
    return tuple(sorted({line.split("#")[0].strip() for line in lines} - {""}))


def read_state_dict(path: str | Path, prefix: str = "", trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """Returns the tensors of a saved ME model: a bare state dict or one under "state_dict" / "model", with
    DDP's "module." and `prefix` stripped. CheckpointError when the file is missing, unreadable or holds none."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file; pass the MinkowskiEngine checkpoint (.pth) to import")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except Exception as e:  # noqa: BLE001 - unpickling errors of every kind mean the same to the user
        # only a file naming Python objects (a pickled global) loads with --trust-pickle; random bytes never do
        hint = ("; it holds pickled Python objects besides tensors: pass --trust-pickle if you trust the file"
                if not trust_pickle and "Unsupported global" in str(e) else "")
        raise CheckpointError(f"{path}: cannot be read as a torch checkpoint ({load_failure(e)}){hint}") from None
    state = blob
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not any(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: holds no state dict (expected tensors, or a dict with 'state_dict')")
    out = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            continue
        key = key.removeprefix(WRAPPER_PREFIX)
        if prefix:
            if not key.startswith(prefix):
                continue
            key = key[len(prefix):]
        out[key] = value
    if not out:
        raise CheckpointError(f"{path}: no tensor key starts with the prefix {prefix!r}; check --prefix")
    return out


_TOP = {"stem.0": "conv0p1s1", "stem.1.module": "bn0.bn"}
for _i in range(1, 5):
    _TOP[f"down{_i}.0"] = f"conv{_i}p{2 ** (_i - 1)}s2"
    _TOP[f"down{_i}.1.module"] = f"bn{_i}.bn"
    _TOP[f"up{_i}.0"] = f"convtr{8 - _i}p{2 ** _i}s2"
    _TOP[f"up{_i}.1.module"] = f"bntr{8 - _i}.bn"


def minkowski_name(key: str, conv: bool) -> str:
    """Returns the ME Res16UNet key of our backbone's state-dict key (conv: the tensor is a conv weight)."""
    for ours, theirs in _TOP.items():
        if key.startswith(ours + "."):
            key = theirs + key[len(ours):]
            break
    else:  # inside a block: norms are MinkowskiBatchNorm (.bn), the downsample is (conv, norm)
        key = key.replace(".module.", ".bn.")
    return key[: -len(".weight")] + ".kernel" if conv else key


def infer_preset(state: dict[str, torch.Tensor], source: str = "<state dict>") -> str:
    """Returns the Res16UNet preset whose widths and depths a ME state dict has; CheckpointError naming them when
    none has."""
    stem = state.get("conv0p1s1.kernel")
    if stem is None:
        raise CheckpointError(f"{source}: no key conv0p1s1.kernel; not a MinkowskiEngine Res16UNet state dict "
                              f"(first keys: {sorted(state)[:5]}); check --prefix")
    layers, planes = [], []
    for n in range(1, 9):
        blocks = {int(m.group(1)) for k in state if (m := re.match(rf"block{n}\.(\d+)\.", k))}
        conv2 = state.get(f"block{n}.0.conv2.kernel")
        if not blocks or conv2 is None:
            raise CheckpointError(f"{source}: no key block{n}.0.conv2.kernel; not a Res16UNet state dict")
        layers.append(max(blocks) + 1)
        planes.append(int(conv2.shape[-1]))
    spec = (int(stem.shape[-1]), tuple(layers), tuple(planes))
    for name, preset in PRESETS.items():
        if (preset.init_dim, preset.layers, preset.planes) == spec:
            return name
    known = "; ".join(f"{n}: init {p.init_dim}, layers {p.layers}, planes {p.planes}" for n, p in PRESETS.items())
    raise CheckpointError(f"{source}: a Res16UNet with init {spec[0]}, layers {spec[1]}, planes {spec[2]} is none of "
                          f"our presets ({known})")


def to_canonical(kernel: torch.Tensor, kernel_size: int, c_in: int, c_out: int) -> torch.Tensor | None:
    """Returns a ME kernel ((K^3, c_in, c_out), or (c_in, c_out) / (1, c_in, c_out) for K = 1) in the canonical
    (K, K, K, c_in, c_out) layout, or None when its shape does not fit."""
    volume = kernel_size**3
    if kernel_size == 1 and tuple(kernel.shape) == (c_in, c_out):
        kernel = kernel[None]
    if tuple(kernel.shape) != (volume, c_in, c_out):
        return None
    flat = torch.empty_like(kernel)
    flat[kernel_permutation(kernel_size)] = kernel  # ME row r holds canonical offset perm[r]
    return flat.reshape(kernel_size, kernel_size, kernel_size, c_in, c_out).contiguous()


def convert_state_dict(state: dict[str, torch.Tensor], config: MinkowskiImportConfig,
                       source: str = "<state dict>") -> tuple[Res16UNet, list[str]]:
    """Returns (our Res16UNet holding the ME weights, the dropped head keys); CheckpointError naming every missing
    or unexpected key and every tensor of another shape."""
    preset = infer_preset(state, source)
    if config.preset is not None and config.preset != preset:
        raise CheckpointError(f"{source}: the file holds a Res16UNet {preset}, not the {config.preset} asked for")
    stem = state["conv0p1s1.kernel"]
    in_channels = int(stem.shape[-2])
    volume = config.stem_kernel_size**3
    if stem.ndim != 3 or stem.shape[0] != volume:
        guess = round(stem.shape[0] ** (1 / 3)) if stem.ndim == 3 else 1
        raise CheckpointError(f"{source}: conv0p1s1.kernel has shape {tuple(stem.shape)}, not ({volume}, "
                              f"{in_channels}, {stem.shape[-1]}) for stem kernel {config.stem_kernel_size}; "
                              f"pass --stem-kernel-size {guess}")
    model = Res16UNet(BackboneConfig(preset=preset, in_channels=in_channels, backend=config.backend,
                                     voxel_size=config.voxel_size_m, stem_kernel_size=config.stem_kernel_size,
                                     bn_momentum=config.bn_momentum))
    expected = model.state_dict()
    names = {key: minkowski_name(key, value.ndim == 5) for key, value in expected.items()}
    dropped = match_keys(state, names.values(), HEAD_PREFIX, f"{source}: does not fit a Res16UNet {preset}")
    converted, wrong = {}, []
    for ours, theirs in names.items():
        want, have = expected[ours], state[theirs]
        if want.ndim == 5:
            k, c_in, c_out = want.shape[0], want.shape[3], want.shape[4]
            value = to_canonical(have, k, c_in, c_out)
            shape = f"({k ** 3}, {c_in}, {c_out})" + (f" or ({c_in}, {c_out})" if k == 1 else "")
        else:
            value, shape = (have if have.shape == want.shape else None), str(tuple(want.shape))
        if value is None:
            wrong.append(f"{theirs}: {tuple(have.shape)} in the file, {shape} expected")
        else:
            converted[ours] = value.to(want.dtype)
    if wrong:
        raise CheckpointError(f"{source}: tensors of other shapes than a Res16UNet {preset} with stem kernel "
                              f"{config.stem_kernel_size}: {'; '.join(wrong[:5])}{' ...' if len(wrong) > 5 else ''}")
    model.load_state_dict(converted, strict=True)
    return model.eval(), dropped


def import_minkowski(path: str | Path, config: MinkowskiImportConfig, checkpoints_dir: str | Path = "checkpoints",
                     out: str | Path | None = None) -> tuple[Path, dict[str, Any]]:
    """Returns (written backbone checkpoint, its metadata) of a ME Res16UNet file, published (publish_checkpoints)
    into checkpoints_dir/index.json under `<method>-<dataset>-<hash>` (out: the file, default
    checkpoints_dir/<id>-backbone.ckpt; importing the same file again keeps the one written). The "input" entry
    says what the weights expect: voxel_size_m, and use_xyz_features when the stem takes 6 channels (rgb, xyz; 3:
    rgb only); other channel counts are refused."""
    path = Path(path)
    check_method(config, "pointcontrast")
    state = read_state_dict(path, config.prefix, config.trust_pickle)
    model, dropped = convert_state_dict(state, config, str(path))
    in_channels = model.config.in_channels
    if in_channels not in (3, 6):
        raise CheckpointError(f"{path}: the stem takes {in_channels} input channels; our input is rgb (3) or rgb "
                              "and xyz (6), so it cannot be fed")
    return publish_import(path, config, model, checkpoints_dir=Path(checkpoints_dir), out=out,
                          input={"voxel_size_m": config.voxel_size_m, "use_xyz_features": in_channels == 6,
                                 "backend": config.backend},
                          source={"format": "minkowski-res16unet", "dropped_keys": dropped})
