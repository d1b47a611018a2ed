"""Does the from-scratch recipe learn motion *direction*? Train the demo-size model on motion datasets whose classes
come in time-reversed pairs, through ``haltingvt train``, and report per dataset: val/test top-1, the
confusion inside the time-reversed pairs, GFLOPs per clip against the dense model, tokens per halting layer
and the training time.

    python -m experiments.motion_recipes --out runs/motion                       # every dataset, current recipe
    python -m experiments.motion_recipes --datasets shapes6 builtin --variants recipe demo --seeds 0 1
    python -m experiments.motion_recipes --jobs 2 --threads 1                    # two trainings at a time
    python -m experiments.motion_recipes --datasets turns8 --classes spin_cw spin_ccw   # one pair alone (a probe)

Datasets: ``shapes6``, ``paths10``, ``clutter6`` (experiments/motion_datasets.py, written once under
``--data``) and ``builtin`` (the demo's own synthetic clips). Every run has the demo's budget: 6000 optimizer
steps of batch 8 at 32 px (``train.epochs`` = 6000 x 8 / number of training clips). The config of each run
is ``_base_: scratch_motion`` (configs/scratch_motion.yaml) with the data keys replaced, plus the variant's
overrides (:data:`VARIANTS`); it is written next to the run, so any row can be rerun by hand with
``haltingvt train <run>/config.yaml``.
Timings are of one machine, measured in one invocation; with ``--jobs 2`` two trainings share the cores.
The final model (not the best epoch) is evaluated, with compact execution.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from experiments.motion_datasets import DATASETS, data_config, write_dataset

STEPS, BATCH = 6000, 8
COUNTS = {"train": 4800, "val": 400, "test": 400}
BUILTIN_PAIRS = (("move_right", "move_left"), ("move_up", "move_down"), ("grow", "shrink"))

#: Recipe variants: overrides on top of configs/scratch_motion.yaml ("recipe": the shipped from-scratch recipe,
#: 4-px patches over 2 frames, the compute-target gate at 45% of the dense GFLOPs, lr 5e-4 after a 1-epoch
#: warmup, static clips on the motion head only). "demo": the demo's recipe (8-px patches per frame, constant
#: ponder weight, lr 2e-3, static clips with the action label: configs/demo_synthetic.yaml); "demo_lr": the recipe
#: with the demo's lr 2e-3 and 0.2-epoch warmup; "static_action": static clips also carry the action label (the
#: release's loss); "p8_gate": the gate with the demo's tokens; "constant": the new tokens with the constant
#: ponder weight; "no_ponder": halting without a ponder loss; "dense": neither Glimpser selection nor halting.
DEMO_LR = ["train.lr=2.0e-3", "train.warmup_epochs=0.2"]  # configs/demo_synthetic.yaml's optimizer schedule
VARIANTS: dict[str, list[str]] = {
    "recipe": [],
    "demo": [
        "model.patch_size=8",
        "model.tubelet_size=1",
        "loss.target_gflops_ratio=null",
        "loss.static_action_loss=true",
        *DEMO_LR,
    ],
    "demo_lr": DEMO_LR,
    "static_action": ["loss.static_action_loss=true"],
    "p8_gate": ["model.patch_size=8", "model.tubelet_size=1"],
    "constant": ["loss.target_gflops_ratio=null"],
    "no_ponder": ["loss.ponder_token_scale=0", "loss.target_gflops_ratio=null"],
    "dense": ["model.halting=false", "model.keep_rate=[1.0,1.0]"],
}
BASE = "scratch_motion"


def run_config(
    dataset: str, data_root: Path, only: list[str] | None = None, lists_dir: Path | None = None
) -> tuple[dict, list[str], list[tuple[str, str]]]:
    """(config dict, class names, time-reversed pairs) of a dataset, based on the recipe (:data:`BASE`).

    ``only``: train and evaluate on these classes alone, relabelled 0..len(only)-1 in that order (for the
    file datasets, filtered list files are written under ``lists_dir``); the run keeps the budget of
    :data:`STEPS` steps, so it sees each of these classes more often than the full dataset does."""
    if dataset == "builtin":
        from haltingvt.config import load_config

        classes = list(load_config(BASE)["data"]["synthetic_classes"])
        cfg: dict = {"_base_": BASE}
        pairs = list(BUILTIN_PAIRS)
        num_train = None
    else:
        ds = DATASETS[dataset]
        classes, pairs, num_train = list(ds.classes), list(ds.pairs), COUNTS["train"]
        cfg = {"_base_": BASE, "model": {"num_classes": len(classes)}, "data": data_config(dataset, data_root)}
    if only:
        unknown = [c for c in only if c not in classes]
        if unknown:
            raise SystemExit(f"--classes: {', '.join(unknown)} not in {dataset} ({', '.join(classes)})")
        if dataset == "builtin":
            cfg = {"_base_": BASE, "model": {"num_classes": len(only)}, "data": {"synthetic_classes": list(only)}}
        else:
            num_train = _subset_lists(cfg["data"], classes, only, lists_dir)
            cfg["model"]["num_classes"] = len(only)
        classes, pairs = list(only), [p for p in pairs if p[0] in only and p[1] in only]
    if num_train is not None:
        cfg["train"] = {"epochs": max(1, round(STEPS * BATCH / num_train))}
    return cfg, classes, pairs


def _subset_lists(data: dict, classes: list[str], only: list[str], lists_dir: Path) -> int:
    """Rewrite ``data``'s list files to hold the classes ``only`` (label: the class's place in ``only``; the
    label is the last field of every list format) under ``lists_dir``; returns the number of training clips."""
    lists_dir.mkdir(parents=True, exist_ok=True)
    new_label = {classes.index(c): i for i, c in enumerate(only)}
    for split in ("train", "val", "test"):
        src = Path(data[f"{split}_list"])
        kept = []
        for line in src.read_text().splitlines():
            head, label = line.rsplit(" ", 1)
            if int(label) in new_label:
                kept.append(f"{head} {new_label[int(label)]}")
        dst = lists_dir / src.name
        dst.write_text("\n".join(kept) + "\n")
        data[f"{split}_list"] = str(dst)
        if split == "train":
            num_train = len(kept)
    (lists_dir / "classes.txt").write_text("\n".join(only) + "\n")
    data["classes"] = str(lists_dir / "classes.txt")
    return num_train


def pair_confusion(preds: list[dict], classes: list[str], pairs: list[tuple[str, str]]) -> dict[str, float]:
    """Per pair: the fraction of the pair's samples predicted as the partner class."""
    out = {}
    for a, b in pairs:
        ia, ib = classes.index(a), classes.index(b)
        rows = [p for p in preds if p["label"] in (ia, ib)]
        swapped = sum(1 for p in rows if p["pred"] == (ib if p["label"] == ia else ia))
        out[f"{a}/{b}"] = swapped / max(len(rows), 1)
    return out


