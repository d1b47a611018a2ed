"""Wall-clock cost of reduced precision with compact halting: masked fp32 (the release) against compact execution
in fp32, bf16 and int8 (fp16 too on CUDA), with the FLOPs ratio beside each.

DeiT-S, 8 x 224 x 224, G03/b10 architecture, random weights with the halting profile of bench_compact.py
(calibrated to about ``--target-gflops``, 10 by default: the paper's G03 point). Each precision is the model
converted by ``haltingvt.models.convert_precision``, run as ``Predictor`` and ``haltingvt eval`` run it
(autocast for bf16/fp16 and int8). ``--alternatives`` also times the int8 designs that were not chosen
(haltingvt/models/precision.py says why): our int8 with the Glimpser's blocks in int8 too, torch.ao's dynamic
quantisation (``quantize_dynamic``, oneDNN kernels, attention in fp32) and torchao's int8 (dynamic activations,
int8 weights) run eagerly.

``--compile`` adds each precision with the Glimpser compiled (haltingvt.models.compile; compilation happens in the
untimed first pass of each batch size).

    .venv/bin/python -m benchmarks.bench_precision --alternatives --compile --json-out bench_precision.json
    .venv/bin/python -m benchmarks.bench_precision --device cuda --batch-sizes 1 8 32

All variants are timed in the same run, round-robin (bench_compact.time_variants); medians are reported.
"""

from __future__ import annotations

import copy
import statistics
import warnings
from collections.abc import Callable

import torch
from torch.ao.quantization import quantize_dynamic

import haltingvt
from benchmarks.bench_common import ARCH, calibrated_model, finish, run_info, timing_parser
from benchmarks.bench_compact import time_variants
from haltingvt.flops import clip_gflops, glimpser_only_gflops
from haltingvt.models import convert_precision, precision_context, supported_precisions
from haltingvt.models.compile import compile_glimpser
from haltingvt.models.precision import block_to_int8


def runner(model: torch.nn.Module, precision: str, execution: str, device: torch.device) -> Callable:
    def run(clips: torch.Tensor) -> haltingvt.HaltingVTOutput:
        with precision_context(precision, device):
            return model(clips, execution=execution)

    return run


def alternatives(model: haltingvt.HaltingVT, device: torch.device) -> dict[str, Callable]:
    """The int8 designs not chosen, each as a runner."""
    out = {}
    glimpser = convert_precision(copy.deepcopy(model), "int8", device)
    for block in glimpser.blocks[: glimpser.divid_depth]:
        block_to_int8(block)  # the Glimpser's attention and MLP too (its temporal attention stays bf16)
    out["compact int8+glimpser"] = runner(glimpser, "int8", "compact", device)

    ao = copy.deepcopy(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the eager torch.ao API is deprecated
        torch.backends.quantized.engine = "onednn"
        ao.blocks = quantize_dynamic(ao.blocks, {torch.nn.Linear}, dtype=torch.qint8)
    out["compact torch.ao-int8"] = runner(ao, "fp32", "compact", device)
    try:
        from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_
    except ImportError:
        return out
    torchao = copy.deepcopy(model)
    quantize_(torchao.blocks, Int8DynamicActivationInt8WeightConfig())
    out["compact torchao-int8"] = runner(torchao, "fp32", "compact", device)
    return out


def main() -> int:
    parser = timing_parser(__doc__.splitlines()[0])
    parser.add_argument("--precisions", nargs="+", default=None, help="default: every one the device supports")
    parser.add_argument("--alternatives", action="store_true", help="also time the int8 designs not chosen")
    parser.add_argument("--compile", action="store_true", help="also time each precision with the Glimpser compiled")
    args = parser.parse_args()
    model, clips_all, delta = calibrated_model(args)
    device = clips_all.device
    arch = model.arch
    T, size = arch["num_frames"], arch["img_size"]

    precisions = args.precisions or list(supported_precisions(device))
    variants = {"masked fp32": runner(model, "fp32", "masked", device)}
    for precision in precisions:
        converted = convert_precision(copy.deepcopy(model), precision, device)
        variants[f"compact {precision}"] = runner(converted, precision, "compact", device)
    for precision in precisions if args.compile else ():
        compiled = compile_glimpser(convert_precision(copy.deepcopy(model), precision, device), device)
        variants[f"compact {precision} compiled"] = runner(compiled, precision, "compact", device)
    if args.alternatives and device.type == "cpu" and "int8" in precisions:
        variants.update(alternatives(model, device))

    results: dict = {**run_info(args, device, delta), "batches": {}}
    masked_gflops = glimpser_only_gflops(arch)  # masked execution runs every halting layer on all tokens
    header = f"{'batch':>5} {'variant':<24} {'ms/clip':>9} {'x vs masked fp32':>17} {'GFLOPs/clip':>12} {'FLOPs x':>8}"
    lines = [header]
    for B in args.batch_sizes:
        clips = clips_all[:B]
        with torch.inference_mode():
            gflops = {
                name: masked_gflops
                if name.startswith("masked")
                else float(clip_gflops(arch, fn(clips).token_counts.cpu()).mean())
                for name, fn in variants.items()
            }
        times = time_variants(variants, clips, args.reps, args.warmup)
        ms = {k: 1000 * statistics.median(v) / B for k, v in times.items()}
        rows = {}
        for name in variants:
            rows[name] = {
                "ms_per_clip": ms[name],
                "ms_per_clip_all": [1000 * t / B for t in times[name]],
                "speedup_vs_masked_fp32": ms["masked fp32"] / ms[name],
                "gflops_per_clip": gflops[name],
                "flops_ratio_vs_masked": masked_gflops / gflops[name],
            }
            r = rows[name]
            lines.append(
                f"{B:>5} {name:<24} {ms[name]:>9.1f} {r['speedup_vs_masked_fp32']:>16.2f}x {gflops[name]:>12.2f} "
                f"{r['flops_ratio_vs_masked']:>7.2f}x"
            )
        results["batches"][str(B)] = rows
        print("\n".join(lines[-len(variants) :]), flush=True)

    footer = (
        f"\n{ARCH}, {T}x{size}x{size}, random weights, halting bias {delta:.4f}, device {device}, "
        f"{torch.get_num_threads()} threads, median of {args.reps} (warm-up {args.warmup})"
    )
    return finish(args, results, lines, footer)


if __name__ == "__main__":
    raise SystemExit(main())
