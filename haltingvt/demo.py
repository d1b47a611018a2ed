"""``haltingvt demo``: HaltingVT end to end in a few minutes on a CPU, with no data set or weights to fetch.

    haltingvt demo                           # make demo: writes demo_out/
    haltingvt demo --quick                   # a smoke run of well under a minute into demo_quick/ (not a result)

It generates the built-in synthetic motion clips (:mod:`haltingvt.data.synthetic`: the class is how the
object moves, a single frame tells nothing), trains a small HaltingVT from scratch with the real trainer
(:func:`haltingvt.engine.train.train`: Glimpser, adaptive token halting, motion loss on real/static clip
pairs), evaluates it (:func:`haltingvt.engine.evaluate.evaluate`) and reports

* validation (and test) top-1, against chance;
* GFLOPs per clip measured from the tokens that were really computed, against the same backbone run
  dense (no Glimpser selection, no halting), and active tokens per halting layer;
* top-1 on *static* clips (one frame repeated): near chance, since only motion tells the classes apart;
* motion-head accuracy (real clip vs static clip);

and writes ``OUT/summary.json`` and pictures of clips with the patches the Glimpser kept and the layer
at which every kept token halted (``OUT/tokens.png``, ``OUT/tokens.gif``). The trained model is
``OUT/work/best.pth``; ``haltingvt predict`` and ``haltingvt eval`` read it with ``--config demo_synthetic``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sized
from pathlib import Path
from typing import Any, cast

import torch
from PIL import Image
from torch.utils.data import Dataset
from tqdm import tqdm

from .config import ConfigError, load_config
from .data import build_dataset, normalize
from .data.synthetic import synthetic_settings
from .engine.evaluate import evaluate
from .engine.train import train
from .flops import dense_gflops, dense_tokens, glimpser_only_gflops, tokens_after_glimpser
from .models import HaltingVT, create_model, load_checkpoint
from .visualize import save_token_gif, save_token_grid, tokens_of


def _pregenerate(datasets: Mapping[str, Dataset], progress: bool) -> float:
    """Render every clip once (the synthetic datasets cache them); returns the seconds it took."""
    start = time.time()
    total = sum(len(cast(Sized, d)) for d in datasets.values())
    with tqdm(total=total, desc="generating clips", unit="clip", disable=not progress, dynamic_ncols=True) as bar:
        for ds in datasets.values():
            for i in range(len(cast(Sized, ds))):
                ds[i]
                bar.update(1)
    return time.time() - start


@torch.no_grad()
def motion_and_static_accuracy(model: torch.nn.Module, dataset: Dataset, batch_size: int = 100) -> dict[str, float]:
    """On the real clips of an eval dataset and on their static versions (middle frame repeated):
    action top-1 on static clips, and the motion head's accuracy (real -> moving, static -> static)."""
    model.eval()
    device = next(model.parameters()).device
    static_hits = motion_hits = n = 0
    for start in range(0, len(cast(Sized, dataset)), batch_size):
        samples = [dataset[i] for i in range(start, min(start + batch_size, len(cast(Sized, dataset))))]
        real = torch.stack([s["clips"][0] for s in samples])  # (b, 3, T, H, W), first view
        labels = torch.stack([s["label"] for s in samples])
        T = real.shape[2]
        static = real[:, :, T // 2 : T // 2 + 1].expand(-1, -1, T, -1, -1)
        out_real = model(normalize(real.to(device)))
        out_static = model(normalize(static.to(device)))
        static_hits += (out_static.logits.argmax(1).cpu() == labels).sum().item()
        motion_hits += (out_real.motion_logits.argmax(1) == 1).sum().item()
        motion_hits += (out_static.motion_logits.argmax(1) == 0).sum().item()
        n += len(samples)
    return {"static_top1": static_hits / max(n, 1), "motion_acc": motion_hits / max(2 * n, 1)}


def save_pictures(
    model: HaltingVT,
    dataset: Dataset,
    class_names: list[str],
    out_dir: Path,
    per_class: int = 1,
    max_clips: int = 4,
) -> dict[str, Any]:
    """Token pictures of a few validation clips of different classes, stacked into ``tokens.png``, and
    an animated ``tokens.gif`` of the first. Uses :mod:`haltingvt.visualize`."""
    model.eval()
    # One clip each of classes spread over the class list (travel, scaling, ... rather than four directions).
    wanted = sorted({round(j * len(class_names) / max_clips) for j in range(max_clips)} & set(range(len(class_names))))
    picked: list[int] = []
    seen: dict[int, int] = {}
    for i in range(len(cast(Sized, dataset))):
        label = int(dataset[i]["label"])
        if label in wanted and seen.get(label, 0) < per_class:
            seen[label] = seen.get(label, 0) + 1
            picked.append(i)
        if len(picked) >= len(wanted) * per_class:
            break
    clips = torch.stack([dataset[i]["clips"][0] for i in picked])  # uint8 (n, 3, T, H, W)
    with torch.no_grad():
        out = model(normalize(clips.to(next(model.parameters()).device)), execution="compact")
    pred = out.logits.argmax(1).tolist()
    parts_dir = out_dir / "pictures"
    paths = []
    for j, i in enumerate(picked):
        label = int(dataset[i]["label"])
        kept, depth = tokens_of(out, j)
        title = f"val clip {i}: {class_names[label]} (predicted {class_names[pred[j]]})"
        paths.append(save_token_grid(clips[j], kept, depth, model.arch, parts_dir / f"clip_{i:04d}.png", title=title))
        if j == 0:
            gif = save_token_gif(clips[j], kept, depth, model.arch, out_dir / "tokens.gif", title=class_names[label])
    images = [Image.open(p).convert("RGB") for p in paths]
    width = max(im.width for im in images)
    sheet = Image.new("RGB", (width, sum(im.height for im in images)), "white")
    y = 0
    for im in images:
        sheet.paste(im, ((width - im.width) // 2, y))
        y += im.height
    png = out_dir / "tokens.png"
    sheet.save(png)
    return {"png": str(png), "gif": str(gif), "clips": [str(p) for p in paths]}


def run_demo(
    cfg: dict, out_dir: str | Path, device: str = "cpu", progress: bool = True, quick: bool = False
) -> dict[str, Any]:
    """Generate data, train, evaluate, draw; returns the summary (also ``out_dir/summary.json``)."""
    start = time.time()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = load_config(cfg)
    cfg["train"] = {**cfg["train"], "work_dir": str(out_dir / "work")}
    if cfg["data"]["format"] != "synthetic":
        raise ConfigError("the demo runs on the built-in synthetic data: data.format must be 'synthetic'")
    classes = synthetic_settings(cfg)["classes"]
    if int(cfg["model"]["num_classes"]) != len(classes):
        raise ConfigError(
            f"model.num_classes is {cfg['model']['num_classes']} but data.synthetic_classes "
            f"names {len(classes)} classes"
        )
    (out_dir / "classes.txt").write_text("\n".join(classes) + "\n")

    datasets = {split: build_dataset(cfg, split) for split in ("train", "val", "test")}
    data_seconds = _pregenerate(datasets, progress)

    tick = time.time()
    train_summary = train(
        cfg, device=device, datasets={"train": datasets["train"], "val": datasets["val"]}, progress=progress
    )
    train_seconds = time.time() - tick

    model = create_model(cfg["model"])
    best = Path(train_summary["checkpoints"]["best"] or train_summary["checkpoints"]["latest"])
    load_checkpoint(model, best)
    model.to(device).eval()
    val = evaluate(model, cfg, "val", device, dataset=datasets["val"], progress=progress)
    test = evaluate(model, cfg, "test", device, dataset=datasets["test"], progress=progress)
    extra = motion_and_static_accuracy(model, datasets["val"])
    pictures = save_pictures(model, datasets["val"], classes, out_dir)

    arch = model.arch
    dense = dense_gflops(arch)
    glimpser_only = glimpser_only_gflops(arch)
    summary = {
        "quick": quick,
        "config": cfg.get("name"),
        "classes": classes,
        "chance": 1.0 / len(classes),
        "val_top1": val["top1"],
        "test_top1": test["top1"],
        "static_top1": extra["static_top1"],
        "motion_acc": extra["motion_acc"],
        "gflops_per_clip": val["gflops_per_clip"],
        "dense_gflops_per_clip": dense,
        "glimpser_only_gflops_per_clip": glimpser_only,
        "gflops_fraction_of_dense": val["gflops_per_clip"] / dense,
        "tokens_per_layer": val["tokens_per_layer"],
        "dense_tokens_per_layer": float(dense_tokens(arch)),
        "tokens_after_glimpser": tokens_after_glimpser(arch),
        "train_seconds": round(train_seconds, 1),
        "data_seconds": round(data_seconds, 1),
        "total_seconds": None,  # set below
        "optimizer_steps": train_summary["optimizer_steps"],
        "num_train": len(cast(Sized, datasets["train"])),
        "num_val": len(cast(Sized, datasets["val"])),
        "checkpoint": str(best),
        "picture": pictures["png"],
        "gif": pictures["gif"],
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
    }
    summary["total_seconds"] = round(time.time() - start, 1)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def format_report(s: Mapping[str, Any]) -> str:
    """The short human-readable report of :func:`run_demo`'s summary."""
    pct = lambda v: f"{100 * v:.1f}%"  # noqa: E731
    tokens = " ".join(f"{t:.1f}" for t in s["tokens_per_layer"])
    lines = [
        "",
        "HaltingVT demo" + ("  (--quick smoke run: too short to learn, numbers not meaningful)" if s["quick"] else ""),
        f"  classes ({len(s['classes'])}, chance {pct(s['chance'])}): {', '.join(s['classes'])}",
        f"  val top-1            {pct(s['val_top1'])}   (test {pct(s['test_top1'])})",
        f"  static clips top-1   {pct(s['static_top1'])}   one frame repeated: only motion tells the classes apart",
        f"  motion head accuracy {pct(s['motion_acc'])}   real clip vs static clip",
        f"  MMAC per clip        {s['gflops_per_clip'] * 1e3:.2f} = {pct(s['gflops_fraction_of_dense'])} of the dense "
        f"backbone's {s['dense_gflops_per_clip'] * 1e3:.2f} "
        f"(Glimpser alone {s['glimpser_only_gflops_per_clip'] * 1e3:.2f})"
        "   (millions of multiply-accumulates)",
        f"  tokens per halting layer {tokens}   (dense {s['dense_tokens_per_layer']:.0f}, after the Glimpser "
        f"{s['tokens_after_glimpser']})",
        f"  training {s['train_seconds']:.0f} s ({s['optimizer_steps']} steps on {s['device']}), whole demo "
        f"{s['total_seconds']:.0f} s",
        f"  picture: {s['picture']}  (and {s['gif']}): dark = dropped by the Glimpser, colour = halting layer",
        f"  summary: {Path(s['picture']).parent / 'summary.json'}   model: {s['checkpoint']}",
    ]
    return "\n".join(lines)


__all__ = ["run_demo", "format_report", "motion_and_static_accuracy", "save_pictures"]
