"""Reduced-precision inference: bf16 / fp16 matrix products and int8 dynamic quantisation (docs/guide.md,
"Precision").

What runs in reduced precision is the transformer blocks' matrix products (the Linear layers and attention), where
nearly all of the FLOPs are. The residual stream, LayerNorms, the heads (logits) and the halting arithmetic stay
fp32:

* ``bf16`` / ``fp16``: the blocks' Linear weights are stored in that dtype and the forward pass runs under
  ``torch.autocast``; a Linear's output is low precision, but the residual sums promote back to fp32.
* ``int8``: bf16 as above (fp32 on a CPU without native bf16: :func:`int8_companion_dtype`), except that the
  Linear layers of the halting (joint) blocks become :class:`Int8Linear`:
  int8 weights with one scale per output channel, the input quantised to uint8 at every call (one scale and zero
  point per call: dynamic quantisation), multiplied by oneDNN's int8 kernels (AMX / VNNI where the CPU has them)
  with the bias, fc1's GELU and the output dtype fused into the product. The Glimpser's blocks stay bf16: on all
  1 + S*T tokens, quantising the inputs cost more than int8 saved over bf16 (4-12% slower in all with them in
  int8, docs/benchmarks.md), and its patch selection is a top-k over scores that nearly tie, which int8 moved
  more than bf16 (docs/experiments.md, "Reduced precision").
  Not torch.ao's ``quantize_dynamic``: its Linear dequantises to fp32 and leaves attention fp32 (2.8-3.3x over the
  masked fp32 model, against 3.4-4.2x for this; docs/benchmarks.md), and its eager API is deprecated. Not
  torchao's int8: fast only under ``torch.compile``, which does not suit compact execution (the number of active
  tokens changes at every layer and batch); run eagerly it was slower still.
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
from collections.abc import Sequence
from typing import Any, cast

import torch
import torch.nn as nn

from .layers import Block

#: Every precision the package knows, in the order of the option's help.
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16", "int8")
#: The reduced floating-point precisions and their dtypes (also train.amp / test.amp's: haltingvt.engine.amp).
DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}


def int8_available() -> bool:
    """Whether this torch has oneDNN's int8 matrix product (x86-64 and most aarch64 builds)."""
    built = torch.backends.mkldnn.is_available()  # type: ignore[no-untyped-call]
    return bool(built) and hasattr(torch.ops.onednn, "qlinear_pointwise")


def supported_precisions(device: str | torch.device) -> tuple[str, ...]:
    """The precisions that run on ``device``: cpu fp32/bf16 and int8 where oneDNN is built in, cuda fp32/fp16
    and bf16 where the GPU supports it."""
    kind = torch.device(device).type
    if kind == "cpu":
        return ("fp32", "bf16", "int8") if int8_available() else ("fp32", "bf16")
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


def quantize_input(x: torch.Tensor) -> tuple[torch.Tensor, float, int]:
    """(M, K) float -> (uint8 (M, K), scale, zero point): x ~ scale * (q - zero point), one scale for the whole
    tensor, its range stretched to include 0 (so that zeros, e.g. padding, stay exact)."""
    x = x.float()
    quantize = getattr(torch, "quantize_per_tensor_dynamic", None)
    if quantize is not None:
        # One fused pass for the range and one for the rounding (about 30% faster than the tensor arithmetic
        # below); it makes a quantised tensor, an API torch has deprecated, so the fallback keeps working after.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            q = quantize(x, torch.quint8, False)
        return q.int_repr(), float(q.q_scale()), int(q.q_zero_point())
    return _quantize_input_reference(x)


def _quantize_input_reference(x: torch.Tensor) -> tuple[torch.Tensor, float, int]:
    """quantize_input by tensor arithmetic (the same scale and zero point as torch's affine quantisation)."""
    low, high = (float(v) for v in torch.aminmax(x))
    low, high = min(low, 0.0), max(high, 0.0)
    scale = (high - low) / 255 if high > low else 1.0
    zero_point = int(min(max(round(-low / scale), 0), 255))
    q = torch.mul(x, 1.0 / scale).round_().add_(zero_point).clamp_(0, 255).to(torch.uint8)
    return q, scale, zero_point


