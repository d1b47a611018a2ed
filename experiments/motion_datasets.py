"""Motion datasets for the recipe benchmark (experiments/motion_recipes.py), made by their own renderers.

Each dataset is written to disk in a format the real data pipeline reads, so training goes through
``haltingvt train`` exactly as for a downloaded dataset. Every class is the time reversal of another
one (the "direction" pairs), so a model that only learns the axis of motion scores about 50% inside
each pair. The object's position/size in any single frame has the same distribution for both
members of a pair, so a static frame does not tell them apart.

==========  ======  =========  ==========================================================  ==========
dataset     source  classes    content                                                     on disk
==========  ======  =========  ==========================================================  ==========
``shapes6`` 64 px   6 (3       one flat-coloured disc/square/triangle on a smooth-noise    JPEG frame
            32 fr   pairs)     background: left/right, up/down, zoom in/out; 1.5 px of     folders, AR-Net
                               travel per sampled frame at 32 px                           lists
``paths10`` 96 px   10 (5      one flat-coloured shape with an outline: the 8 compass      JPEG frames,
            32 fr   pairs)     directions (4 axis, 4 diagonal) and an orbit clockwise /    rawframes lists
                               counter-clockwise; 1-2 px per sampled frame at 32 px        (``frame_{:04}``)
``clutter6``48 px   6 (3       shapes6's classes with a second, jittering distractor        mp4 (H.264
            32 fr   pairs)     object, a textured background and per-frame camera noise,    4:2:0), video
                               compressed to 4:2:0 H.264                                    lists
``turns8``  80 px   8 (4       an asymmetric kite or a triangle: left/right, zoom in/out,   JPEG frame
            32 fr   pairs)     spin in place cw/ccw, orbit cw/ccw; its tip moves 1-2 px     folders, AR-Net
                               per sampled frame at 32 px (made after the recipe was set,   lists
                               to check it on classes it was not tuned on)                  (``{:05}.jpg``)
==========  ======  =========  ==========================================================  ==========

Frames are sampled by the benchmark as clip 8 x interval 3 (22 source frames of 32), so "per sampled
frame" travel is 3 source frames of travel. Every clip is drawn from
``numpy.random.default_rng([seed, split_id, index])``: the same files whatever the order of writing.

    python -m experiments.motion_datasets OUT_DIR [--datasets shapes6 paths10 clutter6 turns8] [--num 4800 400 400]
"""

from __future__ import annotations

import argparse
import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from haltingvt.data.encode import write_mp4

SPLIT_IDS = {"train": 0, "val": 1, "test": 2}
NUM_FRAMES = 32  # source frames per video
SAMPLED_STRIDE = 3  # the benchmark's frame_interval: travel per *sampled* frame = 3 source frames
MODEL_SIZE = 32  # the model's input size; speeds are given in pixels at this size
RADIUS = (0.15, 0.22)  # object "radius", fraction of the frame size (at 32 px: 5-7 px, about one patch)
ZOOM_START = (0.10, 0.14)  # radius of a zooming object at its smallest


# ----------------------------------------------------------------------------------- drawing helpers
def smooth_noise(rng: np.random.Generator, size: int, cells: int, amplitude: float) -> np.ndarray:
    """(size, size, 3) float background: a random mean colour plus bicubic-upsampled cell noise."""
    base = rng.uniform(50, 200, size=3)
    coarse = rng.normal(0.0, amplitude, size=(cells, cells, 3))
    up = np.stack(
        [
            np.asarray(Image.fromarray(coarse[..., c].astype(np.float32), mode="F").resize((size, size), Image.BICUBIC))
            for c in range(3)
        ],
        axis=-1,
    )
    return base + up


