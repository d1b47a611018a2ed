"""Other checkpoints' keys -> ours (as timm's ``checkpoint_filter_fn`` beside a model): the release's
MMEngine checkpoints and DeiT/ViT ImageNet weights; which kind a checkpoint is (:func:`detect_format`, the
one place that tells the kinds apart) and the architecture its weight shapes reveal (:func:`arch_from_weights`).

The functions take the model as any module with HaltingVT's attributes (depth, divid_depth,
tubelet_size, img_size, patch_size, pos_embed, time_embed): this module sits below the model's.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch

from ..io.errors import CheckpointError
from ..io.tensorfile import FORMAT
from .posembed import resize_pos_embed, resize_time_embed


def detect_format(obj: Any, path: str | os.PathLike[str] | None = None) -> str:
    """'haltingvt', 'release' or 'imagenet' (DeiT/ViT); otherwise CheckpointError (naming ``path``)."""
    if isinstance(obj, Mapping) and obj.get("format") == FORMAT:
        return "haltingvt"
    sd = obj.get("state_dict", obj) if isinstance(obj, Mapping) else None
    if isinstance(sd, Mapping) and any(str(k).startswith("backbone.model.") for k in sd):
        return "release"
    sd = obj.get("model", obj) if isinstance(obj, Mapping) else None
    if isinstance(sd, Mapping) and "patch_embed.proj.weight" in sd:
        return "imagenet"
    where = f"{path}: " if path is not None else ""
    raise CheckpointError(f"{where}not a HaltingVT, release (MMEngine) or DeiT/ViT checkpoint")


def state_dict_of(obj: Any, kind: str) -> Mapping[str, Any]:
    """The weights inside a checkpoint object of ``kind`` (keys as stored in the file)."""
    sd: Mapping[str, Any]
    if kind == "haltingvt":
        sd = obj.get("model", {})
    elif kind == "release":
        sd = obj.get("state_dict", obj)
    else:
        sd = obj.get("model", obj)
    return sd


def arch_from_weights(obj: Any, kind: str | None = None) -> dict[str, Any]:
    """Architecture settings readable from the weights' shapes: embed_dim, patch_size, depth, divid_depth,
    mlp_ratio, num_classes (num_heads is not). Release keys are converted first."""
    kind = kind or detect_format(obj)
    sd = state_dict_of(obj, kind)
    if kind == "release":
        sd = from_release(sd)
    arch: dict[str, Any] = {}
    patch: Any = sd.get("patch_embed.proj.weight")
    if hasattr(patch, "shape"):
        arch["embed_dim"], arch["patch_size"] = int(patch.shape[0]), int(patch.shape[-1])
        if patch.ndim == 5:  # Conv3d: (C, 3, tubelet, p, p)
            arch["tubelet_size"] = int(patch.shape[2])
    blocks = {int(k.split(".")[1]) for k in sd if k.startswith("blocks.")}
    if blocks:
        arch["depth"] = max(blocks) + 1
        arch["divid_depth"] = len({k for k in sd if k.startswith("blocks.") and ".temporal_attn.qkv.weight" in k})
    fc1: Any = sd.get("blocks.0.mlp.fc1.weight")
    if hasattr(fc1, "shape"):
        arch["mlp_ratio"] = fc1.shape[0] / fc1.shape[1]
    head: Any = sd.get("head.fc_cls.weight")
    if hasattr(head, "shape"):
        arch["num_classes"] = int(head.shape[0])
    return arch


def from_release(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Release keys -> ours: backbone.model.X -> X, cls_head.fc_* -> head.fc_*."""
    out = {}
    for key, value in state_dict.items():
        if key.startswith("backbone.model."):
            out[key[len("backbone.model.") :]] = value
        elif key.startswith("cls_head."):
            out["head." + key[len("cls_head.") :]] = value
        else:
            out[key] = value  # reported as unexpected
    return out


def from_imagenet(
    state_dict: Mapping[str, torch.Tensor], model: Any, report: dict[str, list[str]] | None = None
) -> dict[str, torch.Tensor]:
    """DeiT/ViT ImageNet weights -> HaltingVT initialisation (docs/design.md, section 1).

    The classifier is dropped, a distillation token is removed, blocks beyond the model depth are
    ignored, and each Glimpser layer's temporal_attn/temporal_norm1 start as copies of attn/norm1.
    time_embed, temporal_fc and the heads keep the model's own initialisation. A tubelet model
    (``tubelet_size`` t > 1) gets the 2-D patch filter inflated over time, divided by t (I3D/ViViT "average"
    inflation: a static clip embeds as the image did).
    ``report``, if given, is filled with the model keys taken as they are ("copied"), the patch filter
    inflated over time ("inflated", tubelet models only), the temporal keys
    copied from spatial ones ("temporal_copies"), the keys left at the model's init ("new") and the
    file's keys not used ("dropped").
    """
    sd = {k: v for k, v in state_dict.items() if not k.startswith(("head.", "head_dist.", "fc_norm."))}
    if "dist_token" in sd:
        sd.pop("dist_token")
        sd["pos_embed"] = torch.cat([sd["pos_embed"][:, :1], sd["pos_embed"][:, 2:]], dim=1)
    sd = {k: v for k, v in sd.items() if not (k.startswith("blocks.") and int(k.split(".")[1]) >= model.depth)}
    copied = sorted(sd)
    inflated = []
    patch = sd.get("patch_embed.proj.weight")
    if model.tubelet_size > 1 and patch is not None and patch.ndim == 4:
        t = model.tubelet_size
        sd["patch_embed.proj.weight"] = patch.unsqueeze(2).repeat(1, 1, t, 1, 1) / t
        inflated.append("patch_embed.proj.weight")
        copied.remove("patch_embed.proj.weight")
    temporal = []
    for i in range(model.divid_depth):
        for src, dst in (("attn.", "temporal_attn."), ("norm1.", "temporal_norm1.")):
            for key in [k for k in sd if k.startswith(f"blocks.{i}.{src}")]:
                temporal.append(key.replace(f"blocks.{i}.{src}", f"blocks.{i}.{dst}"))
                sd[temporal[-1]] = sd[key].clone()
    own = model.state_dict()
    new = [k for k in own if (k == "time_embed" or k.startswith("head.") or ".temporal_fc." in k) and k not in sd]
    for key in new:
        sd[key] = own[key]
    if report is not None:
        report.update(
            copied=copied,
            inflated=inflated,
            temporal_copies=sorted(temporal),
            new=sorted(new),
            dropped=sorted(set(state_dict) - set(copied) - set(inflated)),
        )
    return sd


def fit_embeddings(sd: dict[str, torch.Tensor], model: Any) -> list[str]:
    """Nearest-neighbour resize of pos/time embeddings when input size or frame count differ; returns
    the keys resized."""
    resized = []
    if "pos_embed" in sd and sd["pos_embed"].shape != model.pos_embed.shape:
        grid = model.img_size // model.patch_size
        sd["pos_embed"] = resize_pos_embed(sd["pos_embed"], (grid, grid))
        resized.append("pos_embed")
    if "time_embed" in sd and sd["time_embed"].shape != model.time_embed.shape:
        sd["time_embed"] = resize_time_embed(sd["time_embed"], model.time_embed.shape[1])
        resized.append("time_embed")
    return resized
