"""Training (SPEC section 2). One process, or many with torchrun:

    haltingvt train minik_g03_b10                                   # one GPU (or the CPU)
    torchrun --nproc_per_node 8 -m haltingvt.cli train minik_g03_b10  # one node, 8 GPUs
    haltingvt train minik_g03_b10 --resume                          # continue from work_dir/latest.pth

The recipe: DeiT-S ImageNet init, Adam (weight decay except on the embeddings, biases and norms),
linear warm-up then cosine decay per optimizer step, gradient-norm clipping, and the loss
action CE + ponder cost + motion CE on real/static clip pairs, with the release's masked execution.

Checkpoints in the work dir: ``latest.pth`` (every ``train.ckpt_interval`` optimizer steps and at the
end of every epoch; holds optimizer, scheduler, AMP scaler and RNG states so a killed run resumes
where it was), ``epoch_N.pth`` and ``best.pth`` (best validation top-1, or mAP for multi-label).
Logs: ``train.log``, ``train_log.csv``, ``val_log.csv``, TensorBoard events in ``tb/``, and
``summary.json`` at the end.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from ..config import ConfigError, load_config
from ..models import HaltingVTLoss, create_model
from . import distributed
from ..models.weights import CheckpointError, load_checkpoint, model_payload, read_checkpoint, save_checkpoint
from .evaluate import autocast, evaluate, format_metrics, gflops_fn

#: Parameters never weight-decayed (the release's paramwise setting).
NO_DECAY_NAMES = ("cls_token", "pos_embed", "time_embed")


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf; training stopped before the bad update was applied or saved."""


# ----------------------------------------------------------------------------- building blocks
def build_optimizer(model: nn.Module, lr: float, weight_decay: float, no_decay_bias_norm: bool = True,
                    name: str = "adam") -> torch.optim.Optimizer:
    """Adam (or AdamW) with two parameter groups: decayed weights, and the rest.

    cls_token/pos_embed/time_embed are never decayed (release). With ``no_decay_bias_norm`` biases and
    LayerNorm weights (every 1-D parameter) are not decayed either, as is usual for ViTs.
    """
    decay, no_decay = [], []
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
    total = tc["batch_size"] * world_size * tc.get("accum_steps", 1)
    if tc.get("scale_lr", False):
        return tc["lr"] * total / tc.get("base_batch_size", 128)
    return tc["lr"]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _seed_worker(worker_id: int) -> None:
    # torch seeds python's random and torch in each worker; numpy needs it too.
    np.random.seed(torch.initial_seed() % 2**32)


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


class RunLog:
    """Log lines (console + train.log), CSV rows and TensorBoard scalars; active on the main process only."""

    def __init__(self, work_dir: Path, active: bool, resume_step: int | None) -> None:
        self.active, self.work_dir = active, work_dir
        self.tb = None
        if not active:
            return
        work_dir.mkdir(parents=True, exist_ok=True)
        self.file = open(work_dir / "train.log", "a")
        if resume_step is not None:  # rows logged after the checkpoint we resume from are redone
            for name in ("train_log.csv", "val_log.csv"):
                _truncate_csv(work_dir / name, resume_step)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(work_dir / "tb"), purge_step=resume_step)
        except ImportError:
            self.line("tensorboard is not installed: no TensorBoard logs")

    def line(self, text: str) -> None:
        if self.active:
            tqdm.write(text)
            self.file.write(text + "\n")
            self.file.flush()

    def row(self, name: str, values: Mapping[str, Any], step: int) -> None:
        if not self.active:
            return
        path = self.work_dir / name
        new = not path.exists()
        with open(path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(values))
            if new:
                writer.writeheader()
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in values.items()})
        if self.tb is not None:
            prefix = name.split("_")[0]
            for key, v in values.items():
                if isinstance(v, (int, float)) and key not in ("epoch", "step") and v == v:
                    self.tb.add_scalar(f"{prefix}/{key}", v, step)

    def close(self) -> None:
        if self.active:
            if self.tb is not None:
                self.tb.close()
            self.file.close()


