"""Compact training equals masked training: one step gives the same loss, gradients, token counts and rho.

Gradients are compared per parameter tensor with the relative measure
    rel(g_c, g_m) = max|g_c - g_m| / max(max|g_m|, 1e-12)
(g_c compact, g_m masked), i.e. the worst entry's error relative to the tensor's largest masked gradient.
"""

import json
import math
import subprocess
import sys

import pytest
import torch

import haltingvt
from haltingvt.config import ConfigError, load_config
from haltingvt.engine.train import train
from haltingvt.models.weights import read_checkpoint

from engine_helpers import HELPERS, datasets, one_thread, subprocess_env, tiny_config
from model_helpers import OFFICIAL, TINY_ARCH

GRAD_TOL = 1e-4  # fp32: the acceptance bound; measured differences are ~1e-6
BF16_LOSS_TOL = 2e-2  # bf16 autocast: relative, on the loss terms
BF16_GRAD_TOL = (
    2e-2  # bf16 autocast: rel() per tensor (measured 9e-3): matmuls round to 8 bits on differently shaped inputs
)


@pytest.fixture(autouse=True)
def _setup():
    with one_thread():
        yield


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp(min=1e-12))


def one_step(model, clips, target, motion, loss_fn, execution, amp=False):
    """Forward + loss + backward; returns the output, the loss terms and {name: grad or None}."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(123)  # the same drop-path draws in both executions (same shapes: one row per clip)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        out = model(clips, execution=execution)
        terms = loss_fn(out, target, motion)
    terms.total.backward()
    return out, terms, {name: p.grad for name, p in model.named_parameters()}


def assert_step_equal(model, clips, target, motion, loss_fn, amp=False):
    """One step compact vs masked; returns the masked output (for checks on the halting profile)."""
    out_m, terms_m, grads_m = one_step(model, clips, target, motion, loss_fn, "masked", amp)
    out_c, terms_c, grads_c = one_step(model, clips, target, motion, loss_fn, "compact", amp)
    loss_tol = BF16_LOSS_TOL if amp else 1e-5
    for name in ("total", "action", "ponder", "motion", "prior"):
        a, b = float(getattr(terms_c, name).detach()), float(getattr(terms_m, name).detach())
        assert abs(a - b) <= loss_tol * max(1.0, abs(b)), (name, a, b)
    assert torch.equal(out_c.token_counts, out_m.token_counts)
    assert torch.equal(out_c.halting_masks, out_m.halting_masks)
    assert torch.equal(out_c.counter, out_m.counter)
    torch.testing.assert_close(out_c.rho, out_m.rho, atol=1e-3 if amp else 1e-5, rtol=0)
    torch.testing.assert_close(out_c.layer_scores, out_m.layer_scores, atol=1e-2 if amp else 1e-5, rtol=0)
    # masked gives every parameter in the graph a gradient, zero where only halted tokens touched it (Adam's
    # moments and weight decay still act on those); compact must not leave them None.
    assert {k for k, g in grads_c.items() if g is None} == {k for k, g in grads_m.items() if g is None}
    worst = max((rel(grads_c[k], g), k) for k, g in grads_m.items() if g is not None)
    assert worst[0] <= (BF16_GRAD_TOL if amp else GRAD_TOL), worst
    return out_m


def set_halt_bias(model: haltingvt.HaltingVT, delta: float) -> None:
    """The halting channel (0) grows by ``delta`` per halting layer, so tokens halt at different depths."""
    with torch.no_grad():
        for block in model.blocks[model.divid_depth :]:
            block.mlp.fc2.bias[0] = delta


def assert_halts_at_several_layers(out, min_layers: int = 2) -> None:
    """A good share of the tokens halts before the last layer, spread over several layers, and the batch
    needs padding (clips differ) so that compaction, padding and the ghost key are all exercised."""
    counts = out.token_counts  # (B, n)
    M = counts[:, 0]
    assert float((counts[:, -1] / M).mean()) < 0.6, counts
    drops = (counts[:, :-1] - counts[:, 1:]).sum(dim=0)  # tokens halting after each layer but the last
    assert int((drops >= 0.1 * M.sum()).sum()) >= min_layers, counts
    assert any(len(set(col.tolist())) > 1 for col in counts.T[1:]), counts


def tiny(seed=0, delta=0.45, **kw):
    arch = {**TINY_ARCH, "num_classes": 5, **kw}
    torch.manual_seed(seed)
    model = haltingvt.create_model(arch).train()
    set_halt_bias(model, delta)
    return model


def batch(b=3, frames=4, size=32, classes=5, multi_label=False, seed=1):
    """2b clips (real/static interleaved as the trainer builds them), targets and motion labels."""
    g = torch.Generator().manual_seed(seed)
    real = torch.randn(b, 3, frames, size, size, generator=g)
    static = real[:, :, :1].expand_as(real)
    clips = torch.stack([real, static], dim=1).flatten(0, 1)
    labels = torch.randint(0, classes, (b,), generator=g).repeat_interleave(2)
    if multi_label:
        target = torch.nn.functional.one_hot(labels, classes).float()
        target[::3, (labels[::3] + 1) % classes] = 1.0
        labels = target
    return clips, labels, torch.tensor([1, 0] * b)


def test_release_fixture_step(official_arch, official_expected, official_clips):
    model = haltingvt.create_model(official_arch, num_classes=7).train()
    haltingvt.load_checkpoint(model, OFFICIAL / "checkpoint.pth")
    target = torch.tensor([1, 4, 6])
    out = assert_step_equal(model, official_clips, target, torch.tensor([1, 0, 1]), haltingvt.HaltingVTLoss())
    # train mode changes nothing in the forward pass (no dropout): the release's token counts
    assert torch.equal(out.token_counts, official_expected["token_nums"])
    assert_halts_at_several_layers(out)


@pytest.mark.parametrize("case", ["base", "fuse_token", "divid_depth3", "multi_label", "distr_prior", "drop_path"])
def test_random_model_step(case):
    arch = {
        "fuse_token": {"fuse_token": True},
        "divid_depth3": {"depth": 7, "divid_depth": 3, "keep_rate": [1.0, 0.5, 0.5]},
        "drop_path": {"drop_path_rate": 0.2},
    }.get(case, {})  # every other case has drop_path_rate 0
    model = tiny(**arch)
    clips, target, motion = batch(multi_label=case == "multi_label")
    loss = haltingvt.HaltingVTLoss(distr_prior=case == "distr_prior", distr_target_depth=1.0)
    out = assert_step_equal(model, clips, target, motion, loss)
    assert_halts_at_several_layers(out)


def test_bf16_autocast_step():
    model = tiny()
    clips, target, motion = batch()
    out = assert_step_equal(model, clips, target, motion, haltingvt.HaltingVTLoss(), amp=True)
    assert_halts_at_several_layers(out)


def test_all_tokens_halted_before_the_last_layers():
    # Everything halts after the first halting layer: compact runs the later blocks on zero tokens, so that
    # their parameters get the zero gradients masked execution gives them (not None).
    model = tiny(delta=3.0)
    clips, target, motion = batch()
    out = assert_step_equal(model, clips, target, motion, haltingvt.HaltingVTLoss())
    assert out.token_counts[:, 1:].sum() == 0
    last = model.blocks[-1].attn.qkv.weight.grad
    assert last is not None and not last.any()


def test_train_execution_key():
    assert tiny_config("unused")["train"]["execution"] == "compact"  # so every engine test trains compact
    assert load_config("demo_synthetic")["train"]["execution"] == "compact"
    assert load_config("minik_g03_b10", ["train.execution=masked"])["train"]["execution"] == "masked"
    with pytest.raises(ConfigError, match="train.execution"):
        load_config("minik_g03_b10", ["train.execution=dense"])


@pytest.mark.slow
def test_compact_and_masked_training_runs_agree(tmp_path):
    runs = {}
    for execution in ("compact", "masked"):
        cfg = tiny_config(tmp_path / execution, epochs=1, val_interval=0, execution=execution)
        runs[execution] = train(cfg, datasets=datasets(train_n=12), progress=False)
        assert f"{execution} execution" in (tmp_path / execution / "train.log").read_text()
    a = read_checkpoint(tmp_path / "compact" / "latest.pth")["model"]
    b = read_checkpoint(tmp_path / "masked" / "latest.pth")["model"]
    for key in b:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-5, msg=key)
    assert runs["compact"]["last_log"]["tokens_L1"] == pytest.approx(runs["masked"]["last_log"]["tokens_L1"])


@pytest.mark.slow
def test_torchrun_two_process_compact_training_matches_one_process(tmp_path):
    # 2 processes x batch 4 see, step by step, the same 8 samples as 1 process x batch 8 (DistributedSampler
    # deals out one shuffled order); DDP averages the two halves' gradients, which is the mean over all 8.
    two = tiny_config(tmp_path / "two", epochs=1, batch_size=4, val_interval=0, log_interval=1)
    (tmp_path / "cfg.json").write_text(json.dumps({**two, "_test": {"train_n": 24}}))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(HELPERS),
        "train",
        str(tmp_path / "cfg.json"),
    ]
    done = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    one = train(
        tiny_config(tmp_path / "one", epochs=1, batch_size=8, val_interval=0, log_interval=1),
        datasets=datasets(train_n=24),
        progress=False,
    )
    assert one["optimizer_steps"] == 3 and "2 x cpu" in (tmp_path / "two" / "train.log").read_text()
    a = read_checkpoint(tmp_path / "two" / "latest.pth")
    b = read_checkpoint(tmp_path / "one" / "latest.pth")
    assert a["world_size"] == 2 and b["world_size"] == 1 and a["step"] == b["step"] == 3
    for key in b["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=0, atol=1e-5, msg=key)
    rows = [(tmp_path / run / "train_log.csv").read_text().splitlines() for run in ("two", "one")]
    assert len(rows[0]) == len(rows[1]) == 4
    assert not math.isnan(float(rows[0][-1].split(",")[3]))
