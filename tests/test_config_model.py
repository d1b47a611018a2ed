"""Configs, create_model, compact vs masked on random weights, losses, ImageNet init."""
import math

import pytest
import timm
import torch

import haltingvt
from haltingvt.config import ConfigError, apply_overrides, load_config
from haltingvt.models.weights import model_payload

RELEASED = ["minik_g03_b5", "minik_g03_b10", "minik_g05_b20", "minik_g07_b20",
            "anet_g03_b10", "anet_g05_b10", "anet_g05_b20", "anet_g07_b20"]


def test_released_configs():
    assert set(RELEASED) <= set(haltingvt.available_configs())
    cfg = load_config("minik_g05_b20")
    assert cfg["model"]["keep_rate"] == [1.0, 0.5] and cfg["model"]["halt_center"] == 20
    assert cfg["data"]["clip_len"] == 8 and cfg["data"]["frame_interval"] == 32 and cfg["train"]["epochs"] == 20
    anet = load_config("anet_g07_b20")
    assert anet["model"]["num_frames"] == 10 and anet["loss"]["multi_label"] and anet["train"]["epochs"] == 50
    assert anet["data"]["frame_interval"] == 64


def test_overrides_and_errors():
    cfg = load_config("minik_g03_b10", ["train.lr=2e-5", "model.keep_rate=[1.0, 0.5]"])
    assert cfg["train"]["lr"] == 2e-5 and cfg["model"]["keep_rate"] == [1.0, 0.5]
    with pytest.raises(ConfigError, match="train.lrr"):
        apply_overrides(cfg, ["train.lrr=1"])
    with pytest.raises(ConfigError, match="nosuch"):
        load_config("nosuch")
    with pytest.raises(ConfigError, match="bogus"):
        haltingvt.create_model({"bogus": 1})


def test_create_model_by_name_matches_deit_small():
    model = haltingvt.create_model("minik_g03_b10")
    n_params = sum(p.numel() for p in model.parameters())
    assert model.embed_dim == 384 and len(model.blocks) == 12
    assert 22e6 < n_params < 25e6  # DeiT-S (22M) + 2 temporal attentions + heads


def _tiny(**kw):
    arch = dict(img_size=32, patch_size=8, num_frames=4, embed_dim=48, num_heads=3, depth=6, divid_depth=2,
                keep_rate=[1.0, 0.5], halt_scale=10.0, halt_center=3.0, eps=0.01)
    arch.update(kw)
    return haltingvt.create_model(arch, num_classes=5)


@pytest.mark.parametrize("fuse", [False, True])
def test_compact_equals_masked_random_weights(fuse):
    torch.manual_seed(0)
    model = _tiny(fuse_token=fuse).eval()
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
    model = _tiny().eval()
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
            assert early.token_counts[b, j + 1:].sum() == 0
            assert torch.equal(early.token_counts[b, : j + 1], masked.token_counts[b, : j + 1])


def test_kept_patches_and_resized_input():
    model = _tiny().eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 4, 32, 32))
        bigger = model(torch.randn(1, 3, 6, 48, 48))  # pos/time embeddings resized on the fly
    (kept,) = out.kept_patches
    assert kept.shape == (2, 4, 8) and int(kept.max()) < 16
    assert bigger.left_tokens == [36 * 6, 18 * 6]


def test_losses_hard_soft_and_backward():
    torch.manual_seed(0)
    model = _tiny().train()
    clips = torch.randn(4, 3, 4, 32, 32)
    out = model(clips)
    assert out.execution == "masked"
    crit = haltingvt.HaltingVTLoss(distr_prior=True, distr_target_depth=2)
    motion = torch.tensor([1, 0, 1, 0])
    hard = crit(out, torch.tensor([0, 0, 3, 3]), motion)
    soft = crit(out, torch.nn.functional.one_hot(torch.tensor([0, 0, 3, 3]), 5).float(), motion)
    torch.testing.assert_close(hard.action, soft.action)
    assert hard.prior > 0 and hard.ponder > 0 and hard.motion > 0
    hard.total.backward()
    assert model.blocks[5].mlp.fc2.weight.grad is not None
    no_motion = haltingvt.HaltingVTLoss(motion_loss=False)(out, torch.tensor([0, 0, 3, 3]), motion)
    assert no_motion.total.item() < hard.total.item()


