"""Models and files shared by the tests: the release fixture's folder and a small random HaltingVT.

Imported by name (``from model_helpers import OFFICIAL, tiny_model``) like the other ``*_helpers`` modules;
conftest.py builds its fixtures (official_model, official_clips, ...) on these.
"""

import sys
from pathlib import Path

import pytest
import torch
import yaml

import haltingvt
from haltingvt.config import load_config
from haltingvt.models.weights import model_payload

FIXTURES = Path(__file__).parent / "fixtures"
OFFICIAL = FIXTURES / "official-tiny"


#: ``--set`` overrides of a shipped config for a tiny model (32 px, 4 frames, 5 classes) and its test pipeline
TINY_OVERRIDES = [
    "model.img_size=32",
    "model.patch_size=8",
    "model.num_frames=4",
    "model.embed_dim=48",
    "model.num_heads=3",
    "model.depth=4",
    "model.keep_rate=[1.0,0.5]",
    "model.halt_center=2.0",
    "model.num_classes=5",
    "data.clip_len=4",
    "data.frame_interval=2",
    "data.test_scale=36",
    "data.crop_size=32",
    "test.batch_size=4",
]


#: The small architecture most model tests use: 32 px, 4 frames, width 48, 2 Glimpser + 4 halting layers
TINY_ARCH = dict(
    img_size=32,
    patch_size=8,
    num_frames=4,
    embed_dim=48,
    num_heads=3,
    depth=6,
    divid_depth=2,
    keep_rate=[1.0, 0.5],
    halt_scale=10.0,
    halt_center=3.0,
    eps=0.01,
)


def write_tiny_checkpoint(root: Path) -> tuple[dict, haltingvt.HaltingVT, Path]:
    """(config, model, checkpoint): a random tiny model of ``minik_g03_b10`` with TINY_OVERRIDES (seed 0, no class
    names), saved as root/tiny.pth with its config, and the config also as root/tiny.yaml."""
    cfg = load_config("minik_g03_b10", TINY_OVERRIDES)
    cfg["data"]["classes"] = None
    torch.manual_seed(0)
    model = haltingvt.create_model(cfg)
    ckpt = haltingvt.save_checkpoint(root / "tiny.pth", model_payload(model, cfg))
    (root / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    return cfg, model, ckpt


def tiny_model(**kw) -> haltingvt.HaltingVT:
    """A small random HaltingVT (32 px, 4 frames, 5 classes); keyword arguments change its architecture."""
    arch = {**TINY_ARCH, **kw}
    return haltingvt.create_model(arch, num_classes=5)


class RefuseImports:
    """A meta-path finder that fails any import of the named top-level packages and records the attempts."""

    def __init__(self, *names: str) -> None:
        self.names, self.tried = names, []

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in self.names:
            self.tried.append(fullname)
            raise ImportError(f"{fullname} must not be imported")
        return None


def refuse_imports(monkeypatch: pytest.MonkeyPatch, *names: str) -> RefuseImports:
    """For the rest of the test, ``names`` are not importable, even if an earlier test imported them
    (the oracle tests import mmengine into the test process)."""
    for name in [m for m in sys.modules if m.split(".")[0] in names]:
        monkeypatch.delitem(sys.modules, name)
    guard = RefuseImports(*names)
    monkeypatch.setattr(sys, "meta_path", [guard, *sys.meta_path])
    return guard