def shape_sdf(kind: str, xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """Signed distance (pixels, negative inside) of a shape of "radius" r centred at (cx, cy)."""
    ca, sa = math.cos(angle), math.sin(angle)
    u = (xx - cx) * ca + (yy - cy) * sa
    v = -(xx - cx) * sa + (yy - cy) * ca
    if kind == "disc":
        return np.hypot(u, v) - r
    if kind == "square":
        s = r * 0.85
        return np.maximum(np.abs(u), np.abs(v)) - s
    if kind == "triangle":  # equilateral, circumradius r: max of the three edge half-planes
        d = np.full_like(u, -np.inf)
        for k in range(3):
            a = 2 * math.pi * k / 3 + math.pi / 2
            d = np.maximum(d, u * math.cos(a) + v * math.sin(a) - r / 2)
        return d
    if kind == "kite":  # asymmetric: a wide head and a narrow tail
        return np.maximum(np.hypot(u * 0.8, v) - r * 0.8, -u - r * 0.5)
    raise ValueError(kind)


def paint(img: np.ndarray, sdf: np.ndarray, colour: np.ndarray, outline: np.ndarray | None = None) -> None:
    """Composite a flat colour where sdf < 0 with a one-pixel anti-aliased edge (in place)."""
    alpha = np.clip(0.5 - sdf, 0.0, 1.0)[..., None]
    if outline is not None:
        ring = np.clip(1.0 - np.abs(sdf + 1.0), 0.0, 1.0)[..., None]
        img[:] = img * (1 - alpha) + colour * alpha
        img[:] = img * (1 - ring) + outline * ring
        return
    img[:] = img * (1 - alpha) + colour * alpha


def draw_clip(
    bg: np.ndarray,
    kind: str,
    centres: np.ndarray,
    radii: np.ndarray,
    angle: float | np.ndarray,
    colour: np.ndarray,
    outline: np.ndarray | None = None,
) -> np.ndarray:
    """(NUM_FRAMES, H, W, 3) uint8: one shape per frame at ``centres[t]`` with ``radii[t]`` on the background,
    turned by ``angle`` (one for every frame, or (NUM_FRAMES,) for a spinning shape)."""
    size = bg.shape[0]
    angles = np.broadcast_to(angle, (NUM_FRAMES,))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    frames = np.empty((NUM_FRAMES, size, size, 3), np.uint8)
    for t in range(NUM_FRAMES):
        img = bg.copy()
        paint(img, shape_sdf(kind, xx, yy, centres[t, 0], centres[t, 1], radii[t], angles[t]), colour, outline)
        frames[t] = np.clip(img, 0, 255).round().astype(np.uint8)
    return frames


def contrasting_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """A random colour at least ~70 levels away from the background mean."""
    mean = background.reshape(-1, 3).mean(0)
    while True:
        colour = rng.uniform(0, 255, size=3)
        if np.abs(colour - mean).max() > 70:
            return colour


def travel_path(rng: np.random.Generator, size: float, r: float, direction: np.ndarray, speed: float) -> np.ndarray:
    """(NUM_FRAMES, 2) centres of an object travelling ``speed`` px/frame along ``direction``.

    The start is drawn so that the whole path stays inside the frame; the path of the reversed
    direction is the same set of points, so single frames do not reveal the sense."""
    steps = np.arange(NUM_FRAMES)[:, None] * speed * direction[None]
    lo = r + 1 - steps.min(0)
    hi = size - r - 1 - steps.max(0)
    start = rng.uniform(lo, np.maximum(hi, lo))
    return start[None] + steps


# ----------------------------------------------------------------------------------- the datasets
@dataclass(frozen=True)
class MotionDataset:
    """A dataset definition: classes, pairs of time-reversed classes, renderer and disk format."""

    name: str
    classes: tuple[str, ...]
    pairs: tuple[tuple[str, str], ...]
    size: int  # source frame size in pixels
    render: Callable[[np.random.Generator, int, int], np.ndarray]  # (rng, label, size) -> (F, H, W, 3) uint8
    layout: str  # "arnet" | "rawframes" | "video"
    filename_tmpl: str = "img_{:05}.jpg"
    start_index: int = 1


SHAPES6 = ("move_left", "move_right", "move_up", "move_down", "zoom_in", "zoom_out")
_AXIS = {
    "move_left": (-1, 0),
    "move_right": (1, 0),
    "move_up": (0, -1),
    "move_down": (0, 1),
    "move_up_left": (-1, -1),
    "move_down_right": (1, 1),
    "move_up_right": (1, -1),
    "move_down_left": (-1, 1),
}


def _px_per_frame(size: int, model_px: float) -> float:
    """Source pixels per source frame for ``model_px`` of travel per sampled frame at MODEL_SIZE."""
    return model_px * size / MODEL_SIZE / SAMPLED_STRIDE


def _object_track(rng: np.random.Generator, name: str, size: int, speed_px: float, r0: float):
    """(centres (F, 2), radii (F,)) of the moving object for a travel / zoom class."""
    if name in _AXIS:
        d = np.asarray(_AXIS[name], dtype=float)
        d /= np.linalg.norm(d)
        return travel_path(rng, size, r0, d, speed_px), np.full(NUM_FRAMES, r0)
    # zoom: the diameter changes by speed_px per frame (each edge moves half of it); the radius range is
    # the same for in and out
    span = speed_px / 2 * (NUM_FRAMES - 1)
    small = rng.uniform(*ZOOM_START) * size
    radii = small + np.arange(NUM_FRAMES) * speed_px / 2
    if name == "zoom_out":
        radii = radii[::-1]
    big = small + span
    centre = rng.uniform(big + 1, size - big - 1, size=2) if size - 2 * big > 2 else np.full(2, size / 2)
    return np.repeat(centre[None], NUM_FRAMES, 0), radii


def _orbit_track(rng: np.random.Generator, size: int, speed_px: float, r0: float, clockwise: bool) -> np.ndarray:
    """(F, 2) centres on a circle of radius R around a random centre; the arc per frame is ``speed_px``,
    clockwise in image coordinates (y down) or not."""
    R = rng.uniform(0.16, 0.2) * size
    centre = rng.uniform(R + r0 + 1, size - R - r0 - 1, size=2)
    sense = 1.0 if clockwise else -1.0
    phase = rng.uniform(0, 2 * math.pi) + sense * speed_px / R * np.arange(NUM_FRAMES)
    return centre[None] + R * np.stack([np.cos(phase), np.sin(phase)], axis=1)


def render_shapes6(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
    name = SHAPES6[label]
    kind = ("disc", "square", "triangle")[rng.integers(3)]
    speed = _px_per_frame(size, 1.5) * rng.uniform(0.85, 1.15)
    bg = smooth_noise(rng, size, cells=int(rng.integers(3, 7)), amplitude=35.0)
    colour = contrasting_colour(rng, bg)
    r0 = rng.uniform(*RADIUS) * size
    centres, radii = _object_track(rng, name, size, speed, r0)
    return draw_clip(bg, kind, centres, radii, rng.uniform(0, 2 * math.pi), colour)


PATHS10 = (
    "move_left",
    "move_right",
    "move_up",
    "move_down",
    "move_up_left",
    "move_down_right",
    "move_up_right",
    "move_down_left",
    "orbit_cw",
    "orbit_ccw",
)


def render_paths10(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
    name = PATHS10[label]
    kind = ("disc", "square", "triangle", "kite")[rng.integers(4)]
    speed = _px_per_frame(size, rng.uniform(1.0, 2.0))
    bg = smooth_noise(rng, size, cells=int(rng.integers(4, 9)), amplitude=30.0)
    colour = contrasting_colour(rng, bg)
    outline = 255.0 - colour
    r0 = rng.uniform(RADIUS[0] * 0.8, RADIUS[1] * 0.8) * size
    if name.startswith("orbit"):
        centres = _orbit_track(rng, size, speed, r0, clockwise=name == "orbit_cw")
    else:
        centres, _ = _object_track(rng, name, size, speed, r0)
    return draw_clip(bg, kind, centres, np.full(NUM_FRAMES, r0), rng.uniform(0, 2 * math.pi), colour, outline)


def render_clutter6(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
    name = SHAPES6[label]
    kinds = ("disc", "square", "triangle")
    speed = _px_per_frame(size, 1.5) * rng.uniform(0.85, 1.15)
    # busier background: fine texture on top of the smooth noise
    bg = smooth_noise(rng, size, cells=int(rng.integers(3, 6)), amplitude=30.0)
    bg += smooth_noise(rng, size, cells=size // 4, amplitude=14.0) - 125.0
    colour = contrasting_colour(rng, bg)
    r0 = rng.uniform(*RADIUS) * size
    centres, radii = _object_track(rng, name, size, speed, r0)
    kind, angle = kinds[rng.integers(3)], rng.uniform(0, 2 * math.pi)
    # distractor: another shape that stays put but jitters by up to ~0.5 px (at 32 px) every frame
    d_kind, d_colour = kinds[rng.integers(3)], contrasting_colour(rng, bg)
    d_r = rng.uniform(0.10, 0.16) * size
    d_centre = rng.uniform(d_r + 1, size - d_r - 1, size=2)
    jitter = rng.normal(0.0, 0.5 * size / MODEL_SIZE, size=(NUM_FRAMES, 2))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    frames = np.empty((NUM_FRAMES, size, size, 3), np.uint8)
    order = rng.integers(2)  # which object is drawn on top
    for t in range(NUM_FRAMES):
        img = bg.copy()
        target = (shape_sdf(kind, xx, yy, centres[t, 0], centres[t, 1], radii[t], angle), colour)
        dc = d_centre + jitter[t]
        distractor = (shape_sdf(d_kind, xx, yy, dc[0], dc[1], d_r, angle + 1.0), d_colour)
        for sdf, col in (target, distractor) if order else (distractor, target):
            paint(img, sdf, col)
        img += rng.normal(0.0, 6.0, size=img.shape)  # camera noise, new every frame
        frames[t] = np.clip(img, 0, 255).round().astype(np.uint8)
    return frames


TURNS8 = ("move_left", "move_right", "zoom_in", "zoom_out", "spin_cw", "spin_ccw", "orbit_cw", "orbit_ccw")


def render_turns8(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
    """Travel, zoom, spin in place and orbit, each in both senses; an asymmetric kite or a triangle whose
    tip moves 1-2 px per sampled frame at 32 px in every class (a spin turns it by that arc at its tip)."""
    name = TURNS8[label]
    kind = ("kite", "triangle")[rng.integers(2)]
    speed = _px_per_frame(size, rng.uniform(1.0, 2.0))
    bg = smooth_noise(rng, size, cells=int(rng.integers(3, 8)), amplitude=32.0)
    colour = contrasting_colour(rng, bg)
    r0 = rng.uniform(*RADIUS) * size
    angle = rng.uniform(0, 2 * math.pi)
    clockwise = name.endswith("_cw")  # in image coordinates (y down)
    radii = np.full(NUM_FRAMES, r0)
    if name.startswith("spin"):
        centres = np.repeat(rng.uniform(r0 + 1, size - r0 - 1, size=2)[None], NUM_FRAMES, 0)
        angle = angle + (1.0 if clockwise else -1.0) * speed / r0 * np.arange(NUM_FRAMES)
    elif name.startswith("orbit"):
        centres = _orbit_track(rng, size, speed, r0, clockwise)
    else:
        centres, radii = _object_track(rng, name, size, speed, r0)
    return draw_clip(bg, kind, centres, radii, angle, colour)


DATASETS: dict[str, MotionDataset] = {
    "shapes6": MotionDataset(
        "shapes6",
        SHAPES6,
        (("move_left", "move_right"), ("move_up", "move_down"), ("zoom_in", "zoom_out")),
        64,
        render_shapes6,
        "arnet",
    ),
    "paths10": MotionDataset(
        "paths10",
        PATHS10,
        (
            ("move_left", "move_right"),
            ("move_up", "move_down"),
            ("move_up_left", "move_down_right"),
            ("move_up_right", "move_down_left"),
            ("orbit_cw", "orbit_ccw"),
        ),
        96,
        render_paths10,
        "rawframes",
        filename_tmpl="frame_{:04}.jpg",
        start_index=0,
    ),
    "clutter6": MotionDataset(
        "clutter6",
        SHAPES6,
        (("move_left", "move_right"), ("move_up", "move_down"), ("zoom_in", "zoom_out")),
        48,
        render_clutter6,
        "video",
    ),
    "turns8": MotionDataset(
        "turns8",
        TURNS8,
        (("move_left", "move_right"), ("zoom_in", "zoom_out"), ("spin_cw", "spin_ccw"), ("orbit_cw", "orbit_ccw")),
        80,
        render_turns8,
        "arnet",
        filename_tmpl="{:05}.jpg",
    ),
}


# ----------------------------------------------------------------------------------- writing to disk
def _write_one(args: tuple[str, str, int, int, str]) -> str:
    name, split, index, seed, out = args
    ds = DATASETS[name]
    rng = np.random.default_rng([seed, SPLIT_IDS[split], index])
    label = index % len(ds.classes)  # balanced classes
    frames = ds.render(rng, label, ds.size)
    rel = f"{split}/{ds.classes[label]} {index:05d}"  # a space in the path, as in AR-Net's lists
    root = Path(out)
    if ds.layout == "video":
        rel = rel.replace(" ", "_") + ".mp4"
        # 4:2:0 chroma at moderate quality, as a camera would store it (harder than the near-lossless default)
        write_mp4(root / rel, frames, fps=24, pix_fmt="yuv420p", options={"crf": "20", "preset": "veryfast"}, gop=8)
        return f"{rel} {label}"
    if ds.layout == "rawframes":
        rel = rel.replace(" ", "_")
    folder = root / rel
    folder.mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / ds.filename_tmpl.format(t + ds.start_index), quality=92)
    return f"{rel} {NUM_FRAMES} {label}"


def write_dataset(
    name: str, out_dir: str | Path, counts: dict[str, int], seed: int = 0, workers: int = 2
) -> dict[str, Path]:
    """Write every split of dataset ``name`` under ``out_dir/name``; returns the list file of each split.

    Skips a split whose list file already exists with the right number of lines."""
    ds = DATASETS[name]
    root = Path(out_dir) / name
    lists = {}
    for split, n in counts.items():
        list_file = root / f"{split}_{ds.layout}.txt"
        lists[split] = list_file
        if list_file.exists() and len(list_file.read_text().splitlines()) == n:
            continue
        (root / split).mkdir(parents=True, exist_ok=True)
        jobs = [(name, split, i, seed, str(root)) for i in range(n)]
        with ProcessPoolExecutor(workers) as pool:
            lines = list(pool.map(_write_one, jobs, chunksize=64))
        list_file.write_text("\n".join(lines) + "\n")
    (root / "classes.txt").write_text("\n".join(ds.classes) + "\n")
    return lists


def data_config(name: str, root: str | Path) -> dict:
    """The ``data`` section overrides that read dataset ``name`` written under ``root``."""
    ds = DATASETS[name]
    base = Path(root) / name
    return {
        "format": ds.layout,
        "data_root": str(base),
        "classes": str(base / "classes.txt"),
        "train_list": str(base / f"train_{ds.layout}.txt"),
        "val_list": str(base / f"val_{ds.layout}.txt"),
        "test_list": str(base / f"test_{ds.layout}.txt"),
        "filename_tmpl": ds.filename_tmpl,
        "start_index": ds.start_index,
        "clip_len": 8,
        "frame_interval": SAMPLED_STRIDE,
        "train_scale": [MODEL_SIZE, MODEL_SIZE],
        "crop_size": MODEL_SIZE,
        "test_scale": MODEL_SIZE,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="output folder")
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    parser.add_argument("--num", type=int, nargs=3, default=[4800, 400, 400], metavar=("TRAIN", "VAL", "TEST"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args()
    for name in args.datasets:
        lists = write_dataset(name, args.out, dict(zip(("train", "val", "test"), args.num)), args.seed, args.workers)
        print(f"{name}: " + ", ".join(f"{s} {p}" for s, p in lists.items()))


if __name__ == "__main__":
    main()