def _truncate_csv(path: Path, max_step: int) -> None:
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(r for r in rows if int(r["step"]) <= max_step)


def _resume_path(resume: bool | str, work_dir: Path) -> Path | None:
    if not resume:
        return None
    if resume is True or resume == "auto":
        path = work_dir / "latest.pth"
        return path if path.exists() else None  # nothing to resume: a fresh start (message below)
    if not Path(resume).is_file():
        raise CheckpointError(f"{resume}: checkpoint to resume from not found")
    return Path(resume)


def ponder_weight(step: int, start_steps: float, ramp_steps: float) -> float:
    """Factor on the ponder loss at optimizer step ``step``: 0 before ``start_steps``, then linear to 1."""
    if step < start_steps:
        return 0.0
    return 1.0 if ramp_steps <= 0 else min(1.0, (step - start_steps) / ramp_steps)


# ----------------------------------------------------------------------------- the training loop
def train(cfg: Mapping[str, Any], resume: bool | str = False, device: str | None = None, *,
          datasets: Mapping[str, Dataset] | None = None, progress: bool = True) -> dict[str, Any]:
    """Train per ``cfg``; returns the summary (also written to ``<work_dir>/summary.json``).

    resume: False; True to continue from ``<work_dir>/latest.pth`` if it exists; or a checkpoint path.
    datasets: optional {"train": ..., "val": ...} to use instead of ``haltingvt.data.build_dataset``.
    Under torchrun every process runs this function; only rank 0 writes files.
    Raises NonFiniteLossError when the loss becomes NaN/inf (the last checkpoint stays usable).
    """
    from .. import data  # imported here: the data pipeline's own imports are only needed for training

    cfg = dict(cfg)
    tc = cfg["train"]
    ddp = distributed.setup(device)
    device, master = ddp.device, ddp.is_main
    work_dir = Path(tc.get("work_dir") or Path("work_dirs") / cfg.get("name", "run"))
    accum, bs, epochs = int(tc.get("accum_steps", 1)), int(tc["batch_size"]), int(tc["epochs"])
    multi_label = bool(cfg["loss"].get("multi_label", False))
    val_key = "mAP" if multi_label else "top1"
    if tc.get("amp", "none") == "fp16" and device.type != "cuda":
        raise ConfigError("train.amp=fp16 needs a CUDA device; use bf16 (or none) on the CPU")
    seed_everything(int(tc.get("seed", 0)) + ddp.rank)

    # ---- data: each process reads its own shard; the order is a function of (seed, epoch) only
    datasets = dict(datasets or {})
    train_set = datasets["train"] if "train" in datasets else data.build_dataset(cfg, "train")
    val_interval = int(tc.get("val_interval", 1))
    val_set = None
    if val_interval > 0:
        val_set = datasets["val"] if "val" in datasets else data.build_dataset(cfg, "val")
    base_sampler = DistributedSampler(train_set, num_replicas=ddp.world_size, rank=ddp.rank, shuffle=True,
                                      seed=int(tc.get("seed", 0)), drop_last=True)
    sampler = distributed.ResumableSampler(base_sampler)
    # The loader's own generator, reseeded every epoch, seeds the workers: a resumed epoch gets the same
    # worker seeds as the interrupted one. Workers are not persistent, so each epoch starts them afresh.
    loader_rng = torch.Generator()
    loader = DataLoader(train_set, batch_size=bs, sampler=sampler, num_workers=int(cfg["data"].get("num_workers", 0)),
                        collate_fn=data.collate_train, drop_last=True, pin_memory=device.type == "cuda",
                        worker_init_fn=_seed_worker, generator=loader_rng)
    micro_per_epoch = (len(base_sampler) // bs) // accum * accum  # a partial accumulation is dropped
    steps_per_epoch = micro_per_epoch // accum
    if steps_per_epoch == 0:
        raise ConfigError(f"the train set has {len(train_set)} samples: fewer than one optimizer step of "
                          f"train.batch_size x processes x train.accum_steps = {bs * ddp.world_size * accum}")
    total_steps = epochs * steps_per_epoch

    # ---- model, optimizer, schedule
    model = create_model(cfg["model"])
    resume_from = _resume_path(resume, work_dir)
    if resume_from is None and cfg["init"].get("pretrained"):
        load_checkpoint(model, cfg["init"]["pretrained"])
    model.to(device)
    lr = effective_lr(tc, ddp.world_size)
    optimizer = build_optimizer(model, lr, float(tc["weight_decay"]), bool(tc.get("no_decay_bias_norm", True)),
                                tc.get("optimizer", "adam"))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(
        total_steps, int(round(float(tc.get("warmup_epochs", 0)) * steps_per_epoch)),
        float(tc.get("warmup_start_factor", 1.0))))
    scaler = torch.amp.GradScaler(device.type, enabled=tc.get("amp", "none") == "fp16")
    loss_fn = HaltingVTLoss.from_config(cfg["loss"])
    # Ponder schedule (both 0 by default: the release's constant weight): weight 0 for the first
    # loss.ponder_start_epoch epochs, then a linear ramp to ponder_token_scale over loss.ponder_warmup_epochs.
    # For runs from scratch, where tokens learn to halt before the action loss carries any signal. With Adam a
    # small weight already moves the halting channel at nearly full speed, so a ramp alone delays little.
    ponder_start = float(cfg["loss"].get("ponder_start_epoch", 0) or 0) * steps_per_epoch
    ponder_ramp = float(cfg["loss"].get("ponder_warmup_epochs", 0) or 0) * steps_per_epoch
    clip_gflops = gflops_fn()

    # ---- resume: weights, optimizer, schedule, scaler, RNG, position in the epoch
    start_epoch, start_micro, step, best, skipped_total = 0, 0, 0, None, 0
    if resume_from is not None:
        ckpt = read_checkpoint(resume_from)
        if ckpt.get("format") != "haltingvt" or "optimizer" not in ckpt:
            raise CheckpointError(f"{resume_from}: not a training checkpoint of ours (use init.pretrained for weights)")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        start_epoch, start_micro, step = ckpt["epoch"], ckpt["iteration"], ckpt["step"]
        best, skipped_total = ckpt.get("best"), ckpt.get("skipped_total", 0)
        rngs = ckpt["rng"]
        if ckpt.get("world_size") != ddp.world_size:
            print(f"warning: {resume_from} was written by {ckpt.get('world_size')} process(es), now "
                  f"{ddp.world_size}: the rest of epoch {start_epoch + 1} is an approximate resumption")
        set_rng_state(rngs[ddp.rank % len(rngs)])
    log = RunLog(work_dir, master, step if resume_from is not None else None)
    if resume is not False and resume_from is None:
        log.line(f"no checkpoint in {work_dir} to resume from: starting from scratch")
    if master:
        import yaml

        (work_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))

    raw_model = model
    if ddp.enabled:
        # fc_motion gets no gradient when the motion loss is off.
        model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None,
                    find_unused_parameters=not cfg["loss"].get("motion_loss", True))

    log.line(f"training {cfg.get('name')} on {ddp.world_size} x {device.type}: {len(train_set)} train samples, "
             f"{steps_per_epoch} steps/epoch x {epochs} epochs, batch {bs} x {ddp.world_size} x {accum} (accum), "
             f"lr {lr:.3g}{' (scaled)' if tc.get('scale_lr') else ''}, amp {tc.get('amp', 'none')}")
    if resume_from is not None:
        log.line(f"resumed from {resume_from}: epoch {start_epoch + 1}, iteration {start_micro}, step {step}")

    def save(path_names: list[str], epoch: int, micro: int) -> None:
        """Checkpoint (all processes take part: the RNG states of every process are kept)."""
        rngs = distributed.all_gather_objects(rng_state())
        if not all(torch.isfinite(p).all() for p in raw_model.parameters()):  # never save broken weights
            raise NonFiniteLossError(_bad_message("the weights are not finite", epoch, micro, step, work_dir,
                                                  resume_from))
        if master:
            payload = model_payload(
                raw_model, cfg, epoch=epoch, iteration=micro, step=step, best=best, skipped_total=skipped_total,
                world_size=ddp.world_size, optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                scaler=scaler.state_dict(), rng=rngs)
            for name in path_names:
                save_checkpoint(work_dir / name, payload)

    history: list[dict[str, Any]] = []
    last_val: dict[str, Any] | None = None
    n_layers = raw_model.num_halting_layers
    start_time = time.time()
    try:
        for epoch in range(start_epoch, epochs):
            sampler.set_epoch(epoch, skip=start_micro * bs)
            loader_rng.manual_seed(int(tc.get("seed", 0)) * 1_000_003 + epoch * 1009 + ddp.rank)
            model.train()
            meters = torch.zeros(8 + n_layers, device=device)  # sums, reduced over processes at log time
            epoch_skipped: list[str] = []
            tick, micro = time.time(), start_micro
            bar = tqdm(total=steps_per_epoch, initial=start_micro // accum, desc=f"epoch {epoch + 1}/{epochs}",
                       disable=not (master and progress), dynamic_ncols=True)
            for batch in loader:
                if micro >= micro_per_epoch:
                    break
                for message in batch["skipped"]:  # also listed again in the epoch summary
                    (log.line if master else print)(f"[rank {ddp.rank}] skipped bad sample: {message}")
                epoch_skipped.extend(batch["skipped"])
                clips, labels, motion = batch["clips"], batch["label"], batch["motion_label"]
                weight = 1.0
                if clips.shape[0] == 0:
                    # Every sample was bad: run a zero-weight dummy so all processes still meet in all-reduce.
                    clips, labels, motion, weight = _dummy_batch(raw_model, multi_label)
                clips = data.normalize(clips.to(device, non_blocking=True))
                labels, motion = labels.to(device, non_blocking=True), motion.to(device, non_blocking=True)

                last_micro = (micro + 1) % accum == 0
                # Gradients are all-reduced only on the last micro-batch of an accumulation.
                with model.no_sync() if ddp.enabled and not last_micro else nullcontext():
                    with autocast(device, tc.get("amp", "none")):
                        out = model(clips, execution="masked")  # the release trains with masked halting
                        terms = loss_fn(out, labels, motion, ponder_factor=ponder_weight(step, ponder_start, ponder_ramp))
                    _check_finite(terms, epoch, micro, step, work_dir, resume_from)
                    scaler.scale(terms.total * (weight / accum)).backward()
                micro += 1

                with torch.no_grad():
                    n = float(clips.shape[0])
                    real = slice(0, None, 2)
                    logits = out.logits.float()
                    if multi_label:
                        acc = (labels.float().gather(1, logits.argmax(1, keepdim=True)) > 0).float()[real].sum()
                    else:
                        acc = (logits.argmax(1) == labels)[real].float().sum()
                    counts = out.token_counts.float()
                    gfl = clip_gflops(raw_model.arch, counts, clips.shape[2], clips.shape[-1]).sum().item() \
                        if clip_gflops is not None else 0.0
                    meters += weight * torch.cat([
                        torch.stack([n * terms.total.detach().float(), n * terms.action.detach().float(),
                                     n * terms.ponder.detach().float(), n * terms.motion.detach().float(),
                                     acc, (out.motion_logits.argmax(1) == motion).float().sum(),
                                     torch.tensor(n, device=device), torch.tensor(gfl, device=device)]),
                        counts.sum(dim=0)])

                if not last_micro:
                    continue
                grad_norm = float("nan")
                if tc.get("grad_clip"):
                    scaler.unscale_(optimizer)
                    grad_norm = float(nn.utils.clip_grad_norm_(raw_model.parameters(), float(tc["grad_clip"])))
                    if not math.isfinite(grad_norm) and not scaler.is_enabled():
                        raise NonFiniteLossError(_bad_message(f"gradient norm is {grad_norm}", epoch, micro, step,
                                                              work_dir, resume_from))
                scaler.step(optimizer)  # fp16: skipped when gradients overflowed, the scale shrinks
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                step += 1
                bar.update(1)

                if step % int(tc.get("log_interval", 20)) == 0 or micro == micro_per_epoch:
                    m = distributed.all_reduce(meters.clone()).tolist()
                    clips_seen = max(m[6], 1.0)
                    elapsed = time.time() - tick
                    row = {
                        "epoch": epoch + 1, "step": step, "lr": optimizer.param_groups[0]["lr"],
                        "loss": m[0] / clips_seen, "loss_action": m[1] / clips_seen,
                        "loss_ponder": m[2] / clips_seen, "loss_motion": m[3] / clips_seen,
                        "acc": m[4] / max(clips_seen / 2, 1.0), "motion_acc": m[5] / clips_seen,
                        "gflops_per_clip": m[7] / clips_seen, "clips_per_s": m[6] / max(elapsed, 1e-9),
                        "grad_norm": grad_norm,
                        **{f"tokens_L{j}": v / clips_seen for j, v in enumerate(m[8:])},
                    }
                    tokens = " ".join(f"{v / clips_seen:.0f}" for v in m[8:])
                    log.line(f"epoch {epoch + 1} step {step}/{total_steps} loss {row['loss']:.4f} "
                             f"(action {row['loss_action']:.4f} ponder {row['loss_ponder']:.2f} motion "
                             f"{row['loss_motion']:.4f}) acc {100 * row['acc']:.1f}% motion acc "
                             f"{100 * row['motion_acc']:.1f}% tokens [{tokens}] GFLOPs {row['gflops_per_clip']:.2f} "
                             f"lr {row['lr']:.3g} {row['clips_per_s']:.1f} clips/s")
                    log.row("train_log.csv", row, step)
                    bar.set_postfix(loss=f"{row['loss']:.3f}", acc=f"{100 * row['acc']:.0f}%")
                    history.append(row)
                    meters.zero_()
                    tick = time.time()
                ckpt_interval = int(tc.get("ckpt_interval", 0))
                if ckpt_interval and step % ckpt_interval == 0 and micro < micro_per_epoch:
                    save(["latest.pth"], epoch, micro)
            bar.close()
            start_micro = 0

            # ---- end of epoch: bad samples, validation, checkpoints
            all_skipped = [m for part in distributed.all_gather_objects(epoch_skipped) for m in part]
            skipped_total += len(all_skipped)
            log.line(f"epoch {epoch + 1} done: step {step}, {len(all_skipped)} bad sample(s) skipped"
                     + "".join(f"\n  skipped: {m}" for m in all_skipped))
            names = ["latest.pth", f"epoch_{epoch + 1}.pth"]
            if val_set is not None and ((epoch + 1) % val_interval == 0 or epoch + 1 == epochs):
                last_val = evaluate(raw_model, cfg, "val", device, dataset=val_set, progress=master and progress)
                improved = best is None or last_val[val_key] > best["value"]
                if improved:
                    best = {"metric": val_key, "value": last_val[val_key], "epoch": epoch + 1}
                    names.append("best.pth")
                log.line(f"epoch {epoch + 1} validation" + (" (new best)" if improved else "") + ":\n"
                         + format_metrics(last_val))
                log.row("val_log.csv", {"epoch": epoch + 1, "step": step, **{
                    k: last_val.get(k) for k in ("top1", "top5", "mean_class_acc", "mAP", "gflops_per_clip",
                                                 "clips_per_second") if k in last_val}}, step)
            save(names, epoch + 1, 0)
    except BaseException:
        log.close()
        raise

    summary = {
        "config": cfg.get("name"), "work_dir": str(work_dir), "epochs": epochs, "optimizer_steps": step,
        "steps_per_epoch": steps_per_epoch, "world_size": ddp.world_size,
        "total_batch_size": bs * ddp.world_size * accum, "lr": lr, "amp": tc.get("amp", "none"),
        "best": best, "last_val": last_val, "skipped_samples": skipped_total,
        "last_log": history[-1] if history else None, "wall_seconds": round(time.time() - start_time, 2),
        "checkpoints": {"latest": str(work_dir / "latest.pth"),
                        "best": str(work_dir / "best.pth") if best else None},
    }
    if master:
        (work_dir / "summary.json").write_text(json.dumps(summary, indent=1))
        log.line(f"done: {step} optimizer steps; best {json.dumps(best)}; summary in {work_dir / 'summary.json'}")
        log.close()
    return summary


