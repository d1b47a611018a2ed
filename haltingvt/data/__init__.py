"""Data pipeline: annotation lists -> decoded frames -> sampled, augmented uint8 clips.

    from haltingvt.data import build_dataset, collate_train, normalize
    ds = build_dataset(cfg, "train")                 # Mini-Kinetics / ActivityNet / own lists
    loader = DataLoader(ds, batch_size=16, num_workers=8, collate_fn=collate_train)
    batch = next(iter(loader))                       # uint8 (2b, 3, T, H, W), real/static interleaved
    clips = normalize(batch["clips"].cuda(non_blocking=True))

Modules: :mod:`.lists` (list and class-name files), :mod:`.decoding` (Pillow frame folders,
PyAV videos), :mod:`.sampling` (frame indices), :mod:`.transforms` (torchvision v2 clip
transforms, ``normalize``), :mod:`.datasets` (datasets, collate functions, ``load_views``).
"""

from .datasets import (
    ClipDataset,
    build_dataset,
    build_transform,
    collate_eval,
    collate_train,
    load_views,
    read_test_views,
)
from .decoding import FrameFolderReader, VideoReader, open_reader
from .errors import DataError, ListFormatError
from .lists import VideoRecord, is_video_path, read_class_names, read_list
from .sampling import sample_frame_indices
from .transforms import EvalTransform, ThreeCrop, build_train_transform, normalize

__all__ = [
    "ClipDataset",
    "build_dataset",
    "build_transform",
    "collate_eval",
    "collate_train",
    "load_views",
    "read_test_views",
    "FrameFolderReader",
    "VideoReader",
    "open_reader",
    "DataError",
    "ListFormatError",
    "VideoRecord",
    "is_video_path",
    "read_class_names",
    "read_list",
    "sample_frame_indices",
    "EvalTransform",
    "ThreeCrop",
    "build_train_transform",
    "normalize",
]
