"""Evaluation: accuracy (or mAP), GFLOPs per clip from the measured token counts, throughput.

    haltingvt eval minik_g03_b10 work_dirs/minik_g03_b10/best.pth --dump predictions.json
    torchrun --nproc_per_node 8 -m haltingvt.cli eval minik_g03_b10 best.pth --json

Multi-view testing: every video gives V = num_clips x num_crops views (collate_eval), each view is
one clip through the model, and the video's score is the mean of the views' softmax probabilities
(the release's "prob" averaging; also used for ActivityNet's mAP). GFLOPs and token counts are per
view clip. Under torchrun each process takes an unpadded shard of the videos; results are gathered
as (index, probabilities) and de-duplicated by index, so every video counts exactly once.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sized
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from .. import data
from ..config import ConfigError, load_config
from ..flops import clip_gflops
from ..models import HaltingVT, model_precision, precision_context
from ..plot import save_confusion
from . import distributed
from .amp import autocast
from .metrics import average_precision, classification_metrics


@torch.no_grad()
def evaluate(
    model: nn.Module,
    cfg: Mapping[str, Any],
    split: str = "val",
    device: str | torch.device | None = None,
    *,
    dataset: Dataset | None = None,
    execution: str | None = None,
    early_exit: bool | None = None,
    batch_size: int | None = None,
    num_workers: int | None = None,
    dump: str | Path | None = None,
    confusion: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate ``model`` on ``split`` of ``cfg``'s data (or on ``dataset``, samples as build_dataset's).

    Runs on every process of a torchrun job (each on its shard) and returns the same dict on all:
    top1, top5, mean_class_acc (single label) or mAP and top1 (loss.multi_label); gflops_per_clip
    (mean over view clips), gflops_per_video, tokens_per_layer (mean active tokens entering each
    halting layer), early_exit_fraction, clips_per_second (view clips, all processes), views,
    num_evaluated, unreadable (paths) and unreadable_errors; per_class: one entry per class
    ``{"index", "name", "clips", "top1"}`` (``"ap"`` instead of top1 for multi-label; None for a class
    without clips; names from the dataset's ``classes``). ``dump`` writes per-video predictions as JSON,
    ``confusion`` the confusion matrix as a PNG (single label; :func:`haltingvt.plot.save_confusion`).
    """
    cfg = load_config(cfg)  # a partial dict gets the defaults; a loaded config stays as it is
    net = distributed.unwrap(model)
    test = cfg["test"]
    execution = execution or test["execution"]
    early_exit = test["early_exit"] if early_exit is None else bool(early_exit)
    if early_exit and execution != "compact":
        raise ConfigError("test.early_exit needs test.execution=compact")
    device = torch.device(device) if device is not None else next(net.parameters()).device
    multi_label = cfg["loss"]["multi_label"]
    if confusion is not None and multi_label:
        raise ConfigError("a confusion matrix needs single-label data (loss.multi_label=false)")
    arch = getattr(net, "arch", None) or dict(cfg["model"])

    dataset = dataset if dataset is not None else data.build_dataset(cfg, split)
    rank, world = distributed.rank(), distributed.world_size()
    loader = DataLoader(
        dataset,
        batch_size=batch_size or test["batch_size"],
        sampler=distributed.ShardSampler(len(cast(Sized, dataset)), rank, world),
        num_workers=cfg["data"]["num_workers"] if num_workers is None else num_workers,
        collate_fn=data.collate_eval,
        pin_memory=device.type == "cuda",
    )

    # a model converted for inference (haltingvt.models.precision) runs in its precision; otherwise test.amp
    precision = model_precision(net)
    was_training = net.training
    net.eval()
    indices, probs, labels, tokens, gflops, exited, paths, errors = [], [], [], [], [], [], [], []
    views, n_clips, model_time = 0, 0, 0.0
    bar = tqdm(loader, desc=f"eval {split}", disable=not (progress and rank == 0), dynamic_ncols=True)
    for batch in bar:
        errors.extend(batch["errors"])
        b = batch["clips"].shape[0]
        if b == 0:
            continue
        views = batch["clips"].shape[1]
        clips = data.normalize(batch["clips"].to(device, non_blocking=True)).flatten(0, 1)  # (b*V, 3, T, H, W)
        _sync(device)
        start = time.perf_counter()
        with precision_context(precision, device) if precision != "fp32" else autocast(device, test["amp"]):
            out = net(clips, execution=execution, early_exit=early_exit)
        _sync(device)
        model_time += time.perf_counter() - start
        n_clips += clips.shape[0]
        # The release averages softmax probabilities over the views of a video.
        probs.append(out.logits.float().softmax(dim=1).view(b, views, -1).mean(dim=1).cpu())
        counts = out.token_counts.float().cpu()
        tokens.append(counts.view(b, views, -1).mean(dim=1))
        g = clip_gflops(arch, counts, num_frames=clips.shape[2], img_size=clips.shape[-1])
        gflops.append(g.float().view(b, views).mean(dim=1))
        exited.append(out.exit_layer.cpu().view(b, views).ge(0).float().mean(dim=1))
        indices.append(batch["index"].cpu().long())
        labels.append(batch["label"].cpu())
        paths.extend(batch["path"])
    bar.close()
    if was_training:
        net.train()

    def cat(xs: list[torch.Tensor]) -> torch.Tensor | None:
        return torch.cat(xs) if xs else None

    local = {
        "index": cat(indices),
        "probs": cat(probs),
        "label": cat(labels),
        "tokens": cat(tokens),
        "gflops": cat(gflops),
        "exited": cat(exited),
        "path": paths,
        "errors": errors,
        "clips": n_clips,
        "time": model_time,
        "views": views,
    }
    results = _merge(distributed.all_gather_objects(local))
    if len(results["index"]) == 0 and results["errors"]:  # every process sees the same merged results
        raise data.DataError(
            f"{split}: 0 of {len(cast(Sized, dataset))} videos could be read, nothing to evaluate "
            f"(first error: {results['errors'][0][2]})"
        )
    metrics = _summarise(results, multi_label)
    metrics.update(split=split, execution=execution, early_exit=early_exit, world_size=world)
    num_classes = int(cast(HaltingVT, net).num_classes)
    names = getattr(dataset, "classes", None)
    metrics["per_class"] = per_class_metrics(
        results.get("probs"), results.get("label"), num_classes, names, multi_label
    )
    if dump is not None and rank == 0:
        write_predictions(dump, results, multi_label)
    if confusion is not None and rank == 0:
        matrix = confusion_matrix(results.get("probs"), results.get("label"), num_classes)
        save_confusion(matrix, names, confusion, title=f"{cfg.get('name') or 'model'} on {split}")
    return metrics


