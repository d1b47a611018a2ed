"""Tubelet embedding (``tubelet_size`` > 1): one token per t frames x p x p pixels (ViViT/VideoMAE)."""

import pytest
import timm
import torch

import haltingvt
from haltingvt.flops import clip_gflops, dense_gflops, dense_tokens, tokens_after_glimpser, torch_counted_gflops
from haltingvt.models import ArchError
from haltingvt.models.weights import arch_from_weights, check_arch, describe_init, estimate_params, model_payload
from haltingvt.visualize import token_depth_map

from model_helpers import tiny_model


def test_tokens_time_steps_and_compact_equals_masked():
    torch.manual_seed(0)
    model = tiny_model(tubelet_size=2, num_frames=8).eval()
    assert model.time_embed.shape == (1, 4, 48) and model.patch_embed.proj.weight.shape == (48, 3, 2, 8, 8)
    clips = torch.randn(5, 3, 8, 32, 32)
    with torch.no_grad():
        masked = model(clips, execution="masked")
        compact = model(clips, execution="compact")
    assert masked.left_tokens == [16 * 4, 8 * 4]  # 4 time steps of 16 patches, then half kept per step
    assert masked.kept_patches[0].shape == (5, 4, 8)
    assert masked.token_counts[0, 0] == 1 + 8 * 4 == tokens_after_glimpser(model.arch, num_frames=8)
    assert dense_tokens(model.arch) == 1 + 16 * 4
    torch.testing.assert_close(compact.logits, masked.logits, atol=1e-4, rtol=0)
    assert torch.equal(compact.token_counts, masked.token_counts)
    with pytest.raises(ValueError, match="tubelets of 2 frames"):
        model(torch.randn(1, 3, 7, 32, 32))
    with pytest.raises(ArchError, match="num_frames 6 is not a multiple of tubelet_size 4"):
        tiny_model(tubelet_size=4, num_frames=6)


def test_flops_count_the_tubelet_embedding():
    torch.manual_seed(0)
    model = tiny_model(tubelet_size=2, num_frames=8, keep_rate=[1.0, 1.0], halting=False).eval()
    clip = torch.randn(1, 3, 8, 32, 32)
    assert dense_gflops(model.arch) == pytest.approx(torch_counted_gflops(model, clip), rel=0.02)
    # Same number of tokens as the 2-frame-per-token model's half: the joint layers cost what 4 frames cost.
    frames4 = tiny_model(num_frames=4, keep_rate=[1.0, 1.0], halting=False)
    embed_extra = 16 * 4 * 3 * 8 * 8 * 48 / 1e9  # the second frame of every tubelet
    assert dense_gflops(model.arch) == pytest.approx(dense_gflops(frames4.arch) + embed_extra)
    model.cfg.halting = True
    counts = torch.tensor([[65.0, 30.0, 10.0, 2.0]])
    assert clip_gflops(model.arch, counts, num_frames=8).shape == (1,)


@pytest.mark.slow
def test_imagenet_filter_is_inflated_over_time(tmp_path):
    """A static clip embeds through the inflated tubelet filter as each frame did through the 2-D one."""
    deit = timm.create_model("deit_tiny_patch16_224", pretrained=False)
    path = tmp_path / "deit_t.pth"
    torch.save({"model": deit.state_dict()}, path)
    model = haltingvt.create_model(
        dict(
            img_size=32,
            patch_size=16,
            num_frames=4,
            tubelet_size=2,
            embed_dim=192,
            num_heads=3,
            depth=4,
            keep_rate=[1.0, 0.5],
        ),
        num_classes=5,
    )
    meta = haltingvt.load_checkpoint(model, path)
    assert meta["init"]["inflated"] == ["patch_embed.proj.weight"]
    assert "patch_embed.proj.weight" not in meta["init"]["copied"] + meta["init"]["dropped"]
    assert "inflated over time patch_embed.proj.weight" in describe_init("deit_t.pth", meta)
    w = model.patch_embed.proj.weight
    assert w.shape == (192, 3, 2, 16, 16)
    torch.testing.assert_close(w.sum(dim=2), deit.patch_embed.proj.weight)
    frame = torch.randn(1, 3, 32, 32)
    static = frame[:, :, None].expand(-1, -1, 2, -1, -1)
    torch.testing.assert_close(
        model.patch_embed.proj(static)[:, :, 0], deit.patch_embed.proj(frame), atol=1e-5, rtol=1e-5
    )


def test_checkpoint_roundtrip_and_arch_checks(tmp_path):
    model = tiny_model(tubelet_size=2, num_frames=8)
    path = tmp_path / "tube.pth"
    haltingvt.save_checkpoint(path, model_payload(model))
    again = haltingvt.create_model(model.arch)
    haltingvt.load_checkpoint(again, path)
    torch.testing.assert_close(again.patch_embed.proj.weight, model.patch_embed.proj.weight, rtol=0, atol=0)
    assert arch_from_weights({"model": model.state_dict()}, "haltingvt")["tubelet_size"] == 2
    assert estimate_params(model.arch) == sum(p.numel() for p in model.parameters())
    bad = dict(model.arch, num_frames=9)
    with pytest.raises(Exception, match="num_frames 9 is not a multiple of tubelet_size 2"):
        check_arch(bad, "ckpt.pth")


def test_token_pictures_cover_every_frame_of_a_tubelet():
    model = tiny_model(tubelet_size=2, num_frames=8).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 8, 32, 32))
    layers = token_depth_map(out.kept_patches[-1][0], out.halt_depth[0], model.arch, (4, 4), 8)
    assert layers.shape == (8, 4, 4)
    assert (layers[0::2] == layers[1::2]).all()  # both frames of a tubelet show its token
    assert ((layers > 0).reshape(8, -1).sum(1) == 8).all()  # 8 of 16 patches kept per time step
