"""The release pipeline's rules pinned without MMAction2 (docs/pipeline.md); test_mmaction2_oracle.py checks
the same against MMAction2 itself when the oracle extra is installed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from haltingvt.config import ConfigError, load_config
from haltingvt.data import EvalTransform, sample_frame_indices
from haltingvt.data.transforms import (
    MMRandomCrop,
    ThreeCrop,
    center_crop,
    frames_to_video,
    imresize,
    rescale_size,
    resize_short_side,
)


@pytest.mark.parametrize(
    "n, setting, first",
    [
        (250, (8, 32, 1), [12]),  # span 225: (250 - 225) // 2
        (300, (8, 32, 1), [37]),
        (226, (8, 32, 1), [0]),  # (226 - 225) // 2 = 0
        (227, (8, 32, 1), [1]),
        (1000, (10, 64, 1), [211]),  # span 577: 423 // 2
        (300, (8, 32, 3), [0, 38, 75]),  # round(0, 37.5, 75): half to even
        (102, (8, 8, 10), [0, 5, 10, 15, 20, 25, 30, 35, 40, 45]),  # span 57, offsets i * 45 / 9
        (101, (8, 8, 10), [0, 5, 10, 15, 20, 24, 29, 34, 39, 44]),  # i * 44 / 9 rounded
        (21, (8, 8, 10), [0] * 10),  # shorter than one clip: every clip starts at 0
    ],
)
def test_test_sampling_rule(n, setting, first):
    clip_len, interval, clips = setting
    idx = sample_frame_indices(n, clip_len, interval, clips, train=False)
    assert idx[:, 0].tolist() == first and (idx.diff() % n == interval % n).all()


def test_rescale_size_rounds_as_mmcv():
    assert rescale_size(640, 272, 256) == (602, 256)  # 602.35
    assert rescale_size(1280, 720, 256) == (455, 256)  # 455.1
    assert rescale_size(341, 257, 256) == (340, 256)  # 339.67 rounds up (torchvision: 339)
    assert rescale_size(176, 144, 256) == (313, 256)  # 312.9 (upscaling)
    assert rescale_size(480, 640, 256) == (256, 341)  # portrait: 341.33
    assert rescale_size(340, 256, 256) == (340, 256)
    video = frames_to_video([np.zeros((257, 341, 3), np.uint8)])
    assert tuple(resize_short_side(video, 256).shape[-2:]) == (256, 340)
    assert tuple(resize_short_side(video, 256, "torchvision").shape[-2:]) == (256, 339)


def test_resize_is_bilinear_without_antialiasing():
    # stripes of period 4 (0, 255, 255, 0): a 4x bilinear downscale samples between pixels 1 and 2 of each
    # period (255), where an antialiased filter averages the whole period (about 128)
    row = np.tile(np.array([0, 255, 255, 0], np.uint8), 16)
    img = np.repeat(np.repeat(row[None, :, None], 64, 0), 3, 2)
    assert (imresize(img, 16, 16) == 255).all()
    out = resize_short_side(frames_to_video([img]), 16)
    assert (out == 255).all()
    assert resize_short_side(frames_to_video([img]), 16, "torchvision").float().mean() < 200


def test_crop_offsets():
    yx = np.stack([*np.mgrid[0:60, 0:99], np.zeros((60, 99), int)], -1).astype(np.uint8)  # pixel = (y, x, 0)
    video = frames_to_video([yx])

    def corner(v):
        return int(v[0, 0, 0, 0]), int(v[0, 1, 0, 0])

    assert corner(center_crop(video, 40)) == (10, 29)  # floor(59 / 2) = 29
    assert corner(center_crop(video, 41)) == (9, 29)  # floor(19 / 2) = 9
    assert corner(center_crop(video, 41, "torchvision")) == (10, 29)  # round(9.5) = 10 (half to even: 10)
    assert [corner(v) for v in ThreeCrop(60)(video)] == [(0, 0), (0, 38), (0, 19)]  # left, 2 * 19, 19
    assert [corner(v) for v in ThreeCrop(60, "torchvision")(video)] == [(0, 0), (0, 19), (0, 39)]
    tall = frames_to_video([np.ascontiguousarray(yx.transpose(1, 0, 2)[..., [1, 0, 2]])])  # 99 x 60, still (y, x)
    assert [corner(v) for v in ThreeCrop(60)(tall)] == [(0, 0), (38, 0), (19, 0)]
    torch.manual_seed(0)
    drawn = {corner(MMRandomCrop(56)(video)) for _ in range(600)}
    assert {y for y, _ in drawn} == set(range(4)) and {x for _, x in drawn} == set(range(43))  # 0 .. side - size - 1


def test_eval_transform_views_and_modes():
    frames = [np.random.default_rng(i).integers(0, 255, (144, 176, 3), dtype=np.uint8) for i in range(2)]
    views = EvalTransform(128, 112, 3)(frames_to_video(frames))
    assert views.shape == (3, 2, 3, 112, 112)
    with pytest.raises(ConfigError, match="data.resize"):
        EvalTransform(128, 112, 1, "bicubic")


def test_config_options_and_defaults():
    release = load_config("minik_g03_b10")["data"]
    assert release["test_sampling"] == "mmaction2" and release["resize"] == "mmcv"
    demo = load_config("demo_synthetic")["data"]
    assert demo["test_sampling"] == "segments" and demo["resize"] == "torchvision"
    with pytest.raises(ConfigError, match="data.test_sampling"):
        load_config("minik_g03_b10", ["data.test_sampling=centre"])
