"""Reduced precision (haltingvt.models.precision): bf16 / int8 give fp32's answers, unsupported precisions and saving
a converted model are refused in one line; the Glimpser compiled (haltingvt.models.compile) gives the eager answers."""

import contextlib
import copy

import pytest
import torch

import haltingvt
from haltingvt.cli import main
from haltingvt.config import ConfigError, load_config
from haltingvt.data import normalize
from haltingvt.data.encode import write_mp4
from haltingvt.models import check_precision, convert_precision, model_precision, precision_context
from haltingvt.models import compile as compile_module
from haltingvt.models import precision as precision_module
from haltingvt.models.compile import compile_glimpser, compile_unavailable
from haltingvt.models.precision import Int8Linear, quantize_input
from haltingvt.models.weights import CheckpointError, model_payload
from haltingvt.predict import Predictor

from model_helpers import write_tiny_checkpoint


def _run(model, clips, precision):
    with torch.inference_mode(), precision_context(precision, "cpu"):
        return model(clips, execution="compact")


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_release_fixture_same_answers(official_model, official_clips, precision):
    ref = _run(official_model, official_clips, "fp32")
    low = convert_precision(copy.deepcopy(official_model), precision)
    out = _run(low, official_clips, precision)
    assert model_precision(low) == precision and model_precision(official_model) == "fp32"
    assert out.logits.dtype == torch.float32
    assert torch.equal(out.logits.argmax(-1), ref.logits.argmax(-1))
    assert (out.logits - ref.logits).abs().max() < 0.5
    assert out.token_counts.shape == ref.token_counts.shape
    # the Glimpser keeps the same number of tokens; halting moves by at most a few tokens per layer
    assert out.left_tokens == ref.left_tokens
    assert (out.token_counts.float() - ref.token_counts.float()).abs().mean() < 2.0


def test_bf16_keeps_norms_heads_and_residual_stream_fp32(official_model):
    model = convert_precision(copy.deepcopy(official_model), "bf16")
    dtypes = {name: p.dtype for name, p in model.named_parameters()}
    assert dtypes["blocks.3.mlp.fc1.weight"] == torch.bfloat16
    assert dtypes["blocks.3.norm1.weight"] == torch.float32
    assert all(d == torch.float32 for n, d in dtypes.items() if not n.startswith("blocks.") or ".norm" in n)


def test_unsupported_precision_is_one_line():
    with pytest.raises(ValueError, match=r"'fp16' is not supported on cpu; supported there: fp32, bf16, int8$"):
        check_precision("fp16", "cpu")
    with pytest.raises(ValueError, match="not supported on cuda"):
        check_precision("int8", "cuda")
    with pytest.raises(ValueError, match=r"known: fp32, bf16, fp16, int8"):
        check_precision("int4", "cpu")