def confusion_matrix(scores: torch.Tensor | None, labels: torch.Tensor | None, num_classes: int) -> torch.Tensor:
    """Counts (K, K) long: row = true class, column = top-1 prediction. scores (N, K), labels (N,) long."""
    if scores is None or labels is None or len(labels) == 0:
        return torch.zeros(num_classes, num_classes, dtype=torch.long)
    flat = labels.long() * num_classes + scores.argmax(dim=1).long()
    return torch.bincount(flat, minlength=num_classes * num_classes).view(num_classes, num_classes)


def per_class_metrics(
    scores: torch.Tensor | None,
    labels: torch.Tensor | None,
    num_classes: int,
    class_names: list[str] | None = None,
    multi_label: bool = False,
) -> list[dict[str, Any]]:
    """One dict per class: index, name (None when unknown), clips (videos of the class) and top1 (its
    recall) or, multi-label, ap (average precision); None for a class without videos."""
    empty = scores is None or labels is None or len(labels) == 0
    if not multi_label:
        matrix = confusion_matrix(scores, labels, num_classes)
        counts = matrix.sum(dim=1)
    rows = []
    for k in range(num_classes):
        row: dict[str, Any] = {"index": k, "name": class_names[k] if class_names and k < len(class_names) else None}
        if multi_label:
            if empty or scores is None or labels is None:  # (empty says the same; spelt out for the type checker)
                row.update(clips=0, ap=None)
                rows.append(row)
                continue
            n = int(labels[:, k].sum())
            row.update(clips=n, ap=round(average_precision(scores[:, k], labels[:, k]), 6) if n else None)
        else:
            n = int(counts[k])
            row.update(clips=n, top1=round(int(matrix[k, k]) / n, 6) if n else None)
        rows.append(row)
    return rows


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Join the processes' results, keep the first result of every sample index, order by index."""
    full = [p for p in parts if p["index"] is not None]
    errors = sorted({(int(i), str(p), str(m)) for part in parts for (i, p, m) in part["errors"]})
    out: dict[str, Any] = {
        "errors": errors,
        "clips": sum(p["clips"] for p in parts),
        "clips_per_second": sum(p["clips"] / p["time"] for p in parts if p["time"] > 0),
        "views": max((p["views"] for p in parts), default=0),
    }
    if not full:
        out.update(index=torch.zeros(0, dtype=torch.long), probs=None, path=[])
        return out
    index = torch.cat([p["index"] for p in full])
    order = torch.argsort(index, stable=True)
    index = index[order]
    first = torch.ones_like(index, dtype=torch.bool)
    first[1:] = index[1:] != index[:-1]
    keep = order[first]
    out["index"] = index[first]
    for key in ("probs", "label", "tokens", "gflops", "exited"):
        if full[0][key] is not None:
            out[key] = torch.cat([p[key] for p in full])[keep]
        else:
            out[key] = None
    all_paths = [path for p in full for path in p["path"]]
    out["path"] = [all_paths[i] for i in keep.tolist()]
    return out


