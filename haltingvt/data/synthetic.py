"""Built-in synthetic dataset: short clips whose class only motion reveals.

Every clip shows one two-tone object (random shape, colours, size, orientation, position) on a
random textured background that does not move. The class is the object's motion:

==================  ====================================================
``move_right``      travels right (``move_left``/``move_up``/``move_down`` likewise)
``rotate_cw``       spins clockwise in place (``rotate_ccw``: counter-clockwise)
``grow``            expands in place (``shrink``: contracts)
==================  ====================================================

A single frame carries no class information. Each clip also gets class-independent "nuisance" offsets
drawn so that the object's state in a *randomly chosen* frame (position, size, angle) has the same
distribution for every class: an object that does not travel is placed where a travelling object
would be at a random moment, one that does not scale has the size a scaling object would have at a
random moment, and so on. Colours, shapes and backgrounds never depend on the class. So a static
clip (one frame repeated, the motion-loss input) cannot be classified better than chance.

Generation is deterministic: sample ``index`` of split ``split`` is drawn from
``numpy.random.default_rng([seed, split_id, index])``, so it is the same in every process and
worker, whatever the order of access.

Config keys (section ``data``): ``format: synthetic``, ``synthetic_num_train``,
``synthetic_num_val``, ``synthetic_num_test``, ``synthetic_seed``, ``synthetic_classes`` (null =
all of :data:`CLASSES`); the frame size is ``model.img_size`` and the clip length ``data.clip_len``.

:func:`haltingvt.data.export.export` writes a split to disk as frame folders or mp4 files with the list files the real
data pipeline reads (rawframes: ``frame_dir total_frames label``; video: ``path label``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..config import SPLITS as CONFIG_SPLITS
from ..config import ConfigError, check_split

#: Class names, in label order.
CLASSES: tuple[str, ...] = (
    "move_right",
    "move_left",
    "move_up",
    "move_down",
    "rotate_cw",
    "rotate_ccw",
    "grow",
    "shrink",
)
SPLITS: dict[str, int] = {split: i for i, split in enumerate(CONFIG_SPLITS)}  # split -> id in the sample seed
SHAPES: tuple[str, ...] = ("ellipse", "rectangle", "triangle", "diamond", "cross", "ell")

# Motion ranges, in units of the frame size (positions, sizes) and radians, per frame step.
SPEED = (0.06, 0.09)  # travel per frame, fraction of the frame size
SPIN = (0.28, 0.45)  # rotation per frame, radians (16-26 degrees)
GROWTH = (0.08, 0.12)  # log-scale change per frame
RADIUS = (0.16, 0.24)  # object "radius" at the reference size, fraction of the frame size
BACKGROUND_LEVEL = (60, 190)  # range of the background's mean level per channel
OBJECT_BRIGHT = False  # True: the object is always brighter than the background
BACKGROUND_CONTRAST = 0.5  # scales the texture amplitude (1.0: busier backgrounds, a harder task)
SHAKE = (0.05, 0.08)  # shake amplitude (offset either side), fraction of the frame size
PULSE = (0.18, 0.26)  # pulse amplitude, log-size either side
_UNIT = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])

#: What each class moves: component -> fixed sense (+1/-1), or 0 for a random sense.
MOTIONS: dict[str, dict[str, float]] = {
    "move_right": {"travel_x": 1.0},
    "move_left": {"travel_x": -1.0},
    "move_up": {"travel_y": -1.0},
    "move_down": {"travel_y": 1.0},
    "rotate_cw": {"spin": 1.0},
    "rotate_ccw": {"spin": -1.0},
    "grow": {"scale": 1.0},
    "shrink": {"scale": -1.0},
    "slide": {"travel": 0.0},  # travels along x or y, either way
    "spin": {"spin": 0.0},
    "shake": {"shake": 0.0},
    "pulse": {"pulse": 0.0},
}


def _owned_components(name: str, rng: np.random.Generator) -> dict[str, float]:
    """The motion components that class ``name`` varies over the clip, with their sense (0 = as drawn)."""
    owned = dict(MOTIONS[name])
    if "travel" in owned:  # "slide": pick the axis; the sense stays as drawn
        del owned["travel"]
        owned["travel_x" if rng.integers(0, 2) == 0 else "travel_y"] = 0.0
    return owned


def class_names(classes: Sequence[str] | None = None) -> list[str]:
    """The class-name list (``classes`` selects a subset, in that order; unknown names are an error)."""
    if classes is None:
        return list(CLASSES)
    unknown = [c for c in classes if c not in MOTIONS]
    if unknown:
        raise ConfigError(
            f"unknown synthetic class(es) {unknown} in data.synthetic_classes (or --classes); known: "
            f"{', '.join(MOTIONS)}",
            "data.synthetic_classes",
        )
    return list(classes)


# ----------------------------------------------------------------------------------------- rendering
def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random textured background (H, W, 3) float in [0, 255]: smooth colour noise, plus stripes or
    a checkerboard of random period, angle and colour."""
    base = rng.uniform(*BACKGROUND_LEVEL, size=3)
    cells = int(rng.integers(3, 7))
    noise = rng.normal(0.0, 1.0, size=(cells, cells, 3))
    # Bilinear upsampling of the coarse noise grid (separable, with numpy only).
    pos = np.linspace(0, cells - 1, size)
    lo = np.floor(pos).astype(int).clip(0, cells - 2) if cells > 1 else np.zeros(size, int)
    frac = (pos - lo)[:, None]
    rows = noise[lo] * (1 - frac[..., None]) + noise[lo + 1] * frac[..., None]  # (H, cells, 3)
    smooth = rows[:, lo] * (1 - frac.T[..., None]) + rows[:, lo + 1] * frac.T[..., None]  # (H, W, 3)
    img = base + smooth * rng.uniform(12, 30) * BACKGROUND_CONTRAST

    y, x = np.mgrid[0:size, 0:size].astype(np.float64) / size
    kind = rng.integers(0, 3)
    if kind < 2:
        angle = rng.uniform(0, math.pi)
        period = rng.uniform(0.12, 0.35)
        phase = (x * math.cos(angle) + y * math.sin(angle)) / period
        if kind == 0:  # stripes
            pattern = np.sin(2 * math.pi * phase)
        else:  # checkerboard
            other = (-x * math.sin(angle) + y * math.cos(angle)) / period
            pattern = np.sign(np.sin(2 * math.pi * phase) * np.sin(2 * math.pi * other))
        img = img + pattern[..., None] * rng.uniform(-28, 28, size=3) * BACKGROUND_CONTRAST
    return img.clip(0, 255)


