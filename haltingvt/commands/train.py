"""``haltingvt train CONFIG``: train a model from a config (torchrun for several GPUs/nodes)."""

from __future__ import annotations

import argparse
import sys

from ..config import load_config
from ..engine import distributed
from ..engine.train import NonFiniteLossError, train
from .options import add_overrides, add_run_options, run_overrides


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="config name (see `haltingvt configs`) or YAML path")
    add_overrides(parser, "train.batch_size=8 train.epochs=4")
    add_run_options(
        parser,
        work_dir_help="checkpoints and logs go here (train.work_dir; default work_dirs/<config>)",
        seed_help="random seed (train.seed)",
        amp_help="mixed precision (train.amp); bare --amp: fp16 on CUDA, bf16 on the CPU",
    )
    parser.add_argument(
        "--resume",
        nargs="?",
        const=True,
        default=False,
        metavar="PATH",
        help="continue from PATH, or from <work_dir>/latest.pth when no PATH is given",
    )
    parser.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (log lines only)")


def run(args: argparse.Namespace) -> int:
    cfg = load_config(
        args.config, run_overrides(args, work_dir_key="train.work_dir", seed_key="train.seed", amp_key="train.amp")
    )
    try:
        train(cfg, resume=args.resume, device=args.device, progress=not args.no_progress)
    except NonFiniteLossError as err:
        print(f"haltingvt train: stopped: {err}", file=sys.stderr)
        return 1
    finally:
        distributed.cleanup()
    return 0
