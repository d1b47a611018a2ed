"""Frame sampling: which frames of a video make a clip (MMAction2 ``SampleFrames`` semantics).

A clip is ``clip_len`` frames ``frame_interval`` apart. ``num_clips`` clips are spread over a
video of ``n`` frames (docs/pipeline.md gives the rules with worked examples):

* training (MMAction2 0.x and 1.x alike): a clip spans ``span = clip_len * frame_interval``
  frames; the video is cut into ``num_clips`` segments of ``a = (n - span + 1) // num_clips``
  frames and each clip starts at a random offset inside its segment (when ``a == 0``, the
  sorted random starts or the rounded spread that MMAction2 uses);
* test, ``test_sampling="mmaction2"`` (default; MMAction2 1.x, the release's mmaction2==1.0.0):
  ``span = (clip_len - 1) * frame_interval + 1`` (the first to the last sampled frame),
  ``m = max(n - span, 0)``; one clip starts at ``m // 2``, ``k > 1`` clips at
  ``round(i * m / (k - 1))`` (round half to even, as numpy);
* test, ``test_sampling="segments"`` (MMAction2 0.x): ``span = clip_len * frame_interval``,
  clips start in the middle of ``num_clips`` equal segments (0 when the video is shorter).

Indices past the end of a short video are handled by ``short_video``:

* ``"loop"`` (default, MMAction2's ``out_of_bound_opt='loop'``): index ``i`` -> ``i % num_frames``;
* ``"clamp"`` (MMAction2's ``'repeat_last'``): index ``i`` -> ``min(i, num_frames - 1)``.
"""

from __future__ import annotations

import torch

SHORT_VIDEO_MODES = ("loop", "clamp")
TEST_SAMPLING_MODES = ("mmaction2", "segments")


def clip_offsets(
    num_frames: int,
    clip_len: int,
    frame_interval: int,
    num_clips: int,
    *,
    train: bool,
    test_sampling: str = "mmaction2",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Start frame of each clip -> long tensor (num_clips,). Random only when ``train``."""
    if num_frames <= 0:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    if not train:
        return _test_offsets(num_frames, clip_len, frame_interval, num_clips, test_sampling)
    span = clip_len * frame_interval
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


def _test_offsets(num_frames: int, clip_len: int, frame_interval: int, num_clips: int, mode: str) -> torch.Tensor:
    if mode == "mmaction2":
        # MMAction2 1.x (PySlowFast-aligned): the span ends at the last sampled frame, not one interval later.
        max_offset = max(num_frames - ((clip_len - 1) * frame_interval + 1), 0)
        if num_clips == 1:
            return torch.tensor([max_offset // 2])
        # numpy's np.round (half to even) of float64 i * (m / (k - 1)); torch.round rounds half to even too.
        step = max_offset / (num_clips - 1)
        return torch.round(torch.arange(num_clips, dtype=torch.float64) * step).long()
    if mode == "segments":
        span = clip_len * frame_interval
        avg = (num_frames - span + 1) / num_clips
        if num_frames > span - 1:
            return (torch.arange(num_clips, dtype=torch.float64) * avg + avg / 2.0).long()
        return torch.zeros(num_clips, dtype=torch.long)
    raise ValueError(f"test_sampling must be one of {TEST_SAMPLING_MODES}, got '{mode}'")


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
    test_sampling: str = "mmaction2",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """0-based frame indices of ``num_clips`` clips -> long tensor (num_clips, clip_len).

    Training draws from ``generator`` (default: torch's global RNG, which DataLoader seeds
    per worker); test sampling is deterministic and follows ``test_sampling``.
    """
    if clip_len < 1 or frame_interval < 1 or num_clips < 1:
        raise ValueError(
            f"clip_len, frame_interval and num_clips must be >= 1, got {clip_len}, {frame_interval}, {num_clips}"
        )
    starts = clip_offsets(
        num_frames, clip_len, frame_interval, num_clips, train=train, test_sampling=test_sampling, generator=generator
    )
    indices = starts[:, None] + torch.arange(clip_len)[None, :] * frame_interval
    return wrap_indices(indices, num_frames, short_video)
