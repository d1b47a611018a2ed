"""Training (docs/design.md, section 2). One process, or many with torchrun:

    haltingvt train minik_g03_b10                                   # one GPU (or the CPU)
    torchrun --nproc_per_node 8 -m haltingvt.cli train minik_g03_b10  # one node, 8 GPUs
    haltingvt train minik_g03_b10 --resume                          # continue from work_dir/latest.pth

The recipe: DeiT-S ImageNet init, Adam (weight decay except on the embeddings, biases and norms),
linear warm-up then cosine decay per optimizer step, gradient-norm clipping, and the loss
action CE + ponder cost + motion CE on real/static clip pairs. Halting runs in ``train.execution``: compact
(default: halted tokens removed, the masked loss and gradients at a fraction of the cost) or masked (the
release's computation).

Reading order: :func:`train` builds a :class:`Trainer` and calls :meth:`Trainer.fit`, which runs epochs of
:meth:`Trainer.train_step` (one micro-batch; every ``accum_steps`` of them end in :meth:`Trainer.optimizer_step`),
logs every ``train.log_interval`` steps (:meth:`Trainer.log_step`) and ends each epoch with
:meth:`Trainer.end_epoch` (bad samples, validation, checkpoints).

Checkpoints in the work dir: ``latest.pth`` (every ``train.ckpt_interval`` optimizer steps and at the
end of every epoch; holds optimizer, scheduler, AMP scaler and RNG states so a killed run resumes
where it was), ``epoch_N.pth`` and ``best.pth`` (best validation top-1, or mAP for multi-label).
Logs: ``train.log``, ``train_log.csv``, ``val_log.csv``, TensorBoard events in ``tb/``, and
``summary.json`` and ``curves.png`` (:func:`haltingvt.plot.plot_run`) at the end.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from collections.abc import Mapping, Sized
from contextlib import nullcontext
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn as nn
import yaml
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from .. import data
from ..config import ConfigError, check_model_size, load_config
from ..data.errors import DataError
from ..flops import clip_gflops, dense_gflops
from ..io.atomic import atomic_write
from ..io.textsafe import escape
from ..models import HaltingVT, HaltingVTLoss, create_model, load_checkpoint
from ..models.weights import describe_init
from ..plot import plot_after_training
from . import distributed
from .amp import autocast
from .checkpoint import Checkpointer, TrainState, resume_path
from .evaluate import evaluate, format_metrics
from .guards import NonFiniteLossError, loss_problem, stop_message, weights_problem
from .lock import WorkDirLock
from .metrics import top1_hits
from .runlog import RunLog

#: Parameters never weight-decayed (the release's paramwise setting).
NO_DECAY_NAMES = ("cls_token", "pos_embed", "time_embed")


# ----------------------------------------------------------------------------- building blocks
def build_optimizer(
    model: nn.Module, lr: float, weight_decay: float, no_decay_bias_norm: bool = True, name: str = "adam"
) -> torch.optim.Optimizer:
    """Adam (or AdamW) with two parameter groups: decayed weights, and the rest.

    cls_token/pos_embed/time_embed are never decayed (release). With ``no_decay_bias_norm`` biases and
    LayerNorm weights (every 1-D parameter) are not decayed either, as is usual for ViTs.
    """
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for pname, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = pname.split(".")[-1] in NO_DECAY_NAMES or (no_decay_bias_norm and p.ndim <= 1)
        (no_decay if skip else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise ConfigError(f"train.optimizer must be 'adam' or 'adamw', got {name!r}")


def warmup_cosine(total_steps: int, warmup_steps: int, start_factor: float):
    """lr factor per optimizer step: linear from start_factor to 1 over warmup_steps, then cosine to 0."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return start_factor + (1.0 - start_factor) * step / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def effective_lr(tc: Mapping[str, Any], world_size: int) -> float:
    """Linear scaling rule: train.lr is for train.base_batch_size samples per optimizer step."""
    total = tc["batch_size"] * world_size * tc["accum_steps"]
    if tc["scale_lr"]:
        return tc["lr"] * total / tc["base_batch_size"]
    return tc["lr"]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _seed_worker(worker_id: int) -> None:
    # torch seeds python's random and torch in each worker; numpy needs it too.
    np.random.seed(torch.initial_seed() % 2**32)