def _shape_distance(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Approximate signed distance (object units, negative inside) of a unit-size shape."""
    if shape == "ellipse":
        return (np.sqrt(u**2 + (v / 0.6) ** 2) - 1.0) * 0.6
    if shape == "rectangle":
        return np.maximum(np.abs(u) - 1.0, np.abs(v) - 0.55)
    if shape == "triangle":  # pointing along +u
        edges = [u - 1.0, -0.5 - u, (np.abs(v) * 1.0 + 0.55 * (u - 1.0)) / math.hypot(1.0, 0.55)]
        return np.maximum.reduce(edges)
    if shape == "diamond":
        return (np.abs(u) + np.abs(v) * 1.6 - 1.0) / math.hypot(1.0, 1.6)
    if shape == "cross":  # unequal arms, so that rotation is visible
        bar1 = np.maximum(np.abs(u) - 1.0, np.abs(v) - 0.3)
        bar2 = np.maximum(np.abs(u + 0.35) - 0.3, np.abs(v) - 0.75)
        return np.minimum(bar1, bar2)
    if shape == "ell":
        bar1 = np.maximum(np.abs(u) - 1.0, np.abs(v + 0.45) - 0.3)
        bar2 = np.maximum(np.abs(u + 0.7) - 0.3, np.abs(v) - 0.75)
        return np.minimum(bar1, bar2)
    raise ValueError(f"unknown shape {shape!r}")


def _colour_pair(rng: np.random.Generator, background_mean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two saturated colours that stand out from the background (contrast in brightness).

    With OBJECT_BRIGHT the object is always bright on the (darker) background; otherwise it is bright on
    dark backgrounds and dark on bright ones."""
    bright = OBJECT_BRIGHT or background_mean.mean() < 128
    colours = []
    for _ in range(2):
        c = rng.uniform(0, 1, size=3)
        c[rng.integers(0, 3)] = 1.0  # saturated
        c[rng.integers(0, 3)] *= 0.3
        c = c * (rng.uniform(200, 255) if bright else rng.uniform(60, 110))
        colours.append(c)
    return colours[0], colours[1]


def render_clip(
    label: int, rng: np.random.Generator, num_frames: int, size: int, classes: Sequence[str] = CLASSES
) -> np.ndarray:
    """One clip of class ``classes[label]`` -> uint8 (T, H, W, 3). All randomness comes from ``rng``."""
    name = classes[label]
    T = num_frames
    bg = _background(rng, size)
    col_a, col_b = _colour_pair(rng, bg.reshape(-1, 3).mean(0))
    shape = SHAPES[rng.integers(0, len(SHAPES))]

    # Motion components, each a function of the frame: travel along x, travel along y, shake (fast
    # back-and-forth), spin, scaling and pulsing. The components a class "owns" vary over the clip; every
    # other component is frozen at its value in a random frame (``ref``) of a clip that owns it. So for a
    # random frame every component has the same distribution in every class: no single-frame information.
    centre = rng.uniform(0.3, 0.7, size=2)
    travel = rng.uniform(*SPEED, size=2) * rng.choice([-1.0, 1.0], size=2)  # per frame, along x and y
    shake_dir = _UNIT[rng.integers(0, 4)] * rng.uniform(*SHAKE)
    spin = rng.uniform(*SPIN) * rng.choice([-1.0, 1.0])  # radians per frame; positive = clockwise on screen
    growth = rng.uniform(*GROWTH) * rng.choice([-1.0, 1.0])  # log-size per frame
    pulse = rng.uniform(*PULSE)
    parity = rng.choice([-1.0, 1.0], size=2)  # phase of the alternating components (shake, pulse)
    refs = rng.integers(0, T, size=6)
    angle0 = rng.uniform(0, 2 * math.pi)
    radius0 = rng.uniform(*RADIUS)
    owned = _owned_components(name, rng)
    for key, sign in owned.items():  # classes with a fixed sense
        if not sign:
            continue
        if key == "travel_x":
            travel[0] = abs(travel[0]) * sign
        elif key == "travel_y":
            travel[1] = abs(travel[1]) * sign
        elif key == "spin":
            spin = abs(spin) * sign
        elif key == "scale":
            growth = abs(growth) * sign

    def time_of(component: str, index: int) -> np.ndarray:
        """(T,) frame times at which ``component`` is evaluated: all frames if owned, else one random frame."""
        return np.arange(T) if component in owned else np.full(T, refs[index])

    alternate = lambda t: np.where(t % 2 == 0, 1.0, -1.0)  # noqa: E731
    mid = (T - 1) / 2.0
    pos = np.repeat(centre[None], T, axis=0)  # (T, 2) x, y in frame units
    pos[:, 0] += travel[0] * (time_of("travel_x", 0) - mid)
    pos[:, 1] += travel[1] * (time_of("travel_y", 1) - mid)
    pos += shake_dir[None] * (parity[0] * alternate(time_of("shake", 2)))[:, None]
    # Image y points down, so a growing angle turns clockwise on screen.
    angle = angle0 + spin * (time_of("spin", 3) - mid)
    log_size = growth * (time_of("scale", 4) - mid) + pulse * parity[1] * alternate(time_of("pulse", 5))
    radius = radius0 * np.exp(log_size)

    y, x = (np.mgrid[0:size, 0:size].astype(np.float64) + 0.5) / size
    frames = np.empty((T, size, size, 3), dtype=np.uint8)
    aa = 1.0 / size  # one pixel of soft edge (anti-aliasing)
    for t in range(T):
        dx, dy = x - pos[t, 0], y - pos[t, 1]
        ca, sa = math.cos(angle[t]), math.sin(angle[t])
        u = (dx * ca + dy * sa) / radius[t]
        v = (-dx * sa + dy * ca) / radius[t]
        dist = _shape_distance(shape, u, v) * radius[t]
        cover = np.clip(0.5 - dist / aa, 0.0, 1.0)[..., None]
        # Two tones split across the object's v axis make its orientation (and so rotation) visible.
        colour = np.where((v > 0)[..., None], col_a, col_b)
        frames[t] = np.rint(bg * (1 - cover) + colour * cover).clip(0, 255).astype(np.uint8)
    return frames


def sample_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of one sample: independent of access order, process and worker."""
    check_split(split)
    return np.random.default_rng([int(seed), SPLITS[split], int(index)])


def balanced_label(index: int, num_classes: int) -> int:
    """Labels cycle through the classes, so every split is balanced (to within one sample)."""
    return index % num_classes


def make_clip(
    index: int, split: str, seed: int, num_frames: int, size: int, classes: Sequence[str] = CLASSES
) -> tuple[np.ndarray, int, np.random.Generator]:
    """(uint8 (T, H, W, 3) clip, label, the sample's generator after rendering) for one sample."""
    rng = sample_rng(seed, split, index)
    label = balanced_label(index, len(classes))
    return render_clip(label, rng, num_frames, size, classes), label, rng


# ------------------------------------------------------------------------------------------- dataset
class SyntheticMotion(Dataset):
    """Synthetic motion clips following the sample-dict contract of :mod:`haltingvt.data`.

    train: ``{"clips": uint8 (2, 3, T, H, W) [real, static], "label", "index", "path"}``; the static clip
    repeats one of the clip's frames (chosen by the sample's own generator) T times.
    val/test: ``{"clips": uint8 (1, 3, T, H, W), ...}``. ``label`` is a long scalar tensor.
    """

    def __init__(
        self,
        split: str,
        num_samples: int,
        num_frames: int = 8,
        size: int = 32,
        seed: int = 0,
        classes: Sequence[str] | None = None,
        cache: bool = False,
    ) -> None:
        check_split(split)
        if num_samples < 1 or num_frames < 2 or size < 8:
            raise ValueError(
                f"need num_samples >= 1, num_frames >= 2, size >= 8; got {num_samples}, {num_frames}, {size}"
            )
        self.split, self.num_samples = split, int(num_samples)
        self.num_frames, self.size, self.seed = int(num_frames), int(size), int(seed)
        self.classes = class_names(classes)
        # index -> (clip, label, static frame); each DataLoader worker holds its own copy.
        self._cache: dict[int, tuple[torch.Tensor, int, int]] | None = {} if cache else None

    def __len__(self) -> int:
        return self.num_samples

    @property
    def labels(self) -> list[int]:
        return [balanced_label(i, len(self.classes)) for i in range(self.num_samples)]

    def _render(self, index: int) -> tuple[torch.Tensor, int, int]:
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        frames, label, rng = make_clip(index, self.split, self.seed, self.num_frames, self.size, self.classes)
        clip = torch.from_numpy(frames).permute(3, 0, 1, 2).contiguous()  # (3, T, H, W)
        item = (clip, label, int(rng.integers(0, self.num_frames)))
        if self._cache is not None:
            self._cache[index] = item
        return item

    def clip(self, index: int) -> tuple[torch.Tensor, int]:
        """uint8 (3, T, H, W) real clip and its label."""
        clip, label, _ = self._render(index)
        return clip, label

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for {self.num_samples} synthetic {self.split} samples")
        clip, label, t = self._render(index)
        if self.split == "train":
            static = clip[:, t : t + 1].expand(-1, self.num_frames, -1, -1)
            clips = torch.stack([clip, static])
        else:
            clips = clip[None]
        return {
            "clips": clips,
            "label": torch.tensor(label, dtype=torch.long),
            "index": index,
            "path": f"synthetic://{self.split}/{index:06d}",
        }


def synthetic_settings(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The synthetic dataset's settings read from a loaded config (``haltingvt.config.load_config``)."""
    data = cfg["data"]
    return {
        "num": {split: data[f"synthetic_num_{split}"] for split in SPLITS},
        "seed": data["synthetic_seed"],
        "classes": class_names(data["synthetic_classes"]),
        "cache": data["synthetic_cache"],
        "num_frames": data["clip_len"],
        "size": cfg["model"]["img_size"],
    }


def build_synthetic(cfg: Mapping[str, Any], split: str) -> SyntheticMotion:
    """The synthetic dataset of a config (``data.format: synthetic``) for split train/val/test."""
    s = synthetic_settings(cfg)
    check_split(split)
    return SyntheticMotion(split, s["num"][split], s["num_frames"], s["size"], s["seed"], s["classes"], s["cache"])


__all__ = [
    "CLASSES",
    "SyntheticMotion",
    "build_synthetic",
    "class_names",
    "make_clip",
    "render_clip",
    "synthetic_settings",
]
