"""Training state in checkpoints: RNG states, the resume path, and the checkpoint bundle of a run.

Model weights (reading any format, converting keys, the atomic writer) are :mod:`haltingvt.models.weights`'
business; this module adds what a *training* checkpoint holds on top: optimizer, scheduler, AMP scaler,
the RNG states of every process and the position in the epoch, so a killed run resumes exactly.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from ..config import ConfigError, load_config
from ..io.errors import CheckpointError, error_text
from ..models.weights import model_payload, read_checkpoint, save_checkpoint
from . import distributed


@dataclass
class TrainState:
    """Where a run is: ``epoch`` (0-based, the one in progress), ``iteration`` (micro-batches done in it),
    ``step`` (optimizer steps done), the best validation result so far, the bad samples skipped, and the
    last validation metrics and log row (so that a run resumed after its last checkpoint writes the same
    summary)."""

    epoch: int = 0
    iteration: int = 0
    step: int = 0
    best: dict[str, Any] | None = None
    skipped_total: int = 0
    last_val: dict[str, Any] | None = None
    last_log: dict[str, Any] | None = None


#: Settings a resumed run must share with its checkpoint: they make the model, the data and its order, and
#: what one optimizer step is. Everything else may change and takes effect: train.lr (scale_lr,
#: base_batch_size), the schedule's length (train.epochs, warmup_*), weight decay, gradient clipping, the
#: log/checkpoint/validation intervals, data.num_workers, loss weights, test settings, the work dir.
FIXED_ON_RESUME = (
    "model.",
    "data.",
    "train.batch_size",
    "train.accum_steps",
    "train.optimizer",
    "train.seed",
    "train.amp",
    "train.no_decay_bias_norm",
)
CHANGEABLE_DATA = ("data.num_workers", "data.synthetic_cache")


def _flatten(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(changed settings that may change, changed settings that may not) between a checkpoint's config and
    the new one, each as ``"key old -> new"``."""
    a, b = _flatten(old), _flatten(new)
    allowed: list[str] = []
    fixed: list[str] = []
    for key in sorted(set(a) | set(b)):
        if key == "name" or a.get(key) == b.get(key):
            continue
        text = f"{key} {a.get(key)!r} -> {b.get(key)!r}"
        is_fixed = key.startswith(FIXED_ON_RESUME) and key not in CHANGEABLE_DATA
        (fixed if is_fixed else allowed).append(text)
    return allowed, fixed


def rng_state() -> dict[str, Any]:
    """Python, numpy, torch and CUDA RNG states, in types our checkpoint reader accepts."""
    kind, keys, pos, has_gauss, gauss = cast("tuple[str, np.ndarray, int, int, float]", np.random.get_state())
    state = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
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


def _progress(stored: Any, rank: int) -> dict[str, Any] | None:
    """Process ``rank``'s progress from a checkpoint's ``progress`` list, if it has the right types (an older
    checkpoint has none: the resumed run then logs its first row over the steps since the checkpoint)."""
    if not isinstance(stored, list) or len(stored) <= rank or not isinstance(stored[rank], Mapping):
        return None
    mine = stored[rank]
    read, skipped = mine.get("read"), mine.get("skipped")
    if not (
        isinstance(read, int)
        and not isinstance(read, bool)
        and read >= 0
        and isinstance(skipped, list)
        and all(isinstance(m, str) for m in skipped)
        and isinstance(mine.get("meters"), torch.Tensor)
    ):
        return None
    return {"meters": mine["meters"], "read": read, "skipped": skipped}