def test_imagenet_init_from_local_deit_file(tmp_path):
    """A DeiT-S state dict built locally with timm initialises an 8-frame model (SPEC section 1)."""
    deit = timm.create_model("deit_small_patch16_224", pretrained=False)
    path = tmp_path / "deit_s.pth"
    torch.save({"model": deit.state_dict()}, path)
    model = haltingvt.create_model(dict(img_size=112, patch_size=16, num_frames=8, embed_dim=384, num_heads=6,
                                        keep_rate=[1.0, 0.3]), num_classes=5)
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    meta = haltingvt.load_checkpoint(model, path)
    assert meta["format"] == "imagenet"
    init, sd, own = meta["init"], deit.state_dict(), model.state_dict()

    # Copied as they are: every ViT tensor of the 12 blocks, patch embedding, cls token, final norm.
    assert len(init["copied"]) == len(sd) - 2  # all but head.weight/head.bias
    for key in init["copied"]:
        if key not in init["resized"]:
            torch.testing.assert_close(own[key], sd[key], rtol=0, atol=0, msg=key)
    # Temporal attention and its norm in both Glimpser layers start as copies of the spatial ones.
    assert len(init["temporal_copies"]) == 2 * 6  # qkv w/b, proj w/b, norm w/b per layer
    for i in range(2):
        torch.testing.assert_close(model.blocks[i].temporal_attn.qkv.weight, sd[f"blocks.{i}.attn.qkv.weight"])
        torch.testing.assert_close(model.blocks[i].temporal_norm1.bias, sd[f"blocks.{i}.norm1.bias"])
    # Resized: the 14x14 position embedding to 7x7 (nearest), cls position kept.
    assert init["resized"] == ["pos_embed"] and model.pos_embed.shape == (1, 50, 384)
    torch.testing.assert_close(model.pos_embed[:, 0], sd["pos_embed"][:, 0])
    torch.testing.assert_close(model.pos_embed[0, 1], sd["pos_embed"][0, 1])  # grid (0, 0)
    torch.testing.assert_close(model.pos_embed[0, 2], sd["pos_embed"][0, 3])  # grid (0, 1) <- (0, 2)
    # Left new: time embedding, temporal_fc (zero in layer 1: TimeSformer convention), the two heads.
    assert init["new"] == sorted(["time_embed", "blocks.0.temporal_fc.weight", "blocks.0.temporal_fc.bias",
                                  "blocks.1.temporal_fc.weight", "blocks.1.temporal_fc.bias",
                                  "head.fc_cls.weight", "head.fc_cls.bias", "head.fc_motion.weight",
                                  "head.fc_motion.bias"])
    for key in init["new"]:
        torch.testing.assert_close(own[key], fresh[key], rtol=0, atol=0, msg=key)
    assert torch.count_nonzero(model.blocks[1].temporal_fc.weight) == 0
    assert torch.count_nonzero(model.blocks[0].temporal_fc.weight) > 0
    assert init["dropped"] == ["head.bias", "head.weight"]


def test_own_checkpoint_roundtrip(tmp_path):
    model = _tiny()
    path = haltingvt.save_checkpoint(tmp_path / "ckpt.pth", model_payload(model, {"name": "x"}, epoch=3))
    other = _tiny()
    meta = haltingvt.load_checkpoint(other, path)
    assert meta["epoch"] == 3 and meta["arch"]["embed_dim"] == 48
    for a, b in zip(model.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)
    assert not list(tmp_path.glob("*.tmp"))


def test_scratch_init_keeps_halting_channel_clear():
    """init_scheme 'scratch': sin-cos embeddings and Xavier weights, but neither the embeddings nor any residual
    branch write channel 0 (the halting channel) at first, so most tokens of a fresh model go deep."""
    arch = {"img_size": 32, "patch_size": 8, "num_frames": 4, "embed_dim": 32, "num_heads": 2, "depth": 4,
            "divid_depth": 2, "keep_rate": [1.0, 0.5], "init_scheme": "scratch"}
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
