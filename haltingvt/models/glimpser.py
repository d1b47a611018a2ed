"""The Glimpser: divided space-time attention layers that keep the top-k tokens of every frame."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from einops import rearrange

from .layers import Attention, Block


def num_kept(keep_rate: float, tokens_per_frame: int) -> int:
    """Tokens a Glimpser layer keeps per frame: k = ceil(keep_rate * tokens per frame); all when keep_rate == 1.
    The one rule, used by the layer and by the FLOP counts."""
    if keep_rate >= 1.0:
        return tokens_per_frame
    return math.ceil(keep_rate * tokens_per_frame)


class GlimpserBlock(Block):
    """TimeSformer divided space-time block with optional per-frame token selection.

    Tokens come as [cls, (s0,t0), (s0,t1), ..., (s1,t0), ...] (spatial-major, time-minor):
    slot s of every frame forms a temporal group.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        keep_rate: float = 1.0,
        fuse_token: bool = False,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__(dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, drop_path=drop_path)
        if not 0.0 < keep_rate <= 1.0:
            raise ValueError(f"keep_rate must be in (0, 1], got {keep_rate}")
        self.keep_rate = keep_rate
        self.fuse_token = fuse_token
        self.temporal_norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.temporal_attn = Attention(dim, num_heads, qkv_bias=qkv_bias)
        self.temporal_fc = nn.Linear(dim, dim)

    def num_kept(self, tokens_per_frame: int) -> int:
        """Tokens this layer keeps per frame (:func:`num_kept`)."""
        return num_kept(self.keep_rate, tokens_per_frame)

    # The Glimpser layer takes the frame count (not a ghost bias) and returns the kept slots too: it is only
    # ever called as a GlimpserBlock (HaltingVT.glimpser_blocks), never through Block's signature.
    def forward(  # type: ignore[override]
        self, x: torch.Tensor, num_frames: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x: (B, 1 + S*T, C) -> (B, 1 + S'*T, C), and the kept slot indices (B*T, S') or None.

        S' = k (+1 with fuse_token) when selecting, otherwise S. Kept indices are ordered by
        descending score; that order is the new slot order.
        """
        B, _, C = x.shape
        T = num_frames
        cls, patches = x[:, :1], x[:, 1:]

        # Temporal attention within each slot's T tokens.
        xt = rearrange(patches, "b (s t) c -> (b s) t c", t=T)
        res_t = self.drop_path(self.temporal_attn(self.temporal_norm1(xt)))
        xt = patches + self.temporal_fc(rearrange(res_t, "(b s) t c -> b (s t) c", b=B))

        # Spatial attention within each frame, with a copy of cls prepended to every frame.
        frames = rearrange(xt, "b (s t) c -> (b t) s c", t=T)
        frame_seq = torch.cat([cls.repeat_interleave(T, dim=0), frames], dim=1)
        res_s, cls_attn = self.attn(self.norm1(frame_seq), return_cls_attn=True)
        res_s = self.drop_path(res_s)
        cls_res = rearrange(res_s[:, :1], "(b t) one c -> b t one c", b=B).mean(dim=1)  # (B, 1, C)
        frames = frames + res_s[:, 1:]  # (B*T, S, C) = xt + spatial residual, per frame

        kept_idx = None
        S = frames.shape[1]
        k = self.num_kept(S)
        if k < S:
            scores, kept_idx = cls_attn.topk(k, dim=1, sorted=True)  # descending score order
            kept = frames.gather(1, kept_idx[..., None].expand(-1, -1, C))
            if self.fuse_token:
                dropped = torch.ones_like(cls_attn, dtype=torch.bool).scatter(1, kept_idx, False)
                # Scores are used as they are (not renormalised over the dropped tokens), as in the release.
                fused = ((cls_attn * dropped)[..., None] * frames).sum(dim=1, keepdim=True)
                kept = torch.cat([kept, fused], dim=1)
            frames = kept
            # QUIRK (release): after a selection the new cls is the averaged spatial cls output alone;
            # the skip connection of cls is dropped in this layer. Kept for checkpoint compatibility.
            cls = cls_res
        else:
            cls = cls + cls_res

        x = torch.cat([cls, rearrange(frames, "(b t) s c -> b (s t) c", b=B)], dim=1)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x, kept_idx
