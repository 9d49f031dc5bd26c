"""The device a command runs its models on: `--device auto` is the GPU when there is one.

    device = resolve_device("auto")        # cuda when torch sees a GPU, else cpu
    device = resolve_device("cuda:1")      # ConfigError (one line) on a machine without that GPU
"""

from __future__ import annotations

import re

import torch

from freepoint_bench.errors import ConfigError

DEVICE_CHOICES = "auto, cpu, cuda or cuda:<index>"
_CUDA = re.compile(r"(cuda|gpu)(?::(\d+))?")


def resolve_device(device: str | torch.device, option: str = "--device") -> torch.device:
    """Returns the torch device `device` names: "auto" (cuda when available, else cpu), "cpu", "cuda" / "gpu"
    or "cuda:<index>". ConfigError naming `option` for any other name, or for a GPU this machine lacks."""
    if isinstance(device, torch.device):
        device = str(device)
    text = str(device).strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    match = _CUDA.fullmatch(text)
    if match is None:
        raise ConfigError(f"{option} {device!r}: not a device; choose {DEVICE_CHOICES}")
    if not torch.cuda.is_available():
        raise ConfigError(f"{option} {device}: CUDA is not available on this machine (torch {torch.__version__}, "
                          f"built for CUDA {torch.version.cuda or 'none'}); use {option} cpu or {option} auto")
    index = None if match.group(2) is None else int(match.group(2))
    if index is not None and index >= torch.cuda.device_count():
        raise ConfigError(f"{option} {device}: this machine has {torch.cuda.device_count()} GPU(s) "
                          f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})")
    return torch.device("cuda", index)
