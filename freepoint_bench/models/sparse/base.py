"""The sparse-convolution seam: one small interface, two real backends (spconv, MinkowskiEngine).

Canonical weight layout (shared by every backend, and the layout that lands in a state dict):
a convolution's only parameter is ``weight`` of shape ``(kx, ky, kz, c_in, c_out)``, a
cross-correlation indexed by kernel offset along x, y, z:

* submanifold, odd kernel K:  ``out[p] = sum_o in[p + o - (K-1)/2] @ weight[o]`` at the input sites,
* down (kernel 2, stride 2):  ``out[q] = sum_o in[2q + o] @ weight[o]``, o in {0,1}^3,
* up (kernel 2, stride 2), the transpose of down onto the encoder level's exact sites:
  ``out[2q + o] = in[q] @ weight[o]``.

Each backend converts this layout to its own kernel layout inside the layer's forward, so model
state dicts are identical across backends (keys and shapes) and a checkpoint trained with one
backend loads into the other. Batch norm and activations act on the feature matrix only and are
plain torch modules shared by both backends.

Coordinates crossing the seam are ``(M, 4) int32 [batch, x, y, z]`` in the units of the tensor's own
level: a tensor two down-convolutions below the input has coordinates ``floor(x / 4)``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import torch
from torch import nn

from freepoint_bench.errors import DataError

SparseTensorLike = Any  # the backend's own sparse tensor; only the backend looks inside it


class SparseConv(nn.Module, ABC):
    """A sparse convolution whose parameter is stored in the canonical (kx, ky, kz, c_in, c_out) layout."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int) -> None:
        super().__init__()
        self.c_in, self.c_out, self.kernel_size = c_in, c_out, kernel_size
        self.weight = nn.Parameter(torch.empty(kernel_size, kernel_size, kernel_size, c_in, c_out))
        # He-uniform over the fan-in (kernel volume x c_in): keeps activations' scale through ReLU stacks.
        bound = math.sqrt(6.0 / (c_in * kernel_size**3))
        nn.init.uniform_(self.weight, -bound, bound)

    def extra_repr(self) -> str:
        return f"{self.c_in}, {self.c_out}, kernel_size={self.kernel_size}"


class FeatureMap(nn.Module):
    """Applies a torch module to the feature matrix of a sparse tensor (batch norm, activation)."""

    def __init__(self, backend: SparseBackend, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        self.backend = backend

    def forward(self, t: SparseTensorLike) -> SparseTensorLike:
        return self.backend.replace_features(t, self.module(self.backend.features(t)))


class SparseBackend(ABC):
    """Factory of sparse tensors and layers; the only place a backend's own API is called."""

    name: str = ""

    # Backends are stateless singletons: copies (deepcopy, pickling for DDP workers) are the same object.
    def __deepcopy__(self, memo: dict) -> SparseBackend:
        return self

    def __reduce__(self):
        return (_backend_by_name, (self.name,))

    @abstractmethod
    def make_tensor(self, coords: torch.Tensor, feats: torch.Tensor) -> SparseTensorLike:
        """Returns a sparse tensor from unique coords (M, 4) int32 [batch, x, y, z] >= 0 and feats (M, C)."""

    @abstractmethod
    def subm_conv(self, c_in: int, c_out: int, kernel_size: int, key: str) -> SparseConv:
        """Returns a submanifold convolution (output sites = input sites); `key` names the level."""

    @abstractmethod
    def down_conv(self, c_in: int, c_out: int, key: str) -> SparseConv:
        """Returns a kernel-2 stride-2 convolution (halves the resolution); `key` pairs it with an up_conv."""

    @abstractmethod
    def up_conv(self, c_in: int, c_out: int, key: str) -> SparseConv:
        """Returns a kernel-2 stride-2 transposed conv back onto the input sites of down_conv `key`."""

    @abstractmethod
    def features(self, t: SparseTensorLike) -> torch.Tensor:
        """Returns the (M, C) feature matrix of `t`."""

    @abstractmethod
    def coords(self, t: SparseTensorLike) -> torch.Tensor:
        """Returns the (M, 4) int32 [batch, x, y, z] coordinates of `t` in its own level's units."""

    @abstractmethod
    def replace_features(self, t: SparseTensorLike, feats: torch.Tensor) -> SparseTensorLike:
        """Returns a sparse tensor with the sites of `t` and new features (M, C')."""

    def batch_norm(self, channels: int, momentum: float = 0.1) -> nn.Module:
        """Returns a batch norm over the feature matrix (a torch BatchNorm1d, same keys on every backend)."""
        return FeatureMap(self, nn.BatchNorm1d(channels, momentum=momentum))

    def relu(self) -> nn.Module:
        """Returns a ReLU over the feature matrix."""
        return FeatureMap(self, nn.ReLU())

    def cat_features(self, a: SparseTensorLike, b: SparseTensorLike) -> SparseTensorLike:
        """Returns `a` with features [a | b]; `a` and `b` must hold the same sites in the same order."""
        fa, fb = self.features(a), self.features(b)
        if fa.shape[0] != fb.shape[0]:
            raise ValueError(f"cat_features: {fa.shape[0]} vs {fb.shape[0]} sites; the tensors are not aligned")
        return self.replace_features(a, torch.cat([fa, fb], dim=1))


def check_coords(coords: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
    """Returns coords as contiguous int32 after checking shape, sign and length against feats."""
    if coords.ndim != 2 or coords.shape[1] != 4:
        raise DataError(f"sparse coords must be (M, 4) [batch, x, y, z], got {tuple(coords.shape)}")
    if feats.ndim != 2 or feats.shape[0] != coords.shape[0]:
        raise DataError(f"sparse feats must be (M, C) with M = {coords.shape[0]} rows, got {tuple(feats.shape)}")
    if coords.shape[0] == 0:
        raise DataError("sparse tensor has no sites; voxelise a non-empty scene")
    if coords.dtype.is_floating_point:
        raise DataError("sparse coords must be integer voxel indices; voxelise (floor(xyz / voxel_size)) first")
    if bool((coords < 0).any()):
        raise DataError("sparse coords must be >= 0; shift each scene by its minimum voxel index first")
    return coords.to(torch.int32).contiguous()


def _backend_by_name(name: str) -> SparseBackend:
    from freepoint_bench.models.sparse import get_backend

    return get_backend(name)
