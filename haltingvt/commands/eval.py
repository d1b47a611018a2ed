"""``haltingvt eval CONFIG CHECKPOINT``: accuracy/mAP, GFLOPs and tokens per layer of a checkpoint."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..config import load_config
from ..engine import distributed
from ..engine.evaluate import evaluate, format_metrics
from ..models import create_model, load_checkpoint


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="config name (see `haltingvt configs`) or YAML path")
    parser.add_argument("checkpoint", help="checkpoint: ours (best.pth, epoch_N.pth) or a release .pth")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="config overrides, e.g. test.execution=masked test.early_exit=true")
    parser.add_argument("--split", default="test", choices=["val", "test"], help="data split (default: test)")
    parser.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    parser.add_argument("--dump", default=None, metavar="JSON", help="write per-video predictions to this file")
    parser.add_argument("--out", default=None, metavar="JSON", help="write the metrics to this file")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON instead of text")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.set)
    info = distributed.setup(args.device)
    try:
        model = create_model(cfg["model"])
        load_checkpoint(model, args.checkpoint)
        model.to(info.device)
        metrics = evaluate(model, cfg, split=args.split, device=info.device, dump=args.dump)
        metrics["checkpoint"] = str(args.checkpoint)
        metrics["config"] = cfg.get("name")
        if info.is_main:
            if args.out:
                Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                Path(args.out).write_text(json.dumps(metrics, indent=1))
            print(json.dumps(metrics, indent=1) if args.json else format_metrics(metrics))
    finally:
        distributed.cleanup()
    return 0
