"""The sparse seam: each backend against dense torch convolutions, and the two backends against each other."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from freepoint_bench.errors import ConfigError, DataError
from freepoint_bench.models.sparse import available_backends, get_backend

BACKENDS = ["spconv", "minkowski"]


def _backend_or_skip(name: str):
    try:
        return get_backend(name)
    except ConfigError as exc:
        pytest.skip(f"{name} not importable here: {exc}")


def _random_sites(grid: int, n: int, batches: int = 2, seed: int = 0) -> torch.Tensor:
    """Returns unique (M, 4) int32 [batch, x, y, z] sites inside a grid^3 box."""
    g = torch.Generator().manual_seed(seed)
    sites = torch.cat(
        [torch.randint(0, batches, (n, 1), generator=g), torch.randint(0, grid, (n, 3), generator=g)], dim=1
    )
    return torch.unique(sites, dim=0).to(torch.int32)


def _dense(coords: torch.Tensor, feats: torch.Tensor, batches: int, grid: int) -> torch.Tensor:
    """Returns a dense (B, C, G, G, G) grid with `feats` at `coords` and zeros elsewhere."""
    dense = torch.zeros(batches, feats.shape[1], grid, grid, grid, dtype=feats.dtype)
    b, x, y, z = coords.long().unbind(1)
    dense[b, :, x, y, z] = feats
    return dense


def _rows_by_coords(coords: torch.Tensor, feats: torch.Tensor) -> dict[tuple[int, ...], torch.Tensor]:
    return {tuple(c.tolist()): f for c, f in zip(coords, feats, strict=True)}


def test_get_backend_unknown_name_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown sparse backend"):
        get_backend("torchsparse")


def test_spconv_is_available():
    assert "spconv" in available_backends()


@pytest.mark.parametrize("name", BACKENDS)
def test_make_tensor_rejects_bad_coords(name):
    backend = _backend_or_skip(name)
    feats = torch.zeros(2, 3)
    with pytest.raises(DataError, match=">= 0"):
        backend.make_tensor(torch.tensor([[0, -1, 0, 0], [0, 1, 1, 1]], dtype=torch.int32), feats)
    with pytest.raises(DataError, match="rows"):
        backend.make_tensor(torch.tensor([[0, 1, 0, 0]], dtype=torch.int32), feats)
    with pytest.raises(DataError, match="integer"):
        backend.make_tensor(torch.zeros(2, 4), feats)


@pytest.mark.parametrize("name", BACKENDS)
def test_subm_conv_matches_dense_conv3d_at_active_sites(name):
    backend = _backend_or_skip(name)
    torch.manual_seed(0)
    grid, batches = 7, 2
    coords = _random_sites(grid, 120, batches)
    feats = torch.randn(len(coords), 3, dtype=torch.float64)
    conv = backend.subm_conv(3, 4, 3, key="l0").double()
    out = conv(backend.make_tensor(coords, feats))
    # Canonical weight (kx, ky, kz, cin, cout) -> torch's (cout, cin, kx, ky, kz) cross-correlation.
    ref = F.conv3d(_dense(coords, feats, batches, grid), conv.weight.permute(4, 3, 0, 1, 2), padding=1)
    got = _rows_by_coords(backend.coords(out), backend.features(out))
    assert len(got) == len(coords)  # submanifold: same sites
    for c in coords.tolist():
        b, x, y, z = c
        torch.testing.assert_close(got[tuple(c)], ref[b, :, x, y, z])


@pytest.mark.parametrize("name", BACKENDS)
def test_down_and_up_conv_match_dense_strided_and_transposed_conv3d(name):
    backend = _backend_or_skip(name)
    torch.manual_seed(1)
    grid, batches = 8, 2
    coords = _random_sites(grid, 90, batches, seed=3)
    feats = torch.randn(len(coords), 2, dtype=torch.float64)
    down = backend.down_conv(2, 3, key="d1").double()
    up = backend.up_conv(3, 2, key="d1").double()
    x = backend.make_tensor(coords, feats)
    coarse = down(x)
    ref_down = F.conv3d(_dense(coords, feats, batches, grid), down.weight.permute(4, 3, 0, 1, 2), stride=2)
    coarse_coords = backend.coords(coarse)
    expected_sites = torch.unique(torch.cat([coords[:, :1], coords[:, 1:] // 2], 1), dim=0)
    assert sorted(map(tuple, coarse_coords.tolist())) == sorted(map(tuple, expected_sites.tolist()))
    got = _rows_by_coords(coarse_coords, backend.features(coarse))
    for c, f in got.items():
        torch.testing.assert_close(f, ref_down[c[0], :, c[1], c[2], c[3]])

    fine = up(coarse)
    # Exactly the encoder's sites, in the encoder's row order (the UNet concatenates row by row).
    assert torch.equal(backend.coords(fine), backend.coords(x))
    dense_coarse = _dense(coarse_coords, backend.features(coarse), batches, grid // 2)
    ref_up = F.conv_transpose3d(dense_coarse, up.weight.permute(3, 4, 0, 1, 2), stride=2)
    for c, f in _rows_by_coords(backend.coords(fine), backend.features(fine)).items():
        torch.testing.assert_close(f, ref_up[c[0], :, c[1], c[2], c[3]])


@pytest.mark.parametrize("name", BACKENDS)
def test_gradients_reach_canonical_weights(name):
    backend = _backend_or_skip(name)
    coords = _random_sites(6, 60)
    feats = torch.randn(len(coords), 2, requires_grad=True)
    conv = backend.subm_conv(2, 3, 3, key="g")
    down, up = backend.down_conv(3, 3, key="gd"), backend.up_conv(3, 3, key="gd")
    bn, relu = backend.batch_norm(3), backend.relu()
    out = up(relu(bn(down(conv(backend.make_tensor(coords, feats))))))
    backend.features(out).square().sum().backward()
    for module in (conv, down, up):
        assert module.weight.grad is not None and module.weight.grad.abs().sum() > 0
    assert feats.grad is not None and feats.grad.abs().sum() > 0
    assert set(dict(conv.named_parameters())) == {"weight"}  # no backend-native copy of the kernel


def _native_and_torch_paths(layers, coords, feats):
    """Returns [(coords, features, feature grad, weight grads)] of the torch path and of spconv's native path.

    Single-threaded: spconv 2.3.8's CPU gather/scatter race with several torch threads."""
    backend = get_backend("spconv")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        outs = []
        for path in ("_torch_forward", "_native_forward"):
            for layer in layers:
                layer.zero_grad()
            x = feats.clone().requires_grad_(True)
            t = backend.make_tensor(coords, x)
            for layer in layers:
                t = getattr(layer, path)(t)
            out = backend.features(t)
            (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
            outs.append((backend.coords(t), out.detach(), x.grad, [layer.weight.grad.clone() for layer in layers]))
    finally:
        torch.set_num_threads(threads)
    return outs


def _assert_same_paths(outs):
    (c_t, f_t, g_t, w_t), (c_n, f_n, g_n, w_n) = outs
    assert torch.equal(c_t, c_n)
    torch.testing.assert_close(f_n, f_t)
    torch.testing.assert_close(g_n, g_t)
    for a, b in zip(w_n, w_t, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("kernel", [1, 3, 5])
def test_spconv_native_subm_conv_equals_the_torch_path(kernel):
    """The native spconv path (the one CUDA tensors take) computes the CPU path's function, forward and backward.

    kernel 1 failed before routing spconv's conv1x1 through the matmul: its fast path reads the KRSC weight the
    native module is given as (c_in, c_out), a transposed reading (differences up to ~1 on random weights)."""
    backend = get_backend("spconv")
    torch.manual_seed(kernel)
    coords = _random_sites(8, 150, seed=5)
    feats = torch.randn(len(coords), 3, dtype=torch.float64)
    layers = [backend.subm_conv(3, 4, kernel, f"s{kernel}").double(), backend.subm_conv(4, 2, kernel, "t").double()]
    _assert_same_paths(_native_and_torch_paths(layers, coords, feats))


def test_spconv_even_submanifold_kernel_is_a_config_error():
    """spconv centres submanifold kernels, so only odd sizes exist (its own error is a C++ assertion)."""
    with pytest.raises(ConfigError, match="odd"):
        get_backend("spconv").subm_conv(3, 4, 2, "even")


@pytest.mark.parametrize("kernel", [1, 2, 3, 5])
@pytest.mark.parametrize("stride", [1, 2])
def test_spconv_native_strided_conv_equals_the_torch_path(kernel, stride):
    """Regular (non-submanifold) convolutions, strided and not, then the backbone's inverse conv back up."""
    import spconv.pytorch as spconv

    from freepoint_bench.models.sparse.spconv_backend import SpconvConv

    backend = get_backend("spconv")
    torch.manual_seed(10 * kernel + stride)
    coords = _random_sites(10, 160, seed=7)
    feats = torch.randn(len(coords), 3, dtype=torch.float64)
    conv = SpconvConv(spconv.SparseConv3d(3, 5, kernel, stride=stride, bias=False, indice_key=f"c{kernel}"),
                       3, 5, kernel).double()
    layers = [conv, backend.subm_conv(5, 4, 3, "mid").double()]
    _assert_same_paths(_native_and_torch_paths(layers, coords, feats))
    if stride == 2 and kernel == 2:  # the backbone's own down / up pair
        down, up = backend.down_conv(3, 5, "nd").double(), backend.up_conv(5, 2, "nd").double()
        _assert_same_paths(_native_and_torch_paths([down, up], coords, feats))


def test_small_backbone_native_path_equals_the_torch_path():
    """The whole small backbone (1×1 residual projections included) gives the same features on both paths."""
    from freepoint_bench.models.backbone import build_backbone

    torch.manual_seed(0)
    coords = _random_sites(16, 400, seed=2)
    feats = torch.randn(len(coords), 3)
    model = build_backbone(preset="small", in_channels=3, backend="spconv").double().eval()
    outs = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for native in (False, True):
            _force_native(model, native)
            outs.append(model(coords, feats.double()).feats)
    finally:
        _force_native(model, None)
        torch.set_num_threads(threads)
    torch.testing.assert_close(outs[1], outs[0])


def _force_native(model, native):
    from freepoint_bench.models.sparse.spconv_backend import SpconvConv

    for m in model.modules():
        if isinstance(m, SpconvConv):
            if native is None:
                m.__dict__.pop("forward", None)
            else:
                m.forward = m._native_forward if native else m._torch_forward
