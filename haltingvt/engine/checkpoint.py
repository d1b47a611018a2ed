"""Training state in checkpoints: RNG states, the resume path, and the checkpoint bundle of a run.

Model weights (reading any format, converting keys, the atomic writer) are :mod:`haltingvt.models.weights`'
business; this module adds what a *training* checkpoint holds on top: optimizer, scheduler, AMP scaler,
the RNG states of every process and the position in the epoch, so a killed run resumes exactly.
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from ..models.weights import CheckpointError, model_payload, read_checkpoint, save_checkpoint
from . import distributed


@dataclass
class TrainState:
    """Where a run is: ``epoch`` (0-based, the one in progress), ``iteration`` (micro-batches done in it),
    ``step`` (optimizer steps done), the best validation result so far and the bad samples skipped."""

    epoch: int = 0
    iteration: int = 0
    step: int = 0
    best: dict[str, Any] | None = None
    skipped_total: int = 0


def rng_state() -> dict[str, Any]:
    """Python, numpy, torch and CUDA RNG states, in types our checkpoint reader accepts."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    random.setstate(_as_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(x: Any) -> Any:
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def resume_path(resume: bool | str, work_dir: Path) -> Path | None:
    """The checkpoint to resume from: None for a fresh start (also when ``resume`` is True/'auto' and
    ``work_dir/latest.pth`` does not exist yet); a given path must exist."""
    if not resume:
        return None
    if resume is True or resume == "auto":
        path = work_dir / "latest.pth"
        return path if path.exists() else None
    if not Path(resume).is_file():
        raise CheckpointError(f"{resume}: checkpoint to resume from not found")
    return Path(resume)


class Checkpointer:
    """Writes and restores the training bundle: weights + optimizer + scheduler + scaler + RNG + TrainState.

    Every process takes part in :meth:`save` (the RNG states of all processes are gathered); only the main
    process writes.
    """

    def __init__(self, work_dir: Path, cfg: Mapping[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 scheduler: Any, scaler: torch.amp.GradScaler, world_size: int, is_main: bool) -> None:
        self.work_dir, self.cfg, self.model = work_dir, cfg, model
        self.optimizer, self.scheduler, self.scaler = optimizer, scheduler, scaler
        self.world_size, self.is_main = world_size, is_main

    def save(self, names: list[str], state: TrainState) -> None:
        """Write ``work_dir/<name>`` for each name (atomically; same payload)."""
        rngs = distributed.all_gather_objects(rng_state())
        if self.is_main:
            payload = model_payload(
                self.model, self.cfg, **asdict(state), world_size=self.world_size,
                optimizer=self.optimizer.state_dict(), scheduler=self.scheduler.state_dict(),
                scaler=self.scaler.state_dict(), rng=rngs)
            for name in names:
                save_checkpoint(self.work_dir / name, payload)

    def restore(self, path: Path, rank: int) -> TrainState:
        """Load everything from ``path`` into the model/optimizer/... and this process's RNG; returns the state."""
        ckpt = read_checkpoint(path)
        if ckpt.get("format") != "haltingvt" or "optimizer" not in ckpt:
            raise CheckpointError(f"{path}: not a training checkpoint of ours (use init.pretrained for weights)")
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        state = TrainState(epoch=ckpt["epoch"], iteration=ckpt["iteration"], step=ckpt["step"],
                           best=ckpt.get("best"), skipped_total=ckpt.get("skipped_total", 0))
        if ckpt.get("world_size") != self.world_size:
            print(f"warning: {path} was written by {ckpt.get('world_size')} process(es), now "
                  f"{self.world_size}: the rest of epoch {state.epoch + 1} is an approximate resumption")
        rngs = ckpt["rng"]
        set_rng_state(rngs[rank % len(rngs)])
        return state