def ponder_weight(step: int, start_steps: float, ramp_steps: float) -> float:
    """Factor on the ponder loss at optimizer step ``step``: 0 before ``start_steps``, then linear to 1."""
    if step < start_steps:
        return 0.0
    return 1.0 if ramp_steps <= 0 else min(1.0, (step - start_steps) / ramp_steps)


class Meters:
    """Named running sums over the micro-batches since the last log line (summed over processes when read)."""

    NAMES = ("loss", "loss_action", "loss_ponder", "loss_motion", "acc", "motion_acc", "clips", "gflops")

    def __init__(self, num_layers: int, device: torch.device) -> None:
        # One tensor, so that one all-reduce sums them all; tokens entering each halting layer come last.
        self.sums = torch.zeros(len(self.NAMES) + num_layers, device=device)

    def add(self, weight: float, tokens: torch.Tensor, **values: torch.Tensor | float) -> None:
        """values: a sum for each of NAMES (tensors or floats); tokens: (n,) summed over the clips."""
        row = torch.stack(
            [torch.as_tensor(values[k], dtype=torch.float32, device=self.sums.device) for k in self.NAMES]
        )
        self.sums += weight * torch.cat([row, tokens])

    def read(self) -> tuple[dict[str, float], list[float]]:
        """(sums by name, token sums per layer), summed over all processes; then the meters restart."""
        total = distributed.all_reduce(self.sums.clone()).tolist()
        self.sums.zero_()
        return dict(zip(self.NAMES, total)), total[len(self.NAMES) :]

    def state(self) -> torch.Tensor:
        """This process's partial sums (for a checkpoint: a resumed run's next log row covers the same steps)."""
        return self.sums.detach().cpu().clone()

    def load(self, sums: Any) -> bool:
        """Restore :meth:`state`; False (the meters stay at zero) when ``sums`` does not fit."""
        if not isinstance(sums, torch.Tensor) or sums.shape != self.sums.shape or not sums.is_floating_point():
            return False
        self.sums.copy_(sums.to(self.sums.device, self.sums.dtype))
        return True