def _summarise(results: dict[str, Any], multi_label: bool) -> dict[str, Any]:
    n = len(results["index"])
    metrics: dict[str, Any] = {}
    if n:
        metrics.update(classification_metrics(results["probs"], results["label"], multi_label))
        metrics["tokens_per_layer"] = [round(v, 3) for v in results["tokens"].mean(dim=0).tolist()]
        metrics["gflops_per_clip"] = results["gflops"].mean().item() if results["gflops"] is not None else None
        metrics["early_exit_fraction"] = results["exited"].mean().item()
    else:
        keys = ("mAP", "top1") if multi_label else ("top1", "top5", "mean_class_acc")
        metrics.update({k: float("nan") for k in keys})
        metrics.update(tokens_per_layer=[], gflops_per_clip=None, early_exit_fraction=None)
    views = results["views"]
    g = metrics["gflops_per_clip"]
    metrics["gflops_per_video"] = g * views if g is not None else None
    metrics["views"] = views
    metrics["clips_per_second"] = results["clips_per_second"]
    metrics["num_evaluated"] = n
    metrics["unreadable"] = [path for _, path, _ in results["errors"]]
    metrics["unreadable_errors"] = [msg for _, _, msg in results["errors"]]
    return metrics


def write_predictions(path: str | Path, results: dict[str, Any], multi_label: bool, topk: int = 5) -> Path:
    """Per-video predictions as JSON: index, path, label(s), top-k classes and their probabilities."""
    rows = []
    if results.get("probs") is not None:
        scores, classes = results["probs"].topk(min(topk, results["probs"].shape[1]), dim=1)
        for i in range(len(results["index"])):
            label = results["label"][i]
            rows.append(
                {
                    "index": int(results["index"][i]),
                    "path": results["path"][i],
                    "label": (label.nonzero().flatten().tolist() if multi_label else int(label)),
                    "pred": int(classes[i, 0]),
                    "topk": classes[i].tolist(),
                    "topk_prob": [round(float(s), 6) for s in scores[i]],
                    "tokens_per_layer": [round(float(t), 2) for t in results["tokens"][i]],
                    "gflops": float(results["gflops"][i]) if results["gflops"] is not None else None,
                }
            )
    doc = {"predictions": rows, "unreadable": [{"index": i, "path": p, "error": m} for i, p, m in results["errors"]]}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1))
    return path


def format_metrics(m: Mapping[str, Any]) -> str:
    """Human-readable multi-line summary of :func:`evaluate`'s result."""

    def pct(key: str) -> str:
        v = m.get(key)
        return f"{100 * v:.2f}%" if isinstance(v, float) and not math.isnan(v) else "n/a"

    head = (
        f"mAP {pct('mAP')}  top-1 hit {pct('top1')}"
        if "mAP" in m
        else (f"top-1 {pct('top1')}  top-5 {pct('top5')}  mean class acc {pct('mean_class_acc')}")
    )
    g = m.get("gflops_per_clip")
    lines = [
        f"{m['split']}: {m['num_evaluated']} videos x {m['views']} views  ({m['execution']} execution"
        f"{', early exit' if m['early_exit'] else ''}, {m['world_size']} process(es))",
        head,
        f"GFLOPs per clip {g:.3f}  per video {m['gflops_per_video']:.3f}" if g is not None else "GFLOPs: n/a",
        "tokens per halting layer: " + " ".join(f"{t:.1f}" for t in m["tokens_per_layer"]),
        f"throughput {m['clips_per_second']:.1f} clips/s",
    ]
    key = "ap" if "mAP" in m else "top1"
    scored = sorted((r for r in m.get("per_class", []) if r.get(key) is not None), key=lambda r: r[key])
    if len(scored) > 1:
        lines.append(
            f"lowest per-class {'AP' if key == 'ap' else 'top-1'}: "
            + ", ".join(f"{r['name'] or r['index']} {100 * r[key]:.1f}% ({r['clips']})" for r in scored[:3])
            + "  (every class: per_class in --json/--out)"
        )
    if m["unreadable"]:
        lines.append(f"{len(m['unreadable'])} unreadable video(s) not evaluated:")
        lines += [f"  {msg}" for msg in m["unreadable_errors"]]
    return "\n".join(lines)
