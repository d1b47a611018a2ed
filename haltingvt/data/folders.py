"""``data.format: folders``: a tree of class folders instead of annotation lists.

Two layouts under ``data.data_root`` (ROOT), as torchvision's ``ImageFolder`` and the Hub's
video-folder datasets use them::

    ROOT/train/<class name>/<clip>       split folders: train/, and val/ and test/ if wanted
    ROOT/val/<class name>/<clip>         (without test/ the test split is val/)
    ROOT/test/<class name>/<clip>

    ROOT/<class name>/<clip>             no split folders: split per class by data.split_ratio
                                         ([train, val, test] or [train, val]) with data.split_seed

A clip is a video file (``.mp4``, ``.webm``, ``.avi``, ``.mkv``, ...) or a folder of frames named by
``data.filename_tmpl`` / ``data.start_index``. Class names are the class folder names, sorted (class
index = position in that order); with split folders they come from ``train/``, and a class folder in
``val/`` or ``test/`` that ``train/`` lacks is an error. Hidden entries (``.name``) and files that are
neither videos nor frame folders (notes, ``.json`` ...) are ignored. Problems of the layout raise
:class:`FolderLayoutError` naming the folder; an unreadable clip is skipped at read time like a bad
line of a list.

    splits = scan_folders("clips/")                  # FolderSplits
    splits.class_names                               # ['cartwheel', 'jump', ...]
    splits.records["train"][0]                       # VideoRecord(path, labels=[0], ...)
"""

from __future__ import annotations

import math
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass

from ..config import ConfigError
from .decoding import DEFAULT_FILENAME_TMPL, frame_filename
from .errors import DataError
from .lists import VIDEO_EXTENSIONS, VideoRecord, is_video_path

SPLIT_FOLDERS = ("train", "val", "test")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
DEFAULT_SPLIT_RATIO = (0.8, 0.1, 0.1)


class FolderLayoutError(DataError, ConfigError):
    """``data.data_root`` is not a usable class-folder tree; the message names the folder and the fix.

    Also a :class:`~haltingvt.config.ConfigError`: the command line reports it as one line.
    """


@dataclass
class FolderSplits:
    """The samples of every split and the class names of one folder tree.

    ``layout`` is ``"split folders"`` or ``"split ratio"``; ``test_is_val`` tells that there is no test
    split of its own (no ``test/`` folder, or a ``split_ratio`` of two values or with a test share of 0)
    and ``records["test"]`` is the val split.
    """

    root: str
    class_names: list[str]
    records: dict[str, list[VideoRecord]]
    layout: str
    test_is_val: bool = False

    def split(self, name: str) -> list[VideoRecord]:
        """The records of split ``name``; FolderLayoutError when it has none."""
        if name not in SPLIT_FOLDERS:
            raise ConfigError(f"split must be one of {', '.join(SPLIT_FOLDERS)}, got '{name}'")
        records = self.records[name]
        if not records:
            folder = os.path.join(self.root, "val" if name == "test" and self.test_is_val else name)
            if self.layout == "split ratio":
                why = (
                    f"data.split_ratio gives the {name} split no clip ({self._total()} clips in {self.root}); "
                    "raise its share or add clips"
                )
            elif not os.path.isdir(folder):
                why = f"{folder}: no such folder, so no {name} split" + (
                    " (set train.val_interval=0 to train without validation)" if name == "val" else ""
                )
            else:
                why = f"{folder}: no clips in its class folders"
            raise FolderLayoutError(why)
        return records

    def _total(self) -> int:
        return sum(len(self.records[s]) for s in ("train", "val")) + (
            0 if self.test_is_val else len(self.records["test"])
        )


def _visible(entries: list[os.DirEntry]) -> list[os.DirEntry]:
    return sorted((e for e in entries if not e.name.startswith(".")), key=lambda e: e.name)


def _list(path: str) -> list[os.DirEntry]:
    try:
        with os.scandir(path) as it:
            return _visible(list(it))
    except FileNotFoundError:
        raise FolderLayoutError(f"{path}: folder not found (data.data_root)") from None
    except NotADirectoryError:
        raise FolderLayoutError(f"{path}: not a folder (data.data_root must be a folder of class folders)") from None
    except PermissionError:
        raise FolderLayoutError(f"{path}: permission denied") from None


