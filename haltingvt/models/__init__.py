"""HaltingVT model parts: layers, Glimpser, halting layers, heads, losses, the model and its weights.

Nothing here reads config files or imports the engine/data packages: the model takes an architecture
(:class:`HaltingVTConfig` or a dict of its keys).
"""
from .haltingvt import ARCH_DEFAULTS, ArchError, HaltingVT, HaltingVTConfig, HaltingVTOutput, create_model
from .losses import HaltingVTLoss, LossConfig, LossTerms, action_loss, distribution_prior
from .weights import CheckpointError, load_checkpoint, model_payload, read_checkpoint, save_checkpoint

__all__ = [
    "ARCH_DEFAULTS", "ArchError", "HaltingVT", "HaltingVTConfig", "HaltingVTOutput", "create_model",
    "HaltingVTLoss", "LossConfig", "LossTerms", "action_loss", "distribution_prior",
    "CheckpointError", "load_checkpoint", "model_payload", "read_checkpoint", "save_checkpoint",
]
