"""Data-pipeline throughput: decode + train augmentation of 8x224 clips, per DataLoader worker.

Generates a few short videos (default 320x256, h264) in a temporary folder, the same
content as JPEG frame folders, and runs the training pipeline of a config (default
minik_g03_b10: 8 frames, short side 256-320, crop 224, RandAugment, real + static clip per
sample) through a DataLoader with each worker count. Prints clips per second (a training
sample = 2 clips: real and static), clips per second per worker, and how many workers keep
a GPU fed at ``--target`` clips per second. Writes the numbers as JSON.

    python -m benchmarks.bench_data --workers 0 2 --seconds 10 --target 400

Numbers depend on the CPU and on other load; on a shared machine they are noisy.
Decode speed on real 1280x720 footage (original mp4, re-encoded mp4, frame folders; PyAV and torchcodec):
benchmarks/bench_decode.py.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from tqdm import tqdm

from haltingvt.config import load_config
from haltingvt.data import build_dataset, collate_train
from haltingvt.data.encode import write_mp4


def make_frame(i: int, width: int, height: int, seed: int, rng: np.random.Generator) -> np.ndarray:
    """A moving colour pattern with mild noise (compresses like camera footage, not like a flat frame)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = 0.15 * i + seed
    img = np.stack(
        [
            127 + 90 * np.sin(x / (17.0 + seed) + phase),
            127 + 90 * np.cos(y / 13.0 - phase),
            127 + 90 * np.sin((x + y) / 29.0 + 0.5 * phase),
        ],
        -1,
    )
    img += rng.normal(0, 6, img.shape)
    return img.clip(0, 255).astype(np.uint8)


def generate(
    root: Path, num_videos: int, num_frames: int, width: int, height: int, codec: str, gop: int, fps: int
) -> tuple[Path, Path]:
    """Write ``num_videos`` videos and frame folders under ``root`` -> (video list, arnet frame list)."""
    video_lines, frame_lines = [], []
    rng = np.random.default_rng(0)
    for v in tqdm(range(num_videos), desc="generating videos + frames", unit="video"):
        name = f"clip {v:03d}"  # a space, as in AR-Net paths
        folder = root / "frames" / name
        folder.mkdir(parents=True)
        path = root / "videos" / f"{name}.mp4"
        path.parent.mkdir(exist_ok=True)
        frames = [make_frame(i, width, height, v, rng) for i in range(num_frames)]
        for i, arr in enumerate(frames):
            Image.fromarray(arr).save(folder / f"img_{i + 1:05d}.jpg", quality=90)
        options = {"preset": "veryfast", "crf": "23"} if codec in ("libx264", "h264") else {}
        write_mp4(path, frames, fps=fps, codec=codec, pix_fmt="yuv420p", options=options, gop=gop)
        video_lines.append(f"videos/{name}.mp4;{v % 10}")
        frame_lines.append(f"frames/{name} {num_frames} {v % 10}")
    (root / "videos.txt").write_text("\n".join(video_lines) + "\n")
    (root / "frames.txt").write_text("\n".join(frame_lines) + "\n")
    return root / "videos.txt", root / "frames.txt"


def measure_loader(dataset, workers: int, batch_size: int, seconds: float, label: str) -> dict:
    """Samples per second of a DataLoader over ``dataset`` (repeated), first batch excluded."""
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=collate_train,
        shuffle=True,
        persistent_workers=workers > 0,
        prefetch_factor=2 if workers else None,
    )
    samples, skipped, start = 0, 0, None
    bar = tqdm(desc=f"{label}, {workers} workers", unit="clip")
    while True:
        for batch in loader:
            if start is None:  # worker start-up and the first fill are not throughput
                start = time.perf_counter()
                continue
            samples += len(batch["index"])
            skipped += len(batch["skipped"])
            bar.update(2 * len(batch["index"]))
            if time.perf_counter() - start >= seconds:
                break
        else:
            continue
        break
    bar.close()
    elapsed = time.perf_counter() - start
    clips = 2 * samples / elapsed
    return {
        "source": label,
        "workers": workers,
        "samples": samples,
        "skipped": skipped,
        "seconds": elapsed,
        "samples_per_s": samples / elapsed,
        "clips_per_s": clips,
        "clips_per_s_per_worker": clips / max(workers, 1),
    }