# ----------------------------------------------------------------------------- the trainer
class Trainer:
    """One training run; see the module docstring for the reading order."""

    def __init__(
        self,
        cfg: Mapping[str, Any],
        resume: bool | str = False,
        device: str | None = None,
        datasets: Mapping[str, Dataset] | None = None,
        progress: bool = True,
    ) -> None:
        # ---- set-up: processes, work dir (locked: one training per work dir), seeds
        self.cfg = cfg = load_config(cfg)  # a partial dict gets the defaults; a loaded config stays as it is
        check_model_size(cfg["model"])  # the limit a loaded checkpoint is held to, before anything is allocated
        self.tc = cfg["train"]
        self.ddp = ddp = distributed.setup(device)
        self.device, self.master, self.progress = ddp.device, ddp.is_main, progress
        self.work_dir = Path(self.tc["work_dir"] or Path("work_dirs") / cfg.get("name", "run"))
        self.lock = WorkDirLock(self.work_dir)
        busy: BaseException | None = None
        if self.master:
            try:
                self.lock.acquire()
            except BaseException as err:  # noqa: BLE001 - every process stops together, below
                busy = err
        failed = torch.tensor([0.0 if busy is None else 1.0], device=self.device)
        if distributed.all_reduce(failed, "max").item() > 0:
            if busy is not None:
                raise busy
            raise ConfigError(f"{self.work_dir}: the main process could not lock the work dir", "train.work_dir")
        try:
            self._build(resume, datasets)
        except BaseException:
            self.lock.release()
            raise

    def _build(self, resume: bool | str, datasets: Mapping[str, Dataset] | None) -> None:
        cfg, tc, ddp = self.cfg, self.tc, self.ddp
        self.accum, self.batch_size, self.epochs = tc["accum_steps"], tc["batch_size"], tc["epochs"]
        self.multi_label = cfg["loss"]["multi_label"]
        self.val_key = "mAP" if self.multi_label else "top1"
        if tc["amp"] == "fp16" and self.device.type != "cuda":
            raise ConfigError("train.amp=fp16 needs a CUDA device; use bf16 (or none) on the CPU")
        seed_everything(tc["seed"] + ddp.rank)

        # ---- data: each process reads its own shard; the order is a function of (seed, epoch) only
        datasets = dict(datasets or {})
        self.train_set = datasets["train"] if "train" in datasets else data.build_dataset(cfg, "train")
        self.val_set = None
        if tc["val_interval"] > 0:
            self.val_set = datasets["val"] if "val" in datasets else data.build_dataset(cfg, "val")
        base_sampler: DistributedSampler[int] = DistributedSampler(
            self.train_set, num_replicas=ddp.world_size, rank=ddp.rank, shuffle=True, seed=tc["seed"], drop_last=True
        )
        self.sampler = distributed.ResumableSampler(base_sampler)
        # The loader's own generator, reseeded every epoch, seeds the workers: a resumed epoch gets the same
        # worker seeds as the interrupted one. Workers are not persistent, so each epoch starts them afresh.
        self.loader_rng = torch.Generator()
        self.loader = DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            sampler=self.sampler,
            num_workers=cfg["data"]["num_workers"],
            collate_fn=data.collate_train,
            drop_last=True,
            pin_memory=self.device.type == "cuda",
            worker_init_fn=_seed_worker,
            generator=self.loader_rng,
        )
        # A partial accumulation at the end of an epoch is dropped.
        self.micro_per_epoch = (len(base_sampler) // self.batch_size) // self.accum * self.accum
        self.steps_per_epoch = self.micro_per_epoch // self.accum
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"the train set has {len(cast(Sized, self.train_set))} samples: fewer than one optimizer step of "
                f"train.batch_size x processes x train.accum_steps = "
                f"{self.batch_size * ddp.world_size * self.accum}"
            )
        self.total_steps = self.epochs * self.steps_per_epoch

        # ---- model, optimizer, schedule, loss
        self.model = create_model(cfg["model"])
        self.resume_from = resume_path(resume, self.work_dir)
        self.init_meta = None  # how init.pretrained went in (logged once the run log is open)
        if self.resume_from is None and cfg["init"]["pretrained"]:
            self.init_meta = load_checkpoint(self.model, cfg["init"]["pretrained"], init=True)
        self.model.to(self.device)
        self.lr = effective_lr(tc, ddp.world_size)
        self.optimizer = build_optimizer(
            self.model, self.lr, tc["weight_decay"], tc["no_decay_bias_norm"], tc["optimizer"]
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            warmup_cosine(
                self.total_steps, int(round(tc["warmup_epochs"] * self.steps_per_epoch)), tc["warmup_start_factor"]
            ),
        )
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=tc["amp"] == "fp16")
        self.loss_fn = HaltingVTLoss.from_config(cfg["loss"])
        # Ponder schedule (both 0 by default: the release's constant weight): weight 0 for the first
        # loss.ponder_start_epoch epochs, then a linear ramp to ponder_token_scale over loss.ponder_warmup_epochs.
        # For runs from scratch, where tokens learn to halt before the action loss carries any signal. With Adam a
        # small weight already moves the halting channel at nearly full speed, so a ramp alone delays little.
        self.ponder_start = cfg["loss"]["ponder_start_epoch"] * self.steps_per_epoch
        self.ponder_ramp = cfg["loss"]["ponder_warmup_epochs"] * self.steps_per_epoch
        # loss.target_gflops_ratio (null: the release's constant weight), a compute target: the ponder term acts only
        # on micro-batches whose real clips cost more than this fraction of the dense model's GFLOPs, so tokens halt
        # down to the target and no further. A fixed weight has no such stop: halted tokens get no gradient to
        # resume, and on slow motion the demo's weight halted nearly every token after the first joint layer
        # before the model had learned the motion (README "Motion direction").
        self.compute_target = cfg["loss"]["target_gflops_ratio"]
        self.dense_gflops = dense_gflops(self.model.arch)

        # ---- resume: weights, optimizer, schedule, scaler, RNG, position in the epoch
        self.checkpointer = Checkpointer(
            self.work_dir,
            cfg,
            self.model,
            self.optimizer,
            self.scheduler,
            self.scaler,
            ddp.world_size,
            self.master,
            classes=getattr(self.train_set, "classes", None),
        )
        self.state = TrainState()
        changed: list[str] = []
        if self.resume_from is not None:
            self.state, changed = self.checkpointer.restore(self.resume_from, ddp.rank, self.lr)
        # Log rows after the checkpoint's step (all of them on a fresh start) are from a run that was cut
        # short: they are redone.
        self.log = RunLog(self.work_dir, self.master, self.state.step)
        if self.lock.previous:
            self.log.line(
                f"took over the lock of a run that ended without releasing it (PID "
                f"{self.lock.previous.get('pid')} on {self.lock.previous.get('host')})"
            )
        if resume is not False and self.resume_from is None:
            self.log.line(f"no checkpoint in {self.work_dir} to resume from: starting from scratch")
        if changed:
            self.log.line(f"resuming with changed settings (they take effect): {'; '.join(changed)}")
        if self.master:
            text = yaml.safe_dump(cfg, sort_keys=False)
            atomic_write(self.work_dir / "config.yaml", lambda f: f.write(text.encode()))

        # The model the steps run: DDP-wrapped with several processes (fc_motion gets no gradient without motion loss).
        self.net: nn.Module = self.model
        if ddp.enabled:
            self.net = DDP(
                self.model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=not cfg["loss"]["motion_loss"],
            )
        self.meters = Meters(self.model.num_halting_layers, self.device)
        # This process's part of the epoch in progress: samples read and skipped (kept in checkpoints with the
        # meters' partial sums, so that a run resumed mid-epoch logs the same rows and counts as one never cut).
        self.epoch_read, self.epoch_skipped = 0, []
        progress = self.checkpointer.restored_progress
        if progress is not None:
            self.meters.load(progress.get("meters"))
            if self.state.iteration > 0:
                self.epoch_read, self.epoch_skipped = progress["read"], list(progress["skipped"])
        self.last_batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.tick = time.time()  # start of the current log interval (clips/s)

    # ------------------------------------------------------------------ the loop
    def fit(self) -> dict[str, Any]:
        """Train to the last epoch; returns the summary (also written to ``work_dir/summary.json``)."""
        ddp, state = self.ddp, self.state
        self.log.line(
            f"training {self.cfg.get('name')} on {ddp.world_size} x {self.device.type}: "
            f"{len(cast(Sized, self.train_set))} train "
            f"samples, {self.steps_per_epoch} steps/epoch x {self.epochs} epochs, batch {self.batch_size} x "
            f"{ddp.world_size} x {self.accum} (accum), lr {self.lr:.3g}{' (scaled)' if self.tc['scale_lr'] else ''}, "
            f"amp {self.tc['amp']}, {self.tc['execution']} execution"
        )
        if self.resume_from is not None:
            self.log.line(
                f"resumed from {self.resume_from}: epoch {state.epoch + 1}, iteration {state.iteration}, "
                f"step {state.step}"
            )
        if self.init_meta is not None:
            self.log.line(describe_init(self.cfg["init"]["pretrained"], self.init_meta))
        start_time = time.time()
        try:
            try:
                for epoch in range(state.epoch, self.epochs):
                    state.epoch = epoch
                    self.train_epoch()
                    self.end_epoch()
            except BaseException:
                self.log.close()
                raise
            return self.summary(time.time() - start_time)
        finally:
            self.lock.release()

    def train_epoch(self) -> None:
        """Run the rest of the current epoch (from ``state.iteration``); this process's samples read and
        skipped add up in ``epoch_read`` and ``epoch_skipped``."""
        state, tc = self.state, self.tc
        if state.iteration == 0:
            self.epoch_read, self.epoch_skipped = 0, []
        self.sampler.set_epoch(state.epoch, skip=state.iteration * self.batch_size)
        self.loader_rng.manual_seed(tc["seed"] * 1_000_003 + state.epoch * 1009 + self.ddp.rank)
        self.net.train()
        self.tick = time.time()
        bar = tqdm(
            total=self.steps_per_epoch,
            initial=state.iteration // self.accum,
            desc=f"epoch {state.epoch + 1}/{self.epochs}",
            disable=not (self.master and self.progress),
            dynamic_ncols=True,
        )
        for batch in self.loader:
            if state.iteration >= self.micro_per_epoch:
                break
            for message in batch["skipped"]:  # also listed again in the epoch summary
                (self.log.line if self.master else print)(
                    f"[rank {self.ddp.rank}] skipped bad sample: {escape(message)}"
                )
            self.epoch_skipped.extend(batch["skipped"])
            self.epoch_read += len(batch["path"])
            self.train_step(batch)
            if state.iteration % self.accum:
                continue  # gradients accumulate until the last micro-batch of the group
            grad_norm = self.optimizer_step()
            bar.update(1)
            if state.step % tc["log_interval"] == 0 or state.iteration == self.micro_per_epoch:
                row = self.log_step(grad_norm)
                bar.set_postfix(loss=f"{row['loss']:.3f}", acc=f"{100 * row['acc']:.0f}%")
            if (
                tc["ckpt_interval"]
                and state.step % tc["ckpt_interval"] == 0
                and state.iteration < self.micro_per_epoch
                and self._epoch_counts()[0] > 0
            ):  # never a checkpoint of an epoch that has read nothing yet
                self.save(["latest.pth"])
        bar.close()
        state.iteration = 0

    def _epoch_counts(self) -> tuple[int, int]:
        """(samples read, samples skipped) in the epoch so far, over all processes."""
        counts = torch.tensor([float(self.epoch_read), float(len(self.epoch_skipped))], device=self.device)
        read, skipped = distributed.all_reduce(counts).tolist()
        return int(read), int(skipped)

    def train_step(self, batch: Mapping[str, Any]) -> None:
        """Forward and backward of one micro-batch (real/static clip pairs); adds to the meters."""
        state = self.state
        clips, labels, motion = batch["clips"], batch["label"], batch["motion_label"]
        weight = 1.0
        if clips.shape[0] == 0:
            # Every sample was bad: run a zero-weight dummy so all processes still meet in all-reduce.
            clips, labels, motion, weight = _dummy_batch(self.model, self.multi_label)
        clips = data.normalize(clips.to(self.device, non_blocking=True))
        labels, motion = labels.to(self.device, non_blocking=True), motion.to(self.device, non_blocking=True)
        self.last_batch = (clips, labels, motion)  # for the check of the weights before each save

        last_micro = (state.iteration + 1) % self.accum == 0
        # Gradients are all-reduced only on the last micro-batch of an accumulation.
        sync_later = self.ddp.enabled and not last_micro and isinstance(self.net, DDP)
        with cast(DDP, self.net).no_sync() if sync_later else nullcontext():
            with autocast(self.device, self.tc["amp"]):
                out = self.net(clips, execution=self.tc["execution"])
                terms = self.loss_fn(out, labels, motion, ponder_factor=self.ponder_factor(out, clips))
            self._check_finite(terms)
            self.scaler.scale(terms.total * (weight / self.accum)).backward()
        state.iteration += 1

        with torch.no_grad():
            n = float(clips.shape[0])
            counts = out.token_counts.float()
            real = slice(0, None, 2)  # accuracy on the real clips only (odd rows are the static clips)
            self.meters.add(
                weight,
                counts.sum(dim=0),
                loss=n * terms.total.detach().float(),
                loss_action=n * terms.action.detach().float(),
                loss_ponder=n * terms.ponder.detach().float(),
                loss_motion=n * terms.motion.detach().float(),
                acc=top1_hits(out.logits.float(), labels)[real].sum(),
                motion_acc=(out.motion_logits.argmax(1) == motion).float().sum(),
                clips=n,
                gflops=clip_gflops(self.model.arch, counts, clips.shape[2], clips.shape[-1]).sum().item(),
            )

    def optimizer_step(self) -> float:
        """Clip gradients, step optimizer, scaler and schedule; returns the gradient norm (NaN when not clipped)."""
        grad_norm = float("nan")
        if self.tc["grad_clip"]:
            self.scaler.unscale_(self.optimizer)
            grad_norm = float(nn.utils.clip_grad_norm_(self.model.parameters(), self.tc["grad_clip"]))
            if not math.isfinite(grad_norm) and not self.scaler.is_enabled():
                raise NonFiniteLossError(self._bad_message(f"gradient norm is {grad_norm}", self.state.iteration))
        self.scaler.step(self.optimizer)  # fp16: skipped when gradients overflowed, the scale shrinks
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.state.step += 1
        return grad_norm

    def ponder_factor(self, out: Any, clips: torch.Tensor) -> float:
        """Factor on loss.ponder_token_scale for this micro-batch: the start/ramp schedule, and 0 when a compute
        target is set and the batch's real clips (even rows) cost no more than it."""
        factor = ponder_weight(self.state.step, self.ponder_start, self.ponder_ramp)
        if factor and self.compute_target is not None:
            counts = out.token_counts[0::2].detach().float()
            cost = clip_gflops(self.model.arch, counts, clips.shape[2], clips.shape[-1]).mean().item()
            factor *= float(cost > self.compute_target * self.dense_gflops)
        return factor

    def log_step(self, grad_norm: float) -> dict[str, Any]:
        """One log line and CSV/TensorBoard row of the meters since the last one."""
        state = self.state
        m, tokens = self.meters.read()
        clips = max(m["clips"], 1.0)
        elapsed = time.time() - self.tick
        row = {
            "epoch": state.epoch + 1,
            "step": state.step,
            "lr": self.optimizer.param_groups[0]["lr"],
            "loss": m["loss"] / clips,
            "loss_action": m["loss_action"] / clips,
            "loss_ponder": m["loss_ponder"] / clips,
            "loss_motion": m["loss_motion"] / clips,
            "acc": m["acc"] / max(clips / 2, 1.0),
            "motion_acc": m["motion_acc"] / clips,
            "gflops_per_clip": m["gflops"] / clips,
            "clips_per_s": m["clips"] / max(elapsed, 1e-9),
            "grad_norm": grad_norm,
            **{f"tokens_L{j}": v / clips for j, v in enumerate(tokens)},
        }
        token_text = " ".join(f"{v / clips:.0f}" for v in tokens)
        self.log.line(
            f"epoch {state.epoch + 1} step {state.step}/{self.total_steps} loss {row['loss']:.4f} "
            f"(action {row['loss_action']:.4f} ponder {row['loss_ponder']:.2f} motion "
            f"{row['loss_motion']:.4f}) acc {100 * row['acc']:.1f}% motion acc "
            f"{100 * row['motion_acc']:.1f}% tokens [{token_text}] GFLOPs {row['gflops_per_clip']:.2f} "
            f"lr {row['lr']:.3g} {row['clips_per_s']:.1f} clips/s"
        )
        self.log.row("train_log.csv", row, state.step)
        state.last_log = row
        self.tick = time.time()
        return row

    def end_epoch(self) -> None:
        """Bad samples of all processes, validation, then latest/epoch_N(/best) checkpoints.

        An epoch that read no sample at all stops the run (DataError) before anything is saved; one that
        skipped more than ``train.max_skip_ratio`` of its samples warns on stderr and in the log."""
        state, epoch = self.state, self.state.epoch
        all_skipped = [m for part in distributed.all_gather_objects(self.epoch_skipped) for m in part]
        read = self._epoch_counts()[0]
        total = read + len(all_skipped)
        self.log.line(
            f"epoch {epoch + 1} done: step {state.step}, {len(all_skipped)} bad sample(s) skipped"
            + "".join(f"\n  skipped: {escape(m)}" for m in all_skipped)
        )
        if read == 0:
            first = " ".join(str(all_skipped[0]).split())[:300] if all_skipped else "no sample"
            latest = self.work_dir / "latest.pth"
            kept = f"the last checkpoint is {latest}" if latest.exists() else "no checkpoint was written"
            raise DataError(
                f"epoch {epoch + 1}: none of the {total} training samples could be read (the first: "
                f"{first}); training stopped without saving this epoch, {kept}"
            )
        state.skipped_total += len(all_skipped)
        if len(all_skipped) > self.tc["max_skip_ratio"] * total:
            warning = (
                f"warning: epoch {epoch + 1}: {len(all_skipped)} of {total} training samples "
                f"({len(all_skipped) / total:.0%}) could not be read, more than train.max_skip_ratio = "
                f"{self.tc['max_skip_ratio']:g}; the epoch trained on {read} (the skipped files are listed in "
                f"{self.work_dir / 'train.log'})"
            )
            self.log.line(warning)
            if self.master:
                print(f"haltingvt train: {warning}", file=sys.stderr, flush=True)
        names = [f"epoch_{epoch + 1}.pth"]
        if self.val_set is not None and ((epoch + 1) % self.tc["val_interval"] == 0 or epoch + 1 == self.epochs):
            val = evaluate(
                self.model, self.cfg, "val", self.device, dataset=self.val_set, progress=self.master and self.progress
            )
            state.last_val = val
            improved = state.best is None or val[self.val_key] > state.best["value"]
            if improved:
                state.best = {"metric": self.val_key, "value": val[self.val_key], "epoch": epoch + 1}
                names.append("best.pth")
            self.log.line(
                f"epoch {epoch + 1} validation" + (" (new best)" if improved else "") + ":\n" + format_metrics(val)
            )
            self.log.row(
                "val_log.csv",
                {
                    "epoch": epoch + 1,
                    "step": state.step,
                    **{
                        k: val.get(k)
                        for k in ("top1", "top5", "mean_class_acc", "mAP", "gflops_per_clip", "clips_per_second")
                        if k in val
                    },
                },
                state.step,
            )
        state.epoch, state.iteration = epoch + 1, 0  # the checkpoint resumes at the next epoch
        # latest.pth last: until it is written, a resumed run redoes this epoch end and writes every file again.
        self.save(names + ["latest.pth"])

    # ------------------------------------------------------------------ checkpoints, checks, summary
    def save(self, names: list[str]) -> None:
        """Checkpoint the run (all processes take part); never with weights that are not good.

        Finite weights can still be useless: after a diverging step they may be ~1e28 and give NaN at once.
        So the weights must also give a finite loss and finite gradients on the last training batch;
        otherwise the run stops and the previous checkpoints stay as they are.
        """
        problem = self._weights_problem()
        bad = torch.tensor([0.0 if problem is None else 1.0], device=self.device)
        if distributed.all_reduce(bad, "max").item() > 0:
            # (At an epoch end the state already points at iteration 0 of the next epoch.)
            raise NonFiniteLossError(
                self._bad_message(
                    problem or "another process's weights are not good",
                    self.state.iteration,
                    kept="saving these weights",
                )
            )
        progress = {"meters": self.meters.state(), "read": self.epoch_read, "skipped": list(self.epoch_skipped)}
        self.checkpointer.save(names, self.state, progress)

    def _weights_problem(self) -> str | None:
        """None when the weights are good to save, else what is wrong (see guards.weights_problem)."""
        return weights_problem(self.model, self.loss_fn, self.last_batch, self.device, self.tc["amp"])

    def _check_finite(self, terms) -> None:
        """Stop every process together when any process's loss is NaN/inf."""
        what = loss_problem(terms)
        if what is not None:
            raise NonFiniteLossError(self._bad_message(what))

    def _bad_message(
        self, what: str, iteration: int | None = None, kept: str = "applying or saving this update"
    ) -> str:
        """iteration: the micro-batch at fault (default: the one in progress)."""
        return stop_message(what, self.state, self.work_dir, self.resume_from, iteration, kept)

    def summary(self, seconds: float) -> dict[str, Any]:
        state, work_dir = self.state, self.work_dir
        summary = {
            "config": self.cfg.get("name"),
            "work_dir": str(work_dir),
            "epochs": self.epochs,
            "optimizer_steps": state.step,
            "steps_per_epoch": self.steps_per_epoch,
            "world_size": self.ddp.world_size,
            "total_batch_size": self.batch_size * self.ddp.world_size * self.accum,
            "lr": self.lr,
            "amp": self.tc["amp"],
            "best": state.best,
            "last_val": state.last_val,
            "skipped_samples": state.skipped_total,
            "last_log": state.last_log,
            "wall_seconds": round(seconds, 2),
            "checkpoints": {
                "latest": str(work_dir / "latest.pth"),
                "best": str(work_dir / "best.pth") if state.best else None,
            },
        }
        if self.master:
            atomic_write(work_dir / "summary.json", lambda f: f.write(json.dumps(summary, indent=1).encode()))
            plot_after_training(work_dir, self.log.line)  # never raises: a picture must not fail a run
            self.log.line(
                f"done: {state.step} optimizer steps; best {json.dumps(state.best)}; summary in "
                f"{work_dir / 'summary.json'}"
            )
            self.log.close()
        return summary


def train(
    cfg: Mapping[str, Any],
    resume: bool | str = False,
    device: str | None = None,
    *,
    datasets: Mapping[str, Dataset] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train per ``cfg``; returns the summary (also written to ``<work_dir>/summary.json``).

    resume: False; True to continue from ``<work_dir>/latest.pth`` if it exists; or a checkpoint path.
    datasets: optional {"train": ..., "val": ...} to use instead of ``haltingvt.data.build_dataset``.
    Under torchrun every process runs this function; only rank 0 writes files.
    Raises NonFiniteLossError when the loss becomes NaN/inf (the last checkpoint stays usable).
    """
    return Trainer(cfg, resume, device, datasets, progress).fit()


def _dummy_batch(model: HaltingVT, multi_label: bool):
    """A zero-weight stand-in for a batch whose samples were all unreadable: clips, labels, motion, weight."""
    clips = torch.zeros(2, 3, model.num_frames, model.img_size, model.img_size, dtype=torch.uint8)
    if multi_label:
        labels = torch.zeros(2, model.num_classes)
        labels[:, 0] = 1
    else:
        labels = torch.zeros(2, dtype=torch.long)
    return clips, labels, torch.tensor([1, 0]), 0.0
