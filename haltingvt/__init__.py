"""HaltingVT: adaptive token halting video transformers with real compute savings.

import haltingvt
model = haltingvt.create_model("minik_g03_b10")        # or an architecture dict / HaltingVTConfig
haltingvt.load_checkpoint(model, "checkpoint.pth")      # release, DeiT/timm or haltingvt
out = model(clips)                                      # clips: (B, 3, T, H, W), (x - 127.5) / 127.5
"""

from .api import create_model
from .config import ConfigError, available_configs, load_config
from .hub import HaltingVT
from .io.errors import CheckpointError
from .models import HaltingVTConfig, HaltingVTLoss, HaltingVTOutput, LossConfig
from .models.weights import load_checkpoint, save_checkpoint
from .predict import Predictor

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "available_configs",
    "load_config",
    "CheckpointError",
    "load_checkpoint",
    "save_checkpoint",
    "HaltingVT",
    "HaltingVTConfig",
    "HaltingVTLoss",
    "HaltingVTOutput",
    "LossConfig",
    "create_model",
    "Predictor",
]