class Int8Linear(nn.Module):
    """A Linear in int8 for inference: weights int8 with one scale per output channel, the input quantised to
    uint8 at every call (:func:`quantize_input`), the product accumulated in int32 by oneDNN and rescaled with the
    bias added, an optional exact GELU applied and the result written in ``out_dtype``, all in one kernel.

    x: (..., in_features) any float dtype -> (..., out_features) ``out_dtype``. Holds no parameters, only buffers
    (int8 weights, their scales, the fp32 bias); a converted model is refused by the checkpoint writers.
    """

    def __init__(self, linear: nn.Linear, activation: str | None = None, out_dtype: torch.dtype = torch.float32):
        super().__init__()
        if activation not in (None, "gelu"):
            raise ValueError(f"activation must be None or 'gelu', got {activation!r}")
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.activation, self.out_dtype = activation, out_dtype
        self.register_buffer("weight_int8", torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8))
        self.register_buffer("weight_scale", scale)
        self.register_buffer("weight_zero_point", torch.zeros_like(scale, dtype=torch.long))
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().float().clone())
        self._packed: torch.Tensor | None = None

    def packed(self) -> torch.Tensor:
        """The int8 weights in oneDNN's layout (an opaque tensor: made on first use, never copied or pickled)."""
        if self._packed is None:
            self._packed = torch.ops.onednn.qlinear_prepack(self.weight_int8, None)
        return self._packed

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "_packed": None}  # type: ignore[no-untyped-call]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        x = x.reshape(-1, self.in_features)
        if x.shape[0] == 0:
            return x.new_zeros(*lead, self.out_features, dtype=self.out_dtype)
        q, scale, zero_point = quantize_input(x)
        out = torch.ops.onednn.qlinear_pointwise(
            q, scale, zero_point, self.packed(), self.weight_scale, self.weight_zero_point, self.bias,
            1.0, 0, self.out_dtype,  # output scale 1, zero point 0: a float output, not requantised
            self.activation or "none", [], "none" if self.activation else "",  # "none": erf GELU, not tanh
        )  # fmt: skip
        return cast(torch.Tensor, out).reshape(*lead, self.out_features)

    def extra_repr(self) -> str:
        act = f", activation={self.activation}" if self.activation else ""
        return f"in_features={self.in_features}, out_features={self.out_features}{act}, out_dtype={self.out_dtype}"


def block_to_int8(block: Block, attention_dtype: torch.dtype = torch.bfloat16) -> None:
    """A joint block's Linear layers to :class:`Int8Linear` (in place). qkv writes ``attention_dtype`` (what
    attention reads under autocast, or fp32 without it); proj, fc1 and fc2 write fp32, which the residual sum and
    fc2's quantisation read without a cast. fc1 takes the MLP's GELU into its kernel when the MLP is
    fc1 -> GELU (exact) -> fc2."""
    attn, mlp = block.attn, block.mlp
    act = getattr(mlp, "act", None)
    fuse = (
        isinstance(act, nn.GELU)
        and act.approximate == "none"
        and isinstance(getattr(mlp, "norm", nn.Identity()), nn.Identity)
    )
    for parent, name, activation, out_dtype in (
        (attn, "qkv", None, attention_dtype),
        (attn, "proj", None, torch.float32),
        (mlp, "fc1", "gelu" if fuse else None, torch.float32),
        (mlp, "fc2", None, torch.float32),
    ):
        setattr(parent, name, Int8Linear(getattr(parent, name), activation, out_dtype))
    if fuse:
        mlp.act = nn.Identity()


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
    blocks = cast(Sequence[nn.Module], model.blocks)
    dtype = int8_companion_dtype() if precision == "int8" else DTYPES[precision]
    if precision == "int8":
        for block in blocks[cast(int, model.divid_depth) :]:
            block_to_int8(cast(Block, block), dtype)
    for block in blocks:
        for module in block.modules():
            if isinstance(module, nn.Linear):
                module.to(dtype)
    if dtype != torch.float32:
        model.head = Float32(cast(nn.Module, model.head))
    model.precision = precision  # type: ignore[assignment]
    return model


def int8_companion_dtype() -> torch.dtype:
    """What int8 runs the rest of the model in (the Glimpser, attention): bf16 where the CPU multiplies bf16
    natively (AVX-512 BF16 or AMX), else fp32. Without those instructions bf16 is emulated and can be slower than
    fp32 (PyTorch's autocast documentation, "CPU Op-Specific Behavior"). With fp32 the Glimpser gives exactly fp32's
    answers (docs/experiments.md, "Reduced precision")."""
    native = (
        getattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)()
        or getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)()
    )
    return torch.bfloat16 if native else torch.float32


def precision_context(precision: str, device: str | torch.device) -> contextlib.AbstractContextManager[Any]:
    """The context a converted model's forward pass runs in: autocast for bf16/fp16, and for int8 where its
    companion dtype is bf16 (:func:`int8_companion_dtype`); nothing for fp32."""
    dtype = int8_companion_dtype() if precision == "int8" else DTYPES.get(precision, torch.float32)
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def model_precision(model: nn.Module) -> str:
    """'fp32' unless :func:`convert_precision` converted the model."""
    return str(getattr(model, "precision", "fp32"))


__all__ = [
    "PRECISIONS",
    "Int8Linear",
    "check_precision",
    "convert_precision",
    "int8_available",
    "int8_companion_dtype",
    "model_precision",
    "precision_context",
    "supported_precisions",
]
