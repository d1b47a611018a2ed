"""Everything about model weights: reading, format detection, key conversion, resizing, writing.

Three kinds are read into a :class:`~haltingvt.models.HaltingVT`:

* the release's MMEngine checkpoints (keys ``backbone.model.*`` and ``cls_head.*``), read without
  mmengine/mmcv and without running code from the file: a restricted unpickler rebuilds tensors and
  plain containers and turns every other class into an inert placeholder;
* DeiT/ViT ImageNet weights (``{'model': {...}}``, a plain timm state dict, a ``.safetensors`` file, or
  a timm model name for users online) used as initialisation (SPEC section 1);
* our own checkpoints (``{'format': 'haltingvt', ...}``), written atomically by :func:`save_checkpoint`.

:func:`detect_format` is the one place that tells the kinds apart; :func:`arch_from_weights` reads the
architecture settings that the weight shapes reveal. Training state (optimizer, RNG, resumption) is
``haltingvt.engine.checkpoint``'s business.
"""
from __future__ import annotations

import collections
import os
import pickle
import tempfile
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import timm
import torch
import torch.nn.functional as F
from safetensors.torch import load_file as load_safetensors
from timm.layers import resample_abs_pos_embed

from ..offline import pretrained_hint, timm_download_problem

if TYPE_CHECKING:  # the model imports the resize functions below, so only a type hint goes the other way
    from .haltingvt import HaltingVT

FORMAT = "haltingvt"
FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read or does not fit the model; the message says which file and keys."""


# ----------------------------------------------------------------------------- restricted unpickling
class Placeholder:
    """Stands in for a class the unpickler will not import (e.g. mmengine's HistoryBuffer).

    It accepts any constructor arguments and pickled state and does nothing with them.
    """

    _qualname = "Placeholder"

    def __new__(cls, *args: Any, **kwargs: Any) -> "Placeholder":
        obj = object.__new__(cls)
        obj.__dict__["_args"] = args
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.__dict__["_state"] = state

    def __call__(self, *args: Any, **kwargs: Any) -> "Placeholder":
        return Placeholder()

    def __repr__(self) -> str:
        return f"<placeholder for {type(self)._qualname}>"


def _placeholder_class(module: str, name: str) -> type:
    return type(name, (Placeholder,), {"__module__": f"haltingvt.placeholder.{module}", "_qualname": f"{module}.{name}"})


def _inert_getattr(obj: Any, name: str, *default: Any) -> Any:
    """``getattr`` as pickles use it (e.g. numpy's ``getattr(dtype, 'min')``) must not reach real objects."""
    return Placeholder()


_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("builtins", "complex"): complex,
    ("builtins", "getattr"): _inert_getattr,
    ("__builtin__", "getattr"): _inert_getattr,
    ("__builtin__", "set"): set,
}
for _dtype in ("float16", "float32", "float64", "bfloat16", "int8", "int16", "int32", "int64", "uint8", "bool"):
    _SAFE_GLOBALS[("torch", _dtype)] = getattr(torch, _dtype)


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that imports only tensor/container rebuilders; any other class becomes a Placeholder."""

    def find_class(self, module: str, name: str) -> Any:
        safe = _SAFE_GLOBALS.get((module, name))
        if safe is not None:
            return safe
        return _placeholder_class(module, name)


#: Passed as ``pickle_module`` to torch.load; torch subclasses our Unpickler for storages.
restricted_pickle = types.SimpleNamespace(
    Unpickler=RestrictedUnpickler,
    load=lambda f, **kw: RestrictedUnpickler(f, **kw).load(),
    __name__="haltingvt_restricted_pickle",
)


def read_checkpoint(path: str | os.PathLike) -> Any:
    """Load a checkpoint file on the CPU without executing code from it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if path.suffix == ".safetensors":
        return load_safetensors(str(path))
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=restricted_pickle)
    except Exception as err:  # noqa: BLE001 - any reader failure is reported with the path
        raise CheckpointError(f"{path}: cannot read checkpoint: {err}") from err


# ----------------------------------------------------------------------------- key conversion
def detect_format(obj: Any, path: str | os.PathLike | None = None) -> str:
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
    if kind == "haltingvt":
        return obj.get("model", {})
    if kind == "release":
        return obj.get("state_dict", obj)
    return obj.get("model", obj)


