"""Built-in synthetic motion dataset: determinism, balance, no class information in single frames,
sample-dict contract, export round trip through the real data pipeline."""

import numpy as np
import pytest
import torch

from haltingvt.cli import main
from haltingvt.config import load_config
from haltingvt.data import build_dataset, collate_eval, collate_train, read_class_names
from haltingvt.data.export import export
from haltingvt.data.synthetic import (
    CLASSES,
    SyntheticMotion,
    _background,
    build_synthetic,
    make_clip,
    sample_rng,
)


def test_deterministic_by_seed_and_independent_of_order():
    a = SyntheticMotion("train", 12, num_frames=4, size=24, seed=3)
    b = SyntheticMotion("train", 12, num_frames=4, size=24, seed=3)
    for i in (7, 0, 11):  # any access order gives the same sample
        assert torch.equal(a[i]["clips"], b[i]["clips"])
    other = SyntheticMotion("train", 12, num_frames=4, size=24, seed=4)
    assert not torch.equal(a[5]["clips"], other[5]["clips"])
    val = SyntheticMotion("val", 12, num_frames=4, size=24, seed=3)
    assert not torch.equal(a[5]["clips"][0], val[5]["clips"][0])  # splits differ


def test_sample_contract_and_collate():
    cfg = load_config("demo_synthetic", ["data.synthetic_num_train=6", "data.synthetic_num_val=5"])
    T, size = cfg["data"]["clip_len"], cfg["model"]["img_size"]
    train, val = build_dataset(cfg, "train"), build_dataset(cfg, "val")
    assert len(train) == 6 and len(val) == 5
    s = train[2]
    assert s["clips"].dtype == torch.uint8 and s["clips"].shape == (2, 3, T, size, size)
    assert s["label"].dtype == torch.long and s["label"].ndim == 0 and s["index"] == 2 and isinstance(s["path"], str)
    static = s["clips"][1]
    assert all(torch.equal(static[:, 0], static[:, t]) for t in range(T))  # one frame repeated
    assert any(torch.equal(static[:, 0], s["clips"][0][:, t]) for t in range(T))  # ... of the real clip
    assert not torch.equal(s["clips"][0][:, 0], s["clips"][0][:, -1])  # the real clip moves
    batch = collate_train([train[i] for i in range(3)])
    assert batch["clips"].shape == (6, 3, T, size, size) and batch["motion_label"].tolist() == [1, 0] * 3
    ev = collate_eval([val[i] for i in range(2)])
    assert ev["clips"].shape == (2, 1, 3, T, size, size)


def test_labels_balanced():
    ds = SyntheticMotion("val", 80, num_frames=4, size=16)
    counts = np.bincount(ds.labels, minlength=len(CLASSES))
    assert counts.min() == counts.max() == 10
    assert [int(ds[i]["label"]) for i in range(8)] == list(range(8))


