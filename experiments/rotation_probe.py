"""Is the sense of a rotation in the clips the model sees, and can a network other than HaltingVT learn it in the
budget? A probe for one pair of rotation classes of a motion dataset (e.g. ``turns8``'s spin_cw/spin_ccw),
through the same data pipeline as ``haltingvt train`` (clip 8 x interval 3 at 32 px, experiments/motion_recipes.py's
config of the dataset):

1. a hand-written estimator, no training: rotate frame t about the centre of the clip's motion by each angle
   in [-40, 40] degrees and keep the angle that matches frame t+1 best; the sign of the summed angles is the
   sense. If it is right, the sense is visible at 32 px.
2. a small 3D CNN (4 conv layers with BatchNorm, 0.20 M parameters, no attention, no halting) trained on the
   pair alone with AdamW for ``--steps`` steps of batch 8, printed every epoch.

    python -m experiments.rotation_probe --data data/motion --dataset turns8 --classes spin_cw spin_ccw

HaltingVT on the pair alone, for comparison: ``motion_recipes.py --datasets turns8 --classes spin_cw spin_ccw``.
Results are also written as JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader

import haltingvt
from experiments.motion_recipes import COUNTS, DATASETS, run_config, write_dataset
from haltingvt.data import collate_eval, collate_train, normalize


def rotation_per_frame(clip: torch.Tensor, max_deg: float = 40.0, radius: float = 9.0) -> float:
    """Estimated mean rotation in degrees per frame, positive clockwise on screen (y down).

    clip: uint8 or float (3, T, H, W). The centre of rotation is the centroid of the per-pixel standard deviation
    over time (where things change); frames are compared inside a disc of ``radius`` pixels around it."""
    gray = clip.float().mean(0)  # (T, H, W)
    T, H, W = gray.shape
    change = gray.std(0)
    change = change / change.sum().clamp_min(1e-6)
    yy, xx = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    cy, cx = (change * yy).sum(), (change * xx).sum()
    disc = ((yy - cy) ** 2 + (xx - cx) ** 2 < radius**2).float()
    angles = torch.deg2rad(torch.linspace(-max_deg, max_deg, int(2 * max_deg) + 1))
    cos, sin = angles.cos()[:, None, None], angles.sin()[:, None, None]
    dx, dy = (xx - cx)[None], (yy - cy)[None]
    # the pixel at (x, y) of frame t+1 came from (x, y) turned back by the angle about the centre in frame t
    src_x, src_y = cx + cos * dx + sin * dy, cy - sin * dx + cos * dy
    grid = torch.stack([2 * src_x / (W - 1) - 1, 2 * src_y / (H - 1) - 1], dim=-1)  # (A, H, W, 2)
    best = []
    for t in range(T - 1):
        turned = F.grid_sample(gray[t].expand(len(angles), 1, H, W), grid, align_corners=True, padding_mode="border")[
            :, 0
        ]
        error = ((turned - gray[t + 1]) ** 2 * disc).sum((1, 2))
        best.append(angles[error.argmin()])
    return math.degrees(float(torch.stack(best).mean()))


class SmallCNN(nn.Module):
    """(B, 3, T, 32, 32) -> (B, num_classes): four 3x3x3 convolutions with BatchNorm, average pooling."""

    def __init__(self, num_classes: int, width: int = 32) -> None:
        super().__init__()
        layers, c_in = [], 3
        for c_out, stride in ((width, 1), (width, (1, 2, 2)), (2 * width, (1, 2, 2)), (2 * width, 1)):
            layers += [nn.Conv3d(c_in, c_out, 3, stride=stride, padding=1), nn.BatchNorm3d(c_out), nn.ReLU()]
            c_in = c_out
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool3d(1), nn.Flatten())
        self.head = nn.Linear(c_in, num_classes)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(clips))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data/motion"), help="where the datasets are written")
    parser.add_argument("--dataset", default="turns8", choices=[*DATASETS, "builtin"])
    parser.add_argument(
        "--classes",
        nargs=2,
        default=["spin_cw", "spin_ccw"],
        metavar=("CLOCKWISE", "COUNTER"),
        help="the clockwise class, then the counter-clockwise one",
    )
    parser.add_argument("--steps", type=int, default=6000, help="CNN training steps of batch 8")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/rotation_probe.json"))
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    if args.dataset != "builtin":
        write_dataset(args.dataset, args.data, COUNTS)  # once; an existing, complete dataset is kept
    with tempfile.TemporaryDirectory() as lists:
        run_cfg, classes, _ = run_config(args.dataset, args.data, list(args.classes), Path(lists))
        cfg = haltingvt.load_config(run_cfg)
        train_set, val_set = haltingvt.data.build_dataset(cfg, "train"), haltingvt.data.build_dataset(cfg, "val")
        val = collate_eval([val_set[i] for i in range(len(val_set))])

    # 1. the estimator
    turns = [rotation_per_frame(clip[0]) for clip in val["clips"]]
    predicted = torch.tensor([0 if t > 0 else 1 for t in turns])
    estimator_acc = float((predicted == val["label"]).float().mean())
    print(
        f"{args.dataset} {classes[0]}/{classes[1]}: {len(turns)} val clips at 32 px; hand-written rotation "
        f"estimator: {100 * estimator_acc:.1f}% right",
        flush=True,
    )

    # 2. the small 3D CNN
    model = SmallCNN(len(classes))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    loader = DataLoader(train_set, batch_size=8, shuffle=True, drop_last=True, collate_fn=collate_train)
    val_clips = normalize(val["clips"][:, 0])
    step, epoch, curve, tick = 0, 0, [], time.time()
    while step < args.steps:
        epoch += 1
        model.train()
        losses, hits, seen = [], 0, 0
        for batch in loader:
            real = batch["clips"][0::2]  # the real clips; the static ones are for HaltingVT's motion loss
            logits = model(normalize(real))
            loss = F.cross_entropy(logits, batch["label"][0::2])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            hits += int((logits.argmax(1) == batch["label"][0::2]).sum())
            seen += len(real)
            step += 1
            if step >= args.steps:
                break
        model.eval()
        with torch.no_grad():
            val_acc = float((model(val_clips).argmax(1) == val["label"]).float().mean())
        curve.append(
            {
                "epoch": epoch,
                "step": step,
                "train_loss": sum(losses) / len(losses),
                "train_acc": hits / seen,
                "val_acc": val_acc,
            }
        )
        print(
            f"CNN epoch {epoch} step {step}: train loss {curve[-1]['train_loss']:.4f} "
            f"acc {100 * hits / seen:.1f}%, val {100 * val_acc:.1f}%  ({time.time() - tick:.0f} s)",
            flush=True,
        )
    result = {
        "dataset": args.dataset,
        "classes": classes,
        "val_clips": len(turns),
        "estimator_val_acc": estimator_acc,
        "cnn_parameters": sum(p.numel() for p in model.parameters()),
        "cnn_steps": step,
        "cnn_curve": curve,
        "cnn_val_acc": curve[-1]["val_acc"],
        "seconds": round(time.time() - tick, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
