"""Training-step cost of HaltingVT in compact and masked execution against the dense joint model, at the paper's
operating point, with the ratios they should reach and the memory each step needs.

DeiT-S, 8 x 224 x 224, G03/b10 architecture, random weights with the halting profile of bench_compact.py
(calibrated so that compact execution costs about ``--target-gflops`` = 10 GFLOPs per clip; bench_common.py).
One training step is what ``haltingvt train`` does per batch, run by its own code: ``Trainer.train_step`` (the
forward pass on real/static clip pairs, the loss: action CE + ponder + motion CE, backward) and
``Trainer.optimizer_step`` (gradient clipping at the config's ``train.grad_clip``, the Adam step). Each variant is
a real ``haltingvt.engine.train.Trainer`` built from the ``minik_g03_b10`` config (with a placeholder train set and
a scratch work dir; ``--set`` adds config overrides, e.g. ``train.grad_clip=0``). Variants:

* ``dense``: the same backbone with neither Glimpser selection nor halting (the dense joint model);
* ``masked``: HaltingVT as the release trains it (halted tokens zeroed, every layer on all tokens);
* ``compact``: HaltingVT with halted tokens removed (``train.execution: compact``, the same loss and gradients).

    python -m benchmarks.bench_train                          # CPU: ~5 minutes on 2 idle cores
    python -m benchmarks.bench_train --device cuda --batch-sizes 8 32 --steps 10 --amp bf16

``--batch-sizes`` counts clips per step (pairs: 4 clips = 2 samples). Every variant is timed in the same run,
round-robin over the timed steps (so load from other processes spreads over all of them), after warm-up steps
that are not timed. Reported: the median step, the fastest, and the median process CPU time (user + system of
all threads; on a CPU shared with other processes it varies less than wall-clock; on CUDA it is host time).
Adam runs with lr 0 (set on the trainer's optimizer and schedule after it is built: the config insists on lr > 0),
so that the halting profile stays at the calibrated point while timing (the update costs the same). Ideal speed-ups
are forward FLOPs ratios (backward costs about twice the forward pass in every
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
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from benchmarks.bench_common import calibrate, padded_gflops, set_halt_bias, sync
from haltingvt.config import load_config
from haltingvt.data import normalize
from haltingvt.engine.amp import autocast
from haltingvt.engine.train import Trainer
from haltingvt.flops import clip_gflops, dense_gflops, glimpser_only_gflops

ARCH = "minik_g03_b10"
VARIANTS = ("dense", "masked", "compact")


def make_batch(clips: int, arch: dict[str, Any], seed: int) -> dict[str, Any]:
    """A collated training batch as the trainer's loader gives it: ``clips`` uint8 clips (B, 3, T, H, W) in
    real/static pairs (a static clip repeats one frame of its real clip), action labels (B,) and motion labels
    (B,) = 1, 0, 1, 0, ..."""
    if clips % 2:
        raise SystemExit(f"--batch-sizes counts clips in real/static pairs: {clips} is odd")
    g = torch.Generator().manual_seed(seed)
    T, size = arch["num_frames"], arch["img_size"]
    real = torch.randint(0, 256, (clips // 2, 3, T, size, size), generator=g, dtype=torch.uint8)
    static = real[:, :, :1].expand_as(real)
    u8 = torch.stack([real, static], dim=1).flatten(0, 1)
    labels = torch.randint(0, arch["num_classes"], (clips // 2,), generator=g).repeat_interleave(2)
    return {
        "clips": u8,
        "label": labels,
        "motion_label": torch.tensor([1, 0] * (clips // 2)),
        "path": [f"clip{i}" for i in range(clips // 2)],
        "skipped": [],
    }


def head(batch: dict[str, Any], clips: int) -> dict[str, Any]:
    """The first ``clips`` clips of ``batch``."""
    return {
        "clips": batch["clips"][:clips],
        "label": batch["label"][:clips],
        "motion_label": batch["motion_label"][:clips],
        "path": batch["path"][: clips // 2],
        "skipped": [],
    }


class _NoSamples(Dataset):
    """The trainer's train set: one sample that is never read (batches are handed to ``train_step`` directly)."""

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int):
        raise RuntimeError("bench_train hands its batches to Trainer.train_step; the loader is not used")


def build(
    variant: str, seed: int, delta: float, amp: str, device: torch.device, work_dir: Path, overrides: list[str] = ()
) -> Trainer:
    """The real trainer of ``haltingvt train`` for ``variant`` (dense / masked / compact) on ARCH, its optimizer at
    lr 0 and, for HaltingVT, the halting bias ``delta``; the model is in training mode."""
    sets = [
        f"train.seed={seed}",
        f"train.amp={amp}",
        "train.execution=" + ("compact" if variant == "compact" else "masked"),
        f"train.work_dir={work_dir / variant}",
        "train.val_interval=0",
        "train.batch_size=1",
        "init.pretrained=null",
    ]
    if variant == "dense":
        sets += ["model.keep_rate=[1.0,1.0]", "model.halting=false"]
    trainer = Trainer(
        load_config(ARCH, [*sets, *overrides]), device=str(device), datasets={"train": _NoSamples()}, progress=False
    )
    for group in trainer.optimizer.param_groups:  # lr 0: the weights (and the halting profile) stay as they are
        group["lr"] = group["initial_lr"] = 0.0
    trainer.scheduler.base_lrs = [0.0] * len(trainer.optimizer.param_groups)
    if variant != "dense":
        set_halt_bias(trainer.model, delta)
    trainer.model.train()
    return trainer


