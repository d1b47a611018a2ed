"""HaltingVT model parts: settings, layers, Glimpser, halting layers, heads, losses, the model and its weights.

Nothing here reads config files or imports the config, data, engine or hub modules: the model takes an
architecture (:class:`HaltingVTConfig` or a dict of its keys), and reads and writes files through
:mod:`haltingvt.io` only.
"""

from .compile import compile_glimpser
from .config import ARCH_DEFAULTS, ArchError, HaltingVTConfig, LossConfig
from .haltingvt import HaltingVT, HaltingVTOutput, create_model
from .losses import HaltingVTLoss, LossTerms, action_loss, distribution_prior
from .precision import (
    PRECISIONS,
    check_precision,
    convert_precision,
    model_precision,
    precision_context,
    supported_precisions,
)
from .weights import CheckpointError, load_checkpoint, model_payload, read_checkpoint, save_checkpoint

__all__ = [
    "ARCH_DEFAULTS",
    "ArchError",
    "HaltingVT",
    "HaltingVTConfig",
    "HaltingVTOutput",
    "create_model",
    "HaltingVTLoss",
    "LossConfig",
    "LossTerms",
    "action_loss",
    "distribution_prior",
    "CheckpointError",
    "load_checkpoint",
    "model_payload",
    "read_checkpoint",
    "save_checkpoint",
    "PRECISIONS",
    "check_precision",
    "compile_glimpser",
    "convert_precision",
    "model_precision",
    "precision_context",
    "supported_precisions",
]
