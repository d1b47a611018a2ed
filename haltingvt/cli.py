"""The ``haltingvt`` command. Each subcommand lives in its own module, which provides
``add_arguments(parser)`` and ``run(args) -> int``; modules are imported only when used."""
from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = {
    "train": ("haltingvt.engine.train", "train a model from a config (torchrun for several GPUs/nodes)"),
    "eval": ("haltingvt.engine.evaluate", "evaluate a checkpoint: accuracy/mAP, GFLOPs, tokens per layer"),
    "flops": ("haltingvt.flops", "per-layer tokens and GFLOPs of a config, dense and with halting"),
    "predict": ("haltingvt.predict", "classify video files or frame folders, optionally save pictures"),
    "demo": ("haltingvt.demo", "train and evaluate a small model on the built-in synthetic dataset"),
    "synthetic": ("haltingvt.data.synthetic", "write the built-in synthetic motion clips to disk (frames or mp4)"),
    "configs": ("haltingvt.config", "list the shipped configs"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="haltingvt", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        if name == "configs":
            continue
        importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Build only the parser of the requested subcommand, so a missing optional part cannot break the others.
    parser = build_parser() if not argv or argv[0] not in SUBCOMMANDS else _single_parser(argv[0])
    args = parser.parse_args(argv)
    if args.command == "configs":
        from .config import available_configs

        print("\n".join(available_configs()))
        return 0
    from .config import ConfigError
    from .models.weights import CheckpointError

    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except (ConfigError, CheckpointError, FileNotFoundError) as err:
        print(f"haltingvt {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _single_parser(name: str) -> argparse.ArgumentParser:
    module, help_text = SUBCOMMANDS[name]
    parser = argparse.ArgumentParser(prog="haltingvt")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser(name, help=help_text, description=help_text)
    p.set_defaults(_module=module)
    if name != "configs":
        importlib.import_module(module).add_arguments(p)
    return parser


if __name__ == "__main__":
    raise SystemExit(main())
