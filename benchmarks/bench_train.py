"""Training throughput: HaltingVT (Glimpser keep rate 0.3, halting) vs the dense joint model.

Both models have the same backbone (DeiT-S-like by default) and input; the dense baseline keeps
every token in the Glimpser (keep_rate 1.0) and has no halting. One training step is what
``haltingvt train`` does per batch: b samples -> 2b clips (real + static), masked execution
(the release's training mode: halted tokens are zeroed, not removed, so halting saves nothing in
training; the Glimpser's selection does), the three losses, backward, gradient clipping, Adam.

    python benchmarks/bench_train.py --device cpu --img-size 112 --frames 8 --batch 2 --steps 3
    python benchmarks/bench_train.py --device cuda --img-size 224 --frames 8 --batch 16 --amp bf16

Prints clips/s (training clips, i.e. 2 per sample) for each model and the ratio, plus the
forward GFLOPs per clip of each (from the measured token counts); writes JSON with --json.
Numbers depend on the machine and on other load; on a shared CPU they are noisy.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from typing import Any

import torch

from haltingvt.data import normalize
import haltingvt
from haltingvt.engine.amp import autocast
from haltingvt.engine.train import build_optimizer
from haltingvt.flops import clip_gflops, dense_gflops

VARIANTS = {
    "haltingvt_g03_b10": {"keep_rate": [1.0, 0.3], "halting": True, "halt_center": 10.0},
    "dense": {"keep_rate": [1.0, 1.0], "halting": False},
}


def bench_variant(name: str, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    torch.manual_seed(0)
    arch = dict(img_size=args.img_size, patch_size=args.patch_size, num_frames=args.frames, embed_dim=args.embed_dim,
                num_heads=args.heads, depth=args.depth, divid_depth=2, num_classes=args.classes, **VARIANTS[name])
    model = haltingvt.create_model(arch).to(device).train()
    optimizer = build_optimizer(model, lr=1e-5, weight_decay=1e-5)
    loss_fn = haltingvt.HaltingVTLoss()
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp == "fp16")
    clips_u8 = torch.randint(0, 256, (2 * args.batch, 3, args.frames, args.img_size, args.img_size), dtype=torch.uint8)
    labels = torch.randint(0, args.classes, (2 * args.batch,))
    motion = torch.tensor([1, 0] * args.batch)
    clips_u8, labels, motion = clips_u8.to(device), labels.to(device), motion.to(device)

    def step() -> torch.Tensor:
        clips = normalize(clips_u8)
        with autocast(device, args.amp):
            out = model(clips, execution="masked")
            loss = loss_fn(out, labels, motion).total
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 40.0)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        return out.token_counts

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    counts = []
    for _ in range(args.steps):
        counts.append(step().detach())
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    counts_t = torch.cat(counts).float().cpu()
    gflops = clip_gflops(model.arch, counts_t).mean().item() if arch["halting"] else dense_gflops(model.arch)
    return {
        "model": name, "clips_per_second": 2 * args.batch * args.steps / seconds,
        "seconds_per_step": seconds / args.steps, "forward_gflops_per_clip": gflops,
        "tokens_per_halting_layer": [round(v, 1) for v in counts_t.mean(0).tolist()],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--img-size", type=int, default=112)
    p.add_argument("--patch-size", type=int, default=16)
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--embed-dim", type=int, default=384)
    p.add_argument("--heads", type=int, default=6)
    p.add_argument("--depth", type=int, default=12)
    p.add_argument("--classes", type=int, default=200)
    p.add_argument("--batch", type=int, default=2, help="samples per step (each gives 2 clips)")
    p.add_argument("--steps", type=int, default=3, help="timed steps")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    p.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"])
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--json", default=None, help="write the results to this file")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    rows = [bench_variant(name, args, device) for name in VARIANTS]
    halting, dense = rows
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch_threads": torch.get_num_threads(), "settings": vars(args), "results": rows,
        "speedup": halting["clips_per_second"] / dense["clips_per_second"],
    }
    print(f"training, {args.img_size}px x {args.frames} frames, dim {args.embed_dim}, depth {args.depth}, "
          f"batch {args.batch} samples = {2 * args.batch} clips, amp {args.amp}, {result['device']}")
    for r in rows:
        print(f"  {r['model']:<20} {r['clips_per_second']:8.2f} clips/s  {r['seconds_per_step']:.3f} s/step  "
              f"forward {r['forward_gflops_per_clip']:.2f} GFLOPs/clip  tokens/layer {r['tokens_per_halting_layer']}")
    print(f"  speed-up (HaltingVT / dense): {result['speedup']:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
