"""Shared by the benchmark scripts (bench_compact.py, bench_train.py): a calibrated halting profile for random
weights, the GFLOPs a padded compact batch computes, and device synchronisation for timing.

Random weights do not halt on their own, so channel 0 of every joint block's MLP output (fc2 bias) gets a
constant ``delta``: the halting channel of the residual stream then rises with depth and tokens halt at
different layers (their starting values differ). ``calibrate`` finds ``delta`` by bisection so that the clips
average a target cost in compact execution (10 GFLOPs: the paper's G03 operating point).
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch

import haltingvt
from haltingvt.data import normalize
from haltingvt.flops import clip_gflops, halting_layer_macs

#: The benchmarked architecture: DeiT-S, 8 x 224 x 224, G03/b10.
ARCH = "minik_g03_b10"


def timing_parser(description: str) -> argparse.ArgumentParser:
    """The options every model-timing script takes (bench_compact.py, bench_precision.py)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--reps", type=int, default=5, help="timed repetitions per variant (median reported)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--target-gflops", type=float, default=10.0)
    parser.add_argument("--halt-bias", type=float, default=None, help="skip calibration and use this delta")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json-out", default=None, help="write the results here as JSON")
    return parser


def finish(args: argparse.Namespace, results: dict, lines: list[str], footer: str) -> int:
    """Print the footer and the whole table, write ``results`` to ``--json-out``; the exit code 0."""
    print(footer)
    print("\n".join(lines))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=1))
        print(f"wrote {args.json_out}")
    return 0


def run_info(args: argparse.Namespace, device: torch.device, delta: float) -> dict:
    """What a model-timing run's JSON starts with: the model, device (and GPU name), torch, threads, CPU, halting
    bias and repetitions."""
    info = {
        "arch": ARCH,
        "device": str(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "halt_bias": delta,
        "reps": args.reps,
        "warmup": args.warmup,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def calibrated_model(args: argparse.Namespace) -> tuple[haltingvt.HaltingVT, torch.Tensor, float]:
    """(model with the calibrated halting bias, normalised random clips (max batch, 3, T, H, W), the bias delta)
    on ``args.device``, after ``args.threads`` and ``args.seed`` are applied."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    model = haltingvt.create_model(ARCH).eval().to(device)
    T, size = model.arch["num_frames"], model.arch["img_size"]
    gen = torch.Generator().manual_seed(args.seed + 1)
    max_b = max(args.batch_sizes)
    clips = normalize(torch.randint(0, 256, (max_b, 3, T, size, size), generator=gen)).to(device)
    if args.halt_bias is None:
        delta, reached = calibrate(model, clips[: min(max_b, 4)], args.target_gflops)
        print(f"halting bias delta = {delta:.4f} (calibration clips: {reached:.2f} GFLOPs)")
    else:
        delta = args.halt_bias
    set_halt_bias(model, delta)
    return model, clips, delta


def set_halt_bias(model: haltingvt.HaltingVT, delta: float) -> None:
    """Make the halting channel (0) grow by ``delta`` per joint layer."""
    with torch.no_grad():
        for block in model.blocks[model.divid_depth :]:
            block.mlp.fc2.bias[0] = delta


def calibrate(model: haltingvt.HaltingVT, clips: torch.Tensor, target: float, iters: int = 14) -> tuple[float, float]:
    """Bisection on delta so that the mean clip GFLOPs over ``clips`` (B, 3, T, H, W) is close to ``target``;
    returns (delta, the GFLOPs reached). Only the halting layers depend on delta, so the Glimpser output is
    computed once. The model's bias is left at the returned delta."""
    with torch.inference_mode():
        x = model.embed(clips)
        for block in model.glimpser_blocks:
            x = block(x, clips.shape[2])[0]

    def gflops(delta: float) -> float:
        set_halt_bias(model, delta)
        with torch.inference_mode():
            res = model.adaptive_halting(model.blocks[model.divid_depth :], x, execution="compact")
        return float(clip_gflops(model.arch, res.token_counts).mean())

    lo, hi = 0.0, 4.0  # more delta -> earlier halting -> fewer GFLOPs
    if gflops(hi) > target:
        raise SystemExit(f"cannot reach {target} GFLOPs (the Glimpser alone costs more?)")
    for _ in range(iters):
        mid = (lo + hi) / 2
        if gflops(mid) > target:
            lo = mid
        else:
            hi = mid
    return hi, gflops(hi)


def padded_gflops(arch: dict, token_counts: torch.Tensor) -> float:
    """GMACs per clip that a compact batch really computes: each halting layer runs every clip still
    computed at the batch's largest active count (padding); the ghost key is ignored as in flops.py."""
    counts = token_counts.double()
    widest = counts.max(dim=0).values  # (n,)
    running = (counts > 0).double()  # clips still computed in each layer (early exit drops clips)
    C, H = arch["embed_dim"], int(arch["embed_dim"] * arch["mlp_ratio"])
    exact = clip_gflops(arch, counts)
    extra = (halting_layer_macs(widest, C, H)[None] * running - halting_layer_macs(counts, C, H)).sum(dim=1) / 1e9
    return float((exact + extra).mean())


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously), so that wall-clock timings are right."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
