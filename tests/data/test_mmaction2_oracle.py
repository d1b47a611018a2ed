"""Our pipeline against MMAction2 1.x's own transforms, on the same files (the oracle extra).

``pip install -e '.[oracle]'`` installs mmaction2 1.2.0 (its test-time transforms are those of the
release's mmaction2==1.0.0), mmengine and mmcv-lite; without them these tests skip. The rules are also
pinned without MMAction2 in test_pipeline_rules.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from haltingvt.config import load_config
from haltingvt.data import load_views, open_reader, sample_frame_indices
from haltingvt.data.transforms import MMRandomCrop, build_train_transform, frames_to_video, resize_short_side

from footage import clip_path, pan, photo, real_frame_folders
from oracle_helpers import mm_pipeline, mmaction2_transforms, pipeline_overrides

mmt = mmaction2_transforms()

#: (clip_len, frame_interval, num_clips): the release's two settings and three multi-clip ones
SETTINGS = [(8, 32, 1), (10, 64, 1), (8, 32, 3), (8, 8, 10), (16, 4, 2)]


def mm_indices(n: int, clip_len: int, interval: int, clips: int, test_mode: bool = True) -> np.ndarray:
    sample = mmt.SampleFrames(clip_len, interval, clips, test_mode=test_mode)
    return sample({"total_frames": n, "start_index": 0})["frame_inds"]


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: "x".join(map(str, s)))
def test_test_indices_equal_for_every_length(setting):
    clip_len, interval, clips = setting
    for n in range(1, 2500):
        ours = sample_frame_indices(n, clip_len, interval, clips, train=False).flatten().numpy()
        assert np.array_equal(ours, mm_indices(n, clip_len, interval, clips)), (n, setting)


@pytest.mark.parametrize("setting", SETTINGS + [(4, 3, 1), (4, 3, 3)], ids=lambda s: "x".join(map(str, s)))
def test_train_indices_span_the_same_range(setting, monkeypatch):
    """Training draws differ (numpy's RNG vs torch's); with every draw forced to its lowest, then its highest
    value, both give the same indices for every length, so both draw from the same ranges."""
    clip_len, interval, clips = setting
    for extreme in ("low", "high"):

        def np_randint(low, high=None, size=None, dtype=int, extreme=extreme):
            low, high = (0, low) if high is None else (low, high)
            value = low if extreme == "low" else high - 1
            return value if size is None else np.full(size, value)

        def torch_randint(high, size=(), generator=None, extreme=extreme, **kw):
            return torch.full(size, 0 if extreme == "low" else high - 1, dtype=torch.long)

        monkeypatch.setattr(np.random, "randint", np_randint)
        monkeypatch.setattr(torch, "randint", torch_randint)
        for n in range(1, 700):
            ours = sample_frame_indices(n, clip_len, interval, clips, train=True).flatten().numpy()
            assert np.array_equal(ours, mm_indices(n, clip_len, interval, clips, test_mode=False)), (n, extreme)


# ---------------------------------------------------------------------------------------- frames
def _mm_test(frames: list[np.ndarray], scale: int, crop: int, three: bool = False) -> np.ndarray:
    h, w = frames[0].shape[:2]
    results = {"imgs": [f.copy() for f in frames], "img_shape": (h, w), "modality": "RGB"}
    results = mmt.Resize(scale=(-1, scale))(results)
    results = (mmt.ThreeCrop(crop) if three else mmt.CenterCrop(crop))(results)
    return np.stack(results["imgs"])  # (views * T, h, w, 3)


def _ours_test(frames: list[np.ndarray], scale: int, crop: int, three: bool = False) -> np.ndarray:
    from haltingvt.data import EvalTransform

    views = EvalTransform(scale, crop, 3 if three else 1)(frames_to_video(frames))  # (V, T, C, h, w)
    return views.flatten(0, 1).permute(0, 2, 3, 1).numpy()


def _real_frames() -> dict[str, list[np.ndarray]]:
    """A few frames of each kind of input: real footage at three sizes, photographs panned at other sizes."""
    out = {}
    for name in ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4"):
        reader = open_reader(str(clip_path(name)), is_video=True)
        out[name] = reader.read([0, 40, 80])
    for name, (w, h) in {
        "astronaut": (1920, 1080),
        "coffee": (1280, 720),
        "chelsea": (341, 257),
        "rocket": (340, 256),
        "astronaut-portrait": (480, 640),
        "coffee-small": (200, 150),
    }.items():
        out[f"{name} {w}x{h}"] = pan(photo(name.split("-")[0]), 3, w, h)
    return out


@pytest.fixture(scope="module")
def real_frames():
    return _real_frames()


def test_resize_and_centre_crop_equal(real_frames):
    for name, frames in real_frames.items():
        for scale, crop in ((256, 224), (128, 112), (320, 224)):
            ours, theirs = _ours_test(frames, scale, crop), _mm_test(frames, scale, crop)
            assert ours.shape == theirs.shape and np.array_equal(ours, theirs), (name, scale, crop)


def test_three_crop_equal(real_frames):
    """MMAction2's ThreeCrop needs one side equal to the crop: Resize(-1, c) then ThreeCrop(c)."""
    for name, frames in real_frames.items():
        for crop in (224, 112):
            ours, theirs = _ours_test(frames, crop, crop, three=True), _mm_test(frames, crop, crop, three=True)
            assert ours.shape == theirs.shape and np.array_equal(ours, theirs), (name, crop)


