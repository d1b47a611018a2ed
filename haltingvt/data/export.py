"""Writing the built-in synthetic clips to disk as frame folders or mp4 files, with the list files the
real data pipeline reads (rawframes: ``frame_dir total_frames label``; video: ``path label``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from .encode import write_mp4
from .lists import write_class_names
from .synthetic import class_names, make_clip

__all__ = ["export"]


def export(
    out_dir: str | Path,
    split: str = "val",
    fmt: str = "frames",
    num_samples: int = 100,
    num_frames: int = 8,
    size: int = 32,
    seed: int = 0,
    classes: Sequence[str] | None = None,
    filename_tmpl: str = "img_{:05}.jpg",
    start_index: int = 1,
    progress: bool = False,
    layout: str = "lists",
) -> Path:
    """Write ``num_samples`` clips of ``split`` under ``out_dir`` and return the list file.

    fmt="frames": ``out_dir/<split>/<name>/img_00001.jpg ...`` and ``out_dir/<split>_rawframes.txt``
    with lines ``<split>/<name> <num_frames> <label>``. fmt="mp4": ``out_dir/<split>/<name>.mp4``
    (H.264 through PyAV) and ``out_dir/<split>_videos.txt`` with lines ``<split>/<name>.mp4 <label>``.
    Paths in the lists are relative to ``out_dir`` (use it as ``data.data_root``); ``classes.txt``
    holds one class name per line. The clips are the same as those of :class:`SyntheticMotion`.

    layout="folders" writes the tree ``data.format: folders`` reads instead (no list file, no
    ``classes.txt``; returns ``out_dir/<split>``): ``out_dir/<split>/<class>/<name>.mp4`` or
    ``out_dir/<split>/<class>/<name>/img_00001.jpg ...``.
    """
    if fmt not in ("frames", "mp4"):
        raise ValueError(f"fmt must be 'frames' or 'mp4', got {fmt!r}")
    if layout not in ("lists", "folders"):
        raise ValueError(f"layout must be 'lists' or 'folders', got {layout!r}")
    names = class_names(classes)
    out_dir = Path(out_dir)
    (out_dir / split).mkdir(parents=True, exist_ok=True)
    if layout == "lists":  # in the folder tree the class names are the folder names
        write_class_names(names, out_dir / "classes.txt")
    lines = []
    indices: Iterable[int] = range(num_samples)
    if progress:
        indices = tqdm(indices, desc=f"export {split} ({fmt})", unit="clip")
    for index in indices:
        frames, label, _ = make_clip(index, split, seed, num_frames, size, names)
        name = f"{names[label]}_{index:06d}"
        rel = f"{split}/{names[label]}/{name}" if layout == "folders" else f"{split}/{name}"
        (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        if fmt == "frames":
            folder = out_dir / rel
            folder.mkdir(exist_ok=True)
            for t, frame in enumerate(frames):
                Image.fromarray(frame).save(folder / filename_tmpl.format(t + start_index), quality=95, subsampling=0)
            lines.append(f"{rel} {num_frames} {label}")
        else:
            write_mp4(out_dir / f"{rel}.mp4", frames, fps=8)
            lines.append(f"{rel}.mp4 {label}")
    if layout == "folders":
        return out_dir / split
    list_file = out_dir / f"{split}_{'rawframes' if fmt == 'frames' else 'videos'}.txt"
    list_file.write_text("\n".join(lines) + "\n")
    return list_file
