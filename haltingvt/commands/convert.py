"""``haltingvt convert``: a checkpoint (the release's MMEngine .pth, or one of ours) -> a folder in the Hub's
format (model.safetensors + config.json + README.md) that ``from_pretrained`` and ``haltingvt predict`` read.

    haltingvt convert minik_g03_b10.pth hub/minik_g03_b10 --config minik_g03_b10 --classes classes.txt
"""

from __future__ import annotations

import argparse
import sys
import warnings

from ..io.textsafe import escape, safe_path, warning_lines
from ..predict import convert_checkpoint
from .options import add_overrides


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="release checkpoint (.pth, needs --config) or one of ours")
    parser.add_argument(
        "out_dir",
        help="folder to write, whole (created; a previous one is replaced in one step, "
        "its other files such as .git kept)",
    )
    parser.add_argument(
        "--config",
        help="config name or YAML path: the architecture and test pipeline "
        "(default: the ones stored in one of our checkpoints)",
    )
    add_overrides(parser, "data.test_num_clips=2")
    parser.add_argument(
        "--classes",
        help="class-name file, one name per line (default: the names stored in "
        "the checkpoint, else the config's data.classes file)",
    )
    parser.add_argument("--name", help="model name in config.json and the model card (default: the config's)")


def run(args: argparse.Namespace) -> int:
    with warnings.catch_warnings(record=True) as caught:  # e.g. a hand-made input file, loaded unchecked
        warnings.simplefilter("always")
        folder, predictor = convert_checkpoint(
            args.checkpoint, args.out_dir, config=args.config, overrides=args.set, classes=args.classes, name=args.name
        )
    for line in warning_lines(caught):
        print(f"haltingvt convert: warning: {line}", file=sys.stderr)
    arch = predictor.arch
    names = "class names stored" if predictor.classes else "no class names (pass --classes FILE to store them)"
    print(
        f"wrote {safe_path(folder)}/model.safetensors, config.json, README.md (whole: a folder replaced is "
        f"swapped in one step): {escape(predictor.cfg.get('name'))}, {arch['num_classes']} classes, "
        f"{arch['num_frames']} frames of {arch['img_size']}px; {names}"
    )
    print(f"try: haltingvt predict {safe_path(folder)} CLIP.mp4")
    return 0
