"""HaltingVT: adaptive token halting video transformers with real compute savings.

    import haltingvt
    model = haltingvt.create_model("minik_g03_b10")        # or an architecture dict
    haltingvt.load_checkpoint(model, "checkpoint.pth")      # release, DeiT/timm or haltingvt
    out = model(clips)                                      # clips: (B, 3, T, H, W), (x - 127.5) / 127.5
"""
from .config import ConfigError, available_configs, load_config
from .engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .models import HaltingVT, HaltingVTLoss, HaltingVTOutput, create_model
from .predict import Predictor

__version__ = "0.1.0"

__all__ = [
    "ConfigError", "available_configs", "load_config",
    "CheckpointError", "load_checkpoint", "save_checkpoint",
    "HaltingVT", "HaltingVTLoss", "HaltingVTOutput", "create_model",
    "Predictor",
]
