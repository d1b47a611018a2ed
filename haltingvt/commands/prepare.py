"""``haltingvt prepare activitynet ANNOTATIONS --frames DIR --out LIST_DIR``: list and class files from a dataset's
official annotation file."""

from __future__ import annotations

import argparse
import shlex

from ..data.decoding import DEFAULT_FILENAME_TMPL
from ..data.prepare import prepare_activitynet
from ..io.textsafe import escape

DATASETS = ("activitynet",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dataset",
        choices=DATASETS,
        help="activitynet: ActivityNet v1.3 (activity_net.v1-3.min.json), multi-label rawframes lists",
    )
    parser.add_argument("annotations", help="the official annotation file")
    parser.add_argument(
        "--frames",
        required=True,
        metavar="DIR",
        help="frame folders v_<id>/img_00001.jpg ... (or <id>/...), e.g. from haltingvt extract-frames",
    )
    parser.add_argument(
        "--out", required=True, metavar="LIST_DIR", help="where train.txt, val.txt and classes.txt are written"
    )
    parser.add_argument("--filename-tmpl", default=DEFAULT_FILENAME_TMPL, help="frame file names")


def run(args: argparse.Namespace) -> int:
    s = prepare_activitynet(args.annotations, args.frames, args.out, filename_tmpl=args.filename_tmpl)
    for subset, counts in s["subsets"].items():
        missing = ""
        if counts["missing"]:
            first = ", ".join(escape(v) for v in counts["missing_ids"][:3])
            missing = f"; {counts['missing']} skipped without a frame folder (e.g. {first})"
        unlabelled = f"; {counts['unlabelled']} without annotations" if counts["unlabelled"] else ""
        where = escape(s["files"][subset]) if subset in s["files"] else "no list written"
        print(f"{subset}: {counts['listed']} videos listed ({where}){missing}{unlabelled}")
    print(f"{s['classes']} classes: {escape(s['files']['classes'])}")
    sets = [
        f"model.num_classes={s['classes']}",
        "loss.multi_label=true",
        "data.format=rawframes",
        f"data.data_root={args.frames}",
        f"data.classes={s['files']['classes']}",
    ]
    for key, subset in (("train_list", "training"), ("val_list", "validation"), ("test_list", "validation")):
        if subset in s["files"]:
            sets.append(f"data.{key}={s['files'][subset]}")
    print("train with:\n  " + escape(shlex.join(["haltingvt", "train", "anet_g05_b10", "--set", *sets])))
    return 0
