"""Fixtures of the release's tiny checkpoint (tests/fixtures/official-tiny). Plain constants and helpers live in
the ``*_helpers`` modules (model_helpers: OFFICIAL, tiny_model); tests import those, never this file."""

import json

import pytest
import torch

import haltingvt
from haltingvt.data import normalize

from model_helpers import OFFICIAL


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
