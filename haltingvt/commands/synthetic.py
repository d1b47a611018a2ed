"""``haltingvt synthetic OUT``: write the built-in synthetic motion clips to disk (frames or mp4)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path

from ..config import SCHEMA, ConfigError, load_config
from ..data.export import export
from ..data.synthetic import MOTIONS, SPLITS, class_names, synthetic_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="output folder (use it as data.data_root)")
    parser.add_argument("--format", choices=("frames", "mp4"), default="frames", help="JPEG frame folders or mp4 files")
    parser.add_argument(
        "--layout",
        choices=("lists", "folders"),
        default="lists",
        help="lists: OUT/<split>/<clip> and list files (data.format=video|rawframes); "
        "folders: OUT/<split>/<class>/<clip> (data.format=folders)",
    )
    parser.add_argument("--splits", nargs="+", choices=list(SPLITS), default=list(SPLITS))
    parser.add_argument(
        "--num",
        type=int,
        nargs="+",
        default=None,
        metavar="N",
        help="clips per split, in the order of --splits (one number: the same for all; "
        "default: data.synthetic_num_<split> of haltingvt.config.SCHEMA)",
    )
    parser.add_argument(
        "--config",
        default="demo_synthetic",
        help="config whose synthetic settings (classes, clip_len, img_size, seed) are the defaults",
    )
    parser.add_argument("--frames", type=int, default=None, help="frames per clip (default: the config's clip_len)")
    parser.add_argument("--size", type=int, default=None, help="frame size in pixels (default: the config's img_size)")
    parser.add_argument("--seed", type=int, default=None, help="default: the config's data.synthetic_seed")
    parser.add_argument(
        "--classes", nargs="+", default=None, help=f"class names (default: the config's; known: {' '.join(MOTIONS)})"
    )


def run(args: argparse.Namespace) -> int:
    """``haltingvt synthetic OUT``: write splits to disk with list files for the real data pipeline."""
    if args.num is None:
        nums = [SCHEMA["data"][f"synthetic_num_{split}"].default for split in args.splits]
    elif len(args.num) in (1, len(args.splits)):
        nums = args.num if len(args.num) == len(args.splits) else args.num * len(args.splits)
    else:
        raise ConfigError(f"--num takes one number or one per split ({len(args.splits)}), got {len(args.num)}")
    s = synthetic_settings(load_config(args.config))
    frames = args.frames or s["num_frames"]
    size = args.size or s["size"]
    seed = s["seed"] if args.seed is None else args.seed
    try:
        classes = class_names(args.classes or s["classes"])
    except ValueError as err:
        raise ConfigError(str(err)) from None
    written = {}
    for split, num in zip(args.splits, nums):
        written[split] = export(
            args.out, split, args.format, num, frames, size, seed, classes, progress=True, layout=args.layout
        )
        print(f"{split}: {num} clips in {written[split]}")
    command = training_command(
        args.config,
        args.out,
        args.layout,
        args.format,
        written,
        len(classes),
        frames if frames != s["num_frames"] else None,
        size if size != s["size"] else None,
    )
    print("train on them with:\n  " + " ".join(command))
    return 0


def training_command(
    config: str,
    out: str | Path,
    layout: str,
    fmt: str,
    written: Mapping[str, Path],
    num_classes: int,
    frames: int | None = None,
    size: int | None = None,
) -> list[str]:
    """The ``haltingvt train`` command line that reads what was written: every key it needs
    (``frames``/``size``: clip length and frame size when they differ from the config's)."""
    sets = [f"model.num_classes={num_classes}"]
    if frames:
        sets += [f"model.num_frames={frames}", f"data.clip_len={frames}"]
    if size:
        sets += [
            f"model.img_size={size}",
            f"data.crop_size={size}",
            f"data.train_scale=[{size},{size}]",
            f"data.test_scale={size}",
        ]
    if layout == "folders":
        sets += ["data.format=folders", f"data.data_root={out}"]
    else:
        sets += [
            f"data.format={'rawframes' if fmt == 'frames' else 'video'}",
            f"data.data_root={out}",
            f"data.classes={Path(out) / 'classes.txt'}",
        ]
        for split in SPLITS:
            # A split not written reads val's list (Mini-Kinetics' test split is its val split too).
            sets.append(f"data.{split}_list={written.get(split) or written.get('val') or written.get('train')}")
    if "val" not in written:
        sets.append("train.val_interval=0")
    return ["haltingvt", "train", config, "--set", *sets]
