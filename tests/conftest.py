import json
from pathlib import Path

import pytest
import torch

import haltingvt
from haltingvt.data import normalize

FIXTURES = Path(__file__).parent / "fixtures"
OFFICIAL = FIXTURES / "official-tiny"


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