def evaluate_run(work_dir: Path, classes: list[str], pairs: list[tuple[str, str]]) -> dict:
    """Evaluate the final checkpoint of a run on val and test."""
    import torch

    from haltingvt.config import load_config
    from haltingvt.engine.evaluate import evaluate
    from haltingvt.flops import dense_gflops
    from haltingvt.models import create_model, load_checkpoint

    cfg = load_config(work_dir / "config.yaml")
    model = create_model(cfg["model"])
    load_checkpoint(model, work_dir / "latest.pth")
    model.eval()
    result: dict = {}
    for split in ("val", "test"):
        dump = work_dir / f"predictions_{split}.json"
        m = evaluate(model, cfg, split, torch.device("cpu"), dump=dump, progress=False)
        result[f"{split}_top1"] = m["top1"]
        if split == "val":
            preds = json.loads(dump.read_text())["predictions"]
            result["pair_confusion"] = pair_confusion(preds, classes, pairs)
            result["gflops_per_clip"] = m["gflops_per_clip"]
            result["tokens_per_layer"] = m["tokens_per_layer"]
    result["dense_gflops"] = dense_gflops(model.arch)
    result["gflops_ratio"] = result["gflops_per_clip"] / result["dense_gflops"]
    return result


def train_run(dataset: str, variant: str, seed: int, args: argparse.Namespace) -> dict:
    """Train one (dataset, variant, seed) through `haltingvt train` in a subprocess, then evaluate it."""
    subset = "-" + "-".join(args.classes) if args.classes else ""
    work_dir = args.out / f"{dataset}{subset}_{variant}_s{seed}"
    cfg, classes, pairs = run_config(dataset, args.data, args.classes, work_dir / "lists")
    work_dir.mkdir(parents=True, exist_ok=True)
    cfg_path = work_dir / "run.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    overrides = (
        VARIANTS[variant]
        + list(args.set)
        + [f"train.seed={seed}", f"train.work_dir={work_dir}", "train.log_interval=500"]
    )
    cmd = [sys.executable, "-m", "haltingvt.cli", "train", str(cfg_path), "--no-progress", "--set", *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    if not (args.reuse and (work_dir / "summary.json").exists()):
        tick = time.time()
        with open(work_dir / "stdout.log", "w") as log:
            rc = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
        seconds = time.time() - tick
        if rc != 0:
            raise RuntimeError(f"training failed ({rc}): see {work_dir / 'stdout.log'}")
        (work_dir / "train_seconds.txt").write_text(f"{seconds:.1f}\n")
    seconds = float((work_dir / "train_seconds.txt").read_text())
    summary = json.loads((work_dir / "summary.json").read_text())
    row = {
        "dataset": dataset,
        "classes": args.classes,
        "variant": variant,
        "seed": seed,
        "train_seconds": round(seconds, 1),
        "optimizer_steps": summary["optimizer_steps"],
        "command": " ".join(cmd[1:]),
        **evaluate_run(work_dir, classes, pairs),
    }
    (work_dir / "row.json").write_text(json.dumps(row, indent=1))
    print(format_row(row), flush=True)
    return row


def format_row(r: dict) -> str:
    conf = " ".join(f"{100 * v:.0f}" for v in r["pair_confusion"].values())
    tokens = "/".join(f"{t:.1f}" for t in r["tokens_per_layer"])
    name = r["dataset"] + (f"[{','.join(r['classes'])}]" if r.get("classes") else "")
    return (
        f"{name:<9} {r['variant']:<10} {r['seed']:>4} {100 * r['val_top1']:>6.1f} {100 * r['test_top1']:>6.1f}"
        f"  {conf:<16} {r['gflops_per_clip']:.4f} {100 * r['gflops_ratio']:>5.1f}%  {tokens:<22}"
        f" {r['train_seconds']:>7.0f}"
    )


HEADER = (
    f"{'dataset':<9} {'variant':<10} {'seed':>4} {'val%':>6} {'test%':>6}  {'pair swap %':<16} "
    f"{'GFLOPs':<6} {'dense%':>6}  {'tokens/halting layer':<22} {'train s':>7}"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data/motion"), help="where the datasets are written")
    parser.add_argument("--out", type=Path, default=Path("runs/motion_recipes"), help="run folders and results.json")
    parser.add_argument("--datasets", nargs="+", default=[*DATASETS, "builtin"], choices=[*DATASETS, "builtin"])
    parser.add_argument("--variants", nargs="+", default=["recipe"], choices=list(VARIANTS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument(
        "--classes",
        nargs="+",
        metavar="CLASS",
        help="a probe: train on these classes of each dataset alone (still 6000 steps), e.g. one "
        "time-reversed pair, to see whether the model can tell them apart at all",
    )
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="extra config overrides")
    parser.add_argument("--jobs", type=int, default=1, help="trainings at a time")
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 1)), help="torch threads per training")
    parser.add_argument("--reuse", action="store_true", help="skip trainings whose run folder has a summary.json")
    parser.add_argument(
        "--report", action="store_true", help="train nothing: print the table of every finished run under --out"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.report:
        for name in args.datasets:
            if name != "builtin":
                write_dataset(name, args.data, COUNTS)
        jobs = [(d, v, s) for d in args.datasets for v in args.variants for s in args.seeds]
        print(HEADER, flush=True)
        with ThreadPoolExecutor(args.jobs) as pool:
            list(pool.map(lambda job: train_run(*job, args), jobs))
    # every finished run under --out, also those of earlier or parallel invocations
    rank = {name: i for i, name in enumerate(VARIANTS)}  # variants of older versions sort last
    order = {name: i for i, name in enumerate([*DATASETS, "builtin"])}
    rows = sorted(
        (json.loads(p.read_text()) for p in args.out.glob("*/row.json")),
        key=lambda r: (
            order[r["dataset"]],
            r.get("classes") or [],
            rank.get(r["variant"], len(rank)),
            r["variant"],
            r["seed"],
        ),
    )
    print("\n" + HEADER)
    for r in rows:
        print(format_row(r))
    results = {
        "rows": rows,
        "steps": STEPS,
        "batch_size": BATCH,
        "cpu_count": os.cpu_count(),
        "jobs": args.jobs,
        "threads": args.threads,
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"\nresults: {args.out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
