"""``haltingvt flops CONFIG``: per-layer tokens and GFLOPs of a config, dense and with halting."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import Any

import torch

from ..api import create_model
from ..config import load_config, resolve_arch
from ..data import DataError, load_views, normalize
from ..flops import LayerFlops, clip_gflops, layer_breakdown
from ..models import load_checkpoint
from .options import add_overrides


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="config name (see `haltingvt configs`) or YAML path")
    add_overrides(parser, "model.keep_rate=[1.0,0.5]")
    parser.add_argument("--checkpoint", help="weights for the measured halting table (release or haltingvt format)")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--video", help="video file or frame folder: measure halting on its test views")
    src.add_argument("--random-input", action="store_true", help="measure halting on a random clip (no data needed)")
    parser.add_argument("--early-exit", action="store_true", help="stop a clip once its cls token halted")
    parser.add_argument("--device", default="cpu", help="device for the measured run (default cpu)")
    parser.add_argument("--seed", type=int, default=0, help="seed of --random-input and of random weights")
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead of tables")


def _fmt(tokens: float) -> str:
    return f"{tokens:.0f}" if float(tokens).is_integer() else f"{tokens:.1f}"


def _table(title: str, rows: list[LayerFlops]) -> str:
    lines = [f"== {title} ==", f"{'layer':<12} {'kind':<16} {'tokens':>14} {'GFLOPs':>9}"]
    for r in rows:
        tokens = _fmt(r.tokens_in) if r.tokens_in == r.tokens_out else f"{_fmt(r.tokens_in)}->{_fmt(r.tokens_out)}"
        lines.append(f"{r.name:<12} {r.kind:<16} {tokens:>14} {r.gflops:>9.3f}")
    lines.append(f"{'total':<12} {'':<16} {'':>14} {sum(r.gflops for r in rows):>9.3f}")
    return "\n".join(lines)


def _measure(args: argparse.Namespace, cfg: dict) -> dict[str, Any]:
    """Run the model on the clip(s) and return token counts and per-view GMACs."""
    arch = resolve_arch(cfg)
    if args.video:  # read the clip first: a bad path fails before the model is built
        clips = normalize(load_views(args.video, cfg))
        source = args.video
    else:
        gen = torch.Generator().manual_seed(args.seed)
        size = arch["img_size"]
        clips = normalize(
            torch.randint(0, 256, (1, 3, arch["num_frames"], size, size), generator=gen, dtype=torch.uint8)
        )
        source = "random clip"
    torch.manual_seed(args.seed)
    model = create_model(cfg).eval()
    if args.checkpoint:
        load_checkpoint(model, args.checkpoint)
    arch = model.arch
    clips = clips.to(args.device)
    model.to(args.device)
    early = bool(args.early_exit or cfg["test"]["early_exit"])
    with torch.inference_mode():
        out = model(clips, execution="compact", early_exit=early)
    T, (H, W) = clips.shape[2], clips.shape[3:]
    per_view = clip_gflops(arch, out.token_counts, num_frames=T, img_size=H if H == W else (H, W))
    mean_counts = out.token_counts.double().mean(dim=0).cpu()
    return {
        "source": source,
        "weights": args.checkpoint or "random init",
        "early_exit": early,
        "num_views": int(clips.shape[0]),
        "num_frames": int(T),
        "img_size": H,
        "token_counts": out.token_counts.cpu().tolist(),
        "gflops_per_view": per_view.tolist(),
        "rows": layer_breakdown(arch, "halting", mean_counts, num_frames=T, img_size=H),
    }


def run(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.set)
    arch = resolve_arch(cfg)
    if args.checkpoint and not (args.video or args.random_input):
        raise FileNotFoundError("--checkpoint needs a clip to measure halting on: add --video PATH or --random-input")
    result: dict[str, Any] = {
        "config": cfg.get("name", str(args.config)),
        "arch": arch,
        "dense": layer_breakdown(arch, "dense"),
        "glimpser_only": layer_breakdown(arch, "glimpser"),
    }
    if args.video or args.random_input:
        try:
            result["halting"] = _measure(args, cfg)
        except ValueError as err:  # an unreadable clip (DataError) is one line, like config errors
            if not isinstance(err, DataError):
                raise
            print(f"haltingvt flops: error: {err}", file=sys.stderr)
            return 2

    def total(rows: list[LayerFlops]) -> float:
        return sum(r.gflops for r in rows)

    if args.json:
        out = {k: v for k, v in result.items() if k not in ("dense", "glimpser_only", "halting")}
        for key in ("dense", "glimpser_only"):
            out[key] = {"gflops": total(result[key]), "layers": [asdict(r) | {"gflops": r.gflops} for r in result[key]]}
        if "halting" in result:
            h = dict(result["halting"])
            rows = h.pop("rows")
            h["gflops"] = sum(h["gflops_per_view"]) / len(h["gflops_per_view"])
            h["layers"] = [asdict(r) | {"gflops": r.gflops} for r in rows]
            out["halting"] = h
        json.dump(out, sys.stdout, indent=1)
        print()
        return 0

    a = arch
    print(
        f"{result['config']}: embed_dim {a['embed_dim']}, depth {a['depth']} ({a['divid_depth']} Glimpser, "
        f"keep_rate {a['keep_rate']}), {a['num_frames']}x{a['img_size']}x{a['img_size']}, patch {a['patch_size']}"
    )
    print("GFLOPs = multiply-accumulates per clip (x1e9); tokens include cls\n")
    print(_table("dense (no selection, no halting)", result["dense"]) + "\n")
    print(_table("Glimpser only (selection, no halting)", result["glimpser_only"]) + "\n")
    if "halting" in result:
        h = result["halting"]
        mean = sum(h["gflops_per_view"]) / len(h["gflops_per_view"])
        title = (
            f"measured halting on {h['source']} ({h['num_views']} view(s), weights: {h['weights']}"
            f"{', early exit' if h['early_exit'] else ''}; tokens = mean active tokens entering the layer)"
        )
        print(_table(title, h["rows"]))
        if h["num_views"] > 1:
            print(
                f"per view: {', '.join(f'{g:.3f}' for g in h['gflops_per_view'])}; mean {mean:.3f}, "
                f"video total {sum(h['gflops_per_view']):.3f}"
            )
        print()
    print(
        f"total GFLOPs per clip: dense {total(result['dense']):.2f}, Glimpser only {total(result['glimpser_only']):.2f}"
        + (
            f", measured halting {sum(result['halting']['gflops_per_view']) / result['halting']['num_views']:.2f}"
            if "halting" in result
            else ""
        )
    )
    return 0