def _as_tuple(x: Any) -> Any:
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def _as_config(stored: Any) -> dict[str, Any]:
    """A checkpoint's config with every key (older files may lack new keys); {} when it is not readable."""
    try:
        return load_config(dict(stored or {}))
    except (ConfigError, TypeError, ValueError):
        return {}


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
    process writes. ``classes``: the dataset's class names, stored as data so that predict shows them.
    """

    def __init__(
        self,
        work_dir: Path,
        cfg: Mapping[str, Any],
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        scaler: torch.amp.GradScaler,
        world_size: int,
        is_main: bool,
        classes: Sequence[str] | None = None,
    ) -> None:
        self.work_dir, self.cfg, self.model, self.classes = work_dir, cfg, model, classes
        self.optimizer, self.scheduler, self.scaler = optimizer, scheduler, scaler
        self.world_size, self.is_main = world_size, is_main
        #: After :meth:`restore`: this process's ``progress`` from the checkpoint (None: none stored, or not usable).
        self.restored_progress: dict[str, Any] | None = None

    def save(self, names: list[str], state: TrainState, progress: Mapping[str, Any] | None = None) -> None:
        """Write ``work_dir/<name>`` for each name (atomically; same payload). ``progress``: this process's
        part of the epoch in progress (``meters``: the log meters' partial sums, a tensor; ``read``: samples
        read; ``skipped``: messages of samples skipped), stored per process as the RNG states are."""
        rngs = distributed.all_gather_objects(rng_state())
        progresses = distributed.all_gather_objects(dict(progress)) if progress is not None else None
        if self.is_main:
            extra = {"progress": progresses} if progresses is not None else {}
            payload = model_payload(
                self.model,
                self.cfg,
                classes=self.classes,
                **asdict(state),
                world_size=self.world_size,
                optimizer=self.optimizer.state_dict(),
                scheduler=self.scheduler.state_dict(),
                scaler=self.scaler.state_dict(),
                rng=rngs,
                **extra,
            )
            for name in names:
                save_checkpoint(self.work_dir / name, payload)

    def restore(self, path: Path, rank: int, lr: float) -> tuple[TrainState, list[str]]:
        """Load everything from ``path`` into the model/optimizer/... and this process's RNG.

        The run's config is compared with the checkpoint's: a setting of :data:`FIXED_ON_RESUME` that differs,
        or another number of processes, is a ConfigError naming the keys; the others take effect (``lr``,
        the effective learning rate, and the schedule are applied to the restored optimizer). Returns the
        state and the changed settings (``"key old -> new"``) for the log.
        """
        ckpt = read_checkpoint(path)
        if ckpt.get("format") != "haltingvt" or "optimizer" not in ckpt:
            raise CheckpointError(f"{path}: not a training checkpoint of ours (use init.pretrained for weights)")
        stored = _as_config(ckpt.get("config"))
        changed, fixed = (
            config_changes(stored, self.cfg)
            if stored
            else (["(no readable config in the checkpoint: settings not compared)"], [])
        )
        if ckpt.get("world_size") != self.world_size:
            fixed.append(f"processes {ckpt.get('world_size')} -> {self.world_size}")
        if fixed:
            raise ConfigError(
                f"--resume {path}: settings that a resumed run cannot change differ from the checkpoint's: "
                f"{'; '.join(fixed)}. Use the checkpoint's values, or start a new run from its weights with "
                f"--set init.pretrained={path}"
            )
        try:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scheduler.load_state_dict(ckpt["scheduler"])
            self.scaler.load_state_dict(ckpt["scaler"])
        except (RuntimeError, ValueError, KeyError, TypeError) as err:
            raise CheckpointError(f"{path}: cannot restore the training state: {error_text(err, 300)}") from None
        self._apply_schedule(lr)
        fields = {k: ckpt[k] for k in TrainState.__dataclass_fields__ if k in ckpt}
        state = TrainState(**fields)
        if state.epoch > self.cfg["train"]["epochs"]:
            raise ConfigError(
                f"--resume {path}: the checkpoint has done {state.epoch} epochs, more than "
                f"train.epochs={self.cfg['train']['epochs']}"
            )
        rngs = ckpt["rng"]
        set_rng_state(rngs[rank % len(rngs)])
        self.restored_progress = _progress(ckpt.get("progress"), rank)
        return state, changed

    def _apply_schedule(self, lr: float) -> None:
        """Give the restored optimizer this run's learning rate, weight decay and schedule.

        LambdaLR keeps its base lrs in its state but not its function (that is rebuilt from this run's
        config): the lr of the current step is recomputed as the scheduler itself would. With an unchanged
        config this gives the very same numbers, so a plain resume stays bit-identical.
        """
        sched = self.scheduler
        sched.base_lrs = [lr] * len(self.optimizer.param_groups)
        for group, base, factor in zip(self.optimizer.param_groups, sched.base_lrs, sched.lr_lambdas):
            group["initial_lr"] = base
            group["lr"] = base * factor(sched.last_epoch)
        self.optimizer.param_groups[0]["weight_decay"] = self.cfg["train"]["weight_decay"]  # the decayed group
