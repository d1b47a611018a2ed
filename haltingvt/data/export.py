"""Writing the built-in synthetic clips to disk as frame folders or mp4 files, with the list files the
real data pipeline reads (rawframes: ``frame_dir total_frames label``; video: ``path label``)."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

from PIL import Image
from tqdm import tqdm

from .encode import write_mp4
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
) -> Path:
    """Write ``num_samples`` clips of ``split`` under ``out_dir`` and return the list file.

    fmt="frames": ``out_dir/<split>/<name>/img_00001.jpg ...`` and ``out_dir/<split>_rawframes.txt``
    with lines ``<split>/<name> <num_frames> <label>``. fmt="mp4": ``out_dir/<split>/<name>.mp4``
    (H.264 through PyAV) and ``out_dir/<split>_videos.txt`` with lines ``<split>/<name>.mp4 <label>``.
    Paths in the lists are relative to ``out_dir`` (use it as ``data.data_root``); ``classes.txt``
    holds one class name per line. The clips are the same as those of :class:`SyntheticMotion`.
    """
    if fmt not in ("frames", "mp4"):
        raise ValueError(f"fmt must be 'frames' or 'mp4', got {fmt!r}")
    names = class_names(classes)
    out_dir = Path(out_dir)
    (out_dir / split).mkdir(parents=True, exist_ok=True)
    (out_dir / "classes.txt").write_text("\n".join(names) + "\n")
    lines = []
    indices: Iterable[int] = range(num_samples)
    if progress:
        indices = tqdm(indices, desc=f"export {split} ({fmt})", unit="clip")
    for index in indices:
        frames, label, _ = make_clip(index, split, seed, num_frames, size, names)
        name = f"{names[label]}_{index:06d}"
        if fmt == "frames":
            folder = out_dir / split / name
            folder.mkdir(exist_ok=True)
            for t, frame in enumerate(frames):
                Image.fromarray(frame).save(folder / filename_tmpl.format(t + start_index), quality=95, subsampling=0)
            lines.append(f"{split}/{name} {num_frames} {label}")
        else:
            write_mp4(out_dir / split / f"{name}.mp4", frames, fps=8)
            lines.append(f"{split}/{name}.mp4 {label}")
    list_file = out_dir / f"{split}_{'rawframes' if fmt == 'frames' else 'videos'}.txt"
    list_file.write_text("\n".join(lines) + "\n")
    return list_file