def test_converted_model_is_never_saved(official_model, tmp_path):
    model = convert_precision(copy.deepcopy(official_model), "int8")
    with pytest.raises(CheckpointError, match="refusing to save a model converted to int8"):
        model_payload(model)
    with pytest.raises(CheckpointError, match="converted to int8"):
        model.save_pretrained(tmp_path / "folder")
    assert not (tmp_path / "folder").exists()
    with pytest.raises(ValueError, match="already converted"):
        convert_precision(model, "bf16")


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("precision")
    _, _, ckpt = write_tiny_checkpoint(root)
    frames = torch.randint(0, 255, (12, 40, 48, 3), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    clip = write_mp4(root / "clip.mp4", frames.numpy(), fps=8, codec="mpeg4", pix_fmt="yuv420p")
    return root, ckpt, clip


@pytest.mark.parametrize("precision", ["bf16", "int8"])
def test_predictor_precision(tiny_checkpoint, precision):
    root, ckpt, clip = tiny_checkpoint
    ref = Predictor(ckpt, device="cpu").predict(clip)
    pred = Predictor(ckpt, device="cpu", precision=precision)
    res = pred.predict(clip)
    assert pred.precision == precision and model_precision(pred.model) == precision
    assert res["top"][0]["class_id"] == ref["top"][0]["class_id"]
    assert res["top"][0]["prob"] == pytest.approx(ref["top"][0]["prob"], abs=0.05)
    assert res["glimpser_tokens"] == ref["glimpser_tokens"]
    before = ckpt.read_bytes()
    with pytest.raises(CheckpointError):
        pred.model.save_pretrained(root / "never")
    assert ckpt.read_bytes() == before


def test_predictor_precision_from_config_and_errors(tiny_checkpoint):
    root, ckpt, clip = tiny_checkpoint
    assert Predictor(ckpt, device="cpu", overrides=["test.precision=bf16"]).precision == "bf16"
    with pytest.raises(ConfigError, match=r"^--precision \(test.precision\): precision 'fp16' is not supported on cpu"):
        Predictor(ckpt, device="cpu", precision="fp16")
    with pytest.raises(ConfigError, match="test.precision"):
        Predictor(ckpt, device="cpu", overrides=["test.precision=int4"])


def test_cli_predict_precision(tiny_checkpoint, capsys):
    root, ckpt, clip = tiny_checkpoint
    assert main(["predict", str(ckpt), str(clip), "--precision", "int8", "--json"]) == 0
    out = capsys.readouterr().out
    assert '"precision": "int8"' in out
    assert main(["predict", str(ckpt), str(clip), "--precision", "fp16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fp16' is not supported on cpu; supported there: fp32, bf16, int8" in err[0]


def test_eval_precision_runs_in_that_precision(monkeypatch, tiny_checkpoint):
    """eval --precision converts the model and evaluate() runs it under that precision's context."""
    import haltingvt.engine.evaluate as ev

    seen = []
    real = ev.precision_context

    def spy(precision, device):
        seen.append(precision)
        return real(precision, device)

    monkeypatch.setattr(ev, "precision_context", spy)
    cfg = load_config("demo_synthetic", ["data.synthetic_num_val=4", "model.depth=3", "test.batch_size=4"])
    model = convert_precision(haltingvt.create_model(cfg["model"]).eval(), "bf16")
    metrics = ev.evaluate(model, cfg, split="val", device="cpu", progress=False)
    assert seen == ["bf16"] and metrics["num_evaluated"] == 4


def test_normalized_input_dtype_unchanged(official_model, official_clips):
    """The converted model takes the same fp32 clips as the fp32 one (no cast needed by the caller)."""
    model = convert_precision(copy.deepcopy(official_model), "bf16")
    out = _run(model, normalize(torch.zeros(1, 3, 4, 64, 64, dtype=torch.uint8)), "bf16")
    assert out.logits.shape == (1, 7)


def test_int8_converts_the_halting_blocks_only(official_model):
    """int8: the joint blocks' Linear layers become Int8Linear (fc1 with the GELU fused), the Glimpser stays bf16."""
    model = convert_precision(copy.deepcopy(official_model), "int8")
    glimpser, joint = model.blocks[: model.divid_depth], model.blocks[model.divid_depth :]
    for block in joint:
        assert isinstance(block.attn.qkv, Int8Linear) and isinstance(block.mlp.fc2, Int8Linear)
        assert block.mlp.fc1.activation == "gelu" and isinstance(block.mlp.act, torch.nn.Identity)
        assert not any(isinstance(m, torch.nn.Linear) for m in block.modules())
    for block in glimpser:
        assert block.attn.qkv.weight.dtype == torch.bfloat16 and block.temporal_fc.weight.dtype == torch.bfloat16
    assert block.norm1.weight.dtype == torch.float32


@pytest.mark.parametrize("activation", [None, "gelu"])
@pytest.mark.parametrize("out_dtype", [torch.float32, torch.bfloat16])
def test_int8_linear_matches_fp32(activation, out_dtype):
    torch.manual_seed(0)
    linear = torch.nn.Linear(48, 40)
    x = torch.randn(2, 7, 48) * 3
    ref = linear(x)
    ref = torch.nn.functional.gelu(ref) if activation else ref
    out = Int8Linear(linear, activation=activation, out_dtype=out_dtype)(x)
    assert out.shape == (2, 7, 40) and out.dtype == out_dtype
    # 8-bit inputs and weights: errors of about 1% of the output's range
    assert (out.float() - ref).abs().max() < 0.02 * ref.abs().max()
    assert Int8Linear(linear)(x[:0]).shape == (0, 7, 40)
    assert Int8Linear(linear)(x.bfloat16()).dtype == torch.float32
    layer = Int8Linear(linear, activation=activation, out_dtype=out_dtype)
    assert torch.equal(copy.deepcopy(layer)(x), out)  # oneDNN's packed weights are remade, not copied


def test_int8_input_quantisation_same_without_torchs_quantised_tensors(monkeypatch):
    """quantize_input's fallback (for a torch without quantize_per_tensor_dynamic) gives the same codes."""
    x = torch.randn(300, 64) * 2 + 0.5
    fused = quantize_input(x)
    monkeypatch.delattr(torch, "quantize_per_tensor_dynamic")
    fallback = quantize_input(x)
    assert fallback[1] == pytest.approx(fused[1], rel=1e-6) and fallback[2] == fused[2]
    assert (fallback[0].int() - fused[0].int()).abs().max() <= 1  # ties may round the other way
    positive = quantize_input(torch.rand(10, 8) + 1)  # the range always includes 0: zero point 0
    assert positive[2] == 0 and positive[0].dtype == torch.uint8


def test_int8_without_native_bf16_runs_the_rest_in_fp32(monkeypatch, official_model, official_clips):
    """On a CPU without bf16 instructions int8's other layers are fp32: no autocast, the Glimpser exactly fp32's."""
    monkeypatch.setattr(precision_module, "int8_companion_dtype", lambda: torch.float32)
    model = convert_precision(copy.deepcopy(official_model), "int8")
    assert isinstance(precision_context("int8", "cpu"), contextlib.nullcontext)
    assert model.blocks[0].attn.qkv.weight.dtype == torch.float32
    assert model.blocks[model.divid_depth].attn.qkv.out_dtype == torch.float32
    ref, out = _run(official_model, official_clips, "fp32"), _run(model, official_clips, "int8")
    assert all(torch.equal(a, b) for a, b in zip(ref.kept_patches, out.kept_patches))
    assert torch.equal(out.logits.argmax(-1), ref.logits.argmax(-1))


def test_int8_needs_onednn(monkeypatch):
    monkeypatch.setattr(precision_module, "int8_available", lambda: False)
    with pytest.raises(ValueError, match=r"'int8' is not supported on cpu; supported there: fp32, bf16$"):
        check_precision("int8", "cpu")


# ----------------------------------------------------------------------------- --compile (haltingvt.models.compile)


@pytest.mark.slow
def test_compiled_glimpser_gives_eager_answers(official_model, official_clips):
    """The Glimpser compiled (about 10 s here) gives the eager model's outputs, in fp32 and in bf16."""
    for precision in ("fp32", "bf16"):
        eager = convert_precision(copy.deepcopy(official_model), precision)
        compiled = compile_glimpser(convert_precision(copy.deepcopy(official_model), precision), "cpu")
        ref, out = _run(eager, official_clips, precision), _run(compiled, official_clips, precision)
        assert compiled.compiled and torch.equal(out.token_counts, ref.token_counts)
        assert (out.logits - ref.logits).abs().max() < (1e-4 if precision == "fp32" else 0.05)


@pytest.fixture
def no_compiler(monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(compile_module.shutil, "which", lambda name: None)


def test_compile_without_a_cpp_compiler_is_one_line(no_compiler, official_model, tiny_checkpoint):
    assert "needs a C++ compiler" in compile_unavailable("cpu")
    with pytest.raises(ValueError, match=r"needs a C\+\+ compiler"):
        compile_glimpser(copy.deepcopy(official_model), "cpu")
    root, ckpt, clip = tiny_checkpoint
    with pytest.raises(ConfigError, match=r"^--compile \(test.compile\): torch.compile needs a C\+\+ compiler"):
        Predictor(ckpt, device="cpu", compile=True)
    assert main(["predict", str(ckpt), str(clip), "--compile"]) == 2


def test_compile_option_reaches_predict_and_eval(monkeypatch, tiny_checkpoint, capsys):
    """--compile (predict, eval) and test.compile compile the Glimpser of the model that runs; convert never does."""
    import haltingvt.predict as predict_module

    compiled = []
    monkeypatch.setattr(predict_module, "compile_glimpser", lambda model, device: compiled.append(model) or model)
    root, ckpt, clip = tiny_checkpoint
    assert main(["predict", str(ckpt), str(clip), "--compile", "--json"]) == 0
    assert '"compiled": true' in capsys.readouterr().out and len(compiled) == 1
    assert Predictor(ckpt, device="cpu", overrides=["test.compile=true"]).compiled and len(compiled) == 2
    assert not Predictor(ckpt, device="cpu").compiled and len(compiled) == 2
    overrides = ["model.depth=3", "data.synthetic_num_val=2", "test.batch_size=2"]
    demo = haltingvt.create_model(load_config("demo_synthetic", overrides)["model"])
    demo_ckpt = haltingvt.save_checkpoint(root / "demo.pth", model_payload(demo))
    assert main(["eval", "demo_synthetic", str(demo_ckpt), "--compile", "--set", *overrides]) == 0
    assert len(compiled) == 3
    haltingvt.predict.convert_checkpoint(ckpt, root / "hub", overrides=["test.compile=true"])
    assert len(compiled) == 3
