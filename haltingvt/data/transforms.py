"""Clip transforms (torchvision transforms v2 containers) and normalisation.

Clips travel as uint8 ``tv_tensors.Video`` of shape (T, C, H, W) through the transforms.
Random parameters are drawn once per call (from torch's RNG), so every frame of a clip gets the
same rescale, the same crop and the same RandAugment operations (a static clip stays static).

* train: short side rescaled to an integer drawn from ``train_scale = [lo, hi]`` (both
  included, MMAction2's ``RandomRescale``), random ``crop_size`` crop, RandAugment;
* test: short side to ``test_scale`` (``Resize(scale=(-1, test_scale))``), then a centre crop
  (``num_crops=1``) or three crops along the long side (``num_crops=3``) of ``crop_size``.

The geometry follows ``data.resize`` (docs/pipeline.md):

* ``"mmcv"`` (default; the release's MMAction2 1.0 pipeline, bit for bit on the uint8 clip):
  ``mmcv.imresize`` = OpenCV bilinear without antialiasing, new size ``int(x * short / min(h, w) + 0.5)``
  (``mmcv.rescale_size``), centre crop at ``floor((w - c) / 2)``, random crop offsets from
  ``randint(0, w - c)`` (the last offset is never drawn, as in MMAction2's ``RandomCrop``), three
  crops at ``0, 2 * floor((w - c) / 2), floor((w - c) / 2)`` in that order (left, right, middle);
* ``"torchvision"``: antialiased bilinear resize and torchvision's size/offset rounding (long side
  ``int(x * short / min(h, w))``, centre offsets rounded half to even, random offsets up to
  ``w - c``, three crops start/centre/end). The demo's configs were measured with it.

The model takes (3, T, H, W) per clip; :func:`normalize` turns uint8 into the model's float
input ``(x - 127.5) / 127.5`` and is meant to run on the accelerator after the transfer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast

import cv2
import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from ..config import ConfigError

RESIZE_MODES = ("mmcv", "torchvision")


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    size = tuple(int(s) for s in size)
    if len(size) != 2:
        raise ConfigError(f"a size must be an int or [height, width], got {list(size)}")
    return size


def _check_mode(resize: str) -> None:
    if resize not in RESIZE_MODES:
        raise ConfigError(f"data.resize must be one of {', '.join(RESIZE_MODES)}, got '{resize}'")


def frames_to_video(frames: Sequence[np.ndarray]) -> tv_tensors.Video:
    """List of T uint8 (H, W, 3) frames -> ``tv_tensors.Video`` uint8 (T, 3, H, W)."""
    arr = np.stack(frames)  # copies: PIL-backed arrays are read-only
    return tv_tensors.Video(torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2))


def rescale_size(width: int, height: int, short: int) -> tuple[int, int]:
    """(new_width, new_height) with the short side at ``short``, as ``mmcv.rescale_size(.., (inf, short))``.

    The scale factor is computed first and each side rounded with ``int(x * factor + 0.5)``, in
    that order, so results at exact halves match MMAction2's.
    """
    factor = short / min(width, height)
    return int(width * factor + 0.5), int(height * factor + 0.5)


def imresize(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """One uint8 (H, W, C) frame -> (height, width, C) with OpenCV's bilinear, no antialiasing
    (``mmcv.imresize(frame, (width, height))``, its default cv2 backend)."""
    return cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR)


def resize_short_side(video: torch.Tensor, short: int, resize: str = "mmcv") -> tv_tensors.Video:
    """uint8 (T, C, H, W) -> (T, C, H', W') with min(H', W') = ``short`` (see the module doc for ``resize``)."""
    if resize == "torchvision":
        return tv_tensors.Video(TF.resize(video.as_subclass(torch.Tensor), [short], antialias=True))
    _check_mode(resize)
    h, w = video.shape[-2:]
    new_w, new_h = rescale_size(w, h, short)
    frames = video.as_subclass(torch.Tensor).permute(0, 2, 3, 1).numpy()
    return frames_to_video([imresize(np.ascontiguousarray(f), new_w, new_h) for f in frames])


class ShortSideResize(torch.nn.Module):
    """Short side to ``scale`` (an int) or to an integer drawn from ``[lo, hi]`` (both included) per call."""

    def __init__(self, scale: int | Sequence[int], resize: str = "mmcv") -> None:
        super().__init__()
        _check_mode(resize)
        self.lo, self.hi = (scale, scale) if isinstance(scale, int) else (int(scale[0]), int(scale[-1]))
        self.resize = resize

    def forward(self, video: torch.Tensor) -> tv_tensors.Video:
        short = self.lo if self.lo == self.hi else int(torch.randint(self.lo, self.hi + 1, ()))
        return resize_short_side(video, short, self.resize)


class MMRandomCrop(torch.nn.Module):
    """MMAction2's ``RandomCrop``: offsets drawn from ``[0, side - size)``, so the crop never touches
    the bottom/right edge of a larger frame (a quirk of the release's pipeline, kept on purpose).
    A frame smaller than the crop is zero-padded at the bottom/right first."""

    def __init__(self, size: int | Sequence[int]) -> None:
        super().__init__()
        self.size = _pair(size)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        ch, cw = self.size
        h, w = video.shape[-2:]
        if h < ch or w < cw:
            video = TF.pad(video, [0, 0, max(cw - w, 0), max(ch - h, 0)])
            h, w = video.shape[-2:]
        top = int(torch.randint(h - ch, ())) if h > ch else 0
        left = int(torch.randint(w - cw, ())) if w > cw else 0
        return TF.crop(video, top, left, ch, cw)


def build_train_transform(
    scale: int | Sequence[int] = (256, 320),
    crop_size: int | Sequence[int] = 224,
    randaugment: Mapping | None = None,
    resize: str = "mmcv",
) -> v2.Compose:
    """Training transform for a uint8 video (T, C, H, W) -> (T, C, crop_h, crop_w).

    ``scale``: ``[lo, hi]`` short-side range (inclusive) or one int; ``randaugment``:
    keyword arguments of ``torchvision.transforms.v2.RandAugment`` (``num_ops``,
    ``magnitude``, ...) or None/empty to switch it off; ``resize``: "mmcv" or "torchvision".
    """
    lo, hi = (scale, scale) if isinstance(scale, int) else (int(scale[0]), int(scale[-1]))
    crop = _pair(crop_size)
    _check_mode(resize)
    if lo > hi:
        raise ConfigError(f"data.train_scale must be [low, high], got {list(cast('Sequence[int]', scale))}")
    if lo < min(crop):
        raise ConfigError(f"data.train_scale {scale} is smaller than data.crop_size {crop_size}")
    ops: list = [ShortSideResize((lo, hi), resize)]
    ops.append(MMRandomCrop(crop) if resize == "mmcv" else v2.RandomCrop(crop, pad_if_needed=True))
    if randaugment:
        try:
            ops.append(v2.RandAugment(**dict(randaugment)))
        except TypeError as err:
            raise ConfigError(f"data.randaugment: {err}") from None
    return v2.Compose(ops)


def center_crop(video: torch.Tensor, size: int | Sequence[int], resize: str = "mmcv") -> torch.Tensor:
    """The centre ``size`` crop: offsets floored (MMAction2's ``CenterCrop``) or torchvision's."""
    ch, cw = _pair(size)
    if resize == "torchvision":
        return TF.center_crop(video, [ch, cw])
    h, w = video.shape[-2:]
    if ch > h or cw > w:
        raise ValueError(f"centre crop {(ch, cw)} larger than the resized frame {(h, w)}")
    return TF.crop(video, (h - ch) // 2, (w - cw) // 2, ch, cw)


class ThreeCrop(torch.nn.Module):
    """Three ``size`` crops along the longer side -> tuple of 3 videos, centred across it.

    ``resize="mmcv"``: MMAction2's ``ThreeCrop`` offsets and order: start, ``2 * floor((w - c) / 2)``
    (the end, short of it by one pixel when ``w - c`` is odd), middle. ``"torchvision"``: start,
    middle, end.
    """

    def __init__(self, size: int | Sequence[int], resize: str = "mmcv") -> None:
        super().__init__()
        _check_mode(resize)
        self.size = _pair(size)
        self.resize = resize

    def _offsets(self, length: int, crop: int) -> tuple[int, int, int]:
        step = (length - crop) // 2
        return (0, 2 * step, step) if self.resize == "mmcv" else (0, step, length - crop)

    def forward(self, video: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h, w = video.shape[-2:]
        ch, cw = self.size
        if ch > h or cw > w:
            raise ValueError(f"three-crop {self.size} larger than the resized frame {(h, w)}")
        if w >= h:
            y = (h - ch) // 2
            return tuple(TF.crop(video, y, x, ch, cw) for x in self._offsets(w, cw))
        x = (w - cw) // 2
        return tuple(TF.crop(video, y, x, ch, cw) for y in self._offsets(h, ch))


class EvalTransform(torch.nn.Module):
    """Test views of one clip: short side -> ``scale``, then ``num_crops`` (1 or 3) crops.

    uint8 (T, C, H, W) -> uint8 (num_crops, T, C, crop_h, crop_w).
    """

    def __init__(
        self, scale: int = 256, crop_size: int | Sequence[int] = 224, num_crops: int = 1, resize: str = "mmcv"
    ) -> None:
        super().__init__()
        if num_crops not in (1, 3):
            raise ConfigError(f"data.test_num_crops must be 1 or 3, got {num_crops}")
        self.resize = ShortSideResize(int(scale), resize)
        self.crop_size = _pair(crop_size)
        self.three_crop = ThreeCrop(crop_size, resize) if num_crops == 3 else None
        self.num_crops = num_crops

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        video = self.resize(video)
        if self.three_crop is None:
            views = (center_crop(video, self.crop_size, self.resize.resize),)
        else:
            views = self.three_crop(video)
        return torch.stack([v.as_subclass(torch.Tensor) for v in views])


def to_model_layout(video: torch.Tensor) -> torch.Tensor:
    """(..., T, C, H, W) -> (..., C, T, H, W), plain contiguous tensor."""
    return video.as_subclass(torch.Tensor).transpose(-4, -3).contiguous()


def normalize(clips: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 clips (any shape, e.g. (B, 3, T, H, W)) -> ``dtype`` ``(x - 127.5) / 127.5`` in [-1, 1].

    Run it on the device after the uint8 transfer (4x less data to move).
    """
    return (clips.to(dtype) - 127.5) / 127.5
