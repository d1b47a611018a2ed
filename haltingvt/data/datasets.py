"""Datasets, collate functions and single-video loading.

Train samples are motion-loss pairs (docs/design.md, section 2): the real clip and a static clip. The
static clip is one of the real clip's sampled frames, picked at random, decoded once (it is
already in memory), augmented with the training transform independently of the real clip
(same kind of augmentation, its own random draw) and repeated T times; augmenting one frame
and repeating it equals augmenting the repeated clip because every frame of a clip gets the
same operation. With ``data.static_from_other_video`` the frame comes from another random
video of the list (falling back to the sample's own frame if that one is unreadable). Both
clips carry the sample's action label.

Val/test samples hold ``test_num_clips * test_num_crops`` views, crop-major as MMAction2's
``FormatShape`` leaves them after ``ThreeCrop``: view ``v = crop * num_clips + clip``.

Unreadable samples do not raise: ``__getitem__`` returns ``{"error", "index", "path"}`` and
the collate functions drop them (``collate_train`` lists them in ``"skipped"``,
``collate_eval`` in ``"errors"``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from ..config import ConfigError, check_split, load_config
from .decoding import DEFAULT_FILENAME_TMPL, FrameFolderReader, VideoReader, open_reader
from .errors import DataError
from .folders import check_num_classes, scan_folders
from .lists import LIST_FORMATS, VideoRecord, read_class_names, read_list
from .sampling import SHORT_VIDEO_MODES, TEST_SAMPLING_MODES, sample_frame_indices
from .synthetic import build_synthetic
from .transforms import EvalTransform, build_train_transform, frames_to_video, to_model_layout


class ClipDataset(Dataset):
    """Clips from videos or frame folders listed in :class:`VideoRecord` s.

    Args:
        records: the samples (see :func:`haltingvt.data.lists.read_list`).
        transform: train: a transform uint8 (T, C, H, W) -> (T, C, h, w) (random);
            eval: a :class:`EvalTransform` uint8 (T, C, H, W) -> (num_crops, T, C, h, w).
        train: motion pairs with random sampling (True) or deterministic multi-view (False).
        clip_len, frame_interval, num_clips: frame sampling (see :mod:`.sampling`).
        num_classes, multi_label: label format (long scalar, or float multi-hot (K,)).
        filename_tmpl, start_index: frame-folder file names.
        short_video: "loop" or "clamp" for indices past the end of a short video.
        test_sampling: "mmaction2" (1.x, default) or "segments" (0.x) test-mode clip starts.
        static_from_other_video: take the static frame from another random video.
        classes: optional class names in label order (folder names, or ``data.classes``).
        decode_threads: FFmpeg threads per video (1 is safe inside DataLoader workers).

    Items: train ``{"clips": uint8 (2, 3, T, h, w) [real, static], "label", "index", "path"}``,
    eval ``{"clips": uint8 (V, 3, T, h, w), "label", "index", "path"}``, or the error dict.
    """

    def __init__(
        self,
        records: Sequence[VideoRecord],
        transform: Any,
        *,
        train: bool,
        clip_len: int,
        frame_interval: int,
        num_clips: int = 1,
        num_classes: int,
        multi_label: bool = False,
        filename_tmpl: str = DEFAULT_FILENAME_TMPL,
        start_index: int = 1,
        short_video: str = "loop",
        test_sampling: str = "mmaction2",
        static_from_other_video: bool = False,
        classes: list[str] | None = None,
        decode_threads: int = 1,
    ) -> None:
        if short_video not in SHORT_VIDEO_MODES:
            raise ConfigError(f"data.short_video must be one of {', '.join(SHORT_VIDEO_MODES)}, got '{short_video}'")
        if test_sampling not in TEST_SAMPLING_MODES:
            raise ConfigError(
                f"data.test_sampling must be one of {', '.join(TEST_SAMPLING_MODES)}, got '{test_sampling}'"
            )
        if train and num_clips != 1:
            raise ConfigError(f"data.num_clips must be 1 for training (one real + one static clip), got {num_clips}")
        self.records = list(records)
        self.transform = transform
        self.train = train
        self.clip_len = int(clip_len)
        self.frame_interval = int(frame_interval)
        self.num_clips = int(num_clips)
        self.num_classes = int(num_classes)
        self.multi_label = bool(multi_label)
        self.filename_tmpl = filename_tmpl
        self.start_index = int(start_index)
        self.short_video = short_video
        self.test_sampling = test_sampling
        self.static_from_other_video = bool(static_from_other_video)
        self.classes = classes
        self.decode_threads = decode_threads

    def __len__(self) -> int:
        return len(self.records)

    @property
    def num_views(self) -> int:
        return 2 if self.train else self.num_clips * getattr(self.transform, "num_crops", 1)

    def label(self, index: int) -> torch.Tensor:
        """Target of sample ``index``: long scalar, or float multi-hot (num_classes,)."""
        labels = self.records[index].labels
        if not self.multi_label:
            return torch.tensor(labels[0], dtype=torch.long)
        target = torch.zeros(self.num_classes)
        target[labels] = 1.0
        return target

    def reader(self, record: VideoRecord) -> FrameFolderReader | VideoReader:
        return open_reader(
            record.path,
            is_video=record.is_video,
            filename_tmpl=self.filename_tmpl,
            start_index=self.start_index,
            num_frames=None if record.is_video else record.total_frames,
            offset=record.offset,
            threads=self.decode_threads,
        )

    def __getitem__(self, index: int) -> dict:
        record = self.records[index]
        try:
            clips = self._train_clips(index) if self.train else self._eval_clips(record)
        except DataError as err:
            return {"error": str(err), "index": index, "path": record.path}
        return {"clips": clips, "label": self.label(index), "index": index, "path": record.path}

    def _train_indices(self, num_frames: int) -> list[int]:
        idx = sample_frame_indices(
            num_frames, self.clip_len, self.frame_interval, 1, train=True, short_video=self.short_video
        )
        return idx[0].tolist()

    def _train_clips(self, index: int) -> torch.Tensor:
        reader = self.reader(self.records[index])
        frames = reader.read(self._train_indices(reader.num_frames), self.short_video)
        static_frame = frames[int(torch.randint(len(frames), ()))]
        if self.static_from_other_video and len(self.records) > 1:
            static_frame = self._other_static_frame(index, static_frame)
        real = self.transform(frames_to_video(frames))
        static = self.transform(frames_to_video([static_frame])).expand(len(frames), -1, -1, -1)
        return torch.stack([to_model_layout(real), to_model_layout(static)])

    def _other_static_frame(self, index: int, fallback):
        other = int(torch.randint(len(self.records) - 1, ()))
        if other >= index:  # any record but this one
            other += 1
        try:
            reader = self.reader(self.records[other])
            indices = self._train_indices(reader.num_frames)
            return reader.read([indices[int(torch.randint(len(indices), ()))]], self.short_video)[0]
        except DataError:
            return fallback

    def _eval_clips(self, record: VideoRecord) -> torch.Tensor:
        return read_test_views(
            self.reader(record),
            self.transform,
            self.clip_len,
            self.frame_interval,
            self.num_clips,
            self.short_video,
            self.test_sampling,
        )


def read_test_views(
    reader: FrameFolderReader | VideoReader,
    transform: EvalTransform,
    clip_len: int,
    frame_interval: int,
    num_clips: int,
    short_video: str = "loop",
    test_sampling: str = "mmaction2",
) -> torch.Tensor:
    """Deterministic test views of one video -> uint8 (num_crops * num_clips, 3, T, h, w), crop-major
    (view ``crop * num_clips + clip``, the order of MMAction2's ``ThreeCrop`` + ``FormatShape``)."""
    indices = sample_frame_indices(
        reader.num_frames,
        clip_len,
        frame_interval,
        num_clips,
        train=False,
        short_video=short_video,
        test_sampling=test_sampling,
    )
    frames = reader.read(indices.flatten().tolist(), short_video)
    views = transform(frames_to_video(frames))  # (crops, clips*T, C, h, w); the test transform is deterministic
    _, _, c, h, w = views.shape
    return to_model_layout(views.reshape(-1, clip_len, c, h, w))


def build_transform(cfg: Mapping, split: str):
    """The split's transform from ``cfg["data"]``: train random augmentation, val/test views."""
    data = load_config(cfg)["data"]  # a partial dict gets the defaults
    if split == "train":
        return build_train_transform(data["train_scale"], data["crop_size"], data["randaugment"], data["resize"])
    return EvalTransform(data["test_scale"], data["crop_size"], data["test_num_crops"], data["resize"])


def build_dataset(cfg: Mapping, split: str) -> Dataset:
    """Dataset of ``split`` ("train", "val", "test") as configured in ``cfg["data"]``.

    ``data.format``: ``video`` | ``rawframes`` | ``arnet`` (annotation lists, see
    :mod:`.lists`), ``folders`` (class folders under ``data.data_root``, see :mod:`.folders`)
    or ``synthetic`` (:func:`haltingvt.data.synthetic.build_synthetic`).
    Raises ConfigError for bad keys, FileNotFoundError for a missing list,
    ListFormatError (``file:line``) for a malformed one and FolderLayoutError for a bad folder tree.
    The dataset's ``classes`` are the class names (folder names, ``data.classes``) or None.
    """
    check_split(split)
    cfg = load_config(cfg)  # a partial dict gets the defaults; a loaded config stays as it is
    data = cfg["data"]
    fmt = data["format"]
    if fmt == "synthetic":
        return build_synthetic(cfg, split)
    if fmt == "folders":
        return _folder_dataset(cfg, split)
    if fmt not in LIST_FORMATS:
        raise ConfigError(
            f"data.format must be one of {', '.join(LIST_FORMATS + ('folders', 'synthetic'))}, got '{fmt}'"
        )
    list_key = f"data.{split}_list"
    list_path = data[f"{split}_list"]
    if not list_path:
        raise ConfigError(f"config key '{list_key}' is not set")
    if not os.path.isfile(list_path):
        raise FileNotFoundError(f"annotation list not found: {list_path} ({list_key})")
    num_classes = cfg["model"]["num_classes"]
    multi_label = cfg["loss"]["multi_label"]
    records = read_list(
        list_path,
        fmt,
        data["data_root"],
        with_offset=data["with_offset"],
        num_classes=num_classes,
        multi_label=multi_label,
    )
    classes = None
    if data["classes"]:
        classes = read_class_names(data["classes"])
        if len(classes) != num_classes:
            raise ConfigError(
                f"data.classes: {data['classes']} names {len(classes)} classes but model.num_classes is {num_classes}"
            )
    return _clip_dataset(cfg, split, records, classes)


def _folder_dataset(cfg: Mapping, split: str) -> ClipDataset:
    data = cfg["data"]
    if not data["data_root"]:
        raise ConfigError("config key 'data.data_root' is not set (data.format=folders reads ROOT/<class>/<clip>)")
    if data["classes"]:
        raise ConfigError(
            "config key 'data.classes' is not used with data.format=folders (the class names are the "
            "folder names): set data.classes=null"
        )
    if cfg["loss"]["multi_label"]:
        raise ConfigError("data.format=folders gives one label per clip: set loss.multi_label=false")
    splits = scan_folders(
        data["data_root"],
        split_ratio=data["split_ratio"],
        split_seed=data["split_seed"],
        filename_tmpl=data["filename_tmpl"],
        start_index=data["start_index"],
    )
    check_num_classes(splits, cfg["model"]["num_classes"])
    return _clip_dataset(cfg, split, splits.split(split), splits.class_names)


def _clip_dataset(cfg: Mapping, split: str, records: Sequence[VideoRecord], classes: list[str] | None) -> ClipDataset:
    """A ClipDataset of ``records`` with the sampling, transform and label settings of the (loaded) ``cfg``."""
    data = cfg["data"]
    train = split == "train"
    return ClipDataset(
        records,
        build_transform(cfg, split),
        train=train,
        clip_len=data["clip_len"],
        frame_interval=data["frame_interval"],
        num_clips=data["num_clips"] if train else data["test_num_clips"],
        num_classes=cfg["model"]["num_classes"],
        multi_label=cfg["loss"]["multi_label"],
        filename_tmpl=data["filename_tmpl"],
        start_index=data["start_index"],
        short_video=data["short_video"],
        test_sampling=data["test_sampling"],
        static_from_other_video=data["static_from_other_video"] and train,
        classes=classes,
    )


def load_views(path: str | os.PathLike, cfg: Mapping) -> torch.Tensor:
    """One video file or frame folder through the test pipeline of ``cfg["data"]``
    -> uint8 (V, 3, T, h, w), V = test_num_clips * test_num_crops (clip-major).

    Raises :class:`DataError` naming the path if it is missing or unreadable.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DataError(f"{path}: no such video file or frame folder")
    cfg = load_config(cfg)
    data = cfg["data"]
    reader = open_reader(
        path,
        is_video=not os.path.isdir(path),
        filename_tmpl=data["filename_tmpl"],
        start_index=data["start_index"],
    )
    return read_test_views(
        reader,
        build_transform(cfg, "test"),
        data["clip_len"],
        data["frame_interval"],
        data["test_num_clips"],
        data["short_video"],
        data["test_sampling"],
    )


def _split_errors(samples: Sequence[dict]) -> tuple[list[dict], list[dict]]:
    good = [s for s in samples if "error" not in s]
    bad = [s for s in samples if "error" in s]
    return good, bad


def _stack_labels(samples: Sequence[dict]) -> torch.Tensor:
    return torch.stack([s["label"] for s in samples]) if samples else torch.zeros(0, dtype=torch.long)


def collate_train(samples: Sequence[dict]) -> dict:
    """Batch of motion pairs, bad samples dropped.

    -> ``{"clips": uint8 (2b, 3, T, H, W) real, static, real, static, ...,
    "label": (2b,) long or (2b, K) float, "motion_label": (2b,) long [1, 0, 1, 0, ...],
    "index": (b,) long, "path": list[str] (b), "skipped": list[str] error messages}``;
    b counts the good samples and may be 0 (then ``clips`` has shape (0, 3, 0, 0, 0)).
    """
    good, bad = _split_errors(samples)
    if good:
        clips = torch.stack([s["clips"] for s in good]).flatten(0, 1)  # (b, 2, ...) -> interleaved (2b, ...)
    else:
        clips = torch.zeros((0, 3, 0, 0, 0), dtype=torch.uint8)
    return {
        "clips": clips,
        "label": _stack_labels(good).repeat_interleave(2, dim=0),
        "motion_label": torch.tensor([1, 0] * len(good), dtype=torch.long),
        "index": torch.tensor([s["index"] for s in good], dtype=torch.long),
        "path": [s["path"] for s in good],
        "skipped": [s["error"] for s in bad],
    }


def collate_eval(samples: Sequence[dict]) -> dict:
    """Batch of multi-view samples, bad samples reported.

    -> ``{"clips": uint8 (b, V, 3, T, H, W), "label": (b,) long or (b, K) float,
    "index": (b,) long, "path": list[str], "errors": list[(index, path, message)]}``.
    """
    good, bad = _split_errors(samples)
    clips = torch.stack([s["clips"] for s in good]) if good else torch.zeros((0, 0, 3, 0, 0, 0), dtype=torch.uint8)
    return {
        "clips": clips,
        "label": _stack_labels(good),
        "index": torch.tensor([s["index"] for s in good], dtype=torch.long),
        "path": [s["path"] for s in good],
        "errors": [(s["index"], s["path"], s["error"]) for s in bad],
    }
