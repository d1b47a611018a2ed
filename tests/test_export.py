"""What exports: torch.export of masked execution does (and matches eager on other inputs); compact
execution does not (data-dependent token counts); ONNX only where the optional onnx package is installed."""

from __future__ import annotations

import importlib.util

import pytest
import torch

import haltingvt

ARCH = dict(
    img_size=32,
    patch_size=16,
    num_frames=2,
    embed_dim=32,
    num_heads=2,
    depth=4,
    divid_depth=2,
    keep_rate=[1.0, 0.5],
    halt_center=2.0,
    num_classes=3,
)


class Logits(torch.nn.Module):
    """The model with one execution mode, returning tensors only (what an exported graph can return)."""

    def __init__(self, model: torch.nn.Module, execution: str) -> None:
        super().__init__()
        self.model, self.execution = model, execution

    def forward(self, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(clips, execution=self.execution)
        return out.logits, out.token_counts


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return haltingvt.create_model(ARCH).eval()


@pytest.mark.slow
def test_masked_execution_exports(model):
    x = torch.randn(2, 3, 2, 32, 32)
    exported = torch.export.export(Logits(model, "masked"), (x,))
    for clips in (x, torch.randn(2, 3, 2, 32, 32) * 2):  # another input halts other tokens: same graph
        logits, counts = exported.module()(clips)
        ref_logits, ref_counts = Logits(model, "masked")(clips)
        torch.testing.assert_close(logits, ref_logits, atol=1e-5, rtol=0)
        assert torch.equal(counts, ref_counts)


def test_compact_execution_does_not_export(model):
    """Compact execution removes halted tokens: tensor sizes depend on the data, which torch.export refuses."""
    with pytest.raises(Exception, match=r"(?i)data.dependent"):
        torch.export.export(Logits(model, "compact"), (torch.randn(2, 3, 2, 32, 32),))


@pytest.mark.skipif(importlib.util.find_spec("onnx") is None, reason="the optional onnx package is not installed")
def test_masked_execution_exports_to_onnx(model, tmp_path):
    x = torch.randn(1, 3, 2, 32, 32)
    torch.onnx.export(Logits(model, "masked"), (x,), str(tmp_path / "m.onnx"), dynamo=True)
    assert (tmp_path / "m.onnx").stat().st_size > 0
