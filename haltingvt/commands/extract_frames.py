"""``haltingvt extract-frames VIDEO_DIR OUT_DIR``: videos -> JPEG frame folders (MMAction2's build_rawframes.py, RGB)
or re-encoded mp4 files (``--to-video``), with a list file and a JSON summary."""

from __future__ import annotations

import argparse
import os

from ..config import ConfigError
from ..data.extract import extract_videos
from ..data.lists import VIDEO_EXTENSIONS, read_class_names
from ..io.textsafe import escape


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "video_dir", help="folder of videos: VIDEO_DIR/<video> or VIDEO_DIR/<class>/<video> (any depth)"
    )
    parser.add_argument(
        "out_dir",
        help="output folder: OUT_DIR/<same relative path>/<name>/img_00001.jpg ... (use it as data.data_root)",
    )
    parser.add_argument(
        "--to-video",
        action="store_true",
        help="re-encode each video to OUT_DIR/.../<name>.mp4 (H.264, key frame every --gop frames) "
        "instead of writing frames",
    )
    parser.add_argument(
        "--level",
        type=int,
        choices=(1, 2),
        default=None,
        help="1: videos directly in VIDEO_DIR; 2: in VIDEO_DIR/<class>/ (as MMAction2); default: any depth, mirrored",
    )
    parser.add_argument(
        "--ext",
        nargs="+",
        default=list(VIDEO_EXTENSIONS),
        metavar="EXT",
        help="video file extensions to take (default: all known)",
    )
    parser.add_argument(
        "--new-short",
        type=int,
        default=0,
        metavar="N",
        help="short side N, long side int(N / short * long) (build_rawframes.py's truncation)",
    )
    parser.add_argument("--new-width", type=int, default=0, metavar="W", help="with --new-height: a fixed size")
    parser.add_argument("--new-height", type=int, default=0, metavar="H")
    parser.add_argument(
        "--quality", type=int, default=95, help="JPEG quality (OpenCV; 95 as cv2.imwrite / mmcv.imwrite)"
    )
    parser.add_argument("--gop", type=int, default=16, help="--to-video: key-frame interval")
    parser.add_argument(
        "--crf", type=int, default=23, help="--to-video: x264 constant rate factor (23: x264's default)"
    )
    parser.add_argument("--preset", default="medium", help="--to-video: x264 preset")
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="videos processed in parallel (processes; default: the CPU count)",
    )
    parser.add_argument("--threads", type=int, default=1, help="FFmpeg decoding threads per video")
    parser.add_argument(
        "--list",
        default=None,
        metavar="FILE",
        help="list file to write (default OUT_DIR/rawframes.txt, with --to-video OUT_DIR/videos.txt); "
        "paths relative to OUT_DIR",
    )
    parser.add_argument(
        "--split-lists",
        action="store_true",
        help="VIDEO_DIR/<split>/<class>/<video>: one list per split, <split>_rawframes.txt (or "
        "<split>_videos.txt) beside --list, one class order for all",
    )
    parser.add_argument(
        "--classes",
        default=None,
        metavar="FILE",
        help="class-name file when the videos sit in class folders (default OUT_DIR/classes.txt)",
    )
    parser.add_argument(
        "--class-names",
        default=None,
        metavar="FILE",
        help="label by this class-name file (e.g. the training split's classes.txt when extracting "
        "the validation split) instead of the sorted class folders",
    )
    parser.add_argument(
        "--summary", default=None, metavar="FILE", help="JSON summary (default OUT_DIR/extract_summary.json)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    if min(args.new_short, args.new_width, args.new_height) < 0:
        raise ConfigError("--new-short, --new-width and --new-height must be positive")
    if args.new_short and (args.new_width or args.new_height):
        raise ConfigError("give either --new-short or --new-width with --new-height, not both")
    if bool(args.new_width) != bool(args.new_height):
        raise ConfigError("--new-width and --new-height go together")
    if not 0 <= args.quality <= 100:
        raise ConfigError(f"--quality must be in 0..100, got {args.quality}")
    if args.gop < 1 or args.workers < 1 or args.threads < 0:
        raise ConfigError("--gop and --workers must be >= 1, --threads >= 0")
    s = extract_videos(
        args.video_dir,
        args.out_dir,
        to_video=args.to_video,
        level=args.level,
        extensions=args.ext,
        new_short=args.new_short,
        new_width=args.new_width,
        new_height=args.new_height,
        gop=args.gop,
        class_names=read_class_names(args.class_names) if args.class_names else None,
        crf=args.crf,
        preset=args.preset,
        quality=args.quality,
        workers=args.workers,
        threads=args.threads,
        list_file=args.list,
        split_lists=args.split_lists,
        class_file=args.classes,
        summary_file=args.summary,
        progress=not args.no_progress,
    )
    ok = s["extracted"] + s["already_done"]
    what = "re-encoded" if args.to_video else f"extracted ({s['frames']} frames listed)"
    print(f"{s['videos']} videos: {s['extracted']} {what}, {s['already_done']} already done, {s['failed']} failed")
    if s["lists"]:
        fmt = "video" if args.to_video else "rawframes"
        if args.class_names:
            classes = f", labels of {escape(args.class_names)}"
        elif s["classes"]:
            classes = f", {s['num_classes']} classes in {escape(s['classes'])}"
        else:
            classes = " (no class folders: label 0)"
        names = ", ".join(escape(p) for p in s["lists"].values())
        print(
            f"list{'s' if len(s['lists']) > 1 else ''}: {names} (data.format={fmt}, "
            f"data.data_root={escape(args.out_dir)}){classes}"
        )
    print(f"summary: {escape(s['summary'])}")
    return 0 if ok else 1
