"""Sampling, clip transforms, datasets, collate functions and DataLoader workers."""

import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from haltingvt.data import (
    EvalTransform,
    build_dataset,
    build_train_transform,
    collate_eval,
    collate_train,
    normalize,
    sample_frame_indices,
)
from haltingvt.data.transforms import frames_to_video

from data_helpers import (
    frame_number,
    numbered_frame,
    small_config,
    textured_frame,
    truncate_file,
    write_lines,
    write_numbered_folder,
    write_numbered_video,
    write_video,
)


# -- sampling ---------------------------------------------------------------------------------
def test_train_sampling_random_offset_in_range():
    starts = set()
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        idx = sample_frame_indices(300, 8, 32, 1, train=True, generator=g)
        assert idx.shape == (1, 8) and idx.dtype == torch.long
        assert (idx.diff() == 32).all() and idx.min() >= 0 and idx.max() < 300
        starts.add(int(idx[0, 0]))
    assert len(starts) > 10 and max(starts) <= 300 - 256  # random start, clip inside the video
    again = sample_frame_indices(300, 8, 32, 1, train=True, generator=torch.Generator().manual_seed(0))
    first = sample_frame_indices(300, 8, 32, 1, train=True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again, first)


def test_test_sampling_is_deterministic_and_centred():
    # MMAction2 1.x (default): span (8 - 1) * 32 + 1 = 225, one clip starts at (300 - 225) // 2 = 37
    idx = sample_frame_indices(300, 8, 32, 1, train=False)
    assert idx.tolist() == [[37 + 32 * i for i in range(8)]]
    multi = sample_frame_indices(100, 4, 2, 3, train=False)
    # three clips spread over max_offset 100 - 7 = 93: round(0, 46.5, 93) = 0, 46 (half to even), 93
    assert multi[:, 0].tolist() == [0, 46, 93] and (multi.diff() == 2).all()
    assert torch.equal(multi, sample_frame_indices(100, 4, 2, 3, train=False))
    assert sample_frame_indices(5, 4, 2, 2, train=False).tolist() == [[0, 2, 4, 1], [0, 2, 4, 1]]  # short: loop


def test_test_sampling_segments_is_mmaction2_0x():
    idx = sample_frame_indices(300, 8, 32, 1, train=False, test_sampling="segments")
    assert idx.tolist() == [[22 + 32 * i for i in range(8)]]  # (300 - 256 + 1) / 2 = 22.5 -> 22
    multi = sample_frame_indices(100, 4, 2, 3, train=False, test_sampling="segments")
    # segments of (100 - 8 + 1) / 3 = 31 frames, each clip in the middle of its segment
    assert multi[:, 0].tolist() == [15, 46, 77]
    with pytest.raises(ValueError, match="test_sampling"):
        sample_frame_indices(100, 4, 2, 3, train=False, test_sampling="centre")


def test_short_video_loop_and_clamp():
    assert sample_frame_indices(20, 8, 4, train=False, short_video="loop").tolist() == [[0, 4, 8, 12, 16, 0, 4, 8]]
    assert sample_frame_indices(20, 8, 4, train=False, short_video="clamp").tolist() == [[0, 4, 8, 12, 16, 19, 19, 19]]
    idx = sample_frame_indices(20, 8, 4, train=True, short_video="clamp")
    assert idx.max() == 19 and idx[0, 0] == 0
    with pytest.raises(ValueError, match="short_video"):
        sample_frame_indices(20, 8, 4, train=False, short_video="wrap")


# -- transforms -------------------------------------------------------------------------------
def _video(frames):
    return frames_to_video([np.asarray(f) for f in frames])


def test_train_transform_same_op_for_every_frame():
    tf = build_train_transform([40, 56], 32, {"num_ops": 2, "magnitude": 9})
    frames = [textured_frame(i, 48, 64) for i in range(4)]
    for seed in range(12):
        torch.manual_seed(seed)
        static = tf(_video([frames[0]] * 4))
        assert static.shape == (4, 3, 32, 32) and static.dtype == torch.uint8
        assert all(torch.equal(static[0], static[t]) for t in range(4))  # a static clip stays static
        # Each frame transformed alone with the same random draw gives the same result.
        torch.manual_seed(seed)
        clip = tf(_video(frames))
        for t in (0, 3):
            torch.manual_seed(seed)
            assert torch.equal(tf(_video([frames[t]]))[0], clip[t])


def test_train_transform_scale_range():
    tf = build_train_transform([40, 40], 40, None)  # short side exactly 40, crop 40: a slice of the long side
    out = tf(_video([textured_frame(0, 48, 64)]))
    assert out.shape == (1, 3, 40, 40)


