"""Small in-memory datasets and configs for the engine tests (sample dicts as haltingvt.data makes them).

Also a script, so subprocess tests (torchrun, SIGKILL) can run the engine on these datasets:

    python tests/engine_helpers.py train CFG.json [--resume]
    python -m torch.distributed.run --nproc_per_node 2 tests/engine_helpers.py eval CFG.json CKPT OUT.json
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

import haltingvt
from haltingvt.config import load_config
from haltingvt.engine import distributed
from haltingvt.engine.evaluate import evaluate
from haltingvt.engine.train import train

#: This file, run as a script by the subprocess tests.
HELPERS = Path(__file__).resolve()
NUM_CLASSES = 3
TINY_MODEL = dict(
    img_size=32,
    patch_size=8,
    num_frames=4,
    embed_dim=48,
    num_heads=3,
    depth=4,
    divid_depth=2,
    keep_rate=[1.0, 0.5],
    halting=True,
    halt_scale=10.0,
    halt_center=3.0,
    eps=0.01,
    fuse_token=False,
    num_classes=NUM_CLASSES,
    drop_path_rate=0.0,
)


def _clip(index: int, label: int, seed: int, frames: int = 4, size: int = 32) -> torch.Tensor:
    """uint8 (3, T, H, W): random texture whose brightness pattern over time depends on the label."""
    g = torch.Generator().manual_seed(seed * 100_003 + index)
    clip = torch.randint(0, 120, (3, frames, size, size), generator=g, dtype=torch.int16)
    ramp = (
        torch.linspace(0, 1, frames)
        if label == 1
        else (torch.linspace(1, 0, frames) if label == 2 else torch.zeros(frames))
    )
    clip = clip + (120 * ramp).to(torch.int16)[None, :, None, None]
    if label == 0:
        clip[:, :, : size // 2] += 60
    return clip.clamp(0, 255).to(torch.uint8)


class TinyTrainSet(Dataset):
    """Train split: {"clips": (2, 3, T, H, W) [real, static], "label", "index", "path"}; ``bad`` indices
    return the error dict of an unreadable file; ``delay`` seconds per sample slows a run down."""

    def __init__(
        self, n: int = 24, seed: int = 0, bad: tuple[int, ...] = (), delay: float = 0.0, multi_label: bool = False
    ) -> None:
        self.n, self.seed, self.bad, self.delay, self.multi_label = n, seed, set(bad), delay, multi_label

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self.delay:
            time.sleep(self.delay)
        path = f"/data/tiny/train_{index:03d}.mp4"
        if index in self.bad:
            return {"error": f"{path}: cannot decode (test)", "index": index, "path": path}
        label = index % NUM_CLASSES
        real = _clip(index, label, self.seed)
        static = real[:, index % real.shape[1]][:, None].expand_as(real).clone()
        target = torch.tensor(label)
        if self.multi_label:
            target = torch.zeros(NUM_CLASSES)
            target[label] = 1
        return {"clips": torch.stack([real, static]), "label": target, "index": index, "path": path}


class TinyEvalSet(Dataset):
    """Val/test split: {"clips": (V, 3, T, H, W), "label", "index", "path"}; optionally multi-hot labels."""

    def __init__(
        self,
        n: int = 10,
        views: int = 2,
        seed: int = 1,
        bad: tuple[int, ...] = (),
        multi_label: bool = False,
        frames: int = 4,
        size: int = 32,
    ) -> None:
        self.n, self.views, self.seed, self.bad, self.multi_label = n, views, seed, set(bad), multi_label
        self.frames, self.size = frames, size

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = f"/data/tiny/val_{index:03d}.mp4"
        if index in self.bad:
            return {"error": f"{path}: file not found (test)", "index": index, "path": path}
        label = index % NUM_CLASSES
        clips = torch.stack(
            [_clip(index * 10 + v, label, self.seed, self.frames, self.size) for v in range(self.views)]
        )
        if self.multi_label:
            target = torch.zeros(NUM_CLASSES)
            target[label] = 1
            target[(label + 1) % NUM_CLASSES] = float(index % 2)
            return {"clips": clips, "label": target, "index": index, "path": path}
        return {"clips": clips, "label": torch.tensor(label), "index": index, "path": path}


class one_thread:
    """Context manager: torch on one thread (the test machine's 2 cores are shared; threads contend)."""

    def __enter__(self) -> None:
        self.before = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc: Any) -> None:
        torch.set_num_threads(self.before)


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def tiny_config(work_dir: str | Path, **train: Any) -> dict[str, Any]:
    """A complete config for the tiny model (keys as in haltingvt/configs/_minik_base.yaml)."""
    cfg = load_config("minik_g03_b10")
    cfg["name"] = "tiny"
    cfg["model"] = dict(TINY_MODEL)
    cfg["init"]["pretrained"] = None
    cfg["loss"]["ponder_token_scale"] = 5e-3
    cfg["data"].update(num_workers=0, clip_len=4, crop_size=32)
    cfg["train"].update(
        epochs=2,
        batch_size=4,
        lr=1e-3,
        scale_lr=False,
        weight_decay=1e-4,
        warmup_epochs=1,
        warmup_start_factor=0.1,
        grad_clip=5.0,
        log_interval=2,
        ckpt_interval=0,
        work_dir=str(work_dir),
        seed=0,
        val_interval=1,
    )
    cfg["test"].update(batch_size=4)
    cfg["train"].update(train)
    return cfg


def datasets(
    train_n: int = 24, val_n: int = 9, bad: tuple[int, ...] = (), delay: float = 0.0, multi_label: bool = False
) -> dict[str, Dataset]:
    return {
        "train": TinyTrainSet(train_n, bad=bad, delay=delay, multi_label=multi_label),
        "val": TinyEvalSet(val_n, multi_label=multi_label),
    }


def main(argv: list[str]) -> int:
    if argv[0] == "train":
        cfg = json.loads(Path(argv[1]).read_text())
        extra = cfg.pop("_test", {})
        summary = train(
            cfg,
            resume="--resume" in argv,
            device="cpu",
            progress=False,
            datasets=datasets(extra.get("train_n", 24), extra.get("val_n", 9), delay=extra.get("delay", 0.0)),
        )
        distributed.cleanup()
        print("SUMMARY " + json.dumps({"optimizer_steps": summary["optimizer_steps"]}))
        return 0
    if argv[0] == "eval":
        cfg = json.loads(Path(argv[1]).read_text())
        info = distributed.setup("cpu")
        model = haltingvt.create_model(cfg["model"])
        haltingvt.load_checkpoint(model, argv[2])
        dataset = TinyEvalSet(11, views=2, bad=(4,), multi_label=cfg["loss"]["multi_label"])
        metrics = evaluate(model, cfg, "val", "cpu", dataset=dataset, progress=False, dump=argv[3] + ".pred.json")
        if info.is_main:
            Path(argv[3]).write_text(json.dumps(metrics))
        distributed.cleanup()
        return 0
    raise SystemExit(f"unknown command {argv[0]}")


if __name__ == "__main__":  # the callers put the repository root on PYTHONPATH (subprocess_env)
    raise SystemExit(main(sys.argv[1:]))
