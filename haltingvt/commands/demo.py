"""``haltingvt demo``: train and evaluate a small model on the built-in synthetic dataset."""

from __future__ import annotations

import argparse

from ..config import load_config
from ..demo import format_report, run_demo
from .options import add_overrides

#: Overrides of ``--quick``: a smoke run that exercises every step (not a result).
QUICK_OVERRIDES = [
    "data.synthetic_num_train=192",
    "data.synthetic_num_val=48",
    "data.synthetic_num_test=48",
    "train.epochs=1",
    "train.warmup_epochs=0",
    "train.log_interval=8",
]
FULL_OUT, QUICK_OUT = "demo_out", "demo_quick"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        default=None,
        help=f"output folder (default: {FULL_OUT}, with --quick {QUICK_OUT}: a smoke run never "
        "overwrites a full demo's model)",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run of under a minute (not a result)")
    parser.add_argument("--config", default="demo_synthetic", help="config name or YAML (default: demo_synthetic)")
    add_overrides(parser, "train.epochs=4 train.seed=1")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    overrides = (QUICK_OVERRIDES if args.quick else []) + list(args.set)
    cfg = load_config(args.config, overrides)
    out = args.out or (QUICK_OUT if args.quick else FULL_OUT)
    summary = run_demo(cfg, out, device=args.device, progress=not args.no_progress, quick=args.quick)
    print(format_report(summary))
    return 0
