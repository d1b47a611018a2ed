"""Wall-clock cost of compact execution (halted tokens physically removed) against the release's
masked execution and the dense model, next to the FLOPs ratios they should approach.

DeiT-S, 8 x 224 x 224, G03/b10 architecture, random weights with a halting profile calibrated so that the
clips average about ``--target-gflops`` (10, the paper's G03 operating point; see bench_common.py); the
measured average is printed.

    .venv/bin/python -m benchmarks.bench_compact --json-out bench_compact.json
    .venv/bin/python -m benchmarks.bench_compact --device cuda --batch-sizes 1 8 32

Every variant is timed in the same run, round-robin over repetitions (so load from other processes
spreads over all of them), after warm-up; the median is reported. Timings on a shared CPU are noisy.
"""

from __future__ import annotations

import statistics
import time

import torch

import haltingvt
from benchmarks.bench_common import ARCH, calibrated_model, finish, padded_gflops, run_info, sync, timing_parser
from haltingvt.flops import clip_gflops, dense_gflops, glimpser_only_gflops


def time_variants(variants: dict, clips: torch.Tensor, reps: int, warmup: int) -> dict[str, list[float]]:
    """Round-robin timing; returns seconds per forward pass for each variant."""
    device = clips.device
    times: dict[str, list[float]] = {name: [] for name in variants}
    with torch.inference_mode():
        for rep in range(warmup + reps):
            for name, fn in variants.items():
                sync(device)
                t0 = time.perf_counter()
                fn(clips)
                sync(device)
                if rep >= warmup:
                    times[name].append(time.perf_counter() - t0)
    return times


def main() -> int:
    parser = timing_parser(__doc__.splitlines()[0])
    parser.add_argument("--skip-dense", action="store_true", help="do not time the dense model (slow on CPU)")
    args = parser.parse_args()
    model, clips_all, delta = calibrated_model(args)
    device = clips_all.device
    dense = (
        None if args.skip_dense else haltingvt.create_model(ARCH, keep_rate=[1.0, 1.0], halting=False).eval().to(device)
    )
    arch = model.arch
    T, size = arch["num_frames"], arch["img_size"]

    variants = {
        "masked": lambda x: model(x, execution="masked"),
        "compact": lambda x: model(x, execution="compact"),
        "compact+exit": lambda x: model(x, execution="compact", early_exit=True),
    }
    if dense is not None:
        variants = {"dense": lambda x: dense(x), **variants}

    results: dict = {
        **run_info(args, device, delta),
        "gflops_dense": dense_gflops(arch),
        "gflops_glimpser_only": glimpser_only_gflops(arch),
        "batches": {},
    }

    header = (
        f"{'batch':>5} {'variant':<13} {'ms/clip':>9} {'(min)':>8} {'GFLOPs/clip':>12} {'x vs masked':>12} "
        f"{'(min)':>7} {'FLOPs x':>8}"
    )
    lines = [header]
    for B in args.batch_sizes:
        clips = clips_all[:B]
        with torch.inference_mode():
            counts = model(clips, execution="compact").token_counts.cpu()
            counts_exit = model(clips, execution="compact", early_exit=True).token_counts.cpu()
        gfl = {
            "dense": results["gflops_dense"],
            "masked": results["gflops_glimpser_only"],  # masked runs every halting layer on all tokens
            "compact": float(clip_gflops(arch, counts).mean()),
            "compact+exit": float(clip_gflops(arch, counts_exit).mean()),
        }
        padded = {"compact": padded_gflops(arch, counts), "compact+exit": padded_gflops(arch, counts_exit)}
        times = time_variants(variants, clips, args.reps, args.warmup)
        ms = {k: 1000 * statistics.median(v) / B for k, v in times.items()}
        ms_min = {k: 1000 * min(v) / B for k, v in times.items()}
        rows = {}
        for name in variants:
            speed = ms["masked"] / ms[name]
            speed_min = ms_min["masked"] / ms_min[name]
            fratio = gfl["masked"] / gfl[name]
            rows[name] = {
                "ms_per_clip": ms[name],
                "ms_per_clip_min": ms_min[name],
                "speedup_vs_masked_min": speed_min,
                "ms_per_clip_all": [1000 * t / B for t in times[name]],
                "gflops_per_clip": gfl[name],
                "speedup_vs_masked": speed,
                "flops_ratio_vs_masked": fratio,
            }
            if name in padded:
                rows[name]["gflops_per_clip_with_padding"] = padded[name]
            if "dense" in ms:
                rows[name]["speedup_vs_dense"] = ms["dense"] / ms[name]
                rows[name]["flops_ratio_vs_dense"] = gfl["dense"] / gfl[name]
            lines.append(
                f"{B:>5} {name:<13} {ms[name]:>9.1f} {ms_min[name]:>8.1f} {gfl[name]:>12.2f} {speed:>11.2f}x "
                f"{speed_min:>6.2f}x {fratio:>7.2f}x"
            )
        c = rows["compact"]
        target_speed = 1.5 if B == 1 else 1.3
        checks = {
            "speedup_target": target_speed,
            "speedup_ok": c["speedup_vs_masked"] >= target_speed,
            "efficiency": c["speedup_vs_masked"] / c["flops_ratio_vs_masked"],
            "efficiency_ok": c["speedup_vs_masked"] >= 0.85 * c["flops_ratio_vs_masked"],
        }
        lines.append(
            f"      compact vs masked {c['speedup_vs_masked']:.2f}x (target >= {target_speed}x: "
            f"{'ok' if checks['speedup_ok'] else 'MISSED'}), {100 * checks['efficiency']:.0f}% of the FLOPs ratio "
            f"{c['flops_ratio_vs_masked']:.2f}x (target >= 85%: {'ok' if checks['efficiency_ok'] else 'MISSED'}); "
            f"with padding the batch computes {padded['compact']:.2f} GFLOPs/clip; "
            f"(min: {c['speedup_vs_masked_min']:.2f}x)"
        )
        results["batches"][str(B)] = {
            "variants": rows,
            "checks": checks,
            "token_counts_mean": counts.double().mean(0).tolist(),
        }
        print("\n".join(lines[-len(variants) - 1 :]), flush=True)

    footer = (
        f"\n{ARCH}, {T}x{size}x{size}, random weights, halting bias {delta:.4f}, device {device}, "
        f"{torch.get_num_threads()} threads, median of {args.reps} (warm-up {args.warmup}); "
        "(min) = fastest repetition, the least disturbed by other processes"
    )
    return finish(args, results, lines, footer)


if __name__ == "__main__":
    raise SystemExit(main())
