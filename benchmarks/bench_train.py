"""Training-step cost of HaltingVT in compact and masked execution against the dense joint model, at the paper's
operating point, with the ratios they should reach and the memory each step needs.

DeiT-S, 8 x 224 x 224, G03/b10 architecture, random weights with the halting profile of bench_compact.py
(calibrated so that compact execution costs about ``--target-gflops`` = 10 GFLOPs per clip; bench_common.py).
One training step is what ``haltingvt train`` does per batch: the forward pass on real/static clip pairs, the
loss (action CE + ponder + motion CE), backward, gradient clipping and an Adam step. Variants:

* ``dense``: the same backbone with neither Glimpser selection nor halting (the dense joint model);
* ``masked``: HaltingVT as the release trains it (halted tokens zeroed, every layer on all tokens);
* ``compact``: HaltingVT with halted tokens removed (``train.execution: compact``, the same loss and gradients).

    python benchmarks/bench_train.py                          # CPU: ~5 minutes on 2 idle cores
    python benchmarks/bench_train.py --device cuda --batch-sizes 8 32 --steps 10 --amp bf16

``--batch-sizes`` counts clips per step (pairs: 4 clips = 2 samples). Every variant is timed in the same run,
round-robin over the timed steps (so load from other processes spreads over all of them), after warm-up steps
that are not timed. Reported: the median step, the fastest, and the median process CPU time (user + system of
all threads; on a CPU shared with other processes it varies less than wall-clock; on CUDA it is host time).
Adam runs with lr 0, so that the halting profile stays at the calibrated point while timing (the update costs
the same). Ideal speed-ups are forward FLOPs ratios (backward costs about twice the forward pass in every
variant). Memory per step: CUDA max allocated during a step (CUDA), or on the CPU the peak RSS growth of a
first step in a fresh process (activations, gradients and Adam state; the last two are equal for masked and
compact); and, exactly, the activations autograd saves for backward (parameters excluded).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch

import haltingvt
from haltingvt.data import normalize
from haltingvt.engine.amp import autocast
from haltingvt.engine.train import build_optimizer
from haltingvt.flops import clip_gflops, dense_gflops, glimpser_only_gflops

from bench_common import calibrate, padded_gflops, set_halt_bias, sync  # benchmarks/: the script's own folder

ARCH = "minik_g03_b10"
VARIANTS = ("dense", "masked", "compact")


def make_batch(clips: int, arch: dict[str, Any], seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``clips`` normalised clips (B, 3, T, H, W) as the trainer builds them: real/static pairs (a static clip
    repeats one frame of its real clip), action labels (B,) and motion labels (B,) = 1, 0, 1, 0, ..."""
    if clips % 2:
        raise SystemExit(f"--batch-sizes counts clips in real/static pairs: {clips} is odd")
    g = torch.Generator().manual_seed(seed)
    T, size = arch["num_frames"], arch["img_size"]
    real = torch.randint(0, 256, (clips // 2, 3, T, size, size), generator=g, dtype=torch.uint8)
    static = real[:, :, :1].expand_as(real)
    u8 = torch.stack([real, static], dim=1).flatten(0, 1)
    labels = torch.randint(0, arch["num_classes"], (clips // 2,), generator=g).repeat_interleave(2)
    return normalize(u8), labels, torch.tensor([1, 0] * (clips // 2))


def build(variant: str, seed: int, delta: float, device: torch.device) -> haltingvt.HaltingVT:
    torch.manual_seed(seed)
    if variant == "dense":
        return haltingvt.create_model(ARCH, keep_rate=[1.0, 1.0], halting=False).to(device).train()
    model = haltingvt.create_model(ARCH).to(device).train()
    set_halt_bias(model, delta)
    return model


class Trainer:
    """One variant's training step: model, its optimizer (lr 0), AMP scaler and loss."""

    def __init__(self, model: haltingvt.HaltingVT, execution: str, amp: str, device: torch.device) -> None:
        self.model, self.execution, self.amp, self.device = model, execution, amp, device
        self.optimizer = build_optimizer(model, lr=0.0, weight_decay=1e-5)
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")
        self.loss_fn = haltingvt.HaltingVTLoss()

    def loss(self, clips: torch.Tensor, labels: torch.Tensor, motion: torch.Tensor):
        with autocast(self.device, self.amp):
            out = self.model(clips, execution=self.execution)
            return out, self.loss_fn(out, labels, motion).total

    def step(self, clips: torch.Tensor, labels: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
        """Forward, loss, backward, clipping, Adam; returns the token counts (B, n)."""
        out, loss = self.loss(clips, labels, motion)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 40.0)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return out.token_counts.detach()

    def saved_mib(self, clips: torch.Tensor, labels: torch.Tensor, motion: torch.Tensor) -> float:
        """MiB of tensors autograd keeps for backward in one step (distinct storages, parameters excluded)."""
        params = {p.untyped_storage().data_ptr() for p in self.model.parameters()}
        seen: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            storage = t.untyped_storage()
            if storage.data_ptr() not in params:
                seen[storage.data_ptr()] = storage.nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            self.loss(clips, labels, motion)
        return sum(seen.values()) / 2**20


def _proc_status_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def first_step_rss(variant: str, clips_n: int, seed: int, delta: float, amp: str, threads: int) -> float:
    """Run in a fresh (spawned) process: peak RSS growth in MiB over one first training step (Linux).

    VmHWM is the peak RSS of this process's own address space (ru_maxrss is not: it keeps the parent's peak
    across fork + exec), and a fresh process has no freed heap memory left over from other variants' steps."""
    torch.set_num_threads(threads)
    device = torch.device("cpu")
    model = build(variant if variant == "dense" else "haltingvt", seed, delta, device)
    trainer = Trainer(model, "masked" if variant == "dense" else variant, amp, device)
    batch = make_batch(clips_n, model.arch, seed + 1)
    try:  # reset VmHWM to the current RSS (Linux >= 4.0), so that imports and model building do not count
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    before = _proc_status_mib("VmRSS")
    trainer.step(*batch)
    return _proc_status_mib("VmHWM") - before


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[4, 8], help="clips per step (real/static pairs)")
    p.add_argument("--steps", type=int, default=2, help="timed steps per variant and batch size")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    p.add_argument("--target-gflops", type=float, default=10.0, help="compact cost the halting profile is set to")
    p.add_argument("--halt-bias", type=float, default=None, help="skip calibration and use this delta")
    p.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"])
    p.add_argument("--no-memory", action="store_true", help="skip the fresh-process RSS measurement (CPU)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="write the results to this file")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    started = time.time()

    halting = build("haltingvt", args.seed, 0.0, device)
    arch = halting.arch
    clips_all, labels_all, motion_all = make_batch(max(args.batch_sizes), arch, args.seed + 1)
    clips_all, labels_all, motion_all = clips_all.to(device), labels_all.to(device), motion_all.to(device)
    if args.halt_bias is None:
        delta, calib = calibrate(halting.eval(), clips_all, args.target_gflops)
        halting.train()
        print(f"halting bias delta = {delta:.4f} (calibration clips: {calib:.2f} GFLOPs)", flush=True)
    else:
        delta = args.halt_bias
        set_halt_bias(halting, delta)
    trainers = {
        "dense": Trainer(build("dense", args.seed, delta, device), "masked", args.amp, device),
        "masked": Trainer(halting, "masked", args.amp, device),
        "compact": Trainer(halting, "compact", args.amp, device),
    }
    gflops_fixed = {"dense": dense_gflops(arch), "masked": glimpser_only_gflops(arch)}

    result: dict[str, Any] = {
        "arch": ARCH, "device": torch.cuda.get_device_name(device) if device.type == "cuda" else
        (platform.processor() or platform.machine()), "torch": torch.__version__, "threads": torch.get_num_threads(),
        "halt_bias": delta, "settings": vars(args), "batches": {},
    }
    lines = []
    for B in args.batch_sizes:
        batch = clips_all[:B], labels_all[:B], motion_all[:B]
        times: dict[str, list[float]] = {v: [] for v in VARIANTS}
        cpu_times: dict[str, list[float]] = {v: [] for v in VARIANTS}
        peak: dict[str, float] = {}
        counts = None
        for rep in range(args.warmup + args.steps):
            for name, trainer in trainers.items():
                if device.type == "cuda" and rep == args.warmup:
                    torch.cuda.reset_peak_memory_stats(device)
                    base = torch.cuda.memory_allocated(device)
                sync(device)
                t0, c0 = time.perf_counter(), time.process_time()
                tc = trainer.step(*batch)
                sync(device)
                if rep >= args.warmup:
                    times[name].append(time.perf_counter() - t0)
                    cpu_times[name].append(time.process_time() - c0)
                if device.type == "cuda" and rep == args.warmup:
                    peak[name] = (torch.cuda.max_memory_allocated(device) - base) / 2**20
                if name == "compact":
                    counts = tc.float().cpu()
        saved = {name: trainer.saved_mib(*batch) for name, trainer in trainers.items()}
        if device.type == "cpu" and not args.no_memory:
            ctx = multiprocessing.get_context("spawn")  # a fresh process per measurement: the heap starts empty
            with ctx.Pool(1, maxtasksperchild=1) as pool:
                for name in ("masked", "compact"):
                    peak[name] = pool.apply(first_step_rss, (name, B, args.seed, delta, args.amp, torch.get_num_threads()))

        gfl = {**gflops_fixed, "compact": float(clip_gflops(arch, counts).mean())}
        med = {k: statistics.median(v) for k, v in times.items()}
        fastest = {k: min(v) for k, v in times.items()}
        cpu = {k: statistics.median(v) for k, v in cpu_times.items()}
        speed = {"compact_vs_masked": med["masked"] / med["compact"], "compact_vs_dense": med["dense"] / med["compact"],
                 "masked_vs_dense": med["dense"] / med["masked"]}
        speed_min = {"compact_vs_masked": fastest["masked"] / fastest["compact"],
                     "compact_vs_dense": fastest["dense"] / fastest["compact"]}
        speed_cpu = {"compact_vs_masked": cpu["masked"] / cpu["compact"], "compact_vs_dense": cpu["dense"] / cpu["compact"]}
        flops_ratio = {"compact_vs_masked": gfl["masked"] / gfl["compact"], "compact_vs_dense": gfl["dense"] / gfl["compact"]}
        checks = {
            "compact_vs_masked_ok": speed["compact_vs_masked"] >= 1.5,
            "efficiency_vs_flops": speed["compact_vs_masked"] / flops_ratio["compact_vs_masked"],
            "compact_vs_dense_ok": speed["compact_vs_dense"] >= 3.5,
        }
        checks["efficiency_ok"] = checks["efficiency_vs_flops"] >= 0.85
        result["batches"][str(B)] = {
            "seconds_per_step": times, "median_seconds": med, "process_cpu_seconds_per_step": cpu_times, "forward_gflops_per_clip": gfl,
            "compact_gflops_with_padding": padded_gflops(arch, counts), "speedup": speed, "speedup_fastest": speed_min,
            "speedup_process_cpu_time": speed_cpu,
            "flops_ratio": flops_ratio, "checks": checks, "saved_for_backward_mib": saved, "peak_mib": peak,
            "tokens_per_halting_layer": [round(v, 1) for v in counts.mean(0).tolist()],
        }
        ok = lambda flag: "ok" if flag else "MISSED"  # noqa: E731
        lines += [f"batch {B} clips ({B // 2} samples)"]
        for name in VARIANTS:
            mem = f"  peak +{peak[name]:.0f} MiB" if name in peak else ""
            lines.append(f"  {name:<8} {med[name]:7.2f} s/step (fastest {fastest[name]:6.2f}, cpu {cpu[name]:6.2f})  forward "
                         f"{gfl[name]:6.2f} GFLOPs/clip  saved for backward {saved[name]:7.0f} MiB{mem}")
        lines += [
            f"  compact vs masked {speed['compact_vs_masked']:.2f}x (fastest {speed_min['compact_vs_masked']:.2f}x, "
            f"cpu {speed_cpu['compact_vs_masked']:.2f}x; "
            f"target >= 1.5x: {ok(checks['compact_vs_masked_ok'])}), FLOPs ratio {flops_ratio['compact_vs_masked']:.2f}x "
            f"-> {100 * checks['efficiency_vs_flops']:.0f}% of it (target >= 85%: {ok(checks['efficiency_ok'])}; "
            f"with padding the batch computes {padded_gflops(arch, counts):.2f} GFLOPs/clip)",
            f"  compact vs dense  {speed['compact_vs_dense']:.2f}x (fastest {speed_min['compact_vs_dense']:.2f}x, "
            f"cpu {speed_cpu['compact_vs_dense']:.2f}x; "
            f"target >= 3.5x: {ok(checks['compact_vs_dense_ok'])}), FLOPs ratio {flops_ratio['compact_vs_dense']:.2f}x; "
            f"masked vs dense {speed['masked_vs_dense']:.2f}x",
            f"  memory masked / compact: saved for backward {saved['masked'] / saved['compact']:.2f}x"
            + (f", peak {peak['masked'] / max(peak['compact'], 1e-9):.2f}x" if "compact" in peak else ""),
            f"  tokens per halting layer (compact = masked): {result['batches'][str(B)]['tokens_per_halting_layer']}",
        ]
        print("\n".join(lines[-(len(VARIANTS) + 5):]), flush=True)

    peak_kind = "CUDA max allocated during a step" if device.type == "cuda" else "peak RSS growth of a first step in a fresh process"
    print(f"\n{ARCH}, {arch['num_frames']}x{arch['img_size']}px, random weights, halting bias {delta:.4f}, {result['device']}, "
          f"{torch.get_num_threads()} threads, amp {args.amp}, median of {args.steps} steps after {args.warmup} warm-up; "
          f"peak = {peak_kind}; {time.time() - started:.0f} s in all")
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
        print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
