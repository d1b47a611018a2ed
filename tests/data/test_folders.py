"""data.format=folders: scanning ROOT/<class>/<clip> trees into records and class names."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from haltingvt.config import ConfigError
from haltingvt.data import build_dataset
from haltingvt.data.folders import (
    FolderLayoutError,
    check_num_classes,
    scan_folders,
    split_counts,
)
from haltingvt.data.lists import read_class_names, write_class_names


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def frame_folder(path: Path, n: int = 2) -> Path:
    for i in range(1, n + 1):
        touch(path / f"img_{i:05}.jpg")
    return path


def class_tree(root: Path, counts: dict[str, int], ext: str = ".mp4") -> Path:
    for name, n in counts.items():
        for i in range(n):
            touch(root / name / f"{name}_{i:03d}{ext}")
    return root


def test_split_folders_give_sorted_class_names_and_labels(tmp_path):
    class_tree(tmp_path / "train", {"walk": 2, "jump": 3, "Zebra crossing": 1})
    class_tree(tmp_path / "val", {"jump": 1, "walk": 1})
    frame_folder(tmp_path / "train" / "walk" / "clip_frames")
    touch(tmp_path / "train" / "walk" / "notes.txt")  # ignored: neither video nor frame folder
    touch(tmp_path / "train" / "walk" / ".hidden.mp4")  # ignored: hidden
    (tmp_path / "train" / ".cache").mkdir()  # ignored: hidden class folder
    splits = scan_folders(tmp_path)
    assert splits.class_names == ["Zebra crossing", "jump", "walk"]  # sorted like ImageFolder
    assert splits.layout == "split folders" and splits.test_is_val
    train = splits.split("train")
    assert [(Path(r.path).name, r.labels, r.is_video) for r in train] == [
        ("Zebra crossing_000.mp4", [0], True),
        ("jump_000.mp4", [1], True),
        ("jump_001.mp4", [1], True),
        ("jump_002.mp4", [1], True),
        ("clip_frames", [2], False),
        ("walk_000.mp4", [2], True),
        ("walk_001.mp4", [2], True),
    ]
    assert [r.labels[0] for r in splits.split("val")] == [1, 2]  # val's labels follow train's class list
    assert splits.split("test") == splits.split("val")  # no test/: test is val


def test_split_ratio_is_per_class_seeded_and_disjoint(tmp_path):
    class_tree(tmp_path, {"a": 20, "b": 10, "c": 1})
    s = scan_folders(tmp_path, split_ratio=[0.6, 0.2, 0.2], split_seed=3)
    assert s.layout == "split ratio" and not s.test_is_val
    paths = {k: [r.path for r in s.records[k]] for k in ("train", "val", "test")}
    assert [len(paths[k]) for k in ("train", "val", "test")] == [12 + 6 + 1, 4 + 2, 4 + 2]
    all_paths = sum(paths.values(), [])
    assert len(set(all_paths)) == 31  # every clip in exactly one split
    again = scan_folders(tmp_path, split_ratio=[0.6, 0.2, 0.2], split_seed=3)
    assert [r.path for r in again.records["val"]] == paths["val"]  # same seed: same split
    other = scan_folders(tmp_path, split_ratio=[0.6, 0.2, 0.2], split_seed=4)
    assert [r.path for r in other.records["val"]] != paths["val"]
    # Adding a class leaves the split of the others as it was.
    class_tree(tmp_path, {"aa": 5})
    grown = scan_folders(tmp_path, split_ratio=[0.6, 0.2, 0.2], split_seed=3)
    assert [r.path for r in grown.records["val"] if "/aa/" not in r.path] == paths["val"]
    assert grown.class_names == ["a", "aa", "b", "c"]


def test_two_value_ratio_and_zero_test_share_make_test_the_val_split(tmp_path):
    class_tree(tmp_path, {"a": 10, "b": 10})
    for ratio in ([0.8, 0.2], [0.8, 0.2, 0.0]):
        s = scan_folders(tmp_path, split_ratio=ratio)
        assert s.test_is_val and s.split("test") == s.split("val") and len(s.split("val")) == 4


def test_split_counts_keep_one_train_clip():
    assert split_counts(10, (0.8, 0.1, 0.1)) == (8, 1, 1)
    assert split_counts(1, (0.8, 0.1, 0.1)) == (1, 0, 0)
    assert split_counts(2, (0.2, 0.4, 0.4)) == (1, 1, 0)
    assert split_counts(0, (0.8, 0.2)) == (0, 0, 0)


@pytest.mark.parametrize("ratio", [[0.5, 0.2, 0.2], [1.2, -0.2], [0.0, 1.0], [1.0], "0.8", [0.5, "x", 0.5]])
def test_bad_split_ratio_names_the_key(tmp_path, ratio):
    class_tree(tmp_path, {"a": 3})
    with pytest.raises(ConfigError, match=r"data\.split_ratio.*sum to 1"):
        scan_folders(tmp_path, split_ratio=ratio)


def test_layout_errors_name_the_folder_and_the_fix(tmp_path):
    with pytest.raises(FolderLayoutError, match="missing: folder not found"):
        scan_folders(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FolderLayoutError, match="empty: no class folders"):
        scan_folders(tmp_path / "empty")
    touch(tmp_path / "flat" / "a.mp4")
    with pytest.raises(FolderLayoutError, match=r"flat: holds clips or frames directly \(a\.mp4"):
        scan_folders(tmp_path / "flat")
    frame_folder(tmp_path / "frames_in_class" / "run", 1)
    with pytest.raises(FolderLayoutError, match="run: holds image files .*folder of their own"):
        scan_folders(tmp_path / "frames_in_class")
    class_tree(tmp_path / "mixed" / "train", {"a": 1})
    class_tree(tmp_path / "mixed", {"b": 1})
    with pytest.raises(FolderLayoutError, match=r"split folders \(train/\) and other folders \(b\)"):
        scan_folders(tmp_path / "mixed")
    class_tree(tmp_path / "unknown" / "train", {"a": 1})
    class_tree(tmp_path / "unknown" / "val", {"a": 1, "b": 1})
    with pytest.raises(FolderLayoutError, match=r"val: class folder\(s\) b not in .*train"):
        scan_folders(tmp_path / "unknown")
    class_tree(tmp_path / "noclips", {"a": 1})
    (tmp_path / "noclips" / "b").mkdir()
    touch(tmp_path / "noclips" / "b" / "readme.txt")
    with pytest.raises(FolderLayoutError, match=r"class folder\(s\) b hold no video file"):
        scan_folders(tmp_path / "noclips")
    class_tree(tmp_path / "valonly" / "val", {"a": 1})
    with pytest.raises(FolderLayoutError, match="no train/ folder"):
        scan_folders(tmp_path / "valonly")


def test_missing_val_folder_is_an_error_only_when_val_is_used(tmp_path):
    class_tree(tmp_path / "train", {"a": 2, "b": 2})
    s = scan_folders(tmp_path)
    assert len(s.split("train")) == 4
    with pytest.raises(FolderLayoutError, match=r"val: no such folder.*train\.val_interval=0"):
        s.split("val")


def test_wrong_frame_template_is_caught_at_scan_time(tmp_path):
    touch(tmp_path / "a" / "clip0" / "frame_0000.png")
    with pytest.raises(
        FolderLayoutError,
        match=r"clip0: frame folder without 'img_00001\.jpg' "
        r"\(data\.filename_tmpl='img_\{:05\}\.jpg', data\.start_index=1\); "
        r"it holds frame_0000\.png",
    ):
        scan_folders(tmp_path, split_ratio=[1.0, 0.0])
    s = scan_folders(tmp_path, split_ratio=[1.0, 0.0], filename_tmpl="frame_{:04}.png", start_index=0)
    assert [r.is_video for r in s.split("train")] == [False]


def test_num_classes_check_gives_the_setting(tmp_path):
    class_tree(tmp_path, {"a": 2, "b": 2, "c": 2})
    s = scan_folders(tmp_path)
    check_num_classes(s, 3)
    with pytest.raises(
        ConfigError,
        match=r"has 3 class folders \(a, b, c\) but model.num_classes is 200; "
        r"set model.num_classes=3",
    ):
        check_num_classes(s, 200)


def test_class_names_round_trip_through_the_list_reader(tmp_path):
    names = ["jump", "push up", "walk"]
    assert read_class_names(write_class_names(names, tmp_path / "classes.txt")) == names


# ------------------------------------------------------------------------- through build_dataset
def folder_cfg(root: Path, num_classes: int, **data) -> dict:
    return {
        "model": {"num_classes": num_classes},
        "loss": {"multi_label": False},
        "data": {
            "format": "folders",
            "data_root": str(root),
            "classes": None,
            "split_ratio": [0.5, 0.5],
            "split_seed": 0,
            "clip_len": 4,
            "frame_interval": 1,
            "train_scale": [32, 32],
            "crop_size": 32,
            "test_scale": 32,
            "randaugment": None,
            **data,
        },
    }


def test_build_dataset_reads_mp4_clips_and_exposes_the_class_names(tmp_path):
    from haltingvt.data.export import export

    for split, n in (("train", 6), ("val", 3)):
        export(
            tmp_path,
            split,
            "mp4",
            n,
            num_frames=4,
            size=32,
            classes=["move_left", "move_right", "grow"],
            layout="folders",
        )
    assert not (tmp_path / "classes.txt").exists()
    train = build_dataset(folder_cfg(tmp_path, 3), "train")
    assert train.classes == ["grow", "move_left", "move_right"]
    item = train[0]
    assert item["clips"].shape == (2, 3, 4, 32, 32) and item["clips"].dtype == torch.uint8
    assert int(item["label"]) == train.classes.index(Path(item["path"]).parent.name)
    test = build_dataset(folder_cfg(tmp_path, 3), "test")  # no test/: the val split
    assert len(test) == 3 and test[0]["clips"].shape == (1, 3, 4, 32, 32)


def test_build_dataset_config_errors(tmp_path):
    class_tree(tmp_path, {"a": 2, "b": 2})
    with pytest.raises(ConfigError, match="set model.num_classes=2"):
        build_dataset(folder_cfg(tmp_path, 5), "train")
    with pytest.raises(ConfigError, match="data.data_root' is not set"):
        build_dataset(folder_cfg(tmp_path, 2, data_root=None), "train")
    with pytest.raises(ConfigError, match="data.classes' is not used with data.format=folders"):
        build_dataset(folder_cfg(tmp_path, 2, classes="names.txt"), "train")
