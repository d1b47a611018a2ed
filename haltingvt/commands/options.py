"""Options shared by several subcommands, named as MMAction2 users know them.

``--set`` / ``--cfg-options`` (one option, repeatable: every use adds to the same list of overrides),
``--work-dir``, ``--seed``, ``--amp``, ``--precision`` and ``--compile``. The last five are short for config overrides
and are applied after ``--set``, so they win over it.
"""

from __future__ import annotations

import argparse
import json

import torch

from ..models.precision import PRECISIONS

AMP_CHOICES = ("none", "bf16", "fp16")


def add_overrides(parser: argparse.ArgumentParser, example: str) -> None:
    """``--set KEY=VALUE ...`` with its MMAction2 name ``--cfg-options`` (same list; repeatable)."""
    parser.add_argument(
        "--set",
        "--cfg-options",
        dest="set",
        nargs="+",
        action="extend",
        default=[],
        metavar="KEY=VALUE",
        help=f"config overrides, e.g. {example} (repeatable; --cfg-options is the same option)",
    )


def add_run_options(parser: argparse.ArgumentParser, *, work_dir_help: str, seed_help: str, amp_help: str) -> None:
    """``--work-dir DIR``, ``--seed N`` and ``--amp [none|bf16|fp16]`` (bare ``--amp``: fp16 on CUDA, else bf16)."""
    parser.add_argument("--work-dir", default=None, metavar="DIR", help=work_dir_help)
    parser.add_argument("--seed", type=int, default=None, metavar="N", help=seed_help)
    parser.add_argument(
        "--amp",
        nargs="?",
        const="auto",
        default=None,
        choices=AMP_CHOICES + ("auto",),
        metavar="{none,bf16,fp16}",
        help=amp_help,
    )


def add_precision(parser: argparse.ArgumentParser) -> None:
    """``--precision fp32|bf16|fp16|int8``: short for ``--set test.precision=...`` (see :func:`inference_overrides`)."""
    parser.add_argument(
        "--precision",
        default=None,
        choices=PRECISIONS,
        help="inference precision (test.precision; default fp32): bf16 or int8 on the CPU, bf16 or fp16 on CUDA; "
        "the halting arithmetic stays fp32 (docs/guide.md, Precision)",
    )


def add_compile(parser: argparse.ArgumentParser) -> None:
    """``--compile``: short for ``--set test.compile=true``."""
    parser.add_argument(
        "--compile",
        action="store_true",
        default=None,
        help="torch.compile the Glimpser's blocks (test.compile): 10-20 s at the first batch of each shape, then "
        "faster (docs/guide.md, Compiling the Glimpser)",
    )


def add_predictor_options(parser: argparse.ArgumentParser) -> None:
    """What a :class:`haltingvt.predict.Predictor` is built from, for ``predict`` and ``app``: ``--config``, ``--set``,
    ``--classes``, ``--views``, ``--device``, ``--precision`` and ``--compile``."""
    parser.add_argument("--config", help="config name or YAML path (default: the config stored in the checkpoint)")
    add_overrides(parser, "test.early_exit=true")
    parser.add_argument(
        "--classes",
        help="class-name file (default: the names stored in the checkpoint, else the "
        "data.classes file of --config, else class_<i>)",
    )
    parser.add_argument("--views", metavar="CLIPSxCROPS", help="test views per input, e.g. 1x3 (default: the config's)")
    parser.add_argument("--device", help="cuda, cuda:1, cpu ... (default: cuda when available)")
    add_precision(parser)
    add_compile(parser)


def _inference_items(args: argparse.Namespace) -> list[str]:
    """``test.precision=...`` / ``test.compile=true`` when the command has ``--precision`` / ``--compile`` and
    they were given."""
    precision = getattr(args, "precision", None)
    out = [f"test.precision={precision}"] if precision else []
    return out + (["test.compile=true"] if getattr(args, "compile", None) else [])


def inference_overrides(args: argparse.Namespace) -> list[str]:
    """``--set`` followed by what ``--precision`` and ``--compile`` stand for."""
    return list(args.set) + _inference_items(args)


def amp_mode(amp: str, device: str | None) -> str:
    """``--amp``'s value; bare ``--amp`` ("auto") is fp16 on a CUDA device and bf16 on the CPU."""
    if amp != "auto":
        return amp
    cuda = device.startswith("cuda") if device else torch.cuda.is_available()
    return "fp16" if cuda else "bf16"


def run_overrides(
    args: argparse.Namespace, *, work_dir_key: str | None, seed_key: str | None, amp_key: str
) -> list[str]:
    """``--set`` followed by the overrides that ``--work-dir``/``--seed``/``--amp`` stand for."""
    out = list(args.set)
    if args.work_dir is not None and work_dir_key:
        out.append(f"{work_dir_key}={json.dumps(str(args.work_dir))}")  # quoted: the value is read as YAML
    if args.seed is not None and seed_key:
        out.append(f"{seed_key}={args.seed}")
    if args.amp is not None:
        out.append(f"{amp_key}={amp_mode(args.amp, args.device)}")
    return out + _inference_items(args)
