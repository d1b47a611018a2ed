"""Position and time embeddings: resizing to another input size or frame count (forward and checkpoint
loading), and the sin-cos embeddings of ``init_scheme: scratch``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed


def resize_pos_embed(pos_embed: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
    """(1, 1 + S, C) -> (1, 1 + gh*gw, C), nearest neighbour on the square patch grid; the cls position is
    kept as it is. timm's resampler with mode 'nearest' gives exactly the release's result."""
    if pos_embed.shape[1] == 1 + grid[0] * grid[1]:
        return pos_embed
    out: torch.Tensor = resample_abs_pos_embed(
        pos_embed, list(grid), num_prefix_tokens=1, interpolation="nearest", antialias=False
    )
    return out


def resize_time_embed(time_embed: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(1, T, C) -> (1, num_frames, C), nearest neighbour (timm has no 1-D resampler)."""
    if time_embed.shape[1] == num_frames:
        return time_embed
    return F.interpolate(time_embed.transpose(1, 2), size=num_frames, mode="nearest").transpose(1, 2)


def sincos_1d(positions: torch.Tensor, dim: int, period: float) -> torch.Tensor:
    """(L,) positions -> (L, dim) sin/cos features; frequencies from 1 down to 1/period radians per step."""
    n = dim // 2
    omega = float(period) ** (-torch.arange(n, dtype=torch.float32) / max(n - 1, 1))
    angles = positions[:, None].float() * omega[None]
    out = torch.cat([angles.sin(), angles.cos()], dim=1)
    return F.pad(out, (0, dim - out.shape[1]))


def sincos_2d(grid: int, dim: int) -> torch.Tensor:
    """(grid*grid, dim) sin-cos embedding of a row-major grid: half the channels for y, half for x."""
    yy, xx = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    half = dim // 2
    period = max(grid, 2)
    return torch.cat([sincos_1d(yy.flatten(), half, period), sincos_1d(xx.flatten(), dim - half, period)], dim=1)
