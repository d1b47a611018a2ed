"""Adaptive token halting over the joint space-time layers (A-ViT style, as the release computes it).

Two executions give the same results (docs/design.md, section 3):

* ``masked`` (the release): every layer runs on all M tokens; halted tokens are multiplied by zero
  but still take part in attention as identical "ghost" keys/values.
* ``compact``: every layer runs on the active tokens only, plus ONE ghost key/value whose attention
  logit carries log(number of halted tokens). Per-token state lives in compact tensors aligned with
  the active tokens; only the cls output accumulator is kept, since only cls reaches the heads.
  It trains too: under autograd it gives the masked loss and gradients (halted tokens get none in
  masked execution either), saves only the compact activations, and syncs with the host once per
  layer (to size the re-compacted batch).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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
        exit_layer = torch.full((B,), -1, dtype=torch.long, device=dev)
        # Under autograd every block must take part in the graph even after all tokens halted: masked execution
        # gives those blocks' parameters zero gradients (not None), which Adam's moments, weight decay and DDP's
        # reducer see. Such blocks then run on zero tokens (no cost beyond the launches).
        keep_graph = torch.is_grad_enabled() and any(p.requires_grad for block in blocks for p in block.parameters())

        # Autograd-free per-token state, in one tensor so that re-compacting and writing back are one op each:
        # c (cumulative score; only compared, so no gradient flows through it in masked execution either),
        # layers entered, counter (starts at 1, as the release's counter_token), then the n mask columns.
        CUM, ENT, CNT, MSK = 0, 1, 2, 3
        with torch.no_grad():
            final = x.new_zeros(B * M, MSK + n)  # row = clip * M + token id
            final[:, CNT] = 1.0
            state = final.view(B, M, MSK + n).clone()  # (Bk, L, MSK + n) aligned with the compact tokens
        # The differentiable state: the remainder R (Bk, L), and the cls accumulator and R-at-halting part of rho.
        remainder = x.new_ones(B, M)
        cls_output = x.new_zeros(B, C)
        rho_halt = x.new_zeros(B * M)
        layer_scores: list[torch.Tensor] = []

        clips = torch.arange(B, device=dev)  # (Bk,) which clip each row is
        ids = torch.arange(M, device=dev).expand(B, M)  # (Bk, L) token id per position
        valid: torch.Tensor | None = None  # (Bk, L) bool, False = padding; None = no padding
        n_active = x.new_full((B,), float(M))  # (Bk,)

        for j, block in enumerate(blocks):
            Bk, L = x.shape[:2]
            token_counts[clips, j] = n_active
            if L == M and valid is None:  # nothing halted yet: plain attention, no ghost
                y = block(x)
            else:
                y = block(x, ghost_bias=_ghost_bias(valid, M - n_active, L))
            h = self.halting_score(y, j, n)
            validf = None if valid is None else valid.to(dt)
            h_active = h if validf is None else h * validf
            layer_scores.append(h_active.sum() / n_active.sum().clamp(min=1))

            with torch.no_grad():
                c = state[..., CUM] + h
                reached = (c > 1 - self.eps).to(dt)
                not_reached = (c < 1 - self.eps).to(dt)
                if validf is not None:  # padding positions hold halted tokens' rows: they must change nothing
                    reached = reached * validf
                    not_reached = not_reached * validf
                state[..., CUM] = c
                state[..., ENT] += 1.0 if validf is None else validf
                state[..., CNT] += not_reached
                state[..., MSK + j] = not_reached
                flat = (clips[:, None] * M + ids).reshape(-1)
                final.index_copy_(0, flat, state.reshape(Bk * L, -1))
            at_halt = remainder * reached  # R of the tokens halting here: the release's output weight and rho term
            weight = at_halt + h * not_reached
            rho_halt = rho_halt.index_add(0, flat, at_halt.reshape(-1))
            # Only the cls token (id 0, always first while active) feeds the heads.
            is_cls = (ids[:, 0] == 0) if valid is None else (ids[:, 0] == 0) & valid[:, 0]
            cls_step = y[:, 0] * (weight[:, 0] * is_cls.to(dt))[:, None]
            cls_output = _accumulate(cls_output, cls_step, clips)
            remainder = remainder - h * not_reached
            if j == n - 1:
                break

            still = not_reached > 0
            counts = still.sum(dim=1)
            if early_exit:
                cls_on = still[:, 0] & (ids[:, 0] == 0)
                exit_layer[clips] = torch.where(cls_on, exit_layer[clips], j)
                counts = torch.where(cls_on, counts, -1)  # -1: the clip stops here
            counts_list = counts.tolist()  # the one host sync per layer: the new padded length and clips kept
            length = max(counts_list, default=0)
            if length <= 0:
                if keep_graph:  # the later blocks see only the M ghosts; they add exactly zero to cls
                    empty = y[:, :0].detach()
                    bias = _ghost_bias(None, x.new_full((Bk,), float(M)), 0)
                    for block_k in blocks[j + 1 :]:
                        cls_output = _accumulate(cls_output, block_k(empty, ghost_bias=bias).sum(dim=1), clips)
                break
            # Re-compact: active tokens first, in their current order; pad to the batch maximum.
            order = torch.sort((~still).to(torch.uint8), dim=1, stable=True).indices[:, :length]
            src = torch.arange(Bk, device=dev)[:, None] * L + order
            if early_exit and min(counts_list) < 0:
                rows = torch.tensor([i for i, k in enumerate(counts_list) if k >= 0], device=dev)
                src, clips, counts = src[rows], clips[rows], counts[rows]
                counts_list = [k for k in counts_list if k >= 0]
            src = src.reshape(-1)
            x = y.reshape(Bk * L, C).index_select(0, src).view(-1, length, C)
            remainder = remainder.reshape(-1).index_select(0, src).view(-1, length)
            state = state.reshape(Bk * L, -1).index_select(0, src).view(-1, length, MSK + n)
            ids = ids.reshape(-1).index_select(0, src).view(-1, length)
            n_active = counts.to(dt)
            valid = torch.arange(length, device=dev)[None] < counts[:, None] if min(counts_list) < length else None

        full = final.view(B, M, MSK + n)
        return HaltingResult(
            cls_output=cls_output,
            token_counts=token_counts,
            # Exactly the masked sum: (layers entered) + R at halting, the integer part being exact.
            rho=full[..., ENT] + rho_halt.view(B, M),
            counter=full[..., CNT].contiguous(),
            halting_masks=(full[..., MSK:] > 0).permute(0, 2, 1).contiguous(),
            exit_layer=exit_layer,
            layer_scores=torch.stack(layer_scores + [x.new_zeros(())] * (n - len(layer_scores))),
        )


def _ghost_bias(valid: torch.Tensor | None, n_halted: torch.Tensor, length: int) -> torch.Tensor:
    """Additive attention bias (Bk, L + 1) for compact execution (docs/design.md, section 3): 0 for active tokens,
    -inf for padding (valid False), and log(number of halted tokens) for the one ghost key (-inf when none halted).
    valid: (Bk, L) bool or None (no padding); n_halted: (Bk,) float."""
    bias = n_halted.new_zeros(n_halted.shape[0], length + 1)
    if valid is not None:
        bias[:, :length].masked_fill_(~valid, float("-inf"))
    bias[:, length] = torch.where(n_halted > 0, n_halted.clamp(min=1).log(), float("-inf"))
    return bias


def _accumulate(total: torch.Tensor, step: torch.Tensor, clips: torch.Tensor) -> torch.Tensor:
    """total (B, C) + step (Bk, C) added at rows ``clips``; out of place, so autograd saves nothing for it."""
    if step.shape[0] == total.shape[0]:  # no clip has exited: rows are clips 0..B-1 in order
        return total + step
    return total.index_add(0, clips, step)


def halting_depth(halting_masks: torch.Tensor) -> torch.Tensor:
    """(B, n, M) bool -> (B, M) long: 1-based halting layer at which each token stopped."""
    return halting_masks.sum(dim=1) + 1


__all__ = ["AdaptiveHalting", "HaltingResult", "halting_depth"]
