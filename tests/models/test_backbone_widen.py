"""BackboneConfig.widen: where an encoder stage widens (Res16UNet's first-block projection or, for Pointcept's
SpUNet-v1m1, the strided conv), and that the default leaves every record as it was."""

from __future__ import annotations

import torch

from freepoint_bench.models.backbone import PRESETS, BackboneConfig, Res16UNet, architecture_of


def test_down_widens_in_the_strided_convs_and_the_blocks_keep_one_width():
    spec = PRESETS["tiny"]  # init 8, planes (8, 16, 16, 32, ...)
    down = Res16UNet(BackboneConfig(preset="tiny", widen="down", stem_kernel_size=3))
    block = Res16UNet(BackboneConfig(preset="tiny", stem_kernel_size=3))
    widths = (spec.init_dim, *spec.planes[:3])
    for i in range(4):
        # canonical kernels (k, k, k, c_in, c_out)
        assert down.state_dict()[f"down{i + 1}.0.weight"].shape[-2:] == (widths[i], spec.planes[i])
        assert block.state_dict()[f"down{i + 1}.0.weight"].shape[-2:] == (widths[i], widths[i])
        assert getattr(down, f"block{i + 1}")[0].downsample is None
        assert (getattr(block, f"block{i + 1}")[0].downsample is None) == (widths[i] == spec.planes[i])
    coords = torch.unique(torch.randint(0, 12, (300, 4)) * torch.tensor([0, 1, 1, 1]), dim=0).int()
    with torch.no_grad():
        out = down.eval()(coords, torch.rand(len(coords), 3))
    assert out.feats.shape == (len(coords), spec.planes[7]) and torch.isfinite(out.feats).all()


def test_the_default_leaves_configs_and_architectures_as_recorded_before():
    config = BackboneConfig(preset="34C")
    assert "widen" not in config.model_dump() and "widen" not in architecture_of(config)
    down = BackboneConfig(preset="34C", widen="down")
    assert down.model_dump()["widen"] == "down" and architecture_of(down)["widen"] == "down"
    assert BackboneConfig.model_validate(down.model_dump()) == down
