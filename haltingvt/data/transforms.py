"""Clip transforms (torchvision transforms v2) and normalisation.

Clips travel as uint8 ``tv_tensors.Video`` of shape (T, C, H, W) through the transforms.
transforms v2 draws the random parameters once per call, so every frame of a clip gets the
same rescale, the same crop and the same RandAugment operations (a static clip stays static).

* train (SPEC section 2): random rescale of the short side to an integer in
  ``train_scale = [lo, hi]`` (both included), random ``crop_size`` crop, RandAugment;
* test: short side to ``test_scale``, centre crop (``num_crops=1``) or three crops along the
  long side (left/centre/right or top/centre/bottom, ``num_crops=3``) of ``crop_size``.

The model takes (3, T, H, W) per clip; :func:`normalize` turns uint8 into the model's float
input ``(x - 127.5) / 127.5`` and is meant to run on the accelerator after the transfer.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as TF

from ..config import ConfigError


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    size = tuple(int(s) for s in size)
    if len(size) != 2:
        raise ConfigError(f"a size must be an int or [height, width], got {list(size)}")
    return size  # type: ignore[return-value]


def frames_to_video(frames: Sequence[np.ndarray]) -> tv_tensors.Video:
    """List of T uint8 (H, W, 3) frames -> ``tv_tensors.Video`` uint8 (T, 3, H, W)."""
    arr = np.stack(frames)  # copies: PIL-backed arrays are read-only
    return tv_tensors.Video(torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2))


def build_train_transform(
    scale: int | Sequence[int] = (256, 320),
    crop_size: int | Sequence[int] = 224,
    randaugment: Mapping | None = None,
) -> v2.Compose:
    """Training transform for a uint8 video (T, C, H, W) -> (T, C, crop_h, crop_w).

    ``scale``: ``[lo, hi]`` short-side range (inclusive) or one int; ``randaugment``:
    keyword arguments of ``torchvision.transforms.v2.RandAugment`` (``num_ops``,
    ``magnitude``, ...) or None/empty to switch it off.
    """
    lo, hi = (scale, scale) if isinstance(scale, int) else (int(scale[0]), int(scale[-1]))
    crop = _pair(crop_size)
    if lo > hi:
        raise ConfigError(f"data.train_scale must be [low, high], got {list(scale)}")
    if lo < min(crop):
        raise ConfigError(f"data.train_scale {scale} is smaller than data.crop_size {crop_size}")
    ops: list = [
        v2.RandomResize(lo, hi + 1, interpolation=InterpolationMode.BILINEAR, antialias=True),
        v2.RandomCrop(crop, pad_if_needed=True),
    ]
    if randaugment:
        try:
            ops.append(v2.RandAugment(**dict(randaugment)))
        except TypeError as err:
            raise ConfigError(f"data.randaugment: {err}") from None
    return v2.Compose(ops)


class ThreeCrop(torch.nn.Module):
    """Three ``size`` crops along the longer side (start, centre, end) -> tuple of 3 videos."""

    def __init__(self, size: int | Sequence[int]) -> None:
        super().__init__()
        self.size = _pair(size)

    def forward(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h, w = video.shape[-2:]
        ch, cw = self.size
        if ch > h or cw > w:
            raise ValueError(f"three-crop {self.size} larger than the resized frame {(h, w)}")
        if w >= h:
            y = (h - ch) // 2
            return tuple(TF.crop(video, y, x, ch, cw) for x in (0, (w - cw) // 2, w - cw))  # type: ignore[return-value]
        x = (w - cw) // 2
        return tuple(TF.crop(video, y, x, ch, cw) for y in (0, (h - ch) // 2, h - ch))  # type: ignore[return-value]


class EvalTransform(torch.nn.Module):
    """Test views of one clip: short side -> ``scale``, then ``num_crops`` (1 or 3) crops.

    uint8 (T, C, H, W) -> uint8 (num_crops, T, C, crop_h, crop_w).
    """

    def __init__(self, scale: int = 256, crop_size: int | Sequence[int] = 224, num_crops: int = 1) -> None:
        super().__init__()
        if num_crops not in (1, 3):
            raise ConfigError(f"data.test_num_crops must be 1 or 3, got {num_crops}")
        self.resize = v2.Resize(int(scale), interpolation=InterpolationMode.BILINEAR, antialias=True)
        self.crop = v2.CenterCrop(_pair(crop_size)) if num_crops == 1 else ThreeCrop(crop_size)
        self.num_crops = num_crops

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        video = self.resize(video)
        views = self.crop(video)
        if self.num_crops == 1:
            views = (views,)
        return torch.stack([v.as_subclass(torch.Tensor) for v in views])


def to_model_layout(video: torch.Tensor) -> torch.Tensor:
    """(..., T, C, H, W) -> (..., C, T, H, W), plain contiguous tensor."""
    return video.as_subclass(torch.Tensor).transpose(-4, -3).contiguous()


def normalize(clips: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 clips (any shape, e.g. (B, 3, T, H, W)) -> ``dtype`` ``(x - 127.5) / 127.5`` in [-1, 1].

    Run it on the device after the uint8 transfer (4x less data to move).
    """
    return (clips.to(dtype) - 127.5) / 127.5
