"""Mixed precision shared by training and evaluation: ``train.amp`` / ``test.amp`` = none | bf16 | fp16."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

from ..config import ConfigError
from ..models.precision import DTYPES

AMP_DTYPES: dict[str, torch.dtype | None] = {"none": None, **DTYPES}


def autocast(device: torch.device, amp: str) -> AbstractContextManager:
    """Autocast context for 'none' | 'bf16' | 'fp16' (fp16 only on CUDA)."""
    if amp not in AMP_DTYPES:
        raise ConfigError(f"amp must be one of {', '.join(AMP_DTYPES)}, got {amp!r}")
    if AMP_DTYPES[amp] is None:
        return nullcontext()
    if amp == "fp16" and device.type != "cuda":
        raise ConfigError("amp 'fp16' needs a CUDA device; use 'bf16' (or 'none') on the CPU")
    return torch.autocast(device_type=device.type, dtype=AMP_DTYPES[amp])
