"""Weight files: ImageNet (DeiT) init, our own checkpoints, format detection, resizing."""

import pytest
import timm
import torch

import haltingvt
from haltingvt.models.keymaps import arch_from_weights, detect_format
from haltingvt.models.posembed import resize_pos_embed, resize_time_embed
from haltingvt.models.weights import model_payload

from model_helpers import tiny_model


@pytest.mark.slow
def test_imagenet_init_from_local_deit_file(tmp_path):
    """A DeiT-S state dict built locally with timm initialises an 8-frame model (docs/design.md, section 1)."""
    deit = timm.create_model("deit_small_patch16_224", pretrained=False)
    path = tmp_path / "deit_s.pth"
    torch.save({"model": deit.state_dict()}, path)
    model = haltingvt.create_model(
        dict(img_size=112, patch_size=16, num_frames=8, embed_dim=384, num_heads=6, keep_rate=[1.0, 0.3]), num_classes=5
    )
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
    assert init["new"] == sorted(
        [
            "time_embed",
            "blocks.0.temporal_fc.weight",
            "blocks.0.temporal_fc.bias",
            "blocks.1.temporal_fc.weight",
            "blocks.1.temporal_fc.bias",
            "head.fc_cls.weight",
            "head.fc_cls.bias",
            "head.fc_motion.weight",
            "head.fc_motion.bias",
        ]
    )
    for key in init["new"]:
        torch.testing.assert_close(own[key], fresh[key], rtol=0, atol=0, msg=key)
    assert torch.count_nonzero(model.blocks[1].temporal_fc.weight) == 0
    assert torch.count_nonzero(model.blocks[0].temporal_fc.weight) > 0
    assert init["dropped"] == ["head.bias", "head.weight"]


def test_own_checkpoint_roundtrip(tmp_path):
    model = tiny_model()
    path = haltingvt.save_checkpoint(tmp_path / "ckpt.pth", model_payload(model, {"name": "x"}, epoch=3))
    other = tiny_model()
    meta = haltingvt.load_checkpoint(other, path)
    assert meta["epoch"] == 3 and meta["arch"]["embed_dim"] == 48
    for a, b in zip(model.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)
    assert not list(tmp_path.glob("*.tmp"))


def test_pos_embed_resize_is_nearest_and_arch_from_weights(tmp_path):
    pe = torch.arange(1 + 4 * 4, dtype=torch.float32).view(1, -1, 1)
    out = resize_pos_embed(pe, (8, 8))
    grid = pe[0, 1:, 0].view(4, 4)
    assert out[0, 0, 0] == 0 and torch.equal(
        out[0, 1:, 0].view(8, 8), grid.repeat_interleave(2, 0).repeat_interleave(2, 1)
    )
    te = torch.arange(4, dtype=torch.float32).view(1, 4, 1)
    assert resize_time_embed(te, 8)[0, :, 0].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]

    model = tiny_model(depth=3)
    payload = {"format": "haltingvt", **model_payload(model)}
    assert detect_format(payload) == "haltingvt"
    assert arch_from_weights(payload) == {
        "embed_dim": 48,
        "patch_size": 8,
        "depth": 3,
        "divid_depth": 2,
        "mlp_ratio": 4.0,
        "num_classes": 5,
    }
    with pytest.raises(haltingvt.CheckpointError, match="x.pth: not a HaltingVT"):
        detect_format({"foo": 1}, "x.pth")


def test_digest_covers_metadata_and_tensors(tmp_path):
    """The digest of our .safetensors changes with any metadata entry or tensor; an edit with the digest kept
    is refused, an edit whose digest was recomputed is read as edited (the digest is for damage, not a
    signature)."""
    import json
    import struct

    from haltingvt.io.tensorfile import content_digest, save_safetensors
    from haltingvt.models.weights import CheckpointError, read_checkpoint

    tensors = {"w": torch.arange(6.0).view(2, 3)}
    meta = {"format": "haltingvt", "arch": json.dumps({"keep_rate": [1.0, 0.5]})}
    base = content_digest(tensors, meta)
    assert content_digest(tensors, {**meta, "digest": "x"}) == base  # the digest entry itself is left out
    for changed in (
        {**meta, "arch": json.dumps({"keep_rate": [1.0, 0.4]})},
        {**meta, "extra": ""},
        {k: v for k, v in meta.items() if k != "arch"},
    ):
        assert content_digest(tensors, changed) != base
    assert content_digest({"w": tensors["w"].clone().index_fill_(1, torch.tensor([0]), 9)}, meta) != base
    assert content_digest({"v": tensors["w"]}, meta) != base
    assert content_digest({"w": tensors["w"].double()}, meta) != base

    path = save_safetensors(tmp_path / "w.safetensors", tensors, {"classes": ["a", "b"]})
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    header["__metadata__"]["classes"] = json.dumps(["a", "c"])
    text = json.dumps(header).encode()
    (tmp_path / "edited.safetensors").write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n :])
    with pytest.raises(CheckpointError, match="edited.safetensors: the contents .* do not match their sha256 digest"):
        read_checkpoint(tmp_path / "edited.safetensors")


def test_folder_leftovers_removed_only_when_their_writer_is_gone(tmp_path):
    import os
    import subprocess
    import sys

    from haltingvt.models.weights import CheckpointError, atomic_write_folder, interrupted_save, read_checkpoint

    dead = int(
        subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout
    )
    target = tmp_path / "m"
    stale_new = tmp_path / f".m.p{dead}.abcd_123.new"
    live_new = tmp_path / f".m.p{os.getppid()}.abcd_123.new"  # a running writer's: kept
    other = tmp_path / f".other.p{dead}.abcd_123.new"  # another target's: kept
    for d in (stale_new, live_new, other):
        d.mkdir()
        (d / "config.json").write_text("{}")
    # the fallback's window: the previous folder renamed away, the new one not yet in
    old = tmp_path / f".m.p{dead}.abcd_456.old"
    old.mkdir()
    (old / "keep.txt").write_text("previous")
    assert interrupted_save(target) == old
    with pytest.raises(
        CheckpointError, match=r"interrupted save_pretrained left the previous folder as .*abcd_456\.old"
    ):
        read_checkpoint(target)
    atomic_write_folder(target, {"a.txt": b"new"})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["m", live_new.name, other.name])
    assert (target / "keep.txt").read_text() == "previous" and (target / "a.txt").read_bytes() == b"new"
