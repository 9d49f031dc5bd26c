"""MinkowskiEngine 0.5.x behind the sparse seam (optional backend)."""

from __future__ import annotations

import collections
import collections.abc

import torch

from freepoint_bench.errors import ConfigError
from freepoint_bench.models.sparse.base import SparseBackend, SparseConv, SparseTensorLike, check_coords

INSTALL_HINT = (
    "apt-get install -y libopenblas-dev && pip install setuptools wheel ninja && "
    "SETUPTOOLS_USE_DISTUTILS=stdlib MAX_JOBS=2 pip install --no-build-isolation "
    "--global-option=--blas=openblas --global-option=--cpu_only MinkowskiEngine==0.5.4"
)


def _import_minkowski():
    # MinkowskiEngine 0.5.4 still reads collections.Sequence, removed in Python 3.10.
    if not hasattr(collections, "Sequence"):
        collections.Sequence = collections.abc.Sequence  # type: ignore[attr-defined]
    try:
        import MinkowskiEngine as ME
    except Exception as exc:  # noqa: BLE001 - any import failure means "not available"
        raise ConfigError(f"sparse backend 'minkowski' is not importable ({exc}); install it: {INSTALL_HINT}") from exc
    return ME


def kernel_permutation(kernel_size: int) -> torch.Tensor:
    """Returns, for each of MinkowskiEngine's K^3 kernel rows, the flat canonical (kx, ky, kz) index.

    MinkowskiEngine enumerates kernel offsets with x fastest (row r = ix + K*iy + K*K*iz); the
    canonical layout flattens (kx, ky, kz) with z fastest.
    """
    k = kernel_size
    ix, iy, iz = torch.meshgrid(torch.arange(k), torch.arange(k), torch.arange(k), indexing="ij")
    me_row = ix + k * iy + k * k * iz  # (k, k, k) indexed canonically
    perm = torch.empty(k**3, dtype=torch.long)
    perm[me_row.reshape(-1)] = torch.arange(k**3)
    return perm


class _MinkowskiConv(SparseConv):
    """An ME layer fed from the canonical weight (kx, ky, kz, c_in, c_out) -> native (K^3, c_in, c_out)."""

    def __init__(self, native: torch.nn.Module, c_in: int, c_out: int, kernel_size: int) -> None:
        super().__init__(c_in, c_out, kernel_size)
        del native.kernel  # the canonical parameter is the only stored copy
        self.native = native
        self.register_buffer("_perm", kernel_permutation(kernel_size), persistent=False)

    def forward(self, t: SparseTensorLike) -> SparseTensorLike:
        flat = self.weight.reshape(self.kernel_size**3, self.c_in, self.c_out)
        # ME stores a 1x1x1 kernel as a plain (c_in, c_out) matrix.
        self.native.kernel = flat[0] if getattr(self.native, "use_mm", False) else flat[self._perm]
        try:
            return self.native(t)
        finally:
            del self.native.kernel


class MinkowskiBackend(SparseBackend):
    """MinkowskiEngine: stride-1 convolutions are submanifold; transposed convs reuse the encoder's sites."""

    name = "minkowski"

    def __init__(self) -> None:
        self._me = _import_minkowski()

    def make_tensor(self, coords: torch.Tensor, feats: torch.Tensor) -> SparseTensorLike:
        coords = check_coords(coords, feats)
        manager = self._me.CoordinateManager(D=3, coordinate_map_type=self._map_type(feats.device))
        return self._me.SparseTensor(features=feats, coordinates=coords, coordinate_manager=manager)

    def _map_type(self, device: torch.device):
        kind = self._me.CoordinateMapType
        return kind.CUDA if device.type == "cuda" else kind.CPU

    def subm_conv(self, c_in: int, c_out: int, kernel_size: int, key: str) -> SparseConv:
        native = self._me.MinkowskiConvolution(c_in, c_out, kernel_size=kernel_size, stride=1, bias=False, dimension=3)
        return _MinkowskiConv(native, c_in, c_out, kernel_size)

    def down_conv(self, c_in: int, c_out: int, key: str) -> SparseConv:
        native = self._me.MinkowskiConvolution(c_in, c_out, kernel_size=2, stride=2, bias=False, dimension=3)
        return _MinkowskiConv(native, c_in, c_out, 2)

    def up_conv(self, c_in: int, c_out: int, key: str) -> SparseConv:
        native = self._me.MinkowskiConvolutionTranspose(c_in, c_out, kernel_size=2, stride=2, bias=False, dimension=3)
        return _MinkowskiConv(native, c_in, c_out, 2)

    def features(self, t: SparseTensorLike) -> torch.Tensor:
        return t.F

    def coords(self, t: SparseTensorLike) -> torch.Tensor:
        c = t.C.to(torch.int32).clone()
        stride = torch.as_tensor(t.tensor_stride, dtype=torch.int32, device=c.device)
        c[:, 1:] = torch.div(c[:, 1:], stride, rounding_mode="floor")
        return c

    def replace_features(self, t: SparseTensorLike, feats: torch.Tensor) -> SparseTensorLike:
        return self._me.SparseTensor(
            features=feats, coordinate_map_key=t.coordinate_map_key, coordinate_manager=t.coordinate_manager
        )