def _class_folders(path: str, what: str) -> list[str]:
    """Sorted class folder names of ``path``; errors when there are none or when clips sit directly in it."""
    entries = _list(path)
    clips = [
        e.name for e in entries if e.is_file() and (is_video_path(e.name) or e.name.lower().endswith(IMAGE_EXTENSIONS))
    ]
    if clips:
        raise FolderLayoutError(
            f"{path}: holds clips or frames directly ({clips[0]}, ...); {what} must hold one folder per class: "
            f"{path}/<class name>/<video file or frame folder>"
        )
    classes = [e.name for e in entries if e.is_dir()]
    if not classes:
        raise FolderLayoutError(f"{path}: no class folders; expected {path}/<class name>/<video file or frame folder>")
    return classes


def _clips(class_dir: str) -> list[tuple[str, bool]]:
    """(path, is_video) of every clip in a class folder, sorted by name."""
    out = []
    for e in _list(class_dir):
        if e.is_dir():
            out.append((e.path, False))
        elif e.is_file() and is_video_path(e.name):
            out.append((e.path, True))
        elif e.is_file() and e.name.lower().endswith(IMAGE_EXTENSIONS):
            raise FolderLayoutError(
                f"{class_dir}: holds image files ({e.name}); put the frames of each clip in a folder of their own: "
                f"{class_dir}/<clip>/{frame_filename(DEFAULT_FILENAME_TMPL, 1)} ..."
            )
    return out


def _records(split_dir: str, classes: Sequence[str], index: dict[str, int]) -> list[VideoRecord]:
    records = []
    for name in classes:
        for path, video in _clips(os.path.join(split_dir, name)):
            records.append(VideoRecord(path, [index[name]], None, 0, path, video))
    return records


def _check_ratio(ratio: Sequence[float]) -> tuple[float, ...]:
    try:
        values = tuple(float(r) for r in ratio)
    except (TypeError, ValueError):
        values = ()
    if (
        len(values) not in (2, 3)
        or any(not math.isfinite(v) or v < 0 for v in values)
        or abs(sum(values) - 1.0) > 1e-6
        or values[0] <= 0
    ):
        raise ConfigError(
            f"config key 'data.split_ratio': {list(ratio) if isinstance(ratio, (list, tuple)) else ratio!r} "
            "is not allowed (allowed: [train, val, test] or [train, val], numbers >= 0 that sum to 1, "
            "train > 0)"
        )
    return values


def split_counts(n: int, ratio: Sequence[float]) -> tuple[int, int, int]:
    """(train, val, test) sizes of a class of ``n`` clips: val and test rounded, train the rest (>= 1 when n >= 1)."""
    val = int(round(n * ratio[1]))
    test = int(round(n * ratio[2])) if len(ratio) > 2 else 0
    while (
        n and val + test >= n
    ):  # train keeps at least one clip: take it from the larger held-out split (test on a tie)
        if test >= val:
            test -= 1
        else:
            val -= 1
    return n - val - test, val, test


