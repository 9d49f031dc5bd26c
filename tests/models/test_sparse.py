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


def test_spconv_native_kernels_agree_with_the_torch_path():
    """The native spconv path (used on CUDA) reads the canonical weight the same way as the CPU path.

    Run single-threaded: spconv 2.3.8's CPU gather/scatter race with several torch threads.
    """
    backend = get_backend("spconv")
    coords = _random_sites(8, 150, seed=5)
    feats = torch.randn(len(coords), 3, dtype=torch.float64)
    subm, down, up = (
        backend.subm_conv(3, 4, 3, "n"),
        backend.down_conv(4, 5, "nd"),
        backend.up_conv(5, 2, "nd"),
    )
    layers = [m.double() for m in (subm, down, up)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        outs = []
        for path in ("_torch_forward", "_native_forward"):
            t = backend.make_tensor(coords, feats)
            for layer in layers:
                t = getattr(layer, path)(t)
            outs.append((backend.coords(t), backend.features(t)))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(outs[0][0], outs[1][0])
    torch.testing.assert_close(outs[0][1], outs[1][1])
