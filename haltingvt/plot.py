"""Pictures of a run: training curves from a work dir's CSV logs, and confusion matrices.

    haltingvt plot work_dirs/demo_synthetic            # -> work_dirs/demo_synthetic/curves.png
    haltingvt eval CONFIG best.pth --confusion confusion.png

    from haltingvt.plot import plot_run, save_confusion
    plot_run("work_dirs/demo_synthetic")               # Path of the PNG

``curves.png`` has one panel each for the loss terms, top-1 (train running accuracy on the real clips,
validation top-1 or mAP), GFLOPs per clip (train and validation), active tokens entering each halting
layer, and the learning rate, all against the optimizer step. The trainer writes it at the end of
training too. Columns a log lacks are left out (older runs, a run without validation).

Figures are drawn on matplotlib's Agg canvas directly (``Figure`` + ``FigureCanvasAgg``): never through
pyplot's global state, and the backend a notebook chose is left alone. matplotlib is imported when a
picture is drawn, not with this module.
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from .io.atomic import atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure

TRAIN_LOG, VAL_LOG = "train_log.csv", "val_log.csv"
CURVES_PNG = "curves.png"


def _save(fig: Any, out: str | os.PathLike[str]) -> Path:
    """``fig`` as ``out`` (format from the suffix, PNG without one), written whole or not at all; a full disk
    is one error naming the file."""
    suffix = Path(out).suffix.lstrip(".").lower()
    return atomic_write(out, lambda f: fig.savefig(f, format=suffix or "png"))


def _agg_figure(**kwargs: Any) -> Figure:
    """A matplotlib Figure on its own Agg canvas (files only; pyplot and the session's backend untouched)."""
    # deferred (slow): matplotlib, imported only when a picture is drawn
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig


class PlotError(ValueError):
    """A log cannot be read or holds nothing to draw; the message names the file."""


def read_log(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A CSV log -> {column: float array}; empty or non-numeric cells are NaN.

    Raises FileNotFoundError when the file is missing and PlotError when it has no rows or no ``step``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such log")
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise PlotError(f"{path}: the log has no rows")
    columns = {name: np.array([_float(r.get(name)) for r in rows]) for name in rows[0] if name}
    if "step" not in columns:
        raise PlotError(f"{path}: no 'step' column (columns: {', '.join(columns)})")
    return columns


def _float(value: str | None) -> float:
    try:
        return float(value) if value not in (None, "") else math.nan
    except ValueError:
        return math.nan


def _has(log: dict[str, np.ndarray] | None, key: str) -> bool:
    return log is not None and key in log and bool(np.isfinite(log[key]).any())


def _line(ax, log: dict[str, np.ndarray], key: str, label: str, scale: float = 1.0, **style) -> None:
    y = log[key] * scale
    ok = np.isfinite(y)
    ax.plot(log["step"][ok], y[ok], label=label, **style)


def plot_curves(
    train_log: dict[str, np.ndarray],
    val_log: dict[str, np.ndarray] | None,
    out: str | os.PathLike,
    title: str | None = None,
) -> Path:
    """Draw the curves of :func:`read_log` columns into the PNG ``out`` (see the module docstring)."""
    panels = []
    losses = sorted(
        (k for k in train_log if k.startswith("loss") and _has(train_log, k)), key=lambda k: (k != "loss", k)
    )
    if losses:
        panels.append(("loss terms", _draw_losses(losses)))
    if _has(train_log, "acc") or _has(val_log, "top1") or _has(val_log, "mAP"):
        panels.append(("top-1 (%)", _draw_accuracy))
    if _has(train_log, "gflops_per_clip") or _has(val_log, "gflops_per_clip"):
        panels.append(("GFLOPs per clip", _draw_gflops))
    tokens = sorted((k for k in train_log if re.fullmatch(r"tokens_L\d+", k)), key=lambda k: int(k[8:]))
    if tokens:
        panels.append(("tokens entering each halting layer", _draw_tokens(tokens)))
    if _has(train_log, "lr"):
        panels.append(("learning rate", _draw_lr))
    if not panels:
        raise PlotError(
            f"nothing to draw: the train log has none of the columns loss*, acc, gflops_per_clip, "
            f"tokens_L*, lr (it has {', '.join(train_log)})"
        )
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig = _agg_figure(figsize=(5.2 * cols, 3.6 * rows), dpi=100, layout="constrained")
    for i, (name, draw) in enumerate(panels):
        ax = fig.add_subplot(rows, cols, i + 1)
        draw(ax, train_log, val_log)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    return _save(fig, out)


def _draw_losses(keys: Sequence[str]):
    def draw(ax, train, val):
        for key in keys:
            label = "total" if key == "loss" else key[5:] if key.startswith("loss_") else key
            _line(
                ax,
                train,
                key,
                label + (" (unweighted)" if label == "ponder" else ""),
                linewidth=2.0 if key == "loss" else 1.2,
            )
        values = np.concatenate([train[k][np.isfinite(train[k])] for k in keys])
        if len(values) and (values > 0).all():
            ax.set_yscale("log")

    return draw


def _draw_accuracy(ax, train, val) -> None:
    if _has(train, "acc"):
        _line(ax, train, "acc", "train (running, real clips)", 100.0, alpha=0.8)
    if _has(val, "top1"):
        _line(ax, val, "top1", "val top-1" if not _has(val, "mAP") else "val top-1 hit", 100.0, marker="o")
    if _has(val, "mAP"):
        _line(ax, val, "mAP", "val mAP", 100.0, marker="s")
    if _has(train, "motion_acc"):
        _line(ax, train, "motion_acc", "motion head (train)", 100.0, linestyle=":", alpha=0.8)


def _draw_gflops(ax, train, val) -> None:
    if _has(train, "gflops_per_clip"):
        _line(ax, train, "gflops_per_clip", "train (masked execution)")
    if _has(val, "gflops_per_clip"):
        _line(ax, val, "gflops_per_clip", "val", marker="o")


def _draw_tokens(keys: Sequence[str]):
    def draw(ax, train, val):
        for key in keys:
            _line(ax, train, key, f"layer {key[8:]}")
        ax.set_ylim(bottom=0)

    return draw


def _draw_lr(ax, train, val) -> None:
    _line(ax, train, "lr", "lr")


def plot_run(work_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """``<work_dir>/curves.png`` (or ``out``) from ``train_log.csv`` and, if present, ``val_log.csv``.

    Raises FileNotFoundError naming the work dir when it has no train log, PlotError for a log
    without rows or columns to draw.
    """
    work_dir = Path(work_dir)
    if not work_dir.is_dir():
        raise FileNotFoundError(f"{work_dir}: no such work dir")
    if not (work_dir / TRAIN_LOG).is_file():
        raise FileNotFoundError(
            f"{work_dir}: no {TRAIN_LOG} (the trainer writes it at the first log line, "
            "every train.log_interval optimizer steps)"
        )
    train = read_log(work_dir / TRAIN_LOG)
    val = read_log(work_dir / VAL_LOG) if (work_dir / VAL_LOG).is_file() else None
    return plot_curves(train, val, out or work_dir / CURVES_PNG, title=str(work_dir))


def plot_after_training(work_dir: str | os.PathLike, note: Callable[[str], None] = print) -> Path | None:
    """:func:`plot_run` for the end of training: never raises (a picture must not fail a run); says what it
    wrote, or why it wrote nothing, through ``note``."""
    try:
        png = plot_run(work_dir)
    except Exception as err:  # noqa: BLE001 - any plotting problem is reported, never raised
        note(f"training curves not drawn: {type(err).__name__}: {err}")
        return None
    note(f"training curves: {png}")
    return png


def save_confusion(
    matrix, class_names: Sequence[str] | None, out: str | os.PathLike, title: str | None = None, normalize: bool = True
) -> Path:
    """A confusion matrix (K, K) (rows: true class, columns: predicted; counts) as a PNG heat map.

    ``normalize`` colours each row by its fraction (recall per class); cells show counts while K <= 30.
    Class names label the axes (indices when None); the diagonal's accuracy is in the title.
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"confusion matrix must be square (K, K), got shape {m.shape}")
    k = m.shape[0]
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    if len(names) != k:
        raise ValueError(f"{len(names)} class names for a {k} x {k} confusion matrix")
    rows = m.sum(axis=1, keepdims=True)
    shown = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0) if normalize else m
    side = min(max(4.0, 0.35 * k + 2.5), 30.0)
    fig = _agg_figure(figsize=(side + 1.0, side), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(shown, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else max(float(shown.max()), 1.0))
    fig.colorbar(image, ax=ax, shrink=0.8, label="fraction of the true class" if normalize else "clips")
    ticks = np.arange(k)
    if k <= 60:
        ax.set_xticks(ticks, names, rotation=90, fontsize=7 if k > 20 else 9)
        ax.set_yticks(ticks, names, fontsize=7 if k > 20 else 9)
    if k <= 30:
        for i in range(k):
            for j in range(k):
                if m[i, j]:
                    ax.text(
                        j,
                        i,
                        f"{int(m[i, j])}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if shown[i, j] > 0.5 else "black",
                    )
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    total = m.sum()
    accuracy = np.trace(m) / total if total else math.nan
    ax.set_title((f"{title}: " if title else "") + f"{int(total)} clips, top-1 {100 * accuracy:.1f}%", fontsize=10)
    return _save(fig, out)


__all__ = ["PlotError", "read_log", "plot_curves", "plot_run", "plot_after_training", "save_confusion", "CURVES_PNG"]
