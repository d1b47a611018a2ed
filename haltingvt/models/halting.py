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
        dev, dt = x.device, x.dtype
        token_counts = x.new_zeros(B, n)
        cls_output = x.new_zeros(B, C)
        exit_layer = torch.full((B,), -1, dtype=torch.long, device=dev)
        layer_scores = x.new_zeros(n)

        # Per-token state in one tensor, so that re-compacting and writing back are one op each. Columns:
        # rho, counter (starts at 1, as the release's counter_token), c, remainder, then the n mask columns.
        RHO, CNT, CUM, REM, MSK = 0, 1, 2, 3, 4
        final = x.new_zeros(B * M, MSK + n)  # row = clip * M + token id
        final[:, CNT] = 1.0
        final[:, REM] = 1.0
        state = final.view(B, M, MSK + n).clone()  # (Bk, L, MSK + n) aligned with the compact tokens

        clips = torch.arange(B, device=dev)  # (Bk,) which clip each row is
        ids = torch.arange(M, device=dev).expand(B, M)  # (Bk, L) token id per position
        valid: torch.Tensor | None = None  # (Bk, L) bool, False = padding; None = no padding
        n_active = x.new_full((B,), float(M))  # (Bk,)

        for j, block in enumerate(blocks):
            Bk, L = x.shape[:2]
            token_counts[clips, j] = n_active
            validf = None if valid is None else valid.to(dt)
            if L == M and valid is None:  # nothing halted yet: plain attention, no ghost
                y = block(x)
            else:
                bias = x.new_zeros(Bk, L + 1)
                if valid is not None:
                    bias[:, :L].masked_fill_(~valid, float("-inf"))
                n_halted = M - n_active
                bias[:, L] = torch.where(n_halted > 0, n_halted.clamp(min=1).log(), float("-inf"))
                y = block(x, ghost_bias=bias)
            h = self.halting_score(y, j, n)
            if validf is not None:
                h_valid = h * validf
                layer_scores[j] = h_valid.sum() / n_active.sum().clamp(min=1)
            else:
                layer_scores[j] = h.sum() / n_active.sum().clamp(min=1)

            c = state[..., CUM] + h
            remainder = state[..., REM]
            reached = (c > 1 - self.eps).to(dt)
            not_reached = (c < 1 - self.eps).to(dt)
            if validf is not None:
                reached = reached * validf
                not_reached = not_reached * validf
            weight = remainder * reached + h * not_reached
            # Only the cls token (id 0, always first while active) feeds the heads.
            is_cls = ids[:, 0] == 0
            if valid is not None:
                is_cls = is_cls & valid[:, 0]
            cls_step = y[:, 0] * (weight[:, 0] * is_cls.to(dt))[:, None]
            if Bk == B:  # no clip has exited: rows are clips 0..B-1 in order
                cls_output += cls_step
            else:
                cls_output.index_add_(0, clips, cls_step)
            # Padding positions hold halted tokens' rows: they add zero and rewrite the same values.
            state[..., RHO] += (validf if validf is not None else 1.0) + remainder * reached
            state[..., CNT] += not_reached
            state[..., MSK + j] = not_reached
            state[..., REM] = remainder - h * not_reached
            state[..., CUM] = c
            flat = (clips[:, None] * M + ids).reshape(-1)
            final.index_copy_(0, flat, state.reshape(Bk * L, -1))
            if j == n - 1:
                break

            still = not_reached > 0
            counts = still.sum(dim=1)
            rows = None
            if early_exit:
                cls_on = still[:, 0] & (ids[:, 0] == 0)
                exit_layer[clips[~cls_on]] = j
                rows = cls_on.nonzero().squeeze(1)
                counts = counts[rows]
            counts_list = counts.tolist()  # the one host sync per layer: the new padded length
            length = max(counts_list, default=0)
            if length == 0:
                break
            # Re-compact: active tokens first, in their current order; pad to the batch maximum.
            order = torch.sort((~still).to(torch.uint8), dim=1, stable=True).indices[:, :length]
            src = torch.arange(Bk, device=dev)[:, None] * L + order
            if rows is not None and len(rows) < Bk:
                src, clips = src[rows], clips[rows]
            src = src.reshape(-1)
            x = y.reshape(Bk * L, C).index_select(0, src).view(-1, length, C)
            state = state.reshape(Bk * L, -1).index_select(0, src).view(-1, length, MSK + n)
            ids = ids.reshape(-1).index_select(0, src).view(-1, length)
            n_active = counts.to(dt)
            if min(counts_list) < length:
                valid = torch.arange(length, device=dev)[None] < counts[:, None]
            else:
                valid = None

        full = final.view(B, M, MSK + n)
        return HaltingResult(
            cls_output=cls_output,
            token_counts=token_counts,
            rho=full[..., RHO].contiguous(),
            counter=full[..., CNT].contiguous(),
            halting_masks=(full[..., MSK:] > 0).permute(0, 2, 1).contiguous(),
            exit_layer=exit_layer,
            layer_scores=layer_scores,
        )


def halting_depth(halting_masks: torch.Tensor) -> torch.Tensor:
    """(B, n, M) bool -> (B, M) long: 1-based halting layer at which each token stopped."""
    return halting_masks.sum(dim=1) + 1


__all__ = ["AdaptiveHalting", "HaltingResult", "halting_depth"]
