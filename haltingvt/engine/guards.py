"""What stops a training run: a loss that is not finite, and weights that are not good to save.

Each check is collective (every process takes part and they all stop together); the message says where
the run stopped, what was kept and what to try.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch

from . import distributed
from .amp import autocast


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf; training stopped before the bad update was applied or saved."""


def loss_problem(terms: Any) -> str | None:
    """None when the loss is finite on every process, else what is wrong (every process gets the answer)."""
    here = bool(torch.isfinite(terms.total.detach()))
    bad = torch.tensor([0.0 if here else 1.0], device=terms.total.device)
    if distributed.all_reduce(bad, "max").item() > 0:
        parts = ", ".join(
            f"{k} {float(getattr(terms, k).detach()):.4g}" for k in ("action", "ponder", "motion", "prior")
        )
        return (
            f"the loss is {float(terms.total.detach())} ({parts})"
            if not here
            else "another process's loss is not finite"
        )
    return None


def weights_problem(
    model: torch.nn.Module,
    loss_fn: Callable[..., Any],
    last_batch: tuple[Any, Any, Any] | None,
    device: torch.device,
    amp: str,
) -> str | None:
    """None when the weights are finite and give a finite loss and finite gradients on the last batch,
    else what is wrong."""
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        return "the weights are not finite"
    if last_batch is None:
        return None
    clips, labels, motion = last_batch
    params = [p for p in model.parameters() if p.requires_grad]
    # Eval mode (no drop path), a forked RNG and torch.autograd.grad (the .grad fields stay as they are):
    # the check leaves the run untouched, so runs with and without an interruption stay identical.
    # The gradients matter too: weights after a far too large step can give a finite loss whose
    # backward overflows, and a resume from them fails at once.
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), autocast(device, amp):
        model.eval()
        try:
            loss = loss_fn(model(clips, execution="masked"), labels, motion).total
            grads = torch.autograd.grad(loss, params, allow_unused=True) if torch.isfinite(loss) else []
        finally:
            model.train()
    finite_grads = all(g is None or torch.isfinite(g).all() for g in grads)
    if torch.isfinite(loss) and finite_grads:
        return None
    largest = max(float(p.detach().abs().max()) for p in model.parameters())
    what = f"a loss of {float(loss.detach())}" if not torch.isfinite(loss) else "non-finite gradients"
    return f"the weights give {what} on the last batch (largest weight {largest:.3g})"


def stop_message(
    what: str,
    state: Any,
    work_dir: Path,
    resume_from: Any,
    iteration: int | None = None,
    kept: str = "applying or saving this update",
) -> str:
    """The message of a stopped run: ``what`` went wrong at ``iteration`` (default: the micro-batch in
    progress), where the last good checkpoint is and what to try."""
    latest = work_dir / "latest.pth"
    last = latest if latest.exists() else resume_from
    where = f"the last good checkpoint is {last}" if last else "no checkpoint was written yet"
    iteration = state.iteration + 1 if iteration is None else iteration
    return (
        f"{what} at epoch {state.epoch + 1}, iteration {iteration} (after {state.step} optimizer "
        f"steps); training stopped without {kept}, {where}. Lower train.lr, raise "
        f"train.warmup_epochs, use train.amp=none or check the data, then run again with --resume."
    )
