"""Multiply-accumulate counts ("GFLOPs" as the video-recognition literature reports them = GMACs).

Counts are exact for the layers HaltingVT runs, computed from the token counts rather than by
tracing, so they can be reported per clip for every clip of an evaluation. Convention:

* every matrix product and convolution counts its multiply-accumulates (bias adds, LayerNorm,
  softmax, GELU, the halting score and the final norm are not counted; they are < 0.5 %);
* attention counts both matrix products, Q K^T and A V, over the tokens that take part;
* a halting layer entered by N active tokens costs qkv 3C^2 N + proj C^2 N + MLP 2 C H N
  + attention 2 C N^2 (C = embed_dim, H = MLP hidden size). Compact execution (docs/design.md, section 3)
  additionally projects ONE ghost key/value and lets every query attend to it
  (3 C^2 + 2 C N more per layer, about 0.5 % at N = 50): the ghost is NOT counted, so the numbers
  are those of the halting model itself, independent of how halted tokens are removed;
* a Glimpser layer with S tokens per frame and T frames costs temporal attention
  (qkv, proj and temporal_fc on S*T tokens; attention over T per slot: 2 C S T^2), spatial attention
  per frame on [cls, S tokens] (T frames), the selection score (the cls query against the frame's
  keys, C (S+1) T; only in selecting layers), the fused token (C S T, with ``fuse_token``) and the
  MLP on the tokens the layer outputs;
* heads: C (num_classes + 2) per clip.

The dense model is the same backbone without selection (every keep rate 1) and without halting;
"Glimpser only" keeps the selection but runs every halting layer on all tokens.

Command line: ``haltingvt flops CONFIG [--set k=v ...] [--checkpoint PATH] [--video PATH | --random-input]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, overload

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from .config import resolve_arch
from .models.glimpser import num_kept

__all__ = [
    "LayerFlops",
    "layer_breakdown",
    "clip_gflops",
    "dense_gflops",
    "glimpser_only_gflops",
    "halting_layer_macs",
    "tokens_after_glimpser",
    "dense_tokens",
    "torch_counted_gflops",
]


@dataclass
class LayerFlops:
    """One row of a per-layer count: MACs of one layer for one clip."""

    name: str  # "patch_embed", "blocks.{i}", "head"
    kind: str  # "embed" | "glimpser" | "glimpser+select" | "joint" | "halting" | "head"
    tokens_in: float  # tokens entering the layer, cls included (halting: mean active tokens)
    tokens_out: float  # tokens leaving it (tokens per clip after a Glimpser layer, cls included)
    macs: float

    @property
    def gflops(self) -> float:
        return self.macs / 1e9


@dataclass
class _Dims:
    C: int  # embed_dim
    H: int  # MLP hidden size
    S: int  # patches per frame
    T: int  # token time steps: frames // tubelet
    patch: int
    tubelet: int  # frames per token
    num_classes: int
    keep_rate: list[float]
    fuse_token: bool
    n_halting: int
    halting: bool


def _dims(arch: Any, num_frames: int | None, img_size: int | Sequence[int] | None) -> _Dims:
    full = resolve_arch(arch)
    size = full["img_size"] if img_size is None else img_size
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    p, tube = int(full["patch_size"]), int(full["tubelet_size"])
    return _Dims(
        C=int(full["embed_dim"]),
        H=int(full["embed_dim"] * full["mlp_ratio"]),
        S=(h // p) * (w // p),
        T=int(full["num_frames"] if num_frames is None else num_frames) // tube,
        patch=p,
        tubelet=tube,
        num_classes=int(full["num_classes"]),
        keep_rate=[float(r) for r in full["keep_rate"]],
        fuse_token=bool(full["fuse_token"]),
        n_halting=int(full["depth"] - full["divid_depth"]),
        halting=bool(full["halting"]),
    )


def _glimpser_layer_macs(d: _Dims, s_in: int, s_out: int, select: bool) -> float:
    C, T = d.C, d.T
    patches = s_in * T
    temporal = patches * 3 * C * C + 2 * C * s_in * T * T + patches * C * C + patches * C * C  # qkv, QK/AV, proj, fc
    frame = s_in + 1  # cls copy prepended to every frame
    spatial = T * (frame * 3 * C * C + 2 * C * frame * frame + frame * C * C)
    selection = 0
    if select:
        selection = C * frame * T  # the cls query against the frame's keys, re-done for the scores
        if d.fuse_token:
            selection += C * s_in * T  # score-weighted sum of the frame's tokens
    mlp = (1 + s_out * T) * 2 * C * d.H
    return float(temporal + spatial + selection + mlp)


@overload
def halting_layer_macs(tokens: torch.Tensor, embed_dim: int, mlp_hidden: int) -> torch.Tensor: ...
@overload
def halting_layer_macs(tokens: float, embed_dim: int, mlp_hidden: int) -> float: ...
def halting_layer_macs(tokens: torch.Tensor | float, embed_dim: int, mlp_hidden: int) -> torch.Tensor | float:
    """MACs of one joint layer entered by ``tokens`` tokens (any shape): qkv, proj, MLP, QK^T and AV.
    The compact execution's ghost key/value is not counted (see the module docstring)."""
    C = embed_dim
    return tokens * (4 * C * C + 2 * C * mlp_hidden) + tokens * tokens * (2 * C)


