"""Frame sampling: which frames of a video make a clip (MMAction2 ``SampleFrames`` semantics).

A clip is ``clip_len`` frames ``frame_interval`` apart, so it spans
``clip_len * frame_interval`` frames. ``num_clips`` clips are spread over the video:

* training: the video is cut into ``num_clips`` equal segments and each clip starts at a
  random offset inside its segment (uniformly random start when the video is only a bit
  longer than a clip);
* test: the same segments, each clip starts in the middle of its segment (deterministic).

A video shorter than the clip span starts its clip(s) at frame 0 and the indices past
the end are handled by ``short_video``:

* ``"loop"`` (default, MMAction2's ``out_of_bound_opt='loop'``): index ``i`` -> ``i % num_frames``;
* ``"clamp"`` (MMAction2's ``'repeat_last'``): index ``i`` -> ``min(i, num_frames - 1)``.
"""
from __future__ import annotations

import torch

SHORT_VIDEO_MODES = ("loop", "clamp")


def clip_offsets(
    num_frames: int,
    clip_len: int,
    frame_interval: int,
    num_clips: int,
    *,
    train: bool,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Start frame of each clip -> long tensor (num_clips,). Random only when ``train``."""
    if num_frames <= 0:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    span = clip_len * frame_interval
    if not train:
        avg = (num_frames - span + 1) / num_clips
        if num_frames > span - 1:
            return (torch.arange(num_clips, dtype=torch.float64) * avg + avg / 2.0).long()
        return torch.zeros(num_clips, dtype=torch.long)
    avg_int = (num_frames - span + 1) // num_clips
    if avg_int > 0:
        base = torch.arange(num_clips) * avg_int
        return base + torch.randint(avg_int, (num_clips,), generator=generator)
    if num_frames > max(num_clips, span):
        return torch.randint(num_frames - span + 1, (num_clips,), generator=generator).sort().values
    if avg_int == 0:
        ratio = (num_frames - span + 1) / num_clips
        return torch.round(torch.arange(num_clips, dtype=torch.float64) * ratio).long()
    return torch.zeros(num_clips, dtype=torch.long)


def wrap_indices(indices: torch.Tensor, num_frames: int, short_video: str = "loop") -> torch.Tensor:
    """Map indices past the end of a ``num_frames`` video into range (``loop`` or ``clamp``)."""
    if short_video == "loop":
        return indices % num_frames
    if short_video == "clamp":
        return indices.clamp(max=num_frames - 1)
    raise ValueError(f"short_video must be one of {SHORT_VIDEO_MODES}, got '{short_video}'")


def sample_frame_indices(
    num_frames: int,
    clip_len: int,
    frame_interval: int,
    num_clips: int = 1,
    *,
    train: bool,
    short_video: str = "loop",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """0-based frame indices of ``num_clips`` clips -> long tensor (num_clips, clip_len).

    Training draws from ``generator`` (default: torch's global RNG, which DataLoader seeds
    per worker); test sampling is deterministic.
    """
    if clip_len < 1 or frame_interval < 1 or num_clips < 1:
        raise ValueError(
            f"clip_len, frame_interval and num_clips must be >= 1, got {clip_len}, {frame_interval}, {num_clips}"
        )
    starts = clip_offsets(num_frames, clip_len, frame_interval, num_clips, train=train, generator=generator)
    indices = starts[:, None] + torch.arange(clip_len)[None, :] * frame_interval
    return wrap_indices(indices, num_frames, short_video)
