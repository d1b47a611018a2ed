"""The motion datasets of benchmarks/motion_datasets.py (their own renderers, for motion_recipes.py): each is
written in its disk format and read back through the real data pipeline as the benchmark configures it, and
each class is the time reversal of its pair partner."""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

import haltingvt

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("motion_datasets", ROOT / "benchmarks" / "motion_datasets.py")
motion_datasets = importlib.util.module_from_spec(_spec)
sys.modules["motion_datasets"] = motion_datasets  # dataclasses look their module up
_spec.loader.exec_module(motion_datasets)


@pytest.mark.parametrize("name", list(motion_datasets.DATASETS))
def test_written_dataset_reads_through_the_pipeline(tmp_path, name):
    ds = motion_datasets.DATASETS[name]
    n = 2 * len(ds.classes)
    motion_datasets.write_dataset(name, tmp_path, {"train": n, "val": 2}, workers=1)
    cfg = haltingvt.load_config("scratch_motion", [])
    cfg["data"] = {**cfg["data"], **motion_datasets.data_config(name, tmp_path)}
    cfg["model"]["num_classes"] = len(ds.classes)
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
