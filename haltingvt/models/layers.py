"""ViT building blocks: multi-head attention (on scaled_dot_product_attention) and a pre-norm block."""

from __future__ import annotations

from typing import cast

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import DropPath, Mlp


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (timm/DeiT parameter names)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        num_queries: int | None = None,
        return_cls_attn: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """x: (B, N, C) -> (B, Nq, C).

        attn_mask: additive float mask broadcastable to (B, heads, Nq, N).
        num_queries: only the first Nq tokens are queries (the rest are keys/values only).
        return_cls_attn: also return (B, N-1): softmax attention of query 0 (cls) to tokens 1..N-1,
        averaged over heads (the Glimpser's token score).
        """
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, N, head_dim)
        if num_queries is not None:
            q = q[:, :, :num_queries]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        out = cast(torch.Tensor, self.proj(out.transpose(1, 2).reshape(B, q.shape[2], C)))
        if not return_cls_attn:
            return out
        cls_attn = ((q[:, :, :1] * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)  # (B, heads, 1, N)
        return out, cls_attn[:, :, 0, 1:].mean(dim=1)


class Block(nn.Module):
    """Pre-norm transformer block: x + Attn(LN(x)), then x + MLP(LN(x)). LayerNorm eps 1e-6."""

    def __init__(
        self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True, drop_path: float = 0.0
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=nn.GELU)

    def forward(self, x: torch.Tensor, ghost_bias: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, L, C) -> (B, L, C).

        ghost_bias (B, L + 1): compact execution (docs/design.md, section 3). An extra key/value is appended:
        the normalised zero vector, i.e. norm1's bias, which is exactly what every halted (zeroed)
        token presents to attention. The bias row is additive on the attention logits: log(number of
        halted tokens) for that ghost, -inf for padding and 0 for real tokens.
        """
        h = self.norm1(x)
        if ghost_bias is None:
            x = x + self.drop_path(self.attn(h))
        else:
            B, L, C = h.shape
            ghost = self.norm1.bias.expand(B, 1, C) if self.norm1.bias is not None else h.new_zeros(B, 1, C)
            h = torch.cat([h, ghost.to(h.dtype)], dim=1)
            x = x + self.drop_path(self.attn(h, attn_mask=ghost_bias[:, None, None, :].to(h.dtype), num_queries=L))
        out: torch.Tensor = x + self.drop_path(self.mlp(self.norm2(x)))
        return out