def test_test_transform_views():
    frames = [textured_frame(i, 48, 96) for i in range(2)]  # wide: crops along the width
    one = EvalTransform(24, 24, 1)(_video(frames))
    three = EvalTransform(24, 24, 3)(_video(frames))
    assert one.shape == (1, 2, 3, 24, 24) and three.shape == (3, 2, 3, 24, 24)
    assert torch.equal(three[2], one[0])  # MMAction2's order: left, right, middle; the middle is the centre crop
    assert not torch.equal(three[0], three[1])
    tv_one = EvalTransform(24, 24, 1, "torchvision")(_video(frames))
    tv_three = EvalTransform(24, 24, 3, "torchvision")(_video(frames))
    assert torch.equal(tv_three[1], tv_one[0])  # torchvision geometry: start, middle, end


def test_normalize():
    x = torch.tensor([0, 127, 255], dtype=torch.uint8)
    y = normalize(x)
    assert y.dtype == torch.float32 and torch.allclose(y, torch.tensor([-1.0, -0.5 / 127.5, 1.0]))
    assert normalize(x, torch.bfloat16).dtype == torch.bfloat16


# -- datasets ---------------------------------------------------------------------------------
@pytest.fixture()
def video_set(tmp_path):
    write_numbered_video(tmp_path / "a.mp4", 40)
    write_numbered_video(tmp_path / "b b.mp4", 30, codec="libx264")
    write_numbered_folder(tmp_path / "frames" / "air drumming" / "c", 40)
    bad = write_video(tmp_path / "broken.mp4", [textured_frame(i) for i in range(10)])
    truncate_file(bad, 0.5)
    return tmp_path


def test_train_sample_is_real_static_pair(video_set):
    lst = write_lines(video_set / "train.txt", ["a.mp4 1", "b b.mp4;2"])
    cfg = small_config(video_set, "video", lst, randaugment=None, train_scale=[48, 48], crop_size=32)
    ds = build_dataset(cfg, "train")
    torch.manual_seed(0)
    s = ds[0]
    assert s["clips"].shape == (2, 3, 4, 32, 32) and s["clips"].dtype == torch.uint8
    assert s["label"].dtype == torch.long and int(s["label"]) == 1 and s["path"].endswith("a.mp4")
    real, static = s["clips"][0], s["clips"][1]
    numbers = [frame_number(real[:, t].permute(1, 2, 0).numpy()) for t in range(4)]
    assert np.diff(numbers).tolist() == [3, 3, 3]  # frame_interval 3
    assert all(torch.equal(static[:, 0], static[:, t]) for t in range(4))
    assert frame_number(static[:, 0].permute(1, 2, 0).numpy()) in numbers  # one of the sampled frames
    assert ds[1]["path"].endswith("b b.mp4")


def test_static_from_other_video(tmp_path):
    write_video(tmp_path / "dark.mp4", [numbered_frame(i) for i in range(10)])  # brightness 10..55
    write_video(tmp_path / "bright.mp4", [numbered_frame(40 + i % 5) for i in range(10)])  # 210..230
    lst = write_lines(tmp_path / "l.txt", ["dark.mp4 0", "bright.mp4 1"])
    cfg = small_config(tmp_path, "video", lst, randaugment=None, static_from_other_video=True)
    ds = build_dataset(cfg, "train")
    for _ in range(3):
        s = ds[0]
        assert s["clips"][0].float().mean() < 70 and s["clips"][1].float().mean() > 200


def test_train_augmentation_keeps_static_clip_static(video_set):
    lst = write_lines(video_set / "train.txt", ["frames/air drumming/c 40 3"])
    cfg = small_config(video_set, "arnet", lst)  # RandAugment on
    ds = build_dataset(cfg, "train")
    for seed in range(5):
        torch.manual_seed(seed)
        static = ds[0]["clips"][1]
        assert all(torch.equal(static[:, 0], static[:, t]) for t in range(1, 4))


def test_multi_label_rawframes_with_offset_and_eval_views(video_set):
    lst = write_lines(video_set / "val.txt", ["frames/air drumming/c;10;20;0;3", "frames/air drumming/c;0;40;4"])
    cfg = small_config(
        video_set,
        "rawframes",
        lst,
        multi_label=True,
        with_offset=True,
        test_num_clips=2,
        test_num_crops=3,
        randaugment=None,
    )
    ds = build_dataset(cfg, "val")
    s = ds[0]
    assert s["clips"].shape == (6, 3, 4, 32, 32)
    assert s["label"].dtype == torch.float32 and s["label"].tolist() == [1, 0, 0, 1, 0]
    # crop-major views (MMAction2 order): view = crop * 2 + clip; clip 4 x interval 3 spans 10 of the 20 frames,
    # so the clips start at offsets 0 and 10 (frames 10 and 20)
    first = [frame_number(s["clips"][v, :, 0].permute(1, 2, 0).numpy()) for v in range(6)]
    assert first == [10, 20] * 3
    batch = collate_eval([ds[0], ds[1]])
    assert batch["clips"].shape == (2, 6, 3, 4, 32, 32) and batch["label"].shape == (2, 5)
    train = collate_train([build_dataset(cfg, "train")[1]])
    assert train["label"].shape == (2, 5) and train["label"][:, 4].tolist() == [1, 1]