def _fixed_rows(d: _Dims, select: bool) -> tuple[list[LayerFlops], int]:
    """Patch embedding and Glimpser rows; returns them and the tokens per clip after the Glimpser."""
    rows = [
        LayerFlops(
            "patch_embed",
            "embed",
            float(d.S * d.T),
            float(1 + d.S * d.T),
            float(d.S * d.T * 3 * d.tubelet * d.patch * d.patch * d.C),
        )
    ]
    s_in = d.S
    for i, rate in enumerate(d.keep_rate):
        s_out = s_in
        sel = select and rate < 1.0
        if sel:
            s_out = num_kept(rate, s_in) + int(d.fuse_token)
        rows.append(
            LayerFlops(
                f"blocks.{i}",
                "glimpser+select" if sel else "glimpser",
                float(1 + s_in * d.T),
                float(1 + s_out * d.T),
                _glimpser_layer_macs(d, s_in, s_out, sel),
            )
        )
        s_in = s_out
    return rows, 1 + s_in * d.T


def tokens_after_glimpser(arch: Any, num_frames: int | None = None, img_size: int | Sequence[int] | None = None) -> int:
    """M: tokens per clip (cls included) entering the first halting layer."""
    d = _dims(arch, num_frames, img_size)
    return _fixed_rows(d, select=True)[1]


def dense_tokens(arch: Any, num_frames: int | None = None, img_size: int | Sequence[int] | None = None) -> int:
    """Tokens per clip (cls included) in every layer of the dense model: 1 + patches x time steps."""
    d = _dims(arch, num_frames, img_size)
    return _fixed_rows(d, select=False)[1]


def layer_breakdown(
    arch: Any,
    mode: str = "halting",
    token_counts: torch.Tensor | Sequence[float] | None = None,
    num_frames: int | None = None,
    img_size: int | Sequence[int] | None = None,
) -> list[LayerFlops]:
    """Per-layer MACs of one clip.

    arch: architecture dict, full config or config name. mode: ``dense`` (no selection, no halting),
    ``glimpser`` (selection, no halting) or ``halting`` (selection, halting layers entered by
    ``token_counts``: (n,) active tokens per halting layer, e.g. the mean over clips of
    ``out.token_counts``).
    """
    d = _dims(arch, num_frames, img_size)
    if mode not in ("dense", "glimpser", "halting"):
        raise ValueError(f"mode must be 'dense', 'glimpser' or 'halting', got {mode!r}")
    rows, M = _fixed_rows(d, select=mode != "dense")
    if mode == "halting":
        if token_counts is None:
            raise ValueError("mode='halting' needs token_counts (one value per halting layer)")
        counts = torch.as_tensor(token_counts, dtype=torch.float64).flatten().tolist()
        if len(counts) != d.n_halting:
            raise ValueError(
                f"token_counts has {len(counts)} values, the architecture has {d.n_halting} halting layers"
            )
    else:
        counts = [float(M)] * d.n_halting
    first = len(d.keep_rate)
    for j, n in enumerate(counts):
        rows.append(
            LayerFlops(
                f"blocks.{first + j}",
                "halting" if mode == "halting" else "joint",
                n,
                n,
                float(halting_layer_macs(n, d.C, d.H)),
            )
        )
    rows.append(LayerFlops("head", "head", 1.0, 1.0, float(d.C * (d.num_classes + 2))))
    return rows


def clip_gflops(
    arch: Any, token_counts: torch.Tensor, num_frames: int | None = None, img_size: int | Sequence[int] | None = None
) -> torch.Tensor:
    """GMACs per clip for measured halting: token_counts (B, n) active tokens entering each halting
    layer (``out.token_counts``; 0 after an early exit) -> (B,) float64. A 1-D (n,) input is one clip."""
    d = _dims(arch, num_frames, img_size)
    counts = torch.as_tensor(token_counts).detach().to("cpu", torch.float64)
    if counts.dim() == 1:
        counts = counts[None]
    if counts.dim() != 2 or counts.shape[1] != d.n_halting:
        raise ValueError(
            f"token_counts must be (B, {d.n_halting}) (one count per halting layer), got {tuple(counts.shape)}"
        )
    rows, _ = _fixed_rows(d, select=True)
    fixed = sum(r.macs for r in rows) + d.C * (d.num_classes + 2)
    return (fixed + halting_layer_macs(counts, d.C, d.H).sum(dim=1)) / 1e9


def dense_gflops(arch: Any, num_frames: int | None = None, img_size: int | Sequence[int] | None = None) -> float:
    """GMACs of the same backbone without Glimpser selection and without halting."""
    return sum(r.macs for r in layer_breakdown(arch, "dense", None, num_frames, img_size)) / 1e9


def glimpser_only_gflops(
    arch: Any, num_frames: int | None = None, img_size: int | Sequence[int] | None = None
) -> float:
    """GMACs with the Glimpser's selection but no halting (every joint layer on all tokens left)."""
    return sum(r.macs for r in layer_breakdown(arch, "glimpser", None, num_frames, img_size)) / 1e9


# ------------------------------------------------------------------------------------ torch check
def _sdpa_cpu_flop(query_shape, key_shape, value_shape, *args: Any, out_shape=None, **kwargs: Any) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def torch_counted_gflops(model: torch.nn.Module, clips: torch.Tensor, **forward_kwargs: Any) -> float:
    """GMACs of ``model(clips, **forward_kwargs)`` as torch.utils.flop_counter.FlopCounterMode sees
    them (FLOPs / 2), for the whole batch. FlopCounterMode (torch 2.x) has no formula for the CPU
    attention kernel (aten._scaled_dot_product_flash_attention_for_cpu), so one is supplied here;
    without it every attention would count zero on CPU."""
    mapping = {}
    cpu_op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    if cpu_op is not None:
        mapping[cpu_op] = _sdpa_cpu_flop
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter, torch.inference_mode():
        model(clips, **forward_kwargs)
    return counter.get_total_flops() / 2 / 1e9
