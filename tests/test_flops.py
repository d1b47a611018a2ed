"""MAC counts (haltingvt.flops) against torch's FlopCounterMode on the real model, and the CLI."""

import json
import math

import pytest
import torch
from PIL import Image

import haltingvt
from haltingvt import cli
from haltingvt.data import normalize
from haltingvt.flops import (
    clip_gflops,
    dense_gflops,
    glimpser_only_gflops,
    layer_breakdown,
    tokens_after_glimpser,
    torch_counted_gflops,
)

from model_helpers import OFFICIAL, TINY_ARCH

OFFICIAL_SET = [
    "model.img_size=64",
    "model.num_frames=4",
    "model.embed_dim=96",
    "model.num_heads=2",
    "model.num_classes=7",
]


def _clip(B, T=8, size=224, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return normalize(torch.randint(0, 256, (B, 3, T, size, size), generator=gen))


def test_flop_counter_sees_attention():
    q, k, v = torch.randn(1, 2, 10, 8), torch.randn(1, 2, 11, 8), torch.randn(1, 2, 11, 8)

    class Attn(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.scaled_dot_product_attention(x, k, v)

    assert torch_counted_gflops(Attn(), q) * 1e9 == 2 * 2 * 10 * 11 * 8


@pytest.mark.slow
def test_dense_deit_s_matches_flop_counter():
    torch.manual_seed(0)
    model = haltingvt.create_model("minik_g03_b10", keep_rate=[1.0, 1.0], halting=False).eval()
    ours = dense_gflops(model.arch)
    assert ours == pytest.approx(dense_gflops("minik_g03_b10"))
    measured = torch_counted_gflops(model, _clip(1))
    assert ours == pytest.approx(measured, rel=0.02)
    # DeiT-S on 8 frames (~8 x 4.6) plus temporal attention and joint attention over 1569 tokens
    assert 50 < ours < 60


@pytest.mark.slow
def test_halting_deit_s_matches_flop_counter():
    torch.manual_seed(0)
    model = haltingvt.create_model("minik_g03_b10").eval()
    with torch.no_grad():  # make tokens halt at different depths (channel 0 rises by 0.3 per layer)
        for block in model.blocks[2:]:
            block.mlp.fc2.bias[0] = 0.3
    clip = _clip(1, seed=1)
    with torch.inference_mode():
        out = model(clip, execution="compact")
    counts = out.token_counts
    assert counts[0, 0] == tokens_after_glimpser(model.arch) == 1 + 59 * 8
    assert 0 < counts[0, -1] < counts[0, 0] and len(set(counts[0].tolist())) > 3
    ours = float(clip_gflops(model.arch, counts)[0])
    measured = torch_counted_gflops(model, clip, execution="compact")
    assert ours == pytest.approx(measured, rel=0.02)  # compact's ghost key is the only extra
    assert 8.5 < ours < glimpser_only_gflops(model.arch)


@pytest.mark.parametrize("keep,fuse", [([1.0, 0.3], False), ([0.7, 0.5], True), ([0.5, 1.0], False)])
def test_token_bookkeeping_matches_model(keep, fuse):
    arch = {**TINY_ARCH, "keep_rate": keep, "fuse_token": fuse, "halting": False, "num_classes": 5}
    model = haltingvt.create_model(arch).eval()
    clip = _clip(2, T=4, size=32)
    with torch.inference_mode():
        out = model(clip)
    rows = layer_breakdown(arch, "glimpser")
    assert [r.tokens_out - 1 for r in rows[1:3]] == out.left_tokens
    assert tokens_after_glimpser(arch) == 1 + out.left_tokens[-1]
    # halting=False reports every token active: clip_gflops must equal the Glimpser-only count
    torch.testing.assert_close(
        clip_gflops(arch, out.token_counts), torch.full((2,), glimpser_only_gflops(arch), dtype=torch.float64)
    )
    # the fused token's weighted sum is elementwise (not a matmul), FlopCounterMode does not see it
    assert glimpser_only_gflops(arch) == pytest.approx(torch_counted_gflops(model, clip) / 2, rel=0.01)


def test_clip_gflops_shapes_and_errors():
    arch = haltingvt.config.resolve_arch("minik_g03_b10")
    M = tokens_after_glimpser(arch)
    full = torch.full((3, 10), float(M))
    exited = full.clone()
    exited[1, 4:] = 0
    g = clip_gflops(arch, exited)
    assert g.shape == (3,) and g.dtype == torch.float64
    assert g[0] == pytest.approx(glimpser_only_gflops(arch)) and g[1] < g[0]
    assert clip_gflops(arch, full[0]).shape == (1,)
    with pytest.raises(ValueError, match="10"):
        clip_gflops(arch, torch.ones(2, 9))
    # dense per-layer: 12 C^2 N + 2 C N^2 for a joint layer
    joint = [r for r in layer_breakdown(arch, "dense") if r.kind == "joint"]
    N, C = 1 + 196 * 8, 384
    assert len(joint) == 10 and joint[0].macs == 12 * C * C * N + 2 * C * N * N
    # the temporal/spatial size overrides change the counts consistently
    assert dense_gflops(arch, num_frames=4) < dense_gflops(arch) and math.isclose(
        dense_gflops(arch, img_size=224), dense_gflops(arch)
    )


def test_cli_tables(capsys):
    assert cli.main(["flops", "minik_g03_b10"]) == 0
    text = capsys.readouterr().out
    assert "dense (no selection, no halting)" in text and "Glimpser only" in text
    assert f"dense {dense_gflops('minik_g03_b10'):.2f}" in text and "blocks.11" in text


@pytest.mark.slow
def test_cli_release_checkpoint_random_input_json(capsys):
    argv = [
        "flops",
        "minik_g03_b10",
        "--set",
        *OFFICIAL_SET,
        "--checkpoint",
        str(OFFICIAL / "checkpoint.pth"),
        "--random-input",
        "--json",
    ]
    assert cli.main(argv) == 0
    res = json.loads(capsys.readouterr().out)
    h = res["halting"]
    assert h["num_views"] == 1 and len(h["token_counts"][0]) == 10
    assert len(h["layers"]) == 1 + 12 + 1
    assert res["dense"]["gflops"] > res["glimpser_only"]["gflops"] >= h["gflops"] > 0
    assert h["gflops"] == pytest.approx(sum(r["gflops"] for r in h["layers"]))


def test_cli_errors(capsys):
    assert cli.main(["flops", "minik_g03_b10", "--checkpoint", "x.pth"]) == 2
    assert "--random-input" in capsys.readouterr().err
    assert cli.main(["flops", "minik_g03_b10", "--set", "model.nosuch=1"]) == 2


@pytest.mark.slow
def test_cli_frame_folder_views(tmp_path, capsys):
    gen = torch.Generator().manual_seed(0)
    for i in range(1, 9):
        frame = torch.randint(0, 256, (40, 48, 3), generator=gen, dtype=torch.uint8).numpy()
        Image.fromarray(frame).save(tmp_path / f"img_{i:05}.jpg")
    data = [
        "data.test_scale=64",
        "data.crop_size=64",
        "data.clip_len=4",
        "data.frame_interval=2",
        "data.test_num_crops=3",
    ]
    argv = [
        "flops",
        "minik_g03_b10",
        "--set",
        *OFFICIAL_SET,
        *data,
        "--checkpoint",
        str(OFFICIAL / "checkpoint.pth"),
        "--video",
        str(tmp_path),
        "--json",
    ]
    assert cli.main(argv) == 0
    h = json.loads(capsys.readouterr().out)["halting"]
    assert h["num_views"] == 3 and h["num_frames"] == 4 and h["img_size"] == 64
    assert len(h["gflops_per_view"]) == 3
    assert cli.main(["flops", "minik_g03_b10", "--video", str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err
