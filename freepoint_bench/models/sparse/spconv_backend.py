"""spconv 2.x behind the sparse seam (the default backend; CPU forward and backward, CUDA when present)."""

from __future__ import annotations

import logging

import torch

from freepoint_bench.errors import ConfigError
from freepoint_bench.models.sparse.base import SparseBackend, SparseConv, SparseTensorLike, check_coords

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install -e '.[cpu]' (spconv, CPU wheel) or make setup-cuda / '.[cuda]' (spconv-cu126)"

# The spatial extent is rounded up to a multiple of this so that every stride-2 level keeps all sites
# (spconv drops sites past floor((S - 2) / 2) + 1); 2**6 supports six downsamplings.
_EXTENT_MULTIPLE = 64


def _import_spconv():
    try:
        import spconv.pytorch as spconv
    except Exception as exc:  # noqa: BLE001 - any import failure means "not available"
        raise ConfigError(f"sparse backend 'spconv' is not importable ({exc}); install it: {INSTALL_HINT}") from exc
    if not torch.cuda.is_available():
        # spconv's backward asks for the current CUDA stream even on CPU tensors; stream 0 is what
        # its CPU kernels expect, so the lookup is replaced when no CUDA device exists.
        import spconv.pytorch.hash as spconv_hash
        import spconv.pytorch.ops as spconv_ops

        spconv_ops.get_current_stream = lambda: 0
        spconv_hash.get_current_stream = lambda: 0
    return spconv


class SpconvConv(SparseConv):
    """A spconv layer fed from the canonical weight (kx, ky, kz, c_in, c_out).

    On CUDA the native spconv module runs with the weight permuted to its (c_out, kx, ky, kz, c_in)
    layout. On CPU only spconv's rulebook (the input/output pair tables) is used and the
    gather-matmul-scatter runs in torch: spconv 2.3.8's CPU gather/scatter kernels race when torch
    has more than one thread (a few percent of output sites come out wrong, seen in
    tests/models/test_sparse.py), and torch's own ops are exact and differentiable.

    A 1×1 convolution (spconv's `conv1x1`: one kernel tap, and stride 1 unless submanifold) is a plain matmul on
    both paths: spconv's own fast path for it does `features @ weight.view(c_in, c_out)`, which reads the KRSC
    weight handed to the native module transposed (a different function on CUDA than on CPU; every residual
    projection of 34C is 1×1).
    """

    def __init__(self, native: torch.nn.Module, c_in: int, c_out: int, kernel_size: int) -> None:
        super().__init__(c_in, c_out, kernel_size)
        del native.weight  # the canonical parameter is the only stored copy
        self.native = native

    def forward(self, t: SparseTensorLike) -> SparseTensorLike:
        if t.features.is_cuda:
            return self._native_forward(t)
        return self._torch_forward(t)

    def _pointwise(self, t: SparseTensorLike) -> SparseTensorLike:
        return t.replace_feature(t.features @ self.weight.reshape(self.c_in, self.c_out))

    def _native_forward(self, t: SparseTensorLike) -> SparseTensorLike:
        if self.native.conv1x1:
            return self._pointwise(t)
        self.native.weight = self.weight.permute(4, 0, 1, 2, 3).contiguous()
        try:
            return self.native(t)
        finally:
            del self.native.weight  # never keep a graph-holding tensor on the module

    def _torch_forward(self, t: SparseTensorLike) -> SparseTensorLike:
        if self.native.conv1x1:
            return self._pointwise(t)
        from spconv.core import ConvAlgo
        from spconv.pytorch import SparseConvTensor, ops
        from spconv.pytorch.core import IndiceData

        conv = self.native
        key = conv.indice_key
        data = t.find_indice_pair(key)
        indice_dict = t.indice_dict.copy()
        spatial_shape = t.spatial_shape
        if conv.inverse:
            if data is None:
                raise ValueError(f"up_conv {key!r} has no matching down_conv applied earlier to this tensor")
            out_ids, pairs, pair_num = data.indices, data.indice_pairs, data.indice_pair_num
            spatial_shape = data.spatial_shape
            pair_in, pair_out = pairs[1], pairs[0]
        else:
            if data is not None and conv.subm:
                out_ids, pairs, pair_num = data.out_indices, data.indice_pairs, data.indice_pair_num
            else:
                if conv.subm:
                    out_shape = list(spatial_shape)
                else:
                    out_shape = ops.get_conv_output_size(
                        spatial_shape, conv.kernel_size, conv.stride, conv.padding, conv.dilation
                    )
                out_ids, pairs, pair_num = ops.get_indice_pairs(
                    t.indices,
                    t.batch_size,
                    spatial_shape,
                    ConvAlgo.Native,
                    conv.kernel_size,
                    conv.stride,
                    conv.padding,
                    conv.dilation,
                    conv.output_padding,
                    conv.subm,
                    False,
                )
                indice_dict[key] = IndiceData(
                    out_ids,
                    t.indices,
                    pairs,
                    pair_num,
                    spatial_shape,
                    out_shape,
                    is_subm=conv.subm,
                    algo=ConvAlgo.Native,
                    ksize=conv.kernel_size,
                    stride=conv.stride,
                    padding=conv.padding,
                    dilation=conv.dilation,
                )
                spatial_shape = out_shape
            pair_in, pair_out = pairs[0], pairs[1]
        feats = t.features
        kernel = self.weight.reshape(-1, self.c_in, self.c_out)  # flat index = spconv's kernel index
        counts = pair_num.tolist()
        volume = kernel.shape[0]
        center = volume // 2
        if conv.subm:
            out = feats @ kernel[center]
        else:
            out = feats.new_zeros(out_ids.shape[0], self.c_out)
        for k in range(volume):
            if conv.subm and k == center:
                continue
            # spconv stores submanifold pair counts for the first half only (the tables are symmetric).
            n = counts[volume - 1 - k] if conv.subm and k > center else counts[k]
            if n <= 0:
                continue
            idx_in, idx_out = pair_in[k, :n].long(), pair_out[k, :n].long()
            out = out.index_add(0, idx_out, feats.index_select(0, idx_in) @ kernel[k])
        result = SparseConvTensor(out, out_ids, spatial_shape, t.batch_size, indice_dict=indice_dict)
        return result


