"""Pictures of where HaltingVT looks: which patch tokens the Glimpser dropped and at which layer each
kept token halted.

Token order after the Glimpser (see :class:`~haltingvt.models.HaltingVTOutput`): index 0 is cls, index
``1 + s*T + t`` is slot ``s`` of frame ``t``, and slot ``s`` of frame ``t`` is patch ``kept_patches[t, s]``
(row-major on the ``(H/p, W/p)`` grid). Without a selecting Glimpser layer (``kept_patches=None``) slot
``s`` is patch ``s``. A fused token (``fuse_token``) is not a patch and is not drawn.

    out = model(clips)                                   # eval mode
    kept, depth = tokens_of(out, 0)                      # clip 0 of the batch
    save_token_grid(clip_uint8, kept, depth, model.arch, "where.png")
    save_token_gif(clip_uint8, kept, depth, model.arch, "where.gif")

Layers are numbered 1..depth (block index + 1), so a token that halted in the first halting layer of a
model with two Glimpser layers is shown as layer 3.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw

if TYPE_CHECKING:
    from matplotlib.colors import Colormap

from .io.atomic import atomic_write
from .io.textsafe import escape
from .models.config import ARCH_DEFAULTS

#: Brightness of dropped patches (their grey level is luminance * DROPPED_DIM).
DROPPED_DIM = 0.35
DEFAULT_CMAP = "viridis"

__all__ = [
    "tokens_of",
    "token_depth_map",
    "token_overlay",
    "layer_colors",
    "save_token_grid",
    "save_token_gif",
]


def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _arch_value(arch: Mapping[str, Any], key: str) -> Any:
    return arch.get(key, ARCH_DEFAULTS[key])


def _printable(text: str) -> str:
    """``text`` with the bytes of a non-UTF-8 file name (surrogate escapes) shown as U+FFFD and control
    characters (a newline or ESC in a file name, a bidirectional override) shown escaped."""
    try:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a lone surrogate that is not an escaped byte: escape() shows it as \udXXX
        pass
    return escape(text)


def tokens_of(out: Any, index: int) -> tuple[Any, Any]:
    """``(kept_patches (T, k) or None, halt_depth (M,))`` of clip ``index`` of a HaltingVTOutput."""
    kept = out.kept_patches[-1][index] if out.kept_patches else None
    return kept, out.halt_depth[index]


def token_depth_map(
    kept_patches: Any | None, halt_depth: Any, arch: Mapping[str, Any], grid: tuple[int, int], num_frames: int
) -> np.ndarray:
    """Per frame and patch, the layer (1..depth) at which the patch's token halted; 0 = dropped.

    kept_patches: (T, k) long original patch index of each kept slot, or None (no selection).
    halt_depth: (M,) long, 1-based halting layer of each token (M = 1 + S'*T, cls first).
    T = num_frames // tubelet_size token time steps; a tubelet's token covers its frames.
    grid: (H/p, W/p). Returns int64 (num_frames, H/p, W/p).
    """
    gh, gw = grid
    tube = int(_arch_value(arch, "tubelet_size"))
    T, S = num_frames // tube, gh * gw
    depth = _np(halt_depth).astype(np.int64).reshape(-1)
    if (depth.size - 1) % T:
        raise ValueError(f"halt_depth has {depth.size} tokens, not 1 + slots*T with T={T}")
    slots = (depth.size - 1) // T
    if kept_patches is None:
        if slots != S:
            raise ValueError(
                f"kept_patches is None but halt_depth has {slots} tokens per frame, not the {S} patches "
                f"of a {gh}x{gw} grid"
            )
        kept = np.tile(np.arange(S), (T, 1))
    else:
        kept = _np(kept_patches).astype(np.int64)
        if kept.ndim != 2 or kept.shape[0] != T or kept.shape[1] > slots:
            raise ValueError(
                f"kept_patches must be (T={T}, k<={slots}) for {depth.size} tokens, got {tuple(kept.shape)}"
            )
        if kept.max(initial=-1) >= S:
            raise ValueError(f"kept_patches holds patch {int(kept.max())} but the grid has {S} patches")
    k = kept.shape[1]
    first, last = int(_arch_value(arch, "divid_depth")), int(_arch_value(arch, "depth"))
    # A model without halting reports n + 1 for tokens that never halted: they ran through the last layer.
    layer = np.clip(first + depth[1:].reshape(slots, T)[:k].T, first + 1, last)  # (T, k)
    out = np.zeros((T, S), dtype=np.int64)
    rows = np.repeat(np.arange(T)[:, None], k, axis=1)
    valid = kept >= 0  # -1 marks a fused token chosen by a later Glimpser layer: not a patch
    out[rows[valid], kept[valid]] = layer[valid]
    return out.reshape(T, gh, gw).repeat(tube, axis=0)


def layer_colors(arch: Mapping[str, Any], cmap: str | Colormap = DEFAULT_CMAP) -> np.ndarray:
    """RGB uint8 (depth + 1, 3) colour per layer number; rows 0..divid_depth are unused (grey)."""
    first, last = int(_arch_value(arch, "divid_depth")), int(_arch_value(arch, "depth"))
    n = last - first
    import matplotlib  # deferred (slow): matplotlib, imported only when a picture is drawn

    cm = matplotlib.colormaps[cmap] if isinstance(cmap, str) else cmap
    colors = np.full((last + 1, 3), 128, dtype=np.uint8)
    if n > 0:
        values = cm(np.linspace(0.12, 1.0, n) if n > 1 else np.array([0.5]))[:, :3]
        colors[first + 1 :] = np.round(values * 255).astype(np.uint8)
    return colors


def _clip_hwc(clip: Any) -> np.ndarray:
    """uint8 (3, T, H, W) -> uint8 (T, H, W, 3)."""
    arr = _np(clip)
    if arr.ndim != 4 or arr.shape[0] != 3:
        raise ValueError(f"clip must be (3, T, H, W), got {tuple(arr.shape)}")
    if arr.dtype != np.uint8:
        raise ValueError(f"clip must be uint8, got {arr.dtype}")
    return arr.transpose(1, 2, 3, 0)


def token_overlay(
    clip: Any,
    kept_patches: Any | None,
    halt_depth: Any,
    arch: Mapping[str, Any],
    alpha: float = 0.55,
    cmap: str | Colormap = DEFAULT_CMAP,
) -> np.ndarray:
    """The overlay as pixels: uint8 (T, H, W, 3).

    clip: uint8 (3, T, H, W) as fed to the model. Dropped patches are shown in dark grey; each kept
    patch is tinted (weight ``alpha``) with the colour of the layer at which its token halted.
    """
    frames = _clip_hwc(clip)
    T, H, W, _ = frames.shape
    p = int(_arch_value(arch, "patch_size"))
    if H % p or W % p:
        raise ValueError(f"frame size {H}x{W} is not a multiple of patch size {p}")
    layers = token_depth_map(kept_patches, halt_depth, arch, (H // p, W // p), T)
    layers_px = layers.repeat(p, axis=1).repeat(p, axis=2)  # (T, H, W)
    rgb = frames.astype(np.float32)
    grey = (rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None] * DROPPED_DIM
    tint = layer_colors(arch, cmap)[layers_px].astype(np.float32)
    kept = (layers_px > 0)[..., None]
    out = np.where(kept, (1.0 - alpha) * rgb + alpha * tint, np.repeat(grey, 3, axis=-1))
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _summary(kept_patches: Any | None, halt_depth: Any, arch: Mapping[str, Any], grid: tuple[int, int], T: int) -> str:
    layers = token_depth_map(kept_patches, halt_depth, arch, grid, T)
    S = grid[0] * grid[1]
    kept = int((layers > 0).sum()) // T
    first, last = int(_arch_value(arch, "divid_depth")), int(_arch_value(arch, "depth"))
    cls_layer = min(first + int(_np(halt_depth).reshape(-1)[0]), last)
    mean_layer = float(layers[layers > 0].mean()) if (layers > 0).any() else float("nan")
    return f"kept {kept}/{S} patches per frame, mean halting layer {mean_layer:.1f}, cls halted at layer {cls_layer}"


def _upscale(image: np.ndarray, scale: int, patch: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (H*scale, W*scale, 3), nearest, with faint white lines on patch borders."""
    big = image.repeat(scale, axis=0).repeat(scale, axis=1)
    step = patch * scale
    if step >= 6:  # borders only where patches are large enough to keep them readable
        out = big.astype(np.float32)
        out[step::step] = 0.7 * out[step::step] + 0.3 * 255
        out[:, step::step] = 0.7 * out[:, step::step] + 0.3 * 255
        big = out.round().astype(np.uint8)
    return big


def save_token_grid(
    clip: Any,
    kept_patches: Any | None,
    halt_depth: Any,
    arch: Mapping[str, Any],
    path: str | os.PathLike,
    title: str | None = None,
    cols: int = 8,
    cmap: str | Colormap = DEFAULT_CMAP,
    dpi: int = 100,
    min_panel: int = 128,
) -> Path:
    """PNG grid: the sampled frames (upper row) and the token overlay (row below), ``cols`` frames per row,
    with a colour bar of the halting layer and a legend for patches dropped by the Glimpser. Frames smaller
    than ``min_panel`` pixels are enlarged (nearest) so tokens stay visible.

    clip: uint8 (3, T, H, W); kept_patches: (T, k) long or None; halt_depth: (M,) long. Returns the path.
    """
    frames = _clip_hwc(clip)
    T, H, W, _ = frames.shape
    p = int(_arch_value(arch, "patch_size"))
    overlay = token_overlay(clip, kept_patches, halt_depth, arch, cmap=cmap)
    first, last = int(_arch_value(arch, "divid_depth")), int(_arch_value(arch, "depth"))

    # One mosaic image in one axes: much faster than an axes per frame.
    scale = max(1, -(-min_panel // max(H, W)))
    h, w = H * scale, W * scale
    gap, label_h = max(4, w // 24), 16
    chunks = -(-T // max(1, min(cols, T)))
    cols = -(-T // chunks)  # balanced rows: 10 frames -> 2 x 5 rather than 8 + 2
    cell_h = label_h + 2 * h + gap
    mosaic = np.full((chunks * cell_h, cols * (w + gap) - gap, 3), 255, dtype=np.uint8)
    for t in range(T):
        r, c = divmod(t, cols)
        y, x = r * cell_h + label_h, c * (w + gap)
        mosaic[y : y + h, x : x + w] = _upscale(frames[t], scale, p)
        mosaic[y + h + gap // 2 : y + 2 * h + gap // 2, x : x + w] = _upscale(overlay[t], scale, p)

    # deferred (slow): matplotlib, imported only when a picture is drawn; its Agg canvas directly, never
    # pyplot's global state or the session's backend
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    fig = Figure(figsize=((mosaic.shape[1] + 170) / dpi, (mosaic.shape[0] + 90) / dpi), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.imshow(mosaic, interpolation="nearest")
    ax.set_axis_off()
    for t in range(T):
        r, c = divmod(t, cols)
        ax.text(c * (w + gap) + w / 2, r * cell_h + label_h - 3, f"frame {t}", ha="center", va="bottom", fontsize=8)
    for r in range(chunks):
        for offset, label in ((0, "input"), (h + gap // 2, "tokens")):
            ax.text(-4, r * cell_h + label_h + offset + h / 2, label, rotation=90, ha="right", va="center", fontsize=8)

    n = max(last - first, 1)
    colors = layer_colors(arch, cmap)[first + 1 : last + 1] / 255.0
    mappable = ScalarMappable(
        norm=BoundaryNorm(np.arange(first + 0.5, first + n + 1.0), n), cmap=ListedColormap(colors)
    )
    ticks = list(range(first + 1, last + 1))
    if len(ticks) > 12:
        ticks = ticks[:: -(-len(ticks) // 12)]
    bar = fig.colorbar(
        mappable, ax=ax, ticks=ticks, fraction=0.05, pad=0.01, aspect=25, shrink=min(1.0, 0.4 + 0.3 * chunks)
    )
    bar.set_label("layer where the token halted", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    fig.legend(
        handles=[Patch(facecolor=(0.25, 0.25, 0.25), label="dropped by the Glimpser")],
        loc="outside lower left",
        fontsize=8,
        frameon=False,
    )
    # Titles hold file names: no mathtext ("$...$" is text here), no undecodable bytes.
    fig.suptitle(
        (_printable(title) + "\n" if title else "") + _summary(kept_patches, halt_depth, arch, (H // p, W // p), T),
        fontsize=9,
        parse_math=False,
    )
    # written whole or not at all, and a full disk is one error naming the file (CheckpointWriteError)
    return atomic_write(path, lambda f: fig.savefig(f, format="png"))


def _legend_strip(arch: Mapping[str, Any], width: int, cmap: str | Colormap) -> Image.Image:
    first, last = int(_arch_value(arch, "divid_depth")), int(_arch_value(arch, "depth"))
    colors = layer_colors(arch, cmap)
    strip = Image.new("RGB", (width, 30), "white")
    draw = ImageDraw.Draw(strip)
    entries = [("drop", (64, 64, 64))] + [
        (str(L), tuple(int(v) for v in colors[L])) for L in range(first + 1, last + 1)
    ]
    box = max(8, min(24, (width - 8) // max(len(entries), 1)))
    x = 4
    for label, color in entries:
        step = max(box, int(draw.textlength(label)) + 8)
        draw.rectangle([x, 2, x + step - 2, 14], fill=color)
        draw.text((x, 16), label, fill="black")
        x += step
    return strip


def save_token_gif(
    clip: Any,
    kept_patches: Any | None,
    halt_depth: Any,
    arch: Mapping[str, Any],
    path: str | os.PathLike,
    title: str | None = None,
    duration_ms: int = 300,
    min_height: int = 192,
    cmap: str | Colormap = DEFAULT_CMAP,
) -> Path:
    """Animated GIF, one frame per sampled frame: input | overlay side by side, upscaled (nearest) to at
    least ``min_height`` pixels, with a layer colour legend below ("drop" = dropped by the Glimpser).

    Same arguments as :func:`save_token_grid`. Returns the path.
    """
    frames = _clip_hwc(clip)
    T, H, W, _ = frames.shape
    overlay = token_overlay(clip, kept_patches, halt_depth, arch, cmap=cmap)
    scale = max(1, -(-min_height // H))
    gap = 4
    width = 2 * W * scale + gap
    header = 16 if title else 0
    legend = _legend_strip(arch, width, cmap)
    pictures = []
    for t in range(T):
        canvas = Image.new("RGB", (width, header + H * scale + 14 + legend.height), "white")
        draw = ImageDraw.Draw(canvas)
        if title:
            draw.text((4, 2), _printable(title), fill="black")
        for i, image in enumerate((frames[t], overlay[t])):
            big = Image.fromarray(image).resize((W * scale, H * scale), Image.Resampling.NEAREST)
            canvas.paste(big, (i * (W * scale + gap), header))
        draw.text((4, header + H * scale + 1), f"frame {t + 1}/{T}", fill="black")
        canvas.paste(legend, (0, header + H * scale + 14))
        pictures.append(canvas)
    return atomic_write(
        path,
        lambda f: pictures[0].save(
            f, format="GIF", save_all=True, append_images=pictures[1:], duration=duration_ms, loop=0
        ),
    )