def test_bad_samples_are_reported_not_raised(video_set):
    missing_frame = write_numbered_folder(video_set / "holes", 20)
    (missing_frame / "img_00007.jpg").unlink()
    lst = write_lines(video_set / "l.txt", ["a.mp4 1", "broken.mp4 2", "gone.mp4 3", "holes 4"])
    cfg = small_config(video_set, "video", lst, clip_len=20, frame_interval=1)
    train = build_dataset(cfg, "train")
    samples = [train[i] for i in range(4)]
    assert "clips" in samples[0]
    assert samples[1]["error"].startswith(str(video_set / "broken.mp4")) and samples[1]["index"] == 1
    assert "gone.mp4: video file not found" in samples[2]["error"]
    # the "video" list format decodes everything as video; an AR-Net list reads the folder
    arnet = write_lines(video_set / "a.txt", ["a.mp4 40 1", "holes 20 4"])
    folder_sample = build_dataset(small_config(video_set, "arnet", arnet, clip_len=20, frame_interval=1), "val")[1]
    assert "holes/img_00007.jpg: frame file missing" in folder_sample["error"]

    batch = collate_train(samples)
    assert batch["clips"].shape == (2, 3, 20, 32, 32) and batch["index"].tolist() == [0]
    assert batch["motion_label"].tolist() == [1, 0] and batch["label"].tolist() == [1, 1]
    assert len(batch["skipped"]) == 3 and "broken.mp4" in batch["skipped"][0]
    empty = collate_train(samples[1:])
    assert empty["clips"].shape[0] == 0 and empty["label"].shape == (0,) and len(empty["skipped"]) == 3

    val = build_dataset(cfg, "val")
    out = collate_eval([val[i] for i in range(3)])
    assert out["clips"].shape == (1, 1, 3, 20, 32, 32) and out["path"] == [str(video_set / "a.mp4")]
    assert [e[0] for e in out["errors"]] == [1, 2]
    assert out["errors"][0][1].endswith("broken.mp4") and "broken.mp4" in out["errors"][0][2]


def test_collate_train_interleaves(video_set):
    lst = write_lines(video_set / "l.txt", ["a.mp4 1", "b b.mp4 2", "frames/air drumming/c 0"])
    cfg = small_config(video_set, "video", lst)
    cfg["data"]["format"] = "arnet"
    write_lines(lst, ["a.mp4 40 1", "b b.mp4 30 2", "frames/air drumming/c 40 0"])
    ds = build_dataset(cfg, "train")
    torch.manual_seed(3)
    samples = [ds[i] for i in range(3)]
    batch = collate_train(samples)
    assert batch["clips"].shape == (6, 3, 4, 32, 32)
    for i, s in enumerate(samples):
        assert torch.equal(batch["clips"][2 * i], s["clips"][0]) and torch.equal(
            batch["clips"][2 * i + 1], s["clips"][1]
        )
    assert batch["label"].tolist() == [1, 1, 2, 2, 0, 0] and batch["motion_label"].tolist() == [1, 0] * 3
    assert batch["index"].tolist() == [0, 1, 2] and batch["skipped"] == []


def test_dataloader_workers_with_pyav(video_set):
    names = []
    for i in range(6):
        write_numbered_video(video_set / f"w{i}.mp4", 24, codec="libx264" if i % 2 else "mpeg4")
        names.append(f"w{i}.mp4 {i % 5}")
    lst = write_lines(video_set / "w.txt", names + ["broken.mp4 0"])
    ds = build_dataset(small_config(video_set, "video", lst), "train")
    assert len(pickle.loads(pickle.dumps(ds))) == 7  # also usable with the "spawn" start method
    loader = DataLoader(ds, batch_size=3, num_workers=2, collate_fn=collate_train, timeout=120)
    batches = list(loader)
    assert sum(len(b["index"]) for b in batches) == 6
    assert sum(len(b["skipped"]) for b in batches) == 1
    assert all(b["clips"].dtype == torch.uint8 for b in batches)