def arch_from_weights(obj: Any, kind: str | None = None) -> dict[str, Any]:
    """Architecture settings readable from the weights' shapes: embed_dim, patch_size, depth, divid_depth,
    mlp_ratio, num_classes (num_heads is not). Release keys are converted first."""
    kind = kind or detect_format(obj)
    sd = state_dict_of(obj, kind)
    if kind == "release":
        sd = from_release(sd)
    arch: dict[str, Any] = {}
    patch = sd.get("patch_embed.proj.weight")
    if hasattr(patch, "shape"):
        arch["embed_dim"], arch["patch_size"] = int(patch.shape[0]), int(patch.shape[-1])
    blocks = {int(k.split(".")[1]) for k in sd if k.startswith("blocks.")}
    if blocks:
        arch["depth"] = max(blocks) + 1
        arch["divid_depth"] = len({k for k in sd if k.startswith("blocks.") and ".temporal_attn.qkv.weight" in k})
    fc1 = sd.get("blocks.0.mlp.fc1.weight")
    if hasattr(fc1, "shape"):
        arch["mlp_ratio"] = fc1.shape[0] / fc1.shape[1]
    head = sd.get("head.fc_cls.weight")
    if hasattr(head, "shape"):
        arch["num_classes"] = int(head.shape[0])
    return arch


