"""``haltingvt train CONFIG``: train a model from a config (torchrun for several GPUs/nodes)."""
from __future__ import annotations

import argparse
import sys

from ..config import load_config
from ..engine import distributed
from ..engine.train import NonFiniteLossError, train


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="config name (see `haltingvt configs`) or YAML path")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="config overrides, e.g. train.batch_size=8 train.work_dir=runs/x")
    parser.add_argument("--resume", nargs="?", const=True, default=False, metavar="PATH",
                        help="continue from PATH, or from <work_dir>/latest.pth when no PATH is given")
    parser.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (log lines only)")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.set)
    try:
        train(cfg, resume=args.resume, device=args.device, progress=not args.no_progress)
    except NonFiniteLossError as err:
        print(f"haltingvt train: stopped: {err}", file=sys.stderr)
        return 1
    finally:
        distributed.cleanup()
    return 0