def test_single_frame_carries_no_class_information():
    """Per class, statistics of a random frame (colour, object position/size proxy) agree.

    The object's pixels are where the frame differs from the clip's background (re-rendered from the
    sample's generator: the background is its first draw). Per-class means of a random frame's colour and of that
    object mask's centroid and
    area must agree within sampling noise, whereas the same statistics of the *change* between the
    first and last frame clearly separate the classes (the test would see information if it were there).
    """
    n_per, T, size = 40, 8, 32
    frame_stats = {c: [] for c in range(len(CLASSES))}
    motion_stats = {c: [] for c in range(len(CLASSES))}
    pick = np.random.default_rng(0)
    for index in range(n_per * len(CLASSES)):
        clip, label, _ = make_clip(index, "test", 0, T, size)
        f = clip.astype(np.float64)
        background = _background(sample_rng(0, "test", index), size)
        masks = np.abs(f - background).sum(-1) > 40  # (T, H, W) object pixels per frame
        t = pick.integers(0, T)
        ys, xs = np.nonzero(masks[t])
        area = masks[t].mean()
        cx, cy = (xs.mean() / size, ys.mean() / size) if len(xs) else (0.5, 0.5)
        frame_stats[label].append([*f[t].mean((0, 1)) / 255, cx, cy, area])
        first, last = [np.nonzero(masks[k]) for k in (0, T - 1)]
        centroid = [
            np.array([m[1].mean(), m[0].mean()]) / size if len(m[0]) else np.full(2, 0.5) for m in (first, last)
        ]
        motion_stats[label].append([*(centroid[1] - centroid[0]), masks[T - 1].mean() - masks[0].mean()])

    def spread(stats):
        """Largest gap between class means, in units of the standard error of a class mean."""
        arr = [np.array(v) for v in stats.values()]
        means = np.stack([a.mean(0) for a in arr])
        se = np.concatenate(arr).std(0) / np.sqrt(n_per)
        return ((means.max(0) - means.min(0)) / se).max()

    assert spread(frame_stats) < 5.5  # 8 class means, 6 statistics: a range of ~3-4 standard errors is noise
    assert spread(motion_stats) > 10.0  # motion does separate the classes


@pytest.mark.parametrize("fmt", ["frames", "mp4"])
def test_export_round_trip_through_the_data_pipeline(tmp_path, fmt):
    T, size, n = 4, 32, 6
    classes = load_config("demo_synthetic")["data"]["synthetic_classes"]
    list_file = export(tmp_path, "val", fmt=fmt, num_samples=n, num_frames=T, size=size, seed=1, classes=classes)
    assert read_class_names(tmp_path / "classes.txt") == classes
    lines = list_file.read_text().split("\n")
    assert len([line for line in lines if line]) == n
    cfg = load_config(
        "demo_synthetic",
        [
            f"data.format={'rawframes' if fmt == 'frames' else 'video'}",
            f"data.data_root={tmp_path}",
            f"data.val_list={list_file}",
            "data.frame_interval=1",
            f"data.clip_len={T}",
            f"data.test_scale={size}",
            f"data.crop_size={size}",
            f"model.img_size={size}",
            f"model.num_frames={T}",
            "data.num_workers=0",
        ],
    )
    ds = build_dataset(cfg, "val")
    reference = build_synthetic(
        load_config(
            "demo_synthetic",
            [f"data.synthetic_num_val={n}", "data.synthetic_seed=1", f"data.clip_len={T}", f"model.img_size={size}"],
        ),
        "val",
    )
    for i in range(n):
        got, want = ds[i], reference[i]
        assert "error" not in got, got.get("error")
        assert int(got["label"]) == int(want["label"])
        assert got["clips"].shape == want["clips"].shape == (1, 3, T, size, size)
        err = (got["clips"].float() - want["clips"].float()).abs().mean()
        assert err < 4.0, f"sample {i}: mean abs difference {err:.1f} after {fmt} encoding"


def test_cli_export_uses_the_demo_classes(tmp_path, capsys):
    assert main(["synthetic", str(tmp_path), "--splits", "val", "--num", "3"]) == 0
    classes = load_config("demo_synthetic")["data"]["synthetic_classes"]
    assert (tmp_path / "classes.txt").read_text().split() == classes
    lines = (tmp_path / "val_rawframes.txt").read_text().splitlines()
    assert [line.split()[1:] for line in lines] == [["8", "0"], ["8", "1"], ["8", "2"]]
    assert len(list((tmp_path / lines[0].split()[0]).glob("img_*.jpg"))) == 8
    assert "data.format=rawframes" in capsys.readouterr().out

    assert main(["synthetic", str(tmp_path), "--classes", "move_right", "moonwalk"]) == 2
    assert "moonwalk" in capsys.readouterr().err
    assert main(["synthetic", str(tmp_path), "--splits", "val", "test", "--num", "1", "2", "3"]) == 2
    assert "--num" in capsys.readouterr().err