class SpconvBackend(SparseBackend):
    """spconv 2.x: SubMConv3d, SparseConv3d (k2 s2) and SparseInverseConv3d paired by indice_key."""

    name = "spconv"

    def __init__(self) -> None:
        self._spconv = _import_spconv()

    def make_tensor(self, coords: torch.Tensor, feats: torch.Tensor) -> SparseTensorLike:
        coords = check_coords(coords, feats)
        extent = coords[:, 1:].max(dim=0).values + 1
        extent = ((extent + _EXTENT_MULTIPLE - 1) // _EXTENT_MULTIPLE) * _EXTENT_MULTIPLE
        batch_size = int(coords[:, 0].max()) + 1
        return self._spconv.SparseConvTensor(feats, coords, [int(e) for e in extent], batch_size)

    def subm_conv(self, c_in: int, c_out: int, kernel_size: int, key: str) -> SparseConv:
        if kernel_size % 2 == 0:  # spconv asserts this in C++ at the first forward
            raise ConfigError(f"submanifold kernel size {kernel_size}: spconv supports odd sizes only (1, 3, 5, ...); "
                              "set stem_kernel_size to an odd value")
        native = self._spconv.SubMConv3d(c_in, c_out, kernel_size, bias=False, indice_key=f"subm_{key}_k{kernel_size}")
        return SpconvConv(native, c_in, c_out, kernel_size)

    def down_conv(self, c_in: int, c_out: int, key: str) -> SparseConv:
        native = self._spconv.SparseConv3d(c_in, c_out, 2, stride=2, bias=False, indice_key=f"down_{key}")
        return SpconvConv(native, c_in, c_out, 2)

    def up_conv(self, c_in: int, c_out: int, key: str) -> SparseConv:
        native = self._spconv.SparseInverseConv3d(c_in, c_out, 2, bias=False, indice_key=f"down_{key}")
        return SpconvConv(native, c_in, c_out, 2)

    def features(self, t: SparseTensorLike) -> torch.Tensor:
        return t.features

    def coords(self, t: SparseTensorLike) -> torch.Tensor:
        return t.indices

    def replace_features(self, t: SparseTensorLike, feats: torch.Tensor) -> SparseTensorLike:
        return t.replace_feature(feats)
