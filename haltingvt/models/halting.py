"""Adaptive token halting over the joint space-time layers (A-ViT style, as the release computes it).

Two executions give the same results (SPEC section 3):

* ``masked`` (the release): every layer runs on all M tokens; halted tokens are multiplied by zero
  but still take part in attention as identical "ghost" keys/values.
* ``compact``: every layer runs on the active tokens only, plus ONE ghost key/value whose attention
  logit carries log(number of halted tokens). Per-token state lives in compact tensors aligned with
  the active tokens; only the cls output accumulator is kept, since only cls reaches the heads.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn


@dataclass
class HaltingResult:
    """What the halting layers produce for a batch of B clips with M tokens and n halting layers."""

    cls_output: torch.Tensor  # (B, C) halting-weighted sum of the cls token's layer outputs
    token_counts: torch.Tensor  # (B, n) active tokens entering each layer
    rho: torch.Tensor  # (B, M) ponder cost per token
    counter: torch.Tensor  # (B, M) 1 + layers after which the token was still active (release's counter_token)
    halting_masks: torch.Tensor  # (B, n, M) bool: token still active after layer j
    exit_layer: torch.Tensor  # (B,) long: layer after which cls halted; -1 if computed to the end
    layer_scores: torch.Tensor  # (n,) mean halting score of the active tokens per layer (A-ViT prior)


class AdaptiveHalting:
    """Runs a list of blocks (owned by the model) with adaptive token halting.

    The halting score of a token is sigmoid(halt_scale * y[..., 0] - halt_center), read from channel 0
    of the block output y; at the last layer every token halts (h = 1).
    """

    def __init__(self, halt_scale: float, halt_center: float, eps: float) -> None:
        self.halt_scale = halt_scale
        self.halt_center = halt_center
        self.eps = eps

    def halting_score(self, y: torch.Tensor, layer: int, num_layers: int) -> torch.Tensor:
        """y: (B, L, C) -> (B, L) halting probability of each token after this layer."""
        if layer == num_layers - 1:
            return torch.ones_like(y[..., 0])
        return torch.sigmoid(self.halt_scale * y[..., 0] - self.halt_center)

    def __call__(
        self, blocks: Sequence[nn.Module], x: torch.Tensor, execution: str = "masked", early_exit: bool = False
    ) -> HaltingResult:
        """x: (B, M, C) tokens after the Glimpser (cls first)."""
        if execution == "masked":
            if early_exit:
                raise ValueError("early_exit needs execution='compact'")
            return self._masked(blocks, x)
        if execution == "compact":
            return self._compact(blocks, x, early_exit)
        raise ValueError(f"execution must be 'masked' or 'compact', got {execution!r}")

    def _masked(self, blocks: Sequence[nn.Module], x: torch.Tensor) -> HaltingResult:
        B, M, C = x.shape
        n = len(blocks)
        c = x.new_zeros(B, M)
        remainder = x.new_ones(B, M)
        rho = x.new_zeros(B, M)
        counter = x.new_ones(B, M)  # starts at 1, as the release's counter_token
        active = x.new_ones(B, M)
        output = x.new_zeros(B, M, C)
        counts, masks, layer_scores = [], [], []
        for j, block in enumerate(blocks):
            counts.append(active.sum(dim=1))
            # QUIRK (release): halted tokens are zeroed, not removed; they still attend and are attended.
            y = block(x * active[..., None])
            h = self.halting_score(y, j, n)
            layer_scores.append((h * active).sum() / active.sum().clamp(min=1))
            x = y
            y = y * active[..., None]
            c = c + h
            rho = rho + active
            reached = (c > 1 - self.eps).float() * active
            not_reached = (c < 1 - self.eps).float()
            output = output + y * (remainder * reached + h * not_reached)[..., None]
            rho = rho + remainder * reached
            remainder = remainder - h * not_reached
            counter = counter + not_reached
            active = not_reached
            masks.append(active.bool())
        return HaltingResult(
            cls_output=output[:, 0],
            token_counts=torch.stack(counts, dim=1),
            rho=rho,
            counter=counter,
            halting_masks=torch.stack(masks, dim=1),
            exit_layer=torch.full((B,), -1, dtype=torch.long, device=x.device),
            layer_scores=torch.stack(layer_scores),
        )

    def _compact(self, blocks: Sequence[nn.Module], x: torch.Tensor, early_exit: bool) -> HaltingResult:
        B, M, C = x.shape
        n = len(blocks)
        dev = x.device
        token_counts = x.new_zeros(B, n)
        rho = x.new_zeros(B, M)
        counter = x.new_ones(B, M)  # starts at 1, as the release's counter_token
        masks = torch.zeros(B, n, M, dtype=torch.bool, device=dev)
        cls_output = x.new_zeros(B, C)
        exit_layer = torch.full((B,), -1, dtype=torch.long, device=dev)

        # Compact state, aligned with the active tokens of the clips still computed (Bk of them).
        clips = torch.arange(B, device=dev)  # (Bk,) which clip each row is
        ids = torch.arange(M, device=dev).expand(B, M).contiguous()  # (Bk, L) token id per position
        valid = torch.ones(B, M, dtype=torch.bool, device=dev)  # (Bk, L) False = padding
        c = x.new_zeros(B, M)
        remainder = x.new_ones(B, M)
        layer_scores = x.new_zeros(n)

        for j, block in enumerate(blocks):
            if clips.numel() == 0 or x.shape[1] == 0:
                break
            n_active = valid.sum(dim=1)
            token_counts[clips, j] = n_active.to(x.dtype)
            n_halted = (M - n_active).to(x.dtype)
            bias = x.new_zeros(x.shape[0], x.shape[1] + 1)
            bias[:, :-1].masked_fill_(~valid, float("-inf"))
            bias[:, -1] = torch.where(n_halted > 0, n_halted.clamp(min=1).log(), float("-inf"))
            y = block(x, ghost_bias=bias)
            h = self.halting_score(y, j, n)
            validf = valid.to(x.dtype)
            layer_scores[j] = (h * validf).sum() / validf.sum().clamp(min=1)
            c = c + h
            reached = (c > 1 - self.eps).to(x.dtype) * validf
            not_reached = (c < 1 - self.eps).to(x.dtype) * validf
            weight = remainder * reached + h * not_reached
            # Only the cls token (id 0, always first while active) feeds the heads.
            is_cls = ((ids[:, 0] == 0) & valid[:, 0]).to(x.dtype)
            cls_output[clips] += y[:, 0] * (weight[:, 0] * is_cls)[:, None]
            # Padding positions point at some token id but add zero.
            rho[clips] = rho[clips].scatter_add(1, ids, validf + remainder * reached)
            counter[clips] = counter[clips].scatter_add(1, ids, not_reached)
            still = not_reached.bool()
            masks[clips, j] = torch.zeros(len(clips), M, device=dev).scatter_add(1, ids, not_reached) > 0
            remainder = remainder - h * not_reached

            keep_clip = torch.ones_like(clips, dtype=torch.bool)
            if early_exit and j < n - 1:
                cls_halted = ~(still[:, 0] & (ids[:, 0] == 0))
                exit_layer[clips[cls_halted]] = j
                keep_clip = ~cls_halted
            # Re-compact: active tokens first, in their current order; pad to the batch maximum.
            length = int(still[keep_clip].sum(dim=1).max()) if keep_clip.any() else 0
            order = torch.sort((~still).to(torch.uint8), dim=1, stable=True).indices[keep_clip, :length]
            clips = clips[keep_clip]
            x = y[keep_clip].gather(1, order[..., None].expand(-1, -1, C))
            ids = ids[keep_clip].gather(1, order)
            valid = still[keep_clip].gather(1, order)
            c = c[keep_clip].gather(1, order)
            remainder = remainder[keep_clip].gather(1, order)

        return HaltingResult(cls_output, token_counts, rho, counter, masks, exit_layer, layer_scores)


def halting_depth(halting_masks: torch.Tensor) -> torch.Tensor:
    """(B, n, M) bool -> (B, M) long: 1-based halting layer at which each token stopped."""
    return halting_masks.sum(dim=1) + 1


__all__ = ["AdaptiveHalting", "HaltingResult", "halting_depth"]
