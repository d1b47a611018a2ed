"""The motion datasets of experiments/motion_datasets.py (their own renderers, for motion_recipes.py): each is
written in its disk format and read back through the real data pipeline as the benchmark configures it, and
each class is the time reversal of its pair partner."""

import numpy as np
import pytest

import haltingvt
from experiments import motion_datasets, motion_recipes


@pytest.mark.parametrize("name", list(motion_datasets.DATASETS))
def test_written_dataset_reads_through_the_pipeline(tmp_path, name):
    ds = motion_datasets.DATASETS[name]
    n = 2 * len(ds.classes)
    motion_datasets.write_dataset(name, tmp_path, {"train": n, "val": 2}, workers=1)
    cfg = haltingvt.load_config(motion_recipes.run_config(name, tmp_path)[0])  # the benchmark's run config
    train = haltingvt.data.build_dataset(cfg, "train")
    assert len(train) == n and list(train.classes) == list(ds.classes)
    assert sorted(train.label(i) for i in range(n)) == sorted(list(range(len(ds.classes))) * 2)
    sample = train[len(ds.classes) - 1]
    assert "error" not in sample, sample
    assert sample["clips"].shape == (2, 3, 8, 32, 32)  # real and static clip, C x T x H x W
    assert sample["label"] == len(ds.classes) - 1
    val = haltingvt.data.build_dataset(cfg, "val")[1]
    assert "error" not in val and val["clips"].shape[-3:] == (8, 32, 32)


@pytest.mark.parametrize("name", list(motion_datasets.DATASETS))
def test_pairs_are_time_reversals(name):
    """Every class has its time reversal in the dataset. For travel and zoom the renderers draw the same
    object, background and path from the same random numbers, so the partner's clip played backwards is the
    clip itself: the two classes differ in direction only (rotations start at a different phase, clutter6
    adds per-frame noise, so only the pair structure is checked there)."""
    ds = motion_datasets.DATASETS[name]
    assert sorted(c for pair in ds.pairs for c in pair) == sorted(ds.classes)
    for a, b in ds.pairs:
        if name == "clutter6" or "orbit" in a or "spin" in a:
            continue
        for seed in range(3):
            fa = ds.render(np.random.default_rng(seed), ds.classes.index(a), ds.size).astype(np.float32)
            fb = ds.render(np.random.default_rng(seed), ds.classes.index(b), ds.size).astype(np.float32)
            assert fa.shape == (motion_datasets.NUM_FRAMES, ds.size, ds.size, 3)
            assert np.abs(fa - fb[::-1]).max() <= 1.0, (a, b, seed)  # rounding of the anti-aliased edge
            assert np.abs(fa - fb).mean() > 0.5, (a, b, seed)


def test_class_subset_probe(tmp_path):
    """--classes: a run on some classes alone reads filtered lists, relabelled in the order given, with the
    full budget of steps, and keeps the pairs inside the subset."""
    ds = motion_datasets.DATASETS["turns8"]
    motion_datasets.write_dataset("turns8", tmp_path, {"train": 16, "val": 8, "test": 8}, workers=1)
    only = ["spin_ccw", "spin_cw"]
    cfg, classes, pairs = motion_recipes.run_config("turns8", tmp_path, only, tmp_path / "lists")
    assert classes == only and pairs == [("spin_cw", "spin_ccw")]
    assert cfg["model"]["num_classes"] == 2
    assert cfg["train"]["epochs"] == round(motion_recipes.STEPS * motion_recipes.BATCH / 4)  # 4 spin clips
    train = haltingvt.data.build_dataset(haltingvt.load_config(cfg), "train")
    assert list(train.classes) == only and len(train) == 4
    for i in range(len(train)):
        name = train.records[i].path.split("/")[-1].split(" ")[0]
        assert only[int(train.label(i))] == name
    assert len(ds.classes) == 8  # the dataset itself is untouched
    cfg, classes, pairs = motion_recipes.run_config("builtin", tmp_path, ["move_left", "move_right"])
    assert cfg["data"]["synthetic_classes"] == ["move_left", "move_right"] and cfg["model"]["num_classes"] == 2
    assert pairs == [("move_right", "move_left")]
    with pytest.raises(SystemExit, match="spin_up not in turns8"):
        motion_recipes.run_config("turns8", tmp_path, ["spin_up"], tmp_path / "lists")


@pytest.mark.slow
def test_rotation_estimator_reads_the_sense_of_a_spin():
    """experiments/rotation_probe.py's hand-written estimator (no training) gets the sense of turns8's spins
    from clips as the model sees them: 8 frames, interval 3, rescaled to 32 px."""
    import torch
    import torch.nn.functional as F

    from experiments import rotation_probe as probe

    ds = motion_datasets.DATASETS["turns8"]
    for seed in range(4):
        for name, sign in (("spin_cw", 1), ("spin_ccw", -1)):
            frames = ds.render(np.random.default_rng(seed), ds.classes.index(name), ds.size)[::3][:8]
            clip = torch.tensor(frames).permute(0, 3, 1, 2).float()
            clip = F.interpolate(clip, size=(32, 32), mode="bilinear", antialias=True).permute(1, 0, 2, 3)
            assert sign * probe.rotation_per_frame(clip) > 1.0, (name, seed)
