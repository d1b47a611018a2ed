"""What each part of HaltingVT buys, on the demo task: the demo model trained with the same budget
(config demo_synthetic: data, epochs, schedule) with one part switched off at a time.

    python -m experiments.ablation_demo --out ablation_out            # all variants, ~2-3 min each on 2 cores
    python -m experiments.ablation_demo --variants full no_halting --set train.epochs=3

Prints a table and writes ``OUT/ablation.json``. Each variant is one run of ``haltingvt.demo.run_demo``
(one seed: differences of a few points are within run-to-run noise; pass ``--seeds 0 1 2`` to average).
Without the motion loss the trainer still sees the real/static clip pairs (both with the action label);
only the motion head's loss is off. "dense" is the same backbone with neither Glimpser selection nor halting.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from haltingvt.config import load_config
from haltingvt.demo import run_demo

VARIANTS: dict[str, list[str]] = {
    "full": [],
    "no_motion_loss": ["loss.motion_loss=false"],
    "no_halting": ["model.halting=false"],
    "no_glimpser": ["model.keep_rate=[1.0,1.0]"],
    "dense": ["model.halting=false", "model.keep_rate=[1.0,1.0]"],
}
METRICS = (
    "val_top1",
    "test_top1",
    "static_top1",
    "motion_acc",
    "gflops_per_clip",
    "gflops_fraction_of_dense",
    "train_seconds",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="ablation_out", help="output folder (default: ablation_out)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="train.seed values (default: 0)")
    parser.add_argument("--config", default="demo_synthetic")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="overrides for every variant")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--progress", action="store_true", help="progress bars of every run")
    args = parser.parse_args(argv)

    out = Path(args.out)
    results: dict[str, dict] = {}
    for name in args.variants:
        runs = []
        for seed in args.seeds:
            cfg = load_config(args.config, VARIANTS[name] + list(args.set) + [f"train.seed={seed}"])
            print(f"[{name} seed {seed}] training ...", file=sys.stderr, flush=True)
            s = run_demo(cfg, out / f"{name}_seed{seed}", device=args.device, progress=args.progress)
            runs.append({k: s[k] for k in METRICS} | {"tokens_per_layer": s["tokens_per_layer"]})
            print(
                f"[{name} seed {seed}] val top-1 {100 * s['val_top1']:.1f}%  "
                f"{100 * s['gflops_fraction_of_dense']:.0f}% of dense GFLOPs",
                file=sys.stderr,
                flush=True,
            )
        mean = {k: statistics.fmean(r[k] for r in runs) for k in METRICS}
        results[name] = {
            "overrides": VARIANTS[name],
            "runs": runs,
            "mean": mean,
            "dense_gflops_per_clip": s["dense_gflops_per_clip"],
        }

    out.mkdir(parents=True, exist_ok=True)
    doc = {"config": args.config, "overrides": args.set, "seeds": args.seeds, "results": results}
    (out / "ablation.json").write_text(json.dumps(doc, indent=1))
    print(format_table(results, len(args.seeds)))
    print(f"\nJSON: {out / 'ablation.json'}")
    return 0


def format_table(results: dict[str, dict], n_seeds: int) -> str:
    """Markdown table of the mean metrics per variant."""
    lines = [
        "| variant | val top-1 | test top-1 | static top-1 | motion acc | MMAC/clip | of dense | train s |"
        + ("" if n_seeds == 1 else f"  (mean of {n_seeds} seeds)"),
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        m = r["mean"]
        lines.append(
            f"| {name} | {100 * m['val_top1']:.1f}% | {100 * m['test_top1']:.1f}% | {100 * m['static_top1']:.1f}% | "
            f"{100 * m['motion_acc']:.1f}% | {1e3 * m['gflops_per_clip']:.2f} | "
            f"{100 * m['gflops_fraction_of_dense']:.0f}% | {m['train_seconds']:.0f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
