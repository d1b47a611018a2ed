"""``haltingvt plot WORK_DIR``: training curves of a run as a PNG (also written at the end of training)."""

from __future__ import annotations

import argparse
import sys

from ..plot import PlotError, plot_run


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("work_dir", help="a training work dir (holds train_log.csv, and val_log.csv with validation)")
    parser.add_argument("--out", default=None, metavar="PNG", help="picture file (default: WORK_DIR/curves.png)")


def run(args: argparse.Namespace) -> int:
    try:
        png = plot_run(args.work_dir, args.out)
    except PlotError as err:
        print(f"haltingvt plot: error: {err}", file=sys.stderr)
        return 2
    print(png)
    return 0
