"""The ``haltingvt`` command: a dispatcher over :mod:`haltingvt.commands`, where each subcommand's module
provides ``add_arguments(parser)`` and ``run(args) -> int``."""
from __future__ import annotations

import argparse
import importlib
import sys

from .config import ConfigError
from .models.weights import CheckpointError

#: Subcommand -> help line; the code is in haltingvt.commands.<name>.
SUBCOMMANDS = {
    "train": "train a model from a config (torchrun for several GPUs/nodes)",
    "eval": "evaluate a checkpoint: accuracy/mAP, GFLOPs, tokens per layer",
    "flops": "per-layer tokens and GFLOPs of a config, dense and with halting",
    "predict": "classify video files or frame folders, optionally save pictures",
    "demo": "train and evaluate a small model on the built-in synthetic dataset",
    "synthetic": "write the built-in synthetic motion clips to disk (frames or mp4)",
    "configs": "list the shipped configs",
}


def _command(name: str):
    # Imported on use: a subcommand pulls in only the parts it needs (the data pipeline, matplotlib ...),
    # so `haltingvt configs` and `haltingvt --help` start fast.
    return importlib.import_module(f"haltingvt.commands.{name}")


def build_parser(names: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser with the subcommands ``names`` (default: all)."""
    parser = argparse.ArgumentParser(prog="haltingvt", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in names or SUBCOMMANDS:
        p = sub.add_parser(name, help=SUBCOMMANDS[name], description=SUBCOMMANDS[name])
        _command(name).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Build only the parser of the requested subcommand, so a missing optional part cannot break the others.
    parser = build_parser([argv[0]] if argv and argv[0] in SUBCOMMANDS else None)
    args = parser.parse_args(argv)
    try:
        return int(_command(args.command).run(args) or 0)
    except (ConfigError, CheckpointError, FileNotFoundError) as err:
        print(f"haltingvt {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