def scan_folders(
    root: str | os.PathLike,
    *,
    split_ratio: Sequence[float] | None = DEFAULT_SPLIT_RATIO,
    split_seed: int = 0,
    filename_tmpl: str = DEFAULT_FILENAME_TMPL,
    start_index: int = 1,
) -> FolderSplits:
    """Scan a class-folder tree (see the module docstring) into the records of every split.

    With split folders, ``split_ratio`` is not used. Without them the clips of every class are shuffled
    with a generator seeded by ``(split_seed, class name)`` and cut by ``split_ratio``, so the split of a
    class does not change when other classes are added. Raises :class:`FolderLayoutError` naming the
    folder for a missing root, an empty tree, clips outside class folders, a val/test class unknown to
    train, or frame folders whose first frame does not follow ``filename_tmpl`` / ``start_index``.
    """
    root = os.fspath(root)
    top = _list(root)
    dirs = [e.name for e in top if e.is_dir()]
    splits_present = [s for s in SPLIT_FOLDERS if s in dirs]
    if splits_present:
        others = [d for d in dirs if d not in SPLIT_FOLDERS]
        if others:
            raise FolderLayoutError(
                f"{root}: has split folders ({', '.join(s + '/' for s in splits_present)}) and other folders "
                f"({', '.join(others[:5])}{' ...' if len(others) > 5 else ''}); put every class folder under "
                f"{root}/train/, {root}/val/ (and {root}/test/)"
            )
        if "train" not in splits_present:
            raise FolderLayoutError(
                f"{root}: has {', '.join(s + '/' for s in splits_present)} but no train/ folder; split folders "
                f"need train/ (val/ and test/ optional), or drop them and set data.split_ratio"
            )
        classes = _class_folders(os.path.join(root, "train"), f"{root}/train")
        index = {name: i for i, name in enumerate(classes)}
        records = {}
        for split in splits_present:
            split_dir = os.path.join(root, split)
            present = _class_folders(split_dir, f"{root}/{split}") if split != "train" else classes
            unknown = [c for c in present if c not in index]
            if unknown:
                raise FolderLayoutError(
                    f"{split_dir}: class folder(s) {', '.join(unknown[:5])} not in {root}/train (class names come "
                    f"from train/: {', '.join(classes[:10])}{' ...' if len(classes) > 10 else ''})"
                )
            records[split] = _records(split_dir, present, index)
        records.setdefault("val", [])
        test_is_val = "test" not in splits_present
        if test_is_val:
            records["test"] = records["val"]
        result = FolderSplits(root, classes, records, "split folders", test_is_val)
    else:
        ratio = _check_ratio(split_ratio if split_ratio is not None else DEFAULT_SPLIT_RATIO)
        classes = _class_folders(root, root)
        records = {s: [] for s in SPLIT_FOLDERS}
        for label, name in enumerate(classes):
            clips = _clips(os.path.join(root, name))
            order = list(range(len(clips)))
            random.Random(f"{int(split_seed)}/{name}").shuffle(order)
            sizes = split_counts(len(clips), ratio)
            start = 0
            for split, size in zip(SPLIT_FOLDERS, sizes):
                for j in sorted(order[start : start + size]):
                    path, video = clips[j]
                    records[split].append(VideoRecord(path, [label], None, 0, path, video))
                start += size
        test_is_val = len(ratio) == 2 or ratio[2] == 0
        if test_is_val:
            records["test"] = records["val"]
        result = FolderSplits(root, classes, records, "split ratio", test_is_val)
    trained = {r.labels[0] for r in records["train"]}
    empty = [c for i, c in enumerate(classes) if i not in trained]
    if empty:
        where = os.path.join(root, "train") if result.layout == "split folders" else root
        raise FolderLayoutError(
            f"{where}: class folder(s) {', '.join(empty[:5])} hold no video file "
            f"({', '.join(VIDEO_EXTENSIONS[:4])}, ...) or frame folder"
        )
    _check_frame_names(result, filename_tmpl, start_index)
    return result


def _check_frame_names(splits: FolderSplits, filename_tmpl: str, start_index: int) -> None:
    # One stat: a wrong template would otherwise make every frame-folder clip unreadable, one skip at a time.
    first = next((r for s in SPLIT_FOLDERS for r in splits.records[s] if not r.is_video), None)
    if first is None:
        return
    name = frame_filename(filename_tmpl, start_index)
    if not os.path.isfile(os.path.join(first.path, name)):
        seen = sorted(n for n in os.listdir(first.path) if not n.startswith("."))[:3]
        raise FolderLayoutError(
            f"{first.path}: frame folder without '{name}' (data.filename_tmpl='{filename_tmpl}', "
            f"data.start_index={start_index}); it holds {', '.join(seen) if seen else 'nothing'}"
            + (" ..." if seen else "")
        )


def check_num_classes(splits: FolderSplits, num_classes: int) -> None:
    """ConfigError unless the tree has exactly ``num_classes`` class folders (the message gives the fix)."""
    n = len(splits.class_names)
    if n != int(num_classes):
        names = ", ".join(splits.class_names[:8]) + (" ..." if n > 8 else "")
        where = os.path.join(splits.root, "train") if splits.layout == "split folders" else splits.root
        raise ConfigError(
            f"data.data_root: {where} has {n} class folders ({names}) but model.num_classes is {num_classes}; "
            f"set model.num_classes={n}"
        )


__all__ = [
    "FolderLayoutError",
    "FolderSplits",
    "scan_folders",
    "split_counts",
    "check_num_classes",
    "SPLIT_FOLDERS",
    "DEFAULT_SPLIT_RATIO",
]