def measure_decode(dataset, seconds: float, label: str) -> dict:
    """Decode only (no augmentation), main process: 8 sampled frames per read."""
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        record = dataset.records[n % len(dataset.records)]
        reader = dataset.reader(record)
        reader.read(dataset._train_indices(reader.num_frames), dataset.short_video)
        n += 1
    elapsed = time.perf_counter() - start
    return {"source": label, "clip_reads": n, "clip_reads_per_s": n / elapsed}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--config", default="minik_g03_b10", help="config whose data pipeline is measured")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    parser.add_argument(
        "--workers",
        type=int,
        nargs="+",
        default=[0, 2],
        help="DataLoader worker counts to measure (0 = in the main process)",
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="measuring time per setting")
    parser.add_argument("--batch-size", type=int, default=4, help="samples per batch (2 clips each)")
    parser.add_argument("--num-videos", type=int, default=4)
    parser.add_argument(
        "--num-frames", type=int, default=300, help="frames per generated video (Kinetics: 10 s x 30 fps)"
    )
    parser.add_argument("--size", default="320x256", help="generated video WIDTHxHEIGHT")
    parser.add_argument("--codec", default="libx264")
    parser.add_argument("--gop", type=int, default=30, help="key-frame interval of the generated videos")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument(
        "--frame-interval", type=int, default=None, help="override data.frame_interval (default: the config's)"
    )
    parser.add_argument("--sources", nargs="+", default=["mp4", "frames"], choices=["mp4", "frames"])
    parser.add_argument(
        "--target",
        type=float,
        default=300.0,
        help="clips per second the GPU consumes in training; the report says how many workers that needs",
    )
    parser.add_argument("--json", default="bench_data.json", help="where to write the results")
    parser.add_argument("--keep", default=None, help="generate the data in this folder (kept) instead of a temp dir")
    args = parser.parse_args(argv)

    width, height = (int(v) for v in args.size.lower().split("x"))
    torch.manual_seed(0)
    # One intra-op thread, as in a DataLoader worker, so the 0-worker row measures one core
    # (with several threads the transforms oversubscribe a busy machine and get much slower).
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="haltingvt-bench-") as tmp:
        root = Path(args.keep or tmp)
        root.mkdir(parents=True, exist_ok=True)
        video_list, frame_list = generate(
            root, args.num_videos, args.num_frames, width, height, args.codec, args.gop, args.fps
        )
        results: dict = {
            "config": args.config,
            "overrides": args.set,
            "size": [width, height],
            "num_frames": args.num_frames,
            "codec": args.codec,
            "gop": args.gop,
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "torch_threads": torch.get_num_threads(),
            "target_clips_per_s": args.target,
            "loader": [],
            "decode_only": [],
            "workers_needed": {},
        }
        for source in args.sources:
            overrides = list(args.set) + [f"data.data_root={root}"]
            if args.frame_interval:
                overrides.append(f"data.frame_interval={args.frame_interval}")
            if source == "mp4":
                overrides += ["data.format=video", f"data.train_list={video_list}"]
            else:
                overrides += ["data.format=arnet", f"data.train_list={frame_list}"]
            cfg = load_config(args.config, overrides)
            cfg["model"]["num_classes"] = max(cfg["model"]["num_classes"], 10)
            dataset = build_dataset(cfg, "train")
            d = cfg["data"]
            results.setdefault(
                "pipeline",
                {
                    "clip_len": d["clip_len"],
                    "frame_interval": d["frame_interval"],
                    "train_scale": d["train_scale"],
                    "crop_size": d["crop_size"],
                    "randaugment": d["randaugment"],
                },
            )
            results["decode_only"].append(measure_decode(dataset, min(args.seconds, 4.0), source))
            for workers in args.workers:
                results["loader"].append(measure_loader(dataset, workers, args.batch_size, args.seconds, source))

    print(
        f"\nTrain pipeline {results['pipeline']}, videos {width}x{height} {args.codec} gop {args.gop}, "
        f"{os.cpu_count()} CPUs (shared machines give noisy numbers)"
    )
    for r in results["decode_only"]:
        print(f"  decode only  {r['source']:>6}: {r['clip_reads_per_s']:7.1f} clip reads/s (main process)")
    for r in results["loader"]:
        print(
            f"  {r['source']:>6}, {r['workers']} workers: {r['clips_per_s']:7.1f} clips/s "
            f"({r['samples_per_s']:.1f} samples/s), {r['clips_per_s_per_worker']:.1f} clips/s per worker"
        )
    for source in args.sources:
        rows = [r for r in results["loader"] if r["source"] == source]
        # The fewest-worker run is closest to one undisturbed core (more workers share the CPUs).
        per_worker = min(rows, key=lambda r: r["workers"])["clips_per_s_per_worker"]
        need = math.ceil(args.target / per_worker) if per_worker > 0 else None
        results["workers_needed"][source] = need
        print(
            f"  {source}: about {need} workers (CPU cores) keep a GPU fed at {args.target:g} clips/s "
            f"({per_worker:.1f} clips/s per worker)"
        )
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=2))
    print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
