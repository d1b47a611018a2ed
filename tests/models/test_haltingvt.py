"""The model: create_model, compact vs masked on random weights, kept patches, init schemes."""

import math

import pytest
import torch

import haltingvt

from model_helpers import tiny_model


@pytest.mark.slow
def test_create_model_by_name_matches_deit_small():
    model = haltingvt.create_model("minik_g03_b10")
    n_params = sum(p.numel() for p in model.parameters())
    assert model.embed_dim == 384 and len(model.blocks) == 12
    assert 22e6 < n_params < 25e6  # DeiT-S (22M) + 2 temporal attentions + heads


@pytest.mark.parametrize("fuse", [False, True])
def test_compact_equals_masked_random_weights(fuse):
    torch.manual_seed(0)
    model = tiny_model(fuse_token=fuse).eval()
    clips = torch.randn(6, 3, 4, 32, 32)
    with torch.no_grad():
        masked = model(clips, execution="masked")
        compact = model(clips, execution="compact")
    torch.testing.assert_close(compact.logits, masked.logits, atol=1e-4, rtol=0)
    torch.testing.assert_close(compact.features, masked.features, atol=1e-4, rtol=0)
    assert torch.equal(compact.token_counts, masked.token_counts)
    assert torch.equal(compact.halting_masks, masked.halting_masks)
    # tokens really halt at different depths in this batch, so the test exercises padding and ghosts
    assert len(set(masked.token_counts[:, 2].tolist())) > 1
    k = math.ceil(0.5 * 16)
    assert masked.left_tokens == [64, 4 * (k + int(fuse))]


def test_compact_is_default_in_eval_and_early_exit():
    torch.manual_seed(1)
    model = tiny_model().eval()
    clips = torch.randn(4, 3, 4, 32, 32)
    with torch.no_grad():
        default = model(clips)
        masked = model(clips, execution="masked")
        early = model(clips, early_exit=True)
    assert default.execution == "compact"
    torch.testing.assert_close(early.logits, masked.logits, atol=1e-4, rtol=0)
    exited = early.early_exited
    for b in range(4):
        if exited[b]:
            j = int(early.exit_layer[b])
            assert not masked.halting_masks[b, j, 0]  # cls halted at that layer
            assert early.token_counts[b, j + 1 :].sum() == 0
            assert torch.equal(early.token_counts[b, : j + 1], masked.token_counts[b, : j + 1])


def test_kept_patches_and_resized_input():
    model = tiny_model().eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 4, 32, 32))
        bigger = model(torch.randn(1, 3, 6, 48, 48))  # pos/time embeddings resized on the fly
    (kept,) = out.kept_patches
    assert kept.shape == (2, 4, 8) and int(kept.max()) < 16
    assert bigger.left_tokens == [36 * 6, 18 * 6]


def test_scratch_init_keeps_halting_channel_clear():
    """init_scheme 'scratch': sin-cos embeddings and Xavier weights, but neither the embeddings nor any residual
    branch write channel 0 (the halting channel) at first, so most tokens of a fresh model go deep."""
    arch = {
        "img_size": 32,
        "patch_size": 8,
        "num_frames": 4,
        "embed_dim": 32,
        "num_heads": 2,
        "depth": 4,
        "divid_depth": 2,
        "keep_rate": [1.0, 0.5],
        "init_scheme": "scratch",
    }
    model = haltingvt.create_model(arch, num_classes=5).eval()
    assert model.pos_embed[..., 0].abs().max() == 0 and model.time_embed[..., 0].abs().max() == 0
    assert model.pos_embed[0, 1:, 1:].std() > 0.3 and model.time_embed[0, :, 1:].std() > 0.3  # sin-cos, not 0.02
    proj = model.patch_embed.proj.weight
    bound = math.sqrt(6 / (proj.shape[0] + proj[0].numel()))  # Xavier-uniform on the flattened conv
    assert proj.abs().max() <= bound and proj.abs().max() > 0.8 * bound
    for block in model.blocks:
        assert block.mlp.fc2.weight[0].abs().max() == 0 and block.attn.proj.weight[0].abs().max() == 0
    torch.manual_seed(0)
    out = model(torch.rand(2, 3, 4, 32, 32) * 2 - 1, execution="masked")
    assert out.layer_scores[0] < 0.2 and (out.token_counts[:, 1] > 0.8 * out.token_counts[:, 0]).all()


def test_forward_features_and_head_split_and_unknown_keys():
    torch.manual_seed(0)
    model = haltingvt.models.create_model(
        haltingvt.HaltingVTConfig(
            img_size=32, patch_size=8, num_frames=2, embed_dim=24, num_heads=2, depth=3, num_classes=3
        )
    ).eval()
    clips = torch.randn(2, 3, 2, 32, 32)  # HaltingVTConfig straight into the model package
    out = model(clips)
    feats = model.forward_features(clips)
    logits, motion = model.forward_head(feats["features"])
    torch.testing.assert_close(out.logits, logits)
    torch.testing.assert_close(out.motion_logits, motion)
    assert set(feats) | {"logits", "motion_logits"} == set(out.to_dict())
    with pytest.raises(haltingvt.models.ArchError, match="bogus"):
        haltingvt.models.create_model({"bogus": 1})
