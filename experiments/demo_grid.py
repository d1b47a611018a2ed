"""How much the demo's result moves with the seed and the CPU's reduction order: ``haltingvt demo`` over a grid.

Every (variant, seed, threads) cell is one full ``haltingvt demo`` run in its own process, with
``OMP_NUM_THREADS`` = threads (1 and 2 threads sum in different orders: the closest stand-in here for another
CPU). Prints val top-1, test top-1, the fraction of the dense compute and the training time of every run, then
min / median / max per variant, and writes everything as JSON. Finished cells (their ``summary.json``) are
reused, so an interrupted grid continues where it stopped.

    python -m experiments.demo_grid --out runs/demo_grid                         # the demo as shipped
    python -m experiments.demo_grid --out runs/demo_grid --variants shipped previous --seeds 0 1
    python -m experiments.demo_grid --out runs/demo_grid --report                # the table of finished runs
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

#: The demo's recipe until 2026-12-05: 6000 clips x 8 epochs at lr 2e-3 (0.2-epoch warm-up), a constant ponder
#: weight, static clips labelled with the action too.
PREVIOUS = [
    "data.synthetic_num_train=6000",
    "train.epochs=8",
    "train.lr=2e-3",
    "train.warmup_epochs=0.2",
    "loss.target_gflops_ratio=null",
    "loss.static_action_loss=true",
    "loss.ponder_token_scale=2e-3",
]
#: The previous recipe with the current optimisation (lr 5e-4 after a 1-epoch warm-up, a 42% compute target,
#: static clips on the motion head only): the shipped recipe but for its data (6000 clips x 8 epochs) and target.
LOW_LR_TARGET = [
    "data.synthetic_num_train=6000",
    "train.epochs=8",
    "train.warmup_epochs=1",
    "loss.target_gflops_ratio=0.42",
    "loss.ponder_token_scale=2e-3",
]

#: variant -> ``--set`` overrides of configs/demo_synthetic.yaml (the ones docs/experiments.md reports)
VARIANTS: dict[str, list[str]] = {
    "shipped": [],
    "previous": PREVIOUS,
    "previous_static_motion_head": [*PREVIOUS, "loss.static_action_loss=false"],
    "previous_ponder_ramp2": [*PREVIOUS, "loss.ponder_warmup_epochs=2"],
    "previous_batch16_lr3e-3": [*PREVIOUS, "train.batch_size=16", "train.lr=3e-3", "train.warmup_epochs=0.5"],
    "previous_tubelet2": [*PREVIOUS, "model.tubelet_size=2"],
    "low_lr_target_8x6000": LOW_LR_TARGET,
    "low_lr_target_6x6000": [*LOW_LR_TARGET, "train.epochs=6"],
    "low_lr_target_64px": [
        *LOW_LR_TARGET,
        "model.img_size=64",
        "model.patch_size=16",
        "data.train_scale=[64,64]",
        "data.crop_size=64",
        "data.test_scale=64",
    ],
    "low_lr_target_2x24000": [
        "data.synthetic_num_train=24000",
        "loss.target_gflops_ratio=0.42",
        "loss.ponder_token_scale=2e-3",
    ],
    "shipped_ponder2e-3_target42": ["loss.target_gflops_ratio=0.42", "loss.ponder_token_scale=2e-3"],
    "shipped_ponder2e-3": ["loss.ponder_token_scale=2e-3"],
}
METRICS = ("val_top1", "test_top1", "gflops_fraction_of_dense", "train_seconds")


def run_cell(out: Path, variant: str, seed: int, threads: int) -> dict:
    folder = out / variant / f"seed{seed}_threads{threads}"
    summary = folder / "summary.json"
    if not summary.exists():
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        cmd = [
            sys.executable,
            "-m",
            "haltingvt.cli",
            "demo",
            "--out",
            str(folder),
            "--no-progress",
            "--set",
            f"train.seed={seed}",
            *VARIANTS[variant],
        ]
        print(f"running {variant} seed {seed} threads {threads} ...", flush=True)
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    s = json.loads(summary.read_text())
    return {"variant": variant, "seed": seed, "threads": threads, **{k: s[k] for k in METRICS}}


def report(rows: list[dict]) -> dict:
    print(f"{'variant':<28} {'seed':>4} {'thr':>3} {'val':>6} {'test':>6} {'of dense':>8} {'train s':>7}")
    for r in rows:
        print(
            f"{r['variant']:<28} {r['seed']:>4} {r['threads']:>3} {r['val_top1']:>6.1%} {r['test_top1']:>6.1%} "
            f"{r['gflops_fraction_of_dense']:>8.1%} {r['train_seconds']:>7.0f}"
        )
    stats = {}
    for variant in dict.fromkeys(r["variant"] for r in rows):
        cells = [r for r in rows if r["variant"] == variant]
        stats[variant] = {
            k: {
                "min": min(c[k] for c in cells),
                "median": statistics.median(c[k] for c in cells),
                "max": max(c[k] for c in cells),
            }
            for k in METRICS
        }
        v = stats[variant]
        print(
            f"{variant}: {len(cells)} runs; val top-1 min {v['val_top1']['min']:.1%} median "
            f"{v['val_top1']['median']:.1%} max {v['val_top1']['max']:.1%}; "
            f"of dense {v['gflops_fraction_of_dense']['min']:.1%}"
            f"-{v['gflops_fraction_of_dense']['max']:.1%}; training {v['train_seconds']['min']:.0f}-"
            f"{v['train_seconds']['max']:.0f} s"
        )
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="runs/demo_grid", help="folder of the runs and grid.json")
    parser.add_argument("--variants", nargs="+", default=["shipped"], choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--report", action="store_true", help="only the table of the runs already finished")
    args = parser.parse_args()
    out = Path(args.out)
    rows = []
    for variant in args.variants:
        for seed in args.seeds:
            for threads in args.threads:
                done = (out / variant / f"seed{seed}_threads{threads}" / "summary.json").exists()
                if args.report and not done:
                    continue
                rows.append(run_cell(out, variant, seed, threads))
    stats = report(rows)
    out.mkdir(parents=True, exist_ok=True)
    (out / "grid.json").write_text(json.dumps({"runs": rows, "stats": stats}, indent=1))
    print(f"written: {out / 'grid.json'}")


if __name__ == "__main__":
    main()