def test_random_rescale_and_crop_equal(real_frames):
    """For the short side and crop box MMAction2 drew, ours gives the same pixels; both draw from the same ranges."""
    for name, frames in real_frames.items():
        for seed in range(4):
            np.random.seed(seed)
            h, w = frames[0].shape[:2]
            results = {"imgs": [f.copy() for f in frames], "img_shape": (h, w)}
            results = mmt.RandomRescale((256, 320))(results)
            results = mmt.RandomCrop(224)(results)
            x1, y1, x2, y2 = results["crop_bbox"]
            video = resize_short_side(frames_to_video(frames), int(results["short_edge"]))
            ours = video[..., y1:y2, x1:x2].permute(0, 2, 3, 1).numpy()
            assert np.array_equal(ours, np.stack(results["imgs"])), (name, seed)
    # the ranges: short side 256..320 both included, crop offsets 0 .. side - 225 (MMAction2 never draws side - 224)
    frames = real_frames["bikes.mp4"][:1]
    np.random.seed(0)
    theirs = {
        int(mmt.RandomRescale((256, 320))({"imgs": frames, "img_shape": (272, 640)})["short_edge"]) for _ in range(2000)
    }
    assert theirs == set(range(256, 321))
    torch.manual_seed(0)
    tf = build_train_transform([256, 320], 224, None)
    ours = {min(tf(frames_to_video(frames)).shape[-2:]) for _ in range(3)}
    assert ours == {224}
    yx = np.stack([*np.mgrid[0:230, 0:226], np.zeros((230, 226), int)], -1).astype(np.uint8)  # pixel = (y, x, 0)
    video = frames_to_video([yx])
    ours = {(int(o[0, 0, 0, 0]), int(o[0, 1, 0, 0])) for o in (MMRandomCrop(224)(video) for _ in range(400))}
    np.random.seed(1)
    theirs = {
        tuple(int(v) for v in mmt.RandomCrop(224)({"imgs": [yx], "img_shape": (230, 226)})["crop_bbox"][[1, 0]])
        for _ in range(400)
    }
    assert ours == theirs == {(y, x) for y in range(6) for x in range(2)}


# ----------------------------------------------------------------------------- the whole test pipeline
@pytest.fixture(scope="module")
def frame_folders(tmp_path_factory):
    return real_frame_folders(tmp_path_factory.mktemp("rawframes"))


@pytest.mark.parametrize(
    "setting",
    [(8, 32, 1, 256, 224, False), (10, 64, 1, 256, 224, False), (8, 8, 2, 224, 224, True), (4, 16, 3, 128, 112, False)],
    ids=["minik-8x32", "anet-10x64", "8x8x2-threecrop", "4x16x3"],
)
def test_frame_folder_to_clip_equal(frame_folders, setting):
    clip_len, interval, clips, scale, crop, three = setting
    cfg = load_config("minik_g03_b10", pipeline_overrides(clip_len, interval, clips, scale, crop, three))
    for name, (folder, total) in frame_folders.items():
        theirs = mm_pipeline(folder, total, clip_len, interval, clips, scale, crop, three)
        ours = load_views(folder, cfg)
        assert ours.dtype == torch.uint8 and tuple(ours.shape) == theirs.shape, name
        assert np.array_equal(ours.numpy(), theirs), (name, setting)


def test_video_file_to_clip_equal():
    """Video files: MMAction2's PyAV decoder and ours give the same frames, then the same views."""
    path = clip_path("bikes.mp4")
    cfg = load_config("minik_g03_b10")
    results = {"filename": str(path), "start_index": 0, "modality": "RGB"}
    for t in (
        mmt.PyAVInit(),
        mmt.SampleFrames(8, 32, 1, test_mode=True),
        mmt.PyAVDecode(),
        mmt.Resize(scale=(-1, 256)),
        mmt.CenterCrop(224),
        mmt.FormatShape("NCTHW"),
    ):
        results = t(results)
    assert np.array_equal(load_views(path, cfg).numpy(), results["imgs"])
