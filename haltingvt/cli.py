"""The ``haltingvt`` command: a dispatcher over :mod:`haltingvt.commands`, where each subcommand's module
provides ``add_arguments(parser)`` and ``run(args) -> int``."""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys

from . import __version__
from .config import ConfigError
from .data.errors import DataError
from .io.errors import CheckpointError, CheckpointWriteError
from .io.textsafe import escape

#: Subcommand -> help line; the code is in haltingvt.commands.<name>.
SUBCOMMANDS = {
    "train": "train a model from a config (torchrun for several GPUs/nodes)",
    "eval": "evaluate a checkpoint: accuracy/mAP, GFLOPs, tokens per layer",
    "flops": "per-layer tokens and GFLOPs of a config, dense and with halting",
    "predict": "classify video files or frame folders, optionally save pictures",
    "app": "a web page (Gradio) that classifies an uploaded video: top-5, GFLOPs, tokens, halting picture",
    "convert": "write a checkpoint (e.g. the release's) as a Hub-format folder: model.safetensors + config.json",
    "demo": "train and evaluate a small model on the built-in synthetic dataset",
    "synthetic": "write the built-in synthetic motion clips to disk (frames or mp4)",
    "extract-frames": "decode videos into JPEG frame folders (or re-encode them) with a list file, as MMAction2",
    "prepare": "write list and class files for a dataset from its official annotations (activitynet)",
    "plot": "draw a run's training curves (loss terms, top-1, GFLOPs, tokens, lr) as a PNG",
    "config": "print a config as it resolves (after _base_ and --set), as YAML",
    "configs": "list the shipped configs",
}

DESCRIPTION = (
    "haltingvt: train, evaluate and run HaltingVT video transformers (Glimpser token dropping and "
    "adaptive token halting) on your own videos or the built-in demo data."
)
EPILOG = """examples:
  haltingvt demo                                   train + evaluate a small model on synthetic clips (CPU, minutes)
  haltingvt train my.yaml --work-dir runs/mine     train (a config that sets data.format=folders, ...)
  haltingvt eval my.yaml runs/mine/best.pth --confusion confusion.png
  haltingvt predict runs/mine/best.pth clip.mp4    top-5 classes, GFLOPs and tokens of a clip
  haltingvt COMMAND --help                         the options of one command
"""


def _command(name: str):
    # Imported on use: a subcommand pulls in only the parts it needs (the data pipeline, matplotlib ...),
    # so `haltingvt configs` and `haltingvt --help` start fast.
    return importlib.import_module(f"haltingvt.commands.{name.replace('-', '_')}")


def build_parser(names: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser with the subcommands ``names`` (default: all)."""
    parser = argparse.ArgumentParser(
        prog="haltingvt", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"haltingvt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in names or SUBCOMMANDS:
        p = sub.add_parser(name, help=SUBCOMMANDS[name], description=SUBCOMMANDS[name])
        _command(name).add_arguments(p)
    return parser


def _error(command: str, message: object) -> None:
    # Messages quote paths, values and names from files: shown escaped, never as raw terminal controls.
    print(f"haltingvt {command}: error: {escape(str(message))}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; the exit status (docs/reliability.md, "Exit codes"): 0 done; 1 the operating system
    refused (a full disk, a read-only folder, no permission) or training stopped on a NaN/inf loss; 2 a mistake
    in the input (command line, config, checkpoint, data, a missing file, a work dir in use); 130 interrupted
    (Ctrl-C); 141 the output's reader went away (`| head`)."""
    argv = sys.argv[1:] if argv is None else argv
    # Build only the parser of the requested subcommand, so a missing optional part cannot break the others.
    parser = build_parser([argv[0]] if argv and argv[0] in SUBCOMMANDS else None)
    args = parser.parse_args(argv)
    try:
        code = int(_command(args.command).run(args) or 0)
        sys.stdout.flush()  # a reader that went away shows here, inside the try
        return code
    except BrokenPipeError:
        # The output was piped into a reader that stopped (`| head`): end quietly, as other tools do, with the
        # status of a SIGPIPE death; stdout goes to /dev/null so that the exit-time flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except CheckpointWriteError as err:  # a full disk while writing a checkpoint: an OS error (exit 1), not bad input
        _error(args.command, err)
        return 1
    except (ConfigError, CheckpointError, DataError, FileNotFoundError) as err:
        _error(args.command, err)
        return 2
    except OSError as err:  # a read-only folder, a full disk ...: one line naming the file
        _error(args.command, f"{err.filename}: {err.strerror}" if err.filename and err.strerror else err)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
