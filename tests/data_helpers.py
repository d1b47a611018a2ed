"""Tiny data generators for the data-pipeline tests and the benchmark.

Frames encode their number: ``numbered_frame(i)`` is a uniform grey of brightness
``BASE + STEP * i`` (decodes back with :func:`frame_number`), optionally with a texture
so that lossy codecs and JPEG see realistic content.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from haltingvt.config import load_config
from haltingvt.data.encode import write_mp4

BASE, STEP = 10, 5


def numbered_frame(i: int, height: int = 48, width: int = 64) -> np.ndarray:
    """uint8 (H, W, 3), brightness ``BASE + STEP * i`` (i < 49)."""
    return np.full((height, width, 3), BASE + STEP * i, dtype=np.uint8)


def frame_number(frame: np.ndarray) -> int:
    """Inverse of :func:`numbered_frame` (robust to codec noise of +-2)."""
    return int(round((float(np.asarray(frame, dtype=np.float64).mean()) - BASE) / STEP))


def textured_frame(i: int, height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """Smooth moving colour pattern, uint8 (H, W, 3): compresses like a real video."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = 0.3 * i + seed
    r = 127 + 100 * np.sin(x / 7.0 + phase)
    g = 127 + 100 * np.cos(y / 5.0 - phase)
    b = 127 + 100 * np.sin((x + y) / 11.0 + 0.5 * phase)
    return np.stack([r, g, b], -1).clip(0, 255).astype(np.uint8)


def write_video(
    path: str | os.PathLike,
    frames: Sequence[np.ndarray],
    codec: str = "mpeg4",
    fps: int = 25,
    gop: int = 10,
    quality: int | None = 2,
) -> Path:
    """Encode RGB uint8 frames with PyAV (container from the file extension)."""
    options = (
        {"crf": "10", "bf": "3"} if codec in ("libx264", "h264") else {}
    )  # B-frames: decode order != display order
    qscale = quality if codec == "mpeg4" else None  # near-lossless mpeg4
    return write_mp4(path, frames, fps=fps, codec=codec, pix_fmt="yuv420p", options=options, gop=gop, qscale=qscale)


def write_numbered_video(path: str | os.PathLike, num_frames: int = 40, codec: str = "mpeg4", **kw) -> Path:
    return write_video(path, [numbered_frame(i) for i in range(num_frames)], codec=codec, **kw)


def write_frame_folder(
    folder: str | os.PathLike,
    frames: Sequence[np.ndarray],
    filename_tmpl: str = "img_{:05}.jpg",
    start_index: int = 1,
    quality: int = 95,
) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for i, arr in enumerate(frames):
        Image.fromarray(arr).save(folder / filename_tmpl.format(start_index + i), quality=quality)
    return folder


def write_numbered_folder(folder: str | os.PathLike, num_frames: int = 40, **kw) -> Path:
    return write_frame_folder(folder, [numbered_frame(i) for i in range(num_frames)], **kw)


def truncate_file(path: str | os.PathLike, keep: float = 0.5) -> Path:
    """Cut a file to a fraction of its size (a broken download)."""
    path = Path(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def write_lines(path: str | os.PathLike, lines: Sequence[str]) -> Path:
    path = Path(path)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def small_config(tmp_path: str | os.PathLike, fmt: str, train_list: str, val_list: str | None = None, **data) -> dict:
    """A full config (the Mini-Kinetics base) shrunk to tiny inputs: 4 frames of 32x32."""
    cfg = load_config("minik_g03_b10")
    cfg["model"]["num_classes"] = data.pop("num_classes", 5)
    cfg["loss"]["multi_label"] = data.pop("multi_label", False)
    cfg["data"].update(
        format=fmt,
        data_root=str(tmp_path),
        train_list=str(train_list),
        val_list=str(val_list or train_list),
        test_list=str(val_list or train_list),
        clip_len=4,
        frame_interval=3,
        train_scale=[36, 44],
        crop_size=32,
        test_scale=36,
        num_workers=0,
    )
    cfg["data"].update(data)
    return cfg
