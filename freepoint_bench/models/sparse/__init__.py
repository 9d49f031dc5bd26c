"""Sparse convolution seam: `get_backend("spconv" | "minkowski")` returns a `SparseBackend`."""

from __future__ import annotations

import functools

from freepoint_bench.errors import ConfigError
from freepoint_bench.models.sparse.base import (
    FeatureMap,
    SparseBackend,
    SparseConv,
    SparseTensorLike,
    check_coords,
)

BACKENDS = ("spconv", "minkowski")
DEFAULT_BACKEND = "spconv"


@functools.cache
def get_backend(name: str = DEFAULT_BACKEND) -> SparseBackend:
    """Returns the (cached) backend object `name`; ConfigError with the install command when unavailable."""
    if name == "spconv":
        from freepoint_bench.models.sparse.spconv_backend import SpconvBackend

        return SpconvBackend()
    if name == "minkowski":
        from freepoint_bench.models.sparse.minkowski_backend import MinkowskiBackend

        return MinkowskiBackend()
    raise ConfigError(f"unknown sparse backend {name!r}; choose one of {', '.join(BACKENDS)}")


def available_backends() -> list[str]:
    """Returns the names of the backends that import on this machine."""
    names = []
    for name in BACKENDS:
        try:
            get_backend(name)
        except ConfigError:
            continue
        names.append(name)
    return names


__all__ = [
    "BACKENDS",
    "DEFAULT_BACKEND",
    "FeatureMap",
    "SparseBackend",
    "SparseConv",
    "SparseTensorLike",
    "available_backends",
    "check_coords",
    "get_backend",
]
