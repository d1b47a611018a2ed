"""Token pictures: depth map from the token order, overlay pixels, PNG grid and GIF files."""

import numpy as np
import pytest
import torch
from PIL import Image

import haltingvt
from haltingvt.data import normalize
from haltingvt.visualize import (
    layer_colors,
    save_token_gif,
    save_token_grid,
    token_depth_map,
    token_overlay,
    tokens_of,
)

ARCH = dict(
    img_size=32,
    patch_size=8,
    num_frames=4,
    embed_dim=48,
    num_heads=3,
    depth=4,
    divid_depth=2,
    keep_rate=[1.0, 0.5],
    halt_center=2.0,
)


def test_depth_map_follows_token_order():
    arch = dict(patch_size=8, depth=4, divid_depth=2)
    kept = torch.tensor([[3, 0], [1, 2]])  # frame t, slot s -> patch
    # index 0 = cls, 1 + s*T + t: (s0,t0), (s0,t1), (s1,t0), (s1,t1); halting layers are 1-based
    depth = torch.tensor([2, 1, 2, 2, 1])
    layers = token_depth_map(kept, depth, arch, (2, 2), 2)
    assert layers.tolist() == [[[4, 0], [0, 3]], [[0, 4], [3, 0]]]
    # no selection: slot s is patch s; a model without halting (depth n + 1) is clipped to the last layer
    full = token_depth_map(None, torch.tensor([3] * 9), arch, (2, 2), 2)
    assert (full == 4).all()
    # a fused token chosen by a later Glimpser layer (-1) is not a patch
    assert token_depth_map(torch.tensor([[3, -1], [1, 2]]), depth, arch, (2, 2), 2)[0].tolist() == [[0, 0], [0, 3]]
    with pytest.raises(ValueError, match="halt_depth"):
        token_depth_map(kept, torch.ones(6, dtype=torch.long), arch, (2, 2), 2)
    with pytest.raises(ValueError, match="kept_patches"):
        token_depth_map(torch.zeros(3, 2, dtype=torch.long), depth, arch, (2, 2), 2)


def test_overlay_pixels():
    arch = dict(patch_size=8, depth=4, divid_depth=2)
    clip = torch.full((3, 2, 16, 16), 200, dtype=torch.uint8)
    kept = torch.tensor([[3, 0], [1, 2]])
    depth = torch.tensor([2, 1, 2, 2, 1])
    over = token_overlay(clip, kept, depth, arch)
    assert over.shape == (2, 16, 16, 3) and over.dtype == np.uint8
    dropped = over[0, 0:8, 8:16]  # frame 0, patch 1 was dropped: dark grey
    assert (dropped == dropped[..., :1]).all() and dropped.max() < 100
    colors = layer_colors(arch)
    assert not np.array_equal(colors[3], colors[4])
    # kept patches are tinted with their layer's colour
    assert not np.array_equal(over[0, 0, 0], over[0, 8, 8])
    with pytest.raises(ValueError, match="uint8"):
        token_overlay(clip.float(), kept, depth, arch)


def _clips():
    static = torch.full((3, 4, 32, 32), 60, dtype=torch.uint8)
    motion = static.clone()
    for t in range(4):  # a bright square moving right
        motion[:, t, 4:14, 2 + 6 * t : 12 + 6 * t] = torch.tensor([250, 200, 40]).view(3, 1, 1)
        static[:, t, 4:14, 2:12] = torch.tensor([250, 200, 40]).view(3, 1, 1)
    return motion, static


def test_grid_and_gif_from_model(tmp_path):
    torch.manual_seed(0)
    model = haltingvt.create_model(ARCH, num_classes=5).eval()
    motion, static = _clips()
    with torch.no_grad():
        out = model(normalize(torch.stack([motion, static])))
    pictures = []
    for i, clip in enumerate((motion, static)):
        kept, depth = tokens_of(out, i)
        assert kept.shape == (4, 8) and depth.shape == (1 + 8 * 4,)
        png = save_token_grid(clip, kept, depth, model.arch, tmp_path / f"{i}.png", title=f"clip {i}")
        gif = save_token_gif(clip, kept, depth, model.arch, tmp_path / f"{i}.gif")
        with Image.open(png) as im:
            assert im.format == "PNG" and im.width >= 400 and im.height >= 200
            pictures.append(np.asarray(im.convert("RGB")))
        with Image.open(gif) as im:
            assert im.format == "GIF" and im.n_frames == 4 and im.height >= 192
        # every frame keeps k = 8 of 16 patches
        layers = token_depth_map(kept, depth, model.arch, (4, 4), 4)
        assert ((layers > 0).sum(axis=(1, 2)) == 8).all() and layers.max() <= 4
    assert pictures[0].shape == pictures[1].shape
    assert not np.array_equal(pictures[0], pictures[1])
