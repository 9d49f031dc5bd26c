"""Backbone: shapes per preset, gradients, and spconv vs MinkowskiEngine parity with copied weights."""

from __future__ import annotations

import pytest
import torch

from freepoint_bench.errors import ConfigError
from freepoint_bench.models.backbone import PRESETS, BackboneConfig, build_backbone
from freepoint_bench.models.sparse import get_backend


def _scene_coords(n: int = 600, grid: int = 24, scenes: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    c = torch.cat([torch.randint(0, scenes, (n, 1), generator=g), torch.randint(0, grid, (n, 3), generator=g)], 1)
    c = torch.unique(c, dim=0).to(torch.int32)
    return c[torch.randperm(len(c), generator=g)]  # input order must survive the network


def _sorted_rows(coords: torch.Tensor) -> torch.Tensor:
    """Returns the row order that sorts (M, 4) [batch, x, y, z] coordinates (on any device), as a CPU index."""
    c = coords.long().cpu()
    return torch.argsort(c[:, 0] * 10**9 + c[:, 1] * 10**6 + c[:, 2] * 10**3 + c[:, 3])


def test_tiny_shapes_levels_and_row_order():
    model = build_backbone(preset="tiny")
    coords = _scene_coords()
    out = model(coords, torch.rand(len(coords), 3))
    assert out.feats.shape == (len(coords), model.out_channels)
    assert [lvl.stride for lvl in out.levels] == [8, 4, 2, 1]
    assert [lvl.feats.shape[1] for lvl in out.levels] == model.level_channels
    assert torch.equal(out.levels[-1].coords, coords)  # finest level rows = input rows
    for lvl in out.levels:
        expected = torch.unique(torch.cat([coords[:, :1], coords[:, 1:] // lvl.stride], 1), dim=0)
        got = torch.unique(lvl.coords, dim=0)
        assert torch.equal(got, expected)


def test_gradients_reach_every_backbone_parameter():
    model = build_backbone(preset="tiny")
    coords = _scene_coords(seed=1)
    out = model(coords, torch.rand(len(coords), 3))
    (out.feats.square().mean() + sum(lvl.feats.mean() for lvl in out.levels)).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    assert all(p.grad.abs().sum() > 0 for n, p in model.named_parameters() if "weight" in n)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_preset_widths_are_consistent(preset):
    model = build_backbone(preset=preset)
    assert model.architecture()["preset"] == preset
    assert model.level_channels[-1] == model.out_channels


def test_34c_has_res16unet34c_size():
    # Res16UNet34C with 3 input channels: 37.85 M parameters (Mask3D reports ~37.8 M for its backbone).
    n = sum(p.numel() for p in build_backbone(preset="34C").parameters())
    assert 37.5e6 < n < 38.2e6


def test_bad_config_is_rejected():
    with pytest.raises(ValueError):
        BackboneConfig(preset="50")
    with pytest.raises(ConfigError, match="unknown sparse backend"):
        get_backend("open3d")


def test_spconv_and_minkowski_backbones_agree_with_copied_weights():
    try:
        get_backend("minkowski")
    except ConfigError as exc:
        pytest.skip(f"MinkowskiEngine not importable: {exc}")
    torch.manual_seed(0)
    sp = build_backbone(preset="tiny", backend="spconv").double().eval()
    me = build_backbone(preset="tiny", backend="minkowski").double().eval()
    # Identical keys and shapes: the canonical weight layout is what a state dict holds on both backends.
    me.load_state_dict(sp.state_dict(), strict=True)
    coords = _scene_coords(n=500, grid=20, seed=3)
    feats = torch.rand(len(coords), 3, dtype=torch.float64)
    out_sp, out_me = sp(coords, feats), me(coords, feats)
    torch.testing.assert_close(out_sp.feats, out_me.feats)
    for a, b in zip(out_sp.levels, out_me.levels, strict=True):
        order_a, order_b = _sorted_rows(a.coords), _sorted_rows(b.coords)
        assert torch.equal(a.coords[order_a], b.coords[order_b])
        torch.testing.assert_close(a.feats[order_a], b.feats[order_b])
    # Training mode (batch statistics) and gradients agree as well.
    sp.train(), me.train()
    g_sp = torch.autograd.grad(sp(coords, feats).feats.square().sum(), list(sp.parameters()))
    g_me = torch.autograd.grad(me(coords, feats).feats.square().sum(), list(me.parameters()))
    for a, b in zip(g_sp, g_me, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: spconv's native CUDA kernels")
def test_spconv_cuda_backbone_matches_the_cpu_path():  # pragma: no cover - GPU only
    """spconv's native CUDA kernels against the CPU path (spconv's index tables + torch gather/matmul/scatter):
    the same weights give the same levels, features and gradients."""
    torch.manual_seed(0)
    cpu = build_backbone(preset="tiny", backend="spconv").eval()
    gpu = build_backbone(preset="tiny", backend="spconv").eval()
    gpu.load_state_dict(cpu.state_dict(), strict=True)
    gpu = gpu.cuda()
    coords = _scene_coords(n=800, grid=24, seed=4)
    feats = torch.rand(len(coords), 3)
    out_c, out_g = cpu(coords, feats), gpu(coords.cuda(), feats.cuda())
    torch.testing.assert_close(out_g.feats.cpu(), out_c.feats, atol=1e-4, rtol=1e-4)
    for a, b in zip(out_c.levels, out_g.levels, strict=True):
        oa, ob = _sorted_rows(a.coords), _sorted_rows(b.coords)
        assert torch.equal(a.coords[oa].cpu(), b.coords.cpu()[ob])
        torch.testing.assert_close(b.feats.cpu()[ob], a.feats[oa], atol=1e-4, rtol=1e-4)
    cpu.train(), gpu.train()
    g_c = torch.autograd.grad(cpu(coords, feats).feats.square().sum(), list(cpu.parameters()))
    g_g = torch.autograd.grad(gpu(coords.cuda(), feats.cuda()).feats.square().sum(), list(gpu.parameters()))
    for a, b in zip(g_c, g_g, strict=True):
        torch.testing.assert_close(b.cpu(), a, atol=1e-3, rtol=1e-3)
