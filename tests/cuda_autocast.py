"""CUDA autocast's cast rules applied to CPU tensors, so that mixed-precision defects show on a CPU.

CPU autocast casts other ops than CUDA autocast (it leaves `exp` in the input dtype, for one), so a test
under `torch.autocast("cpu")` cannot see what a `16-mixed` or `bf16-mixed` run on a GPU computes. Inside
`cuda_autocast(dtype)` every op reached through torch's function dispatch follows CUDA autocast's lists
(ATen's `autocast_mode.h`, the "Autocast Op Reference" of the AMP docs):

- lower precision (`dtype`, float16 or bfloat16): matmul / @ / mm / bmm / linear / addmm / conv / einsum ...
- float32: exp, log, pow, softplus, layer_norm, the losses (binary_cross_entropy_with_logits, cross_entropy,
  nll_loss ...), softmax / log_softmax / sum / prod / cumsum (unless given a `dtype`), norms, logsumexp ...
- widest input type: addcmul, addcdiv, atan2, cross, dot, index_put, scatter_add, tensordot ...

Only floating tensors other than float64 are cast, as autocast does, and in-place ops are left alone. Every
other op runs in its inputs' dtypes (so `index_add` of a float32 source into a half tensor fails, as on
CUDA). Autocast's own enabled flag for the tensors' device ("cpu") is the switch: the emulation sets it on
entry, so `torch.autocast(device_type=x.device.type, enabled=False)` turns the casts off inside its region
exactly where real CUDA autocast would be off for CUDA tensors; every op runs with CPU autocast's own
casting excluded, so only the CUDA rules apply.

A Python functional that dispatches as one call runs its inner ops uncast (the mode is off inside a call it
handles). F.multi_head_attention_forward is one: it runs in `dtype` as a whole, as on CUDA, where its
projections are `linear` and its attention `scaled_dot_product_attention`, both lower precision.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch.overrides import TorchFunctionMode

# names as torch functions, Tensor methods and torch.nn.functional call them; from AT_FORALL_LOWER_PRECISION_FP
LOWER_PRECISION = frozenset({
    "__matmul__", "__rmatmul__", "matmul", "mm", "mv", "bmm", "addmm", "addmv", "addr", "addbmm", "baddbmm",
    "chain_matmul", "multi_dot", "linalg_multi_dot", "linalg_vecdot", "einsum", "linear", "prelu",
    "conv1d", "conv2d", "conv3d", "conv_tbc", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d",
    "convolution", "lstm_cell", "gru_cell", "rnn_tanh_cell", "rnn_relu_cell", "scaled_dot_product_attention",
    "multi_head_attention_forward",  # a composite of linear and scaled_dot_product_attention (module docstring)
})
# AT_FORALL_FP32, AT_FORALL_FP32_SET_OPT_DTYPE and norm; cross_entropy decomposes into two of them
FLOAT32 = frozenset({
    "acos", "asin", "cosh", "erfinv", "exp", "expm1", "log", "log10", "log2", "log1p", "reciprocal", "rsqrt",
    "sinh", "tan", "pow", "__pow__", "__rpow__", "__rtruediv__", "__rdiv__", "softplus", "layer_norm",
    "rms_norm", "group_norm", "norm", "frobenius_norm", "nuclear_norm", "cosine_similarity", "poisson_nll_loss",
    "cosine_embedding_loss", "nll_loss", "hinge_embedding_loss", "kl_div", "l1_loss", "smooth_l1_loss",
    "huber_loss", "mse_loss", "margin_ranking_loss", "multilabel_margin_loss", "soft_margin_loss",
    "triplet_margin_loss", "multi_margin_loss", "binary_cross_entropy_with_logits", "cross_entropy", "dist",
    "pdist", "cdist", "renorm", "logsumexp", "softmax", "log_softmax", "softmin", "prod", "cumprod", "cumsum",
    "sum", "linalg_vector_norm", "linalg_matrix_norm", "vector_norm", "matrix_norm", "normalize",
})
PROMOTE = frozenset({
    "addcdiv", "addcmul", "atan2", "bilinear", "cross", "dot", "vdot", "grid_sample", "index_put",
    "tensordot", "scatter_add",
})


def _eligible(x: object) -> bool:
    return isinstance(x, torch.Tensor) and x.is_floating_point() and x.dtype != torch.float64


def _cast(tree: object, dtype: torch.dtype) -> object:
    if _eligible(tree):
        return tree.to(dtype)
    if type(tree) in (list, tuple):
        return type(tree)(_cast(x, dtype) for x in tree)
    return tree


def _widest(args: tuple, kwargs: dict) -> torch.dtype | None:
    dtypes = [x.dtype for x in (*args, *kwargs.values()) if _eligible(x)]
    return torch.float32 if torch.float32 in dtypes else (dtypes[0] if dtypes else None)


class CudaAutocastMode(TorchFunctionMode):
    """Runs every op with CUDA autocast's cast rules for `dtype` while CPU autocast's flag is on."""

    def __init__(self, dtype: torch.dtype) -> None:
        super().__init__()
        if dtype not in (torch.float16, torch.bfloat16):
            raise ValueError(f"CUDA autocast runs float16 or bfloat16, not {dtype}")
        self.dtype = dtype

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if torch.is_autocast_enabled("cpu"):
            name = getattr(func, "__name__", "")
            if name in LOWER_PRECISION:
                args, kwargs = _cast(args, self.dtype), {k: _cast(v, self.dtype) for k, v in kwargs.items()}
            elif name in FLOAT32 and kwargs.get("dtype") is None:
                args, kwargs = _cast(args, torch.float32), {k: _cast(v, torch.float32) for k, v in kwargs.items()}
            elif name in PROMOTE and (widest := _widest(args, kwargs)) is not None:
                args, kwargs = _cast(args, widest), {k: _cast(v, widest) for k, v in kwargs.items()}
        with torch._C._DisableAutocast():  # CPU autocast's own rules never apply on top
            return func(*args, **kwargs)


@contextmanager
def cuda_autocast(dtype: torch.dtype = torch.float16) -> Iterator[CudaAutocastMode]:
    """Yields the active emulation of `torch.autocast("cuda", dtype)` over CPU tensors (see the module)."""
    before = torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")
    torch.set_autocast_enabled("cpu", True)
    torch.set_autocast_dtype("cpu", dtype)
    try:
        with CudaAutocastMode(dtype) as mode:
            yield mode
    finally:
        torch.set_autocast_enabled("cpu", before[0])
        torch.set_autocast_dtype("cpu", before[1])
