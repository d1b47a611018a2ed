"""``haltingvt predict CHECKPOINT INPUTS...``: classify video files, frame folders or folders of them (searched at
any depth), optionally save pictures, JSON (``--out``) and CSV (``--csv``) results."""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
import time
import warnings
from pathlib import Path

from ..io.atomic import atomic_write
from ..io.textsafe import escape, warning_lines
from ..predict import Predictor, find_inputs
from .options import add_predictor_options, inference_overrides

CSV_COLUMNS = ("path", "label", "prob", "gflops", "error")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoint",
        help="trained checkpoint (ours: .pth, .safetensors or a save_pretrained folder; "
        "or a release checkpoint with --config)",
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="VIDEO_OR_FOLDER",
        help="video files and/or frame folders; any other folder is searched, at any depth, for video files and "
        "frame folders",
    )
    add_predictor_options(parser)
    parser.add_argument("--topk", type=int, default=5, help="classes to report per input (default 5)")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON instead of text")
    parser.add_argument("--out", metavar="JSON", help="also write the results (as --json prints them) to this file")
    parser.add_argument(
        "--csv", metavar="CSV", help="also write one line per input to this file: " + ", ".join(CSV_COLUMNS)
    )
    parser.add_argument(
        "--save-vis",
        metavar="DIR",
        help="save per input a PNG grid and a GIF of the tokens kept and their halting layer, "
        "and all results as DIR/predictions.json",
    )
    parser.add_argument(
        "--batch-size", type=int, help="inputs per forward pass (default: the config's test.batch_size)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="decoding processes (DataLoader workers; 0: decode in the main process)",
    )


def format_result(res: dict) -> str:
    """Human-readable lines for one result. Text that came from files (paths, class names, error messages
    quoting them) is shown with its control characters escaped (``haltingvt.io.textsafe.escape``); the JSON
    output keeps the real strings."""
    if res.get("error"):
        return f"{escape(res['path'])}\n  error: {escape(res['error'])}"
    lines = [escape(res["path"]) if res["path"] else "<tensor>"]
    labels = [escape(t["label"]) for t in res["top"]]
    width = max(len(label) for label in labels)
    for rank, (t, label) in enumerate(zip(res["top"], labels), 1):
        lines.append(f"  {rank}. {label:<{width}}  {t['prob']:7.2%}")
    layers = res["halting_layers"]
    tokens = " ".join(f"{v:.0f}" if float(v).is_integer() else f"{v:.1f}" for v in res["tokens_per_layer"])
    views = res["num_views"]
    lines.append(
        f"  GFLOPs {res['gflops']:.4g} ({views} view{'s' if views > 1 else ''}, {res['gflops_per_view']:.4g} each)"
        f" | tokens entering layers {layers[0]}-{layers[-1]}: {tokens}"
    )
    if res.get("vis"):
        lines.append(f"  saved {', '.join(escape(v) for v in res['vis'])}")
    return "\n".join(lines)


def results_csv(results: list[dict]) -> str:
    """CSV text, one line per result: path, top-1 label and probability, GFLOPs, error (empty when none)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for res in results:
        top = res["top"][0] if res.get("top") else None
        writer.writerow(
            [
                res["path"],
                top["label"] if top else "",
                f"{top['prob']:.6f}" if top else "",
                f"{res['gflops']:.6g}" if res.get("gflops") is not None else "",
                res["error"] or "",
            ]
        )
    return buf.getvalue()


def run(args: argparse.Namespace) -> int:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predictor = Predictor(
            args.checkpoint,
            config=args.config,
            device=args.device,
            classes=args.classes,
            overrides=inference_overrides(args),
            views=args.views,
            topk=args.topk,
            batch_size=args.batch_size,
            num_workers=args.workers,
        )
    for line in warning_lines(caught):
        print(f"haltingvt predict: warning: {line}", file=sys.stderr)
    inputs = find_inputs(args.inputs, predictor.cfg)
    if len(inputs) != len(args.inputs):
        print(f"haltingvt predict: {len(inputs)} inputs (video files and frame folders)", file=sys.stderr)
    start = time.perf_counter()
    results = predictor.predict_many(inputs, save_vis=args.save_vis, progress=len(inputs) > predictor.batch_size)
    seconds = time.perf_counter() - start
    failed = [r for r in results if r["error"]]
    clips, crops = predictor.views
    doc = {
        "checkpoint": str(predictor.checkpoint),
        "config": predictor.cfg.get("name"),
        "device": str(predictor.device),
        "precision": predictor.precision,
        "compiled": predictor.compiled,
        "views": f"{clips}x{crops}",
        "num_classes": predictor.arch["num_classes"],
        "num_failed": len(failed),
        "seconds": round(seconds, 3),
        "results": results,
    }
    if args.save_vis:
        out = Path(args.save_vis) / "predictions.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=2))
    if args.out:
        atomic_write(args.out, lambda f: f.write(json.dumps(doc, indent=2).encode()))
    if args.csv:
        atomic_write(args.csv, lambda f: f.write(results_csv(results).encode()))
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(
            f"{escape(doc['config'])} on {doc['device']} ({predictor.precision}"
            f"{', Glimpser compiled' if predictor.compiled else ''}), "
            f"{clips} clip(s) x {crops} crop(s) per input"
        )
        for res in results:
            print(format_result(res))
    for res in failed:
        print(f"haltingvt predict: error: {escape(res['error'])}", file=sys.stderr)
    if failed:
        print(f"haltingvt predict: {len(results) - len(failed)} of {len(results)} inputs classified", file=sys.stderr)
    num_clips = sum(r["num_views"] for r in results if not r["error"])
    if len(results) > 1:  # throughput of a run over many inputs (one input: its time is mostly start-up)
        print(
            f"haltingvt predict: {len(results)} inputs ({num_clips} clips) in {seconds:.2f} s: "
            f"{num_clips / max(seconds, 1e-9):.1f} clips/s, {len(results) / max(seconds, 1e-9):.1f} inputs/s",
            file=sys.stderr,
        )
    return 1 if failed else 0