def from_release(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Release keys -> ours: backbone.model.X -> X, cls_head.fc_* -> head.fc_*."""
    out = {}
    for key, value in state_dict.items():
        if key.startswith("backbone.model."):
            out[key[len("backbone.model."):]] = value
        elif key.startswith("cls_head."):
            out["head." + key[len("cls_head."):]] = value
        else:
            out[key] = value  # reported as unexpected
    return out


def from_imagenet(
    state_dict: Mapping[str, torch.Tensor], model: "HaltingVT", report: dict[str, list[str]] | None = None
) -> dict[str, torch.Tensor]:
    """DeiT/ViT ImageNet weights -> HaltingVT initialisation (SPEC section 1).

    The classifier is dropped, a distillation token is removed, blocks beyond the model depth are
    ignored, and each Glimpser layer's temporal_attn/temporal_norm1 start as copies of attn/norm1.
    time_embed, temporal_fc and the heads keep the model's own initialisation.
    ``report``, if given, is filled with the model keys taken as they are ("copied"), the temporal keys
    copied from spatial ones ("temporal_copies"), the keys left at the model's init ("new") and the
    file's keys not used ("dropped").
    """
    sd = {k: v for k, v in state_dict.items() if not k.startswith(("head.", "head_dist.", "fc_norm."))}
    if "dist_token" in sd:
        sd.pop("dist_token")
        sd["pos_embed"] = torch.cat([sd["pos_embed"][:, :1], sd["pos_embed"][:, 2:]], dim=1)
    sd = {k: v for k, v in sd.items() if not (k.startswith("blocks.") and int(k.split(".")[1]) >= model.depth)}
    copied = sorted(sd)
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
        report.update(copied=copied, temporal_copies=sorted(temporal), new=sorted(new),
                      dropped=sorted(set(state_dict) - set(copied)))
    return sd


def resize_pos_embed(pos_embed: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
    """(1, 1 + S, C) -> (1, 1 + gh*gw, C), nearest neighbour on the square patch grid; the cls position is
    kept as it is. timm's resampler with mode 'nearest' gives exactly the release's result."""
    if pos_embed.shape[1] == 1 + grid[0] * grid[1]:
        return pos_embed
    return resample_abs_pos_embed(pos_embed, list(grid), num_prefix_tokens=1, interpolation="nearest",
                                  antialias=False)


def resize_time_embed(time_embed: torch.Tensor, num_frames: int) -> torch.Tensor:
    """(1, T, C) -> (1, num_frames, C), nearest neighbour (timm has no 1-D resampler)."""
    if time_embed.shape[1] == num_frames:
        return time_embed
    return F.interpolate(time_embed.transpose(1, 2), size=num_frames, mode="nearest").transpose(1, 2)


def _fit_embeddings(sd: dict[str, torch.Tensor], model: "HaltingVT") -> list[str]:
    """Nearest-neighbour resize of pos/time embeddings when input size or frame count differ; returns
    the keys resized."""
    resized = []
    if "pos_embed" in sd and sd["pos_embed"].shape != model.pos_embed.shape:
        grid = model.img_size // model.patch_size
        sd["pos_embed"] = resize_pos_embed(sd["pos_embed"], (grid, grid))
        resized.append("pos_embed")
    if "time_embed" in sd and sd["time_embed"].shape != model.time_embed.shape:
        sd["time_embed"] = resize_time_embed(sd["time_embed"], model.num_frames)
        resized.append("time_embed")
    return resized


def _check_and_load(model: "HaltingVT", sd: Mapping[str, torch.Tensor], source: str) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    shapes = sorted(
        f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(sd)
        if sd[k].shape != own[k].shape
    )
    if missing or unexpected or shapes:
        lines = [f"{source}: checkpoint does not fit the model"]
        if missing:
            lines.append(f"  missing keys ({len(missing)}): {', '.join(missing[:20])}{' ...' if len(missing) > 20 else ''}")
        if unexpected:
            lines.append(f"  unexpected keys ({len(unexpected)}): {', '.join(unexpected[:20])}{' ...' if len(unexpected) > 20 else ''}")
        if shapes:
            lines.append(f"  shape differences ({len(shapes)}): " + "; ".join(shapes[:20]))
        raise CheckpointError("\n".join(lines))
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in sd.items()}, strict=True)


def load_checkpoint(model: "HaltingVT", path: str | os.PathLike, strict: bool = True) -> dict[str, Any]:
    """Load weights into ``model`` from a release, DeiT/ViT/timm or haltingvt checkpoint (or a timm name).

    Returns the checkpoint's metadata (``format`` plus, for ours, ``arch``/``config``/``epoch``...; for
    ImageNet weights ``init``: the keys copied, copied into temporal layers, resized, left new, dropped).
    Raises CheckpointError listing missing/unexpected keys and shape differences on a mismatch.
    """
    if not Path(path).exists() and isinstance(path, str) and "/" not in path and not path.endswith((".pth", ".pt")):
        obj = _timm_state_dict(path)
    else:
        obj = read_checkpoint(path)
    kind = detect_format(obj, path)
    if kind == "haltingvt":
        sd = dict(obj["model"])
        meta = {k: v for k, v in obj.items() if k not in ("model", "optimizer", "scheduler", "scaler", "rng")}
    elif kind == "release":
        sd = from_release(obj.get("state_dict", obj))
        meta = {"format": "release"}
    else:
        report: dict[str, list[str]] = {}
        sd = from_imagenet(obj.get("model", obj), model, report)
        meta = {"format": "imagenet", "init": report}
    resized = _fit_embeddings(sd, model)
    if kind == "imagenet":
        meta["init"]["resized"] = resized
    if not strict:
        own = model.state_dict()
        sd = {k: v for k, v in sd.items() if k in own and own[k].shape == v.shape}
        model.load_state_dict(sd, strict=False)
    else:
        _check_and_load(model, sd, str(path))
    return meta


def _timm_state_dict(name: str) -> dict[str, torch.Tensor]:
    """ImageNet weights of a timm model by name (downloads; for users online)."""
    problem = timm_download_problem(name)  # offline: say so in seconds, not after a minute of retries
    if problem:
        raise CheckpointError(pretrained_hint(name, problem))
    try:
        return timm.create_model(name, pretrained=True).state_dict()
    except Exception as err:  # noqa: BLE001
        raise CheckpointError(f"'{name}' is neither a checkpoint file nor a loadable timm model: {err}") from err


# ----------------------------------------------------------------------------- writing
def save_checkpoint(path: str | os.PathLike, payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` atomically: to a temporary file in the same folder, fsync, then rename.

    A crash while writing leaves the previous file intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def model_payload(model: torch.nn.Module, config: Mapping[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """The model part of one of our checkpoints: weights, architecture and (optionally) the config.
    ``model`` is the bare model (``haltingvt.engine.distributed.unwrap`` a DDP wrapper first)."""
    return {"model": model.state_dict(), "arch": dict(getattr(model, "arch", {})), "config": dict(config or {}), **extra}