def _dummy_batch(model: nn.Module, multi_label: bool):
    """A zero-weight stand-in for a batch whose samples were all unreadable: clips, labels, motion, weight."""
    clips = torch.zeros(2, 3, model.num_frames, model.img_size, model.img_size, dtype=torch.uint8)
    if multi_label:
        labels = torch.zeros(2, model.num_classes)
        labels[:, 0] = 1
    else:
        labels = torch.zeros(2, dtype=torch.long)
    return clips, labels, torch.tensor([1, 0]), 0.0


def _bad_message(what: str, epoch: int, micro: int, step: int, work_dir: Path, resume_from: Path | None) -> str:
    latest = work_dir / "latest.pth"
    last = latest if latest.exists() else resume_from
    where = f"the last good checkpoint is {last}" if last else "no checkpoint was written yet"
    return (f"{what} at epoch {epoch + 1}, iteration {micro + 1} (after {step} optimizer steps); training "
            f"stopped without applying or saving this update, {where}. Lower train.lr, raise "
            f"train.warmup_epochs, use train.amp=none or check the data, then run again with --resume.")


def _check_finite(terms, epoch: int, micro: int, step: int, work_dir: Path, resume_from: Path | None) -> None:
    """Stop every process together when any process's loss is NaN/inf."""
    here = bool(torch.isfinite(terms.total.detach()))
    bad = torch.tensor([0.0 if here else 1.0], device=terms.total.device)
    if distributed.all_reduce(bad, "max").item() > 0:
        parts = ", ".join(f"{k} {float(getattr(terms, k).detach()):.4g}" for k in ("action", "ponder", "motion", "prior"))
        what = (f"the loss is {float(terms.total.detach())} ({parts})" if not here
                else "another process's loss is not finite")
        raise NonFiniteLossError(_bad_message(what, epoch, micro, step, work_dir, resume_from))


# ----------------------------------------------------------------------------- command line
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="config name (see `haltingvt configs`) or YAML path")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="config overrides, e.g. train.batch_size=8 train.work_dir=runs/x")
    parser.add_argument("--resume", nargs="?", const=True, default=False, metavar="PATH",
                        help="continue from PATH, or from <work_dir>/latest.pth when no PATH is given")
    parser.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars (log lines only)")


def run(args: argparse.Namespace) -> int:
    import sys

    cfg = load_config(args.config, args.set)
    try:
        train(cfg, resume=args.resume, device=args.device, progress=not args.no_progress)
    except NonFiniteLossError as err:
        print(f"haltingvt train: stopped: {err}", file=sys.stderr)
        return 1
    finally:
        distributed.cleanup()
    return 0
