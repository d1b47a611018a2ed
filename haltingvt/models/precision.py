"""Reduced-precision inference: bf16 / fp16 matrix products and int8 dynamic quantisation (docs/guide.md,
"Precision").

What runs in reduced precision is the transformer blocks' Linear layers (qkv, attention output, MLP), where
nearly all of the FLOPs are. The residual stream, LayerNorms, softmax statistics, the heads and the halting
arithmetic stay in fp32:

* ``bf16`` / ``fp16``: the blocks' Linear weights are stored in that dtype and the forward pass runs under
  ``torch.autocast``; a Linear's output is low precision, but the residual sums promote back to fp32.
* ``int8``: the blocks' Linear layers, but those of the Glimpser's temporal attention, are replaced by
  dynamically quantised ones (int8 weights with one scale per output channel, activations quantised per batch)
  from ``torch.ao.quantization.quantize_dynamic``, packed for and run by the oneDNN backend
  (:func:`_quantized_engine`). torchao is the maintained successor, but its int8 path is fast only under
  ``torch.compile``, which does not suit compact execution (the number of active tokens changes at every
  layer and batch); run eagerly it was about half as fast as torch.ao's int8 (benchmarks/bench_precision.py
  --torchao, docs/benchmarks.md).
* The halting arithmetic (scores, cumulative sums, the threshold) stays fp32: it reads channel 0 of the
  fp32 residual stream. A decision can still flip when the reduced-precision blocks move a token near the
  threshold, and the Glimpser may swap patches whose scores nearly tie: measured in
  experiments/precision_agreement.py (docs/experiments.md, "Reduced precision"). Recomputing channel 0 of each
  block's output in fp32 changed no decision there (the flips come from upstream), so it is not done.

A converted model is for inference only: it carries ``model.precision`` and the checkpoint writers refuse it,
so that a reduced-precision copy never replaces fp32 weights.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any, cast

import torch
import torch.nn as nn
from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

#: Every precision the package knows, in the order of the option's help.
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16", "int8")
#: The reduced floating-point precisions and their dtypes (also train.amp / test.amp's: haltingvt.engine.amp).
DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}


def supported_precisions(device: str | torch.device) -> tuple[str, ...]:
    """The precisions that run on ``device``: cpu fp32/bf16/int8 (int8: dynamic quantisation has CPU kernels
    only), cuda fp32/fp16 and bf16 where the GPU supports it."""
    kind = torch.device(device).type
    if kind == "cpu":
        return ("fp32", "bf16", "int8")
    if kind == "cuda":
        bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        return ("fp32", "bf16", "fp16") if bf16 else ("fp32", "fp16")
    return ("fp32",)


def check_precision(precision: str, device: str | torch.device) -> str:
    """``precision`` if it runs on ``device``; else ValueError, one line naming what is supported there."""
    supported = supported_precisions(device)
    if precision not in supported:
        known = "" if precision in PRECISIONS else f" (known: {', '.join(PRECISIONS)})"
        raise ValueError(
            f"precision '{precision}' is not supported on {torch.device(device).type}{known}; "
            f"supported there: {', '.join(supported)}"
        )
    return precision


class Float32(nn.Module):
    """Runs ``inner`` in fp32 with autocast off (the heads of a converted model: logits stay fp32)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> Any:
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self.inner(x.float())


@torch.no_grad()
def convert_precision(model: nn.Module, precision: str, device: str | torch.device | None = None) -> nn.Module:
    """Converts a HaltingVT for inference in ``precision`` (in place; also returned). fp32 leaves it unchanged.

    The model should be in eval mode and on its device (int8 runs on the CPU only). Sets ``model.precision``.
    """
    device = device if device is not None else next(model.parameters()).device
    check_precision(precision, device)
    if getattr(model, "precision", "fp32") != "fp32":
        raise ValueError(f"the model is already converted to {model.precision}; convert an fp32 model")
    if precision == "fp32":
        return model
    blocks = cast(nn.Module, model.blocks)
    if precision == "int8":
        with warnings.catch_warnings():
            # torch.ao.quantization's eager API warns that it is deprecated in favour of torchao (module docstring).
            warnings.simplefilter("ignore")
            # int8 weights with one scale per output channel (per-tensor scales changed more top-1 answers). The
            # Glimpser's temporal attention path (temporal_attn, temporal_fc) stays fp32: quantised, it changed
            # the top-1 class of a release-fixture clip and twice as many halting decisions on the demo model.
            spec = {
                name: per_channel_dynamic_qconfig
                for name, module in blocks.named_modules()
                if isinstance(module, nn.Linear) and "temporal" not in name
            }
            with _quantized_engine():
                quantize_dynamic(blocks, spec, dtype=torch.qint8, inplace=True)  # type: ignore[no-untyped-call]
    else:
        for module in blocks.modules():
            if isinstance(module, nn.Linear):
                module.to(DTYPES[precision])
        model.head = Float32(cast(nn.Module, model.head))
    model.precision = precision  # type: ignore[assignment]
    return model


@contextlib.contextmanager
def _quantized_engine() -> Iterator[None]:
    """torch's quantised-kernel backend set to oneDNN (when this torch has it) inside the block, restored after.
    The int8 weights are packed for the backend active at conversion, and the kernels run are those of the backend
    active at run time: oneDNN ran a DeiT-S-sized int8 Linear 2.5-3x faster than the default ``x86`` backend here
    (AVX-512 with AMX), with the same results to the decision (docs/experiments.md, "Reduced precision")."""
    engines = torch.backends.quantized.supported_engines
    previous = torch.backends.quantized.engine
    if "onednn" in engines:
        torch.backends.quantized.engine = "onednn"
    try:
        yield
    finally:
        torch.backends.quantized.engine = previous


def precision_context(precision: str, device: str | torch.device) -> contextlib.AbstractContextManager[Any]:
    """The context a converted model's forward pass runs in: autocast for bf16/fp16, the int8 kernels' backend
    for int8, nothing for fp32."""
    if precision in DTYPES:
        return torch.autocast(device_type=torch.device(device).type, dtype=DTYPES[precision])
    if precision == "int8":
        return _quantized_engine()
    return contextlib.nullcontext()


def model_precision(model: nn.Module) -> str:
    """'fp32' unless :func:`convert_precision` converted the model."""
    return str(getattr(model, "precision", "fp32"))


__all__ = [
    "PRECISIONS",
    "check_precision",
    "convert_precision",
    "model_precision",
    "precision_context",
    "supported_precisions",
]
