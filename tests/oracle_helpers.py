"""MMAction2 1.x's own transforms, the oracle of the data pipeline (``pip install -e '.[oracle]'``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


def mmaction2_transforms():
    """``mmaction.datasets.transforms``, or skip the test with the reason."""
    return pytest.importorskip(
        "mmaction.datasets.transforms", reason="MMAction2 is not installed (pip install -e '.[oracle]')"
    )


def mm_pipeline(
    folder: Path, total: int, clip_len: int, interval: int, clips: int, scale: int, crop: int, three: bool = False
) -> np.ndarray:
    """The release's test pipeline run by MMAction2 on one rawframes folder -> uint8 (views, 3, T, h, w):
    SampleFrames(test_mode) -> RawFrameDecode -> Resize(-1, scale) -> CenterCrop or ThreeCrop -> FormatShape."""
    mmt = mmaction2_transforms()
    results = {
        "frame_dir": str(folder),
        "total_frames": total,
        "filename_tmpl": "img_{:05}.jpg",
        "start_index": 1,
        "modality": "RGB",
        "offset": 0,
    }
    for t in (
        mmt.SampleFrames(clip_len, interval, clips, test_mode=True),
        mmt.RawFrameDecode(),
        mmt.Resize(scale=(-1, scale)),
        mmt.ThreeCrop(crop) if three else mmt.CenterCrop(crop),
        mmt.FormatShape("NCTHW"),
    ):
        results = t(results)
    return results["imgs"]


def pipeline_overrides(clip_len: int, interval: int, clips: int, scale: int, crop: int, three: bool) -> list[str]:
    """The ``--set`` overrides that give our test pipeline the settings of :func:`mm_pipeline`."""
    return [
        f"data.clip_len={clip_len}",
        f"data.frame_interval={interval}",
        f"data.test_num_clips={clips}",
        f"data.test_num_crops={3 if three else 1}",
        f"data.test_scale={scale}",
        f"data.crop_size={crop}",
    ]
