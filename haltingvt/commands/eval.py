"""``haltingvt eval CONFIG CHECKPOINT``: accuracy/mAP, GFLOPs and tokens per layer of a checkpoint."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from ..config import load_config
from ..engine import distributed
from ..engine.evaluate import evaluate, format_metrics
from ..engine.train import seed_everything
from ..io.textsafe import escape_lines, safe_path, warning_lines
from ..models import create_model, load_checkpoint
from ..predict import prepare_inference
from .options import add_compile, add_overrides, add_precision, add_run_options, run_overrides


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="config name (see `haltingvt configs`) or YAML path")
    parser.add_argument("checkpoint", help="checkpoint: ours (best.pth, epoch_N.pth) or a release .pth")
    add_overrides(parser, "test.execution=masked test.early_exit=true")
    add_run_options(
        parser,
        work_dir_help="write the metrics to DIR/eval_<split>.json (unless --out is given)",
        seed_help="seed the random generators (evaluation itself is deterministic)",
        amp_help="mixed precision (test.amp); bare --amp: fp16 on CUDA, bf16 on the CPU",
    )
    parser.add_argument("--split", default="test", choices=["val", "test"], help="data split (default: test)")
    parser.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    add_precision(parser)
    add_compile(parser)
    parser.add_argument("--dump", default=None, metavar="JSON", help="write per-video predictions to this file")
    parser.add_argument("--out", default=None, metavar="JSON", help="write the metrics to this file")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON instead of text")
    parser.add_argument(
        "--confusion",
        default=None,
        metavar="PNG",
        help="draw the confusion matrix (true class x predicted class) into this PNG",
    )


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, run_overrides(args, work_dir_key=None, seed_key=None, amp_key="test.amp"))
    if args.seed is not None:
        seed_everything(args.seed)
    out = args.out or (Path(args.work_dir) / f"eval_{args.split}.json" if args.work_dir else None)
    info = distributed.setup(args.device)
    try:
        model = create_model(cfg["model"])
        with warnings.catch_warnings(record=True) as caught:  # e.g. a hand-made file loaded unchecked: one line
            warnings.simplefilter("always")
            load_checkpoint(model, args.checkpoint)
        if info.is_main:
            for line in warning_lines(caught):
                print(f"haltingvt eval: warning: {line}", file=sys.stderr)
        model.to(info.device).eval()
        # the model is converted in place for inference (never saved); evaluate() runs it in its precision
        prepare_inference(model, cfg["test"], info.device)
        metrics = evaluate(model, cfg, split=args.split, device=info.device, dump=args.dump, confusion=args.confusion)
        metrics["checkpoint"] = str(args.checkpoint)
        metrics["config"] = cfg.get("name")
        if info.is_main:
            if out:
                Path(out).parent.mkdir(parents=True, exist_ok=True)
                Path(out).write_text(json.dumps(metrics, indent=1))
            # the text report escapes what came from files (class names, paths in messages); JSON keeps them
            print(json.dumps(metrics, indent=1) if args.json else escape_lines(format_metrics(metrics)))
            for what, path in (("metrics", out), ("confusion matrix", args.confusion)):
                if path and not args.json:
                    print(f"{what}: {safe_path(path)}")
    finally:
        distributed.cleanup()
    return 0
