"""Training objective (docs/design.md, section 2): action CE + ponder loss + motion CE (+ optional A-ViT prior)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import LossConfig

if TYPE_CHECKING:
    from .haltingvt import HaltingVTOutput


def action_loss(logits: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy for hard labels (B,) long or soft/multi-label targets (B, K) float.

    Multi-hot targets (ActivityNet) are normalised to a distribution per clip, as soft-label CE does.
    """
    if target.dtype in (torch.long, torch.int, torch.int64, torch.int32):
        return F.cross_entropy(logits, target, label_smoothing=label_smoothing)
    target = target.float()
    target = target / target.sum(dim=1, keepdim=True).clamp(min=1e-12)
    if label_smoothing > 0:
        target = target * (1 - label_smoothing) + label_smoothing / target.shape[1]
    return torch.sum(-target * F.log_softmax(logits, dim=1), dim=1).mean()


def distribution_prior(layer_scores: torch.Tensor, target_depth: float, std: float = 1.0) -> torch.Tensor:
    """A-ViT distribution prior: KL divergence between the halting-score distribution over layers and
    a Gaussian centred at ``target_depth`` (a layer index).

    layer_scores: (n,) mean halting score of the active tokens at each halting layer (differentiable).
    """
    n = layer_scores.shape[0]
    dist = layer_scores / layer_scores.sum().clamp(min=1e-12)
    layers = torch.arange(n, device=layer_scores.device, dtype=layer_scores.dtype)
    prior = torch.exp(-0.5 * ((layers - target_depth) / std) ** 2)
    prior = prior / prior.sum()
    return F.kl_div(dist.clamp(min=1e-10).log(), prior, reduction="sum")


#: Keys of LossConfig that configure the trainer (targets, ponder schedule), not the loss module.
TRAINER_LOSS_KEYS = ("multi_label", "ponder_start_epoch", "ponder_warmup_epochs", "target_gflops_ratio")


@dataclass
class LossTerms:
    total: torch.Tensor
    action: torch.Tensor
    ponder: torch.Tensor
    motion: torch.Tensor
    prior: torch.Tensor


class HaltingVTLoss(nn.Module):
    """loss = CE(action) + ponder_token_scale * mean(rho) + motion_weight * CE(motion) [+ prior]."""

    def __init__(
        self,
        ponder_token_scale: float = 5e-4,
        motion_loss: bool = True,
        motion_loss_weight: float = 1.0,
        label_smoothing: float = 0.0,
        static_action_loss: bool = True,
        distr_prior: bool = False,
        distr_prior_weight: float = 0.1,
        distr_target_depth: float = 7.0,
    ) -> None:
        super().__init__()
        self.ponder_token_scale = ponder_token_scale
        # The release's motion_loss_beta only switches the term on; its weight is 1 (docs/design.md, section 2).
        self.motion_weight = motion_loss_weight if motion_loss else 0.0
        self.label_smoothing = label_smoothing
        self.static_action_loss = static_action_loss
        self.distr_prior = distr_prior
        self.distr_prior_weight = distr_prior_weight
        self.distr_target_depth = distr_target_depth

    @classmethod
    def from_config(cls, cfg: LossConfig | Mapping[str, Any]) -> HaltingVTLoss:
        """The loss of a ``loss`` section (a LossConfig or a dict of its keys; unknown keys: ValueError)."""
        values = asdict(cfg) if isinstance(cfg, LossConfig) else dict(cfg)
        known = {f.name for f in fields(LossConfig)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown loss setting(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        return cls(**{k: v for k, v in values.items() if k not in TRAINER_LOSS_KEYS})

    def forward(
        self,
        out: HaltingVTOutput,
        target: torch.Tensor,
        motion_target: torch.Tensor | None = None,
        ponder_factor: float = 1.0,
    ) -> LossTerms:
        """out: HaltingVTOutput for 2b clips; target (2b,) or (2b, K); motion_target (2b,) long, 1 = real clip,
        0 = static clip. ponder_factor scales ponder_token_scale (the trainer's ponder start/ramp schedule)."""
        zero = out.logits.new_zeros(())
        logits = out.logits
        if not self.static_action_loss and motion_target is not None:
            real = motion_target == 1
            logits, target = logits[real], target[real]
        action = action_loss(logits, target, self.label_smoothing) if logits.shape[0] else zero
        ponder = out.rho.mean() if out.rho is not None else zero
        motion = zero
        if self.motion_weight and motion_target is not None:
            motion = F.cross_entropy(out.motion_logits, motion_target)
        prior = zero
        if self.distr_prior and out.layer_scores is not None:
            prior = distribution_prior(out.layer_scores, self.distr_target_depth)
        total = action + self.ponder_token_scale * ponder_factor * ponder + self.motion_weight * motion
        total = total + self.distr_prior_weight * prior
        return LossTerms(total=total, action=action, ponder=ponder, motion=motion, prior=prior)


__all__ = ["HaltingVTLoss", "LossConfig", "LossTerms", "action_loss", "distribution_prior"]