def step(trainer: Trainer, batch: dict[str, Any]) -> None:
    """One training step as ``haltingvt train`` runs it (one micro-batch per optimizer step)."""
    trainer.train_step(batch)
    trainer.optimizer_step()


def close(trainer: Trainer) -> None:
    trainer.log.close()
    trainer.lock.release()


def token_counts(trainer: Trainer, batch: dict[str, Any]) -> torch.Tensor:
    """Tokens entering each halting layer (B, n) for ``batch`` in the trainer's execution (lr 0: as in its steps)."""
    with torch.no_grad(), autocast(trainer.device, trainer.tc["amp"]):
        out = trainer.model(normalize(batch["clips"].to(trainer.device)), execution=trainer.tc["execution"])
    return out.token_counts.float().cpu()


def saved_mib(trainer: Trainer, batch: dict[str, Any]) -> float:
    """MiB of tensors autograd keeps for backward in one step (distinct storages, parameters excluded)."""
    params = {p.untyped_storage().data_ptr() for p in trainer.model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step(trainer, batch)
    return sum(seen.values()) / 2**20


def _proc_status_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def first_step_rss(
    variant: str, clips_n: int, seed: int, delta: float, amp: str, threads: int, overrides: list[str]
) -> float:
    """Run in a fresh (spawned) process: peak RSS growth in MiB over one first training step (Linux).

    VmHWM is the peak RSS of this process's own address space (ru_maxrss is not: it keeps the parent's peak
    across fork + exec), and a fresh process has no freed heap memory left over from other variants' steps."""
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        trainer = build(variant, seed, delta, amp, torch.device("cpu"), Path(tmp), overrides)
        batch = make_batch(clips_n, trainer.model.arch, seed + 1)
        try:  # reset VmHWM to the current RSS (Linux >= 4.0), so that imports and model building do not count
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass
        before = _proc_status_mib("VmRSS")
        step(trainer, batch)
        grown = _proc_status_mib("VmHWM") - before
        close(trainer)
    return grown


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
    p.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides for every variant's trainer, e.g. train.grad_clip=0",
    )
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    started = time.time()
    scratch = tempfile.TemporaryDirectory(prefix="bench_train_")  # the trainers' work dirs (locks, logs)
    work = Path(scratch.name)

    trainers = {name: build(name, args.seed, 0.0, args.amp, device, work, args.set) for name in VARIANTS}
    arch = trainers["masked"].model.arch
    batch_all = make_batch(max(args.batch_sizes), arch, args.seed + 1)
    if args.halt_bias is None:
        halting = trainers["masked"].model
        delta, calib = calibrate(halting.eval(), normalize(batch_all["clips"].to(device)), args.target_gflops)
        halting.train()
        print(f"halting bias delta = {delta:.4f} (calibration clips: {calib:.2f} GFLOPs)", flush=True)
    else:
        delta = args.halt_bias
    for name in ("masked", "compact"):  # the same weights (same seed), the same halting profile
        set_halt_bias(trainers[name].model, delta)
    grad_clip = trainers["masked"].tc["grad_clip"]
    gflops_fixed = {"dense": dense_gflops(arch), "masked": glimpser_only_gflops(arch)}

    result: dict[str, Any] = {
        "arch": ARCH,
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else (platform.processor() or platform.machine()),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "halt_bias": delta,
        "grad_clip": grad_clip,
        "settings": vars(args),
        "batches": {},
    }
    lines = []
    for B in args.batch_sizes:
        batch = head(batch_all, B)
        times: dict[str, list[float]] = {v: [] for v in VARIANTS}
        cpu_times: dict[str, list[float]] = {v: [] for v in VARIANTS}
        peak: dict[str, float] = {}
        for rep in range(args.warmup + args.steps):
            for name, trainer in trainers.items():
                if device.type == "cuda" and rep == args.warmup:
                    torch.cuda.reset_peak_memory_stats(device)
                    base = torch.cuda.memory_allocated(device)
                sync(device)
                t0, c0 = time.perf_counter(), time.process_time()
                step(trainer, batch)
                sync(device)
                if rep >= args.warmup:
                    times[name].append(time.perf_counter() - t0)
                    cpu_times[name].append(time.process_time() - c0)
                if device.type == "cuda" and rep == args.warmup:
                    peak[name] = (torch.cuda.max_memory_allocated(device) - base) / 2**20
        counts = token_counts(trainers["compact"], batch)
        saved = {name: saved_mib(trainer, batch) for name, trainer in trainers.items()}
        if device.type == "cpu" and not args.no_memory:
            ctx = multiprocessing.get_context("spawn")  # a fresh process per measurement: the heap starts empty
            with ctx.Pool(1, maxtasksperchild=1) as pool:
                for name in ("masked", "compact"):
                    peak[name] = pool.apply(
                        first_step_rss, (name, B, args.seed, delta, args.amp, torch.get_num_threads(), args.set)
                    )

        gfl = {**gflops_fixed, "compact": float(clip_gflops(arch, counts).mean())}
        med = {k: statistics.median(v) for k, v in times.items()}
        fastest = {k: min(v) for k, v in times.items()}
        cpu = {k: statistics.median(v) for k, v in cpu_times.items()}
        speed = {
            "compact_vs_masked": med["masked"] / med["compact"],
            "compact_vs_dense": med["dense"] / med["compact"],
            "masked_vs_dense": med["dense"] / med["masked"],
        }
        speed_min = {
            "compact_vs_masked": fastest["masked"] / fastest["compact"],
            "compact_vs_dense": fastest["dense"] / fastest["compact"],
        }
        speed_cpu = {
            "compact_vs_masked": cpu["masked"] / cpu["compact"],
            "compact_vs_dense": cpu["dense"] / cpu["compact"],
        }
        flops_ratio = {
            "compact_vs_masked": gfl["masked"] / gfl["compact"],
            "compact_vs_dense": gfl["dense"] / gfl["compact"],
        }
        checks = {
            "compact_vs_masked_ok": speed["compact_vs_masked"] >= 1.5,
            "efficiency_vs_flops": speed["compact_vs_masked"] / flops_ratio["compact_vs_masked"],
            "compact_vs_dense_ok": speed["compact_vs_dense"] >= 3.5,
        }
        checks["efficiency_ok"] = checks["efficiency_vs_flops"] >= 0.85
        result["batches"][str(B)] = {
            "seconds_per_step": times,
            "median_seconds": med,
            "process_cpu_seconds_per_step": cpu_times,
            "forward_gflops_per_clip": gfl,
            "compact_gflops_with_padding": padded_gflops(arch, counts),
            "speedup": speed,
            "speedup_fastest": speed_min,
            "speedup_process_cpu_time": speed_cpu,
            "flops_ratio": flops_ratio,
            "checks": checks,
            "saved_for_backward_mib": saved,
            "peak_mib": peak,
            "tokens_per_halting_layer": [round(v, 1) for v in counts.mean(0).tolist()],
        }
        ok = lambda flag: "ok" if flag else "MISSED"  # noqa: E731
        lines += [f"batch {B} clips ({B // 2} samples)"]
        for name in VARIANTS:
            mem = f"  peak +{peak[name]:.0f} MiB" if name in peak else ""
            lines.append(
                f"  {name:<8} {med[name]:7.2f} s/step (fastest {fastest[name]:6.2f}, cpu {cpu[name]:6.2f})  forward "
                f"{gfl[name]:6.2f} GFLOPs/clip  saved for backward {saved[name]:7.0f} MiB{mem}"
            )
        lines += [
            f"  compact vs masked {speed['compact_vs_masked']:.2f}x (fastest {speed_min['compact_vs_masked']:.2f}x, "
            f"cpu {speed_cpu['compact_vs_masked']:.2f}x; "
            f"target >= 1.5x: {ok(checks['compact_vs_masked_ok'])}), "
            f"FLOPs ratio {flops_ratio['compact_vs_masked']:.2f}x "
            f"-> {100 * checks['efficiency_vs_flops']:.0f}% of it (target >= 85%: {ok(checks['efficiency_ok'])}; "
            f"with padding the batch computes {padded_gflops(arch, counts):.2f} GFLOPs/clip)",
            f"  compact vs dense  {speed['compact_vs_dense']:.2f}x (fastest {speed_min['compact_vs_dense']:.2f}x, "
            f"cpu {speed_cpu['compact_vs_dense']:.2f}x; "
            f"target >= 3.5x: {ok(checks['compact_vs_dense_ok'])}), "
            f"FLOPs ratio {flops_ratio['compact_vs_dense']:.2f}x; "
            f"masked vs dense {speed['masked_vs_dense']:.2f}x",
            f"  memory masked / compact: saved for backward {saved['masked'] / saved['compact']:.2f}x"
            + (f", peak {peak['masked'] / max(peak['compact'], 1e-9):.2f}x" if "compact" in peak else ""),
            f"  tokens per halting layer (compact = masked): {result['batches'][str(B)]['tokens_per_halting_layer']}",
        ]
        print("\n".join(lines[-(len(VARIANTS) + 5) :]), flush=True)

    peak_kind = (
        "CUDA max allocated during a step"
        if device.type == "cuda"
        else "peak RSS growth of a first step in a fresh process"
    )
    print(
        f"\n{ARCH}, {arch['num_frames']}x{arch['img_size']}px, random weights, halting bias {delta:.4f}, "
        f"{result['device']}, {torch.get_num_threads()} threads, amp {args.amp}, grad clip {grad_clip}, "
        f"median of {args.steps} steps after {args.warmup} warm-up; "
        f"peak = {peak_kind}; {time.time() - started:.0f} s in all"
    )
    print("\n".join(lines))
    for trainer in trainers.values():
        close(trainer)
    scratch.cleanup()
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
        print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
