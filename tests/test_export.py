"""What exports: torch.export of masked execution does (and matches eager on other inputs); compact
execution does not (data-dependent token counts); the masked model exported to ONNX runs in ONNX Runtime like
PyTorch (only where the optional ``onnx`` extra is installed)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

import haltingvt

from model_helpers import tiny_model

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


def _onnx_session(module: torch.nn.Module, example: torch.Tensor, path):
    """``module`` exported by the dynamo-based ONNX exporter (batch size dynamic) and opened in ONNX Runtime."""
    import onnxruntime

    batch = torch.export.Dim("batch", min=1, max=64)
    torch.onnx.export(
        module.eval(),
        (example,),
        str(path),
        dynamo=True,
        input_names=["clips"],
        output_names=["logits", "token_counts"],
        dynamic_shapes={"clips": {0: batch}},
        verbose=False,
    )
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _check_onnx_matches_masked(session, module: torch.nn.Module, clips: torch.Tensor) -> None:
    logits, counts = session.run(None, {"clips": clips.numpy()})
    with torch.inference_mode():
        ref_logits, ref_counts = module(clips)
    torch.testing.assert_close(torch.from_numpy(logits), ref_logits, atol=1e-4, rtol=0)
    torch.testing.assert_close(torch.from_numpy(counts).to(ref_counts.dtype), ref_counts, atol=1e-4, rtol=0)


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnxscript") is None,
    reason="the optional onnx extra (onnx, onnxscript, onnxruntime) is not installed: pip install -e .[onnx]",
)
def test_masked_onnx_runs_in_onnxruntime_like_pytorch(tmp_path, official_model, official_clips):
    """The masked model exported to ONNX (dynamo exporter) gives PyTorch's logits and token counts in ONNX
    Runtime, to 1e-4, on inputs (and batch sizes) other than the export example: a tiny random model and
    the release fixture's weights on its real clips."""
    torch.manual_seed(0)
    tiny = Logits(tiny_model().eval(), "masked").eval()
    session = _onnx_session(tiny, torch.randn(2, 3, 4, 32, 32), tmp_path / "tiny.onnx")
    for clips in (torch.randn(3, 3, 4, 32, 32) * 2, torch.rand(1, 3, 4, 32, 32)):
        _check_onnx_matches_masked(session, tiny, clips)

    official = Logits(official_model, "masked").eval()
    session = _onnx_session(official, torch.randn(2, 3, 4, 64, 64), tmp_path / "official.onnx")
    _check_onnx_matches_masked(session, official, official_clips)
    _check_onnx_matches_masked(session, official, official_clips[:1].flip(-1).contiguous())
