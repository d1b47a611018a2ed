"""HaltingVT model parts: Glimpser, halting layers, heads and losses."""
from .haltingvt import ARCH_DEFAULTS, HaltingVT, HaltingVTOutput, arch_from, create_model
from .losses import HaltingVTLoss, LossTerms, action_loss, distribution_prior

__all__ = [
    "ARCH_DEFAULTS", "HaltingVT", "HaltingVTOutput", "arch_from", "create_model",
    "HaltingVTLoss", "LossTerms", "action_loss", "distribution_prior",
]
