import json
from pathlib import Path

import pytest
import torch

import haltingvt
from haltingvt.data import normalize

FIXTURES = Path(__file__).parent / "fixtures"
OFFICIAL = FIXTURES / "official-tiny"


def tiny_model(**kw) -> haltingvt.HaltingVT:
    """A small random HaltingVT (32 px, 4 frames, 5 classes); keyword arguments change its architecture."""
    arch = dict(img_size=32, patch_size=8, num_frames=4, embed_dim=48, num_heads=3, depth=6, divid_depth=2,
                keep_rate=[1.0, 0.5], halt_scale=10.0, halt_center=3.0, eps=0.01)
    arch.update(kw)
    return haltingvt.create_model(arch, num_classes=5)


@pytest.fixture(scope="session")
def official_arch() -> dict:
    return json.loads((OFFICIAL / "config.json").read_text())


@pytest.fixture(scope="session")
def official_expected() -> dict:
    return torch.load(OFFICIAL / "expected.pt", weights_only=False)


@pytest.fixture()
def official_model(official_arch):
    model = haltingvt.create_model(official_arch, num_classes=7).eval()
    haltingvt.load_checkpoint(model, OFFICIAL / "checkpoint.pth")
    return model


@pytest.fixture(scope="session")
def official_clips(official_expected) -> torch.Tensor:
    return normalize(official_expected["input_uint8"])
