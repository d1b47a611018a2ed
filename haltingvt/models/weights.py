"""HaltingVT's weights: reading any checkpoint kind into the model, and writing ours.

Three kinds are read into a :class:`~haltingvt.models.HaltingVT`:

* the release's MMEngine checkpoints (keys ``backbone.model.*`` and ``cls_head.*``), read without
  mmengine/mmcv and without running code from the file (``haltingvt.io.archive``);
* DeiT/ViT ImageNet weights (``{'model': {...}}``, a plain timm state dict, a ``.safetensors`` file, or
  a timm model name for users online) used as initialisation (docs/design.md, section 1);
* our own checkpoints (``{'format': 'haltingvt', ...}``), written atomically by :func:`save_checkpoint`
  (``haltingvt.io.atomic``); our ``.safetensors`` carry a digest over everything a load reads
  (``haltingvt.io.tensorfile``), and a ``save_pretrained`` folder (:func:`write_pretrained`) is written
  whole or not at all.

Key conversion lives in :mod:`haltingvt.models.keymaps`, the architecture's rules in
:mod:`haltingvt.models.config`. Training state (optimizer, RNG, resumption) is ``haltingvt.engine.checkpoint``'s
business.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import timm
import torch

from ..io.archive import ArchiveError, Placeholder, find_placeholder, read_torch_zip
from ..io.atomic import atomic_write, atomic_write_folder, interrupted_save
from ..io.checks import check_class_names, check_plain, check_weights, is_int
from ..io.errors import CheckpointError, CheckpointWriteError, IntegrityWarning, error_text
from ..io.offline import pretrained_hint, timm_download_problem
from ..io.tensorfile import CONFIG_DIGEST_KEY, DIGEST_KEY, FORMAT, FORMAT_VERSION, read_safetensors, safetensors_bytes
from ..io.textsafe import describe_char, escape, safe_path, unsafe_char
from .config import MAX_PARAMS, ArchError, HaltingVTConfig, check_arch_rules, estimate_params
from .keymaps import arch_from_weights, detect_format, fit_embeddings, from_imagenet, from_release, state_dict_of
from .precision import model_precision

#: A folder written by ``save_pretrained``: these two files (the Hub's names).
PRETRAINED_WEIGHTS, PRETRAINED_CONFIG = "model.safetensors", "config.json"
MAX_CONFIG_JSON_BYTES = 16 << 20

__all__ = [
    "PRETRAINED_WEIGHTS",
    "PRETRAINED_CONFIG",
    "read_checkpoint",
    "check_structure",
    "check_arch",
    "read_pretrained",
    "load_checkpoint",
    "describe_init",
    "save_checkpoint",
    "model_payload",
    "write_pretrained",
    # the errors a load raises or warns (defined in haltingvt.io.errors) and arch_from_weights (keymaps), so that
    # code handling weight files needs this one module
    "CheckpointError",
    "CheckpointWriteError",
    "IntegrityWarning",
    "arch_from_weights",
]


# ----------------------------------------------------------------------------- reading
def read_checkpoint(path: str | os.PathLike[str]) -> Any:
    """Read a checkpoint on the CPU without running code from it, and check its structure.

    ``.pth``/``.pt``: a ``torch.save`` zip archive, read by :func:`haltingvt.io.archive.read_torch_zip`
    (never ``torch.load``); ``.safetensors``: ours carry a digest of their tensors and metadata, checked here; a
    folder: ``model.safetensors`` + ``config.json`` as :func:`save_pretrained` writes them. Whatever is
    returned passed :func:`check_structure`; anything else is a one-line CheckpointError naming the file.
    """
    path = Path(path)
    if path.is_dir():
        obj = read_pretrained(path)
    elif not path.is_file():
        left = interrupted_save(path)
        raise CheckpointError(
            f"{path}: checkpoint file not found"
            + (f"; an interrupted save_pretrained left the previous folder as {left}" if left else "")
        )
    elif path.suffix == ".safetensors":
        obj = _read_safetensors(path)
    else:
        try:
            obj = read_torch_zip(path)
        except ArchiveError as err:
            raise CheckpointError(f"{path}: {err}") from None
        except OSError as err:
            raise CheckpointError(f"{path}: cannot read: {err.strerror or err}") from None
    obj = _bare_haltingvt(obj)
    check_structure(obj, path)
    return obj


def _bare_haltingvt(obj: Any) -> Any:
    """A bare HaltingVT state dict (no format metadata: e.g. written by ``safetensors.torch.save_model``) is
    a full model's weights, never an ImageNet backbone: it is read as one of ours (weights only)."""
    if not isinstance(obj, Mapping) or "format" in obj:
        return obj
    sd = obj.get("model", obj)
    if (
        isinstance(sd, Mapping)
        and "head.fc_motion.weight" in sd
        and not any(isinstance(k, str) and k.startswith("backbone.model.") for k in sd)
    ):
        return {"format": FORMAT, "model": sd}
    return obj


def check_structure(obj: Any, path: str | os.PathLike[str]) -> str:
    """The checkpoint's kind ('haltingvt', 'release', 'imagenet') after checking what the loaders use:
    the weights map names to tensors, nothing used refers to code (an unpickled placeholder), and our
    own metadata (format_version, arch, classes, config, counters) has the right types and sane sizes."""
    if isinstance(obj, Placeholder):
        raise CheckpointError(f"{path}: the top level refers to code ({obj.refers_to}): refused")
    kind = detect_format(obj, path)
    if kind != "haltingvt":
        sd = state_dict_of(obj, kind)
        check_weights(sd, path, "state_dict" if kind == "release" and "state_dict" in obj else "model")
        return kind
    hit = find_placeholder(obj)
    if hit is not None:
        raise CheckpointError(f"{path}: {hit[0]} refers to code ({hit[1]}): refused")
    version = obj.get("format_version", FORMAT_VERSION)
    if not is_int(version) or not 1 <= version <= FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: format_version {version!r:.40} is not one this haltingvt reads "
            f"(1 to {FORMAT_VERSION}; a newer haltingvt wrote it?)"
        )
    check_weights(obj.get("model"), path, "model")
    ints = [k for k, v in obj["model"].items() if not v.is_floating_point()]
    if ints:  # a HaltingVT has floating-point weights only; an integer one would be cast silently
        raise CheckpointError(
            f"{path}: weight {ints[0]} has dtype {obj['model'][ints[0]].dtype}, "
            "a HaltingVT's weights are floating point"
        )
    arch = check_arch(obj["arch"], path) if obj.get("arch") else None  # {}: written without one
    for key in ("epoch", "iteration", "step"):
        if key in obj and not (is_int(obj[key]) and obj[key] >= 0):
            raise CheckpointError(f"{path}: '{key}' must be a count (an integer >= 0), got {obj[key]!r:.40}")
    if obj.get("config") is not None:
        check_plain(obj["config"], path, "config")
        if not isinstance(obj["config"], Mapping):
            raise CheckpointError(f"{path}: 'config' must be a mapping, got {type(obj['config']).__name__}")
    if obj.get("classes") is not None:
        head = obj["model"].get("head.fc_cls.weight")
        num = arch["num_classes"] if arch else head.shape[0] if isinstance(head, torch.Tensor) else None
        check_class_names(obj["classes"], num, f"{path}: 'classes'")
    return kind


def check_arch(arch: Any, path: str | os.PathLike[str], what: str = "stored architecture") -> dict[str, Any]:
    """An architecture read from a file, checked before anything is allocated: known keys, the settings
    that size the model positive integers that fit together (:func:`haltingvt.models.config.check_arch_rules`),
    and at most MAX_PARAMS parameters. (The other settings' types and ranges are checked where a config is
    built from it: haltingvt.config.)"""
    if not isinstance(arch, Mapping):
        raise CheckpointError(f"{path}: 'arch' must be a mapping of model settings, got {type(arch).__name__}")
    try:
        full = HaltingVTConfig.from_mapping(arch).to_dict()
        check_arch_rules(full)
    except (ArchError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: {what}: {error_text(err)}") from None
    params = estimate_params(full)
    if params > MAX_PARAMS:
        raise CheckpointError(
            f"{path}: {what} (embed_dim {full['embed_dim']}, depth {full['depth']}, img_size "
            f"{full['img_size']}, num_classes {full['num_classes']}) has about {params / 1e9:.3g} billion "
            f"parameters, over the limit of {MAX_PARAMS / 1e9:g} billion: refused"
        )
    return full


def _read_safetensors(path: Path) -> Any:
    """Someone else's ``.safetensors``: its tensors (a plain state dict). Ours: a dict in our checkpoint
    layout (format, model, arch, classes ...) once its digest matched."""
    return read_safetensors(path)[0]


#: The keys a config.json of ours may hold (save_pretrained writes them all).
PRETRAINED_KEYS = ("format", "format_version", "library_name", "name", "model", "data", "test", "classes")


def read_pretrained(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """A folder written by ``save_pretrained`` (``model.safetensors`` + ``config.json``) as a checkpoint
    dict of ours: format, model, arch, classes and config (name, model, data, test sections).

    model.safetensors' digest covers its tensors and metadata, and the metadata records config.json's
    sha256: an edited or damaged config.json, or one from another save, is refused (one line naming it).
    A folder without that record (made by hand, or by an older haltingvt) loads with an IntegrityWarning.
    """
    folder = Path(folder)
    weights, config_file = folder / PRETRAINED_WEIGHTS, folder / PRETRAINED_CONFIG
    if not weights.is_file() or not config_file.is_file():
        left = interrupted_save(folder)
        raise CheckpointError(
            f"{folder}: not a haltingvt model folder (it needs {PRETRAINED_WEIGHTS} and "
            f"{PRETRAINED_CONFIG}, as save_pretrained writes them)"
            + (f"; an interrupted save_pretrained left the previous folder as {left}" if left else "")
        )
    try:
        if config_file.stat().st_size > MAX_CONFIG_JSON_BYTES:
            raise CheckpointError(f"{config_file}: larger than {MAX_CONFIG_JSON_BYTES >> 20} MB: refused")
        raw = config_file.read_bytes()
    except OSError as err:
        raise CheckpointError(f"{config_file}: cannot read: {err.strerror or err}") from None
    obj, meta = read_safetensors(weights)
    if obj.get("format") != FORMAT:
        raise CheckpointError(f"{weights}: not written by haltingvt (no format metadata): refused")
    recorded = meta.get(CONFIG_DIGEST_KEY)
    if recorded is not None:
        if hashlib.sha256(raw).hexdigest() != recorded:
            raise CheckpointError(
                f"{config_file}: does not match the sha256 recorded for it in {PRETRAINED_WEIGHTS} "
                "(edited or damaged, or the two files come from different saves): refused"
            )
    elif DIGEST_KEY in meta:  # ours, written without the folder: config.json was put beside it by hand
        warnings.warn(
            IntegrityWarning(
                f"{safe_path(config_file)}: not covered by a digest ({PRETRAINED_WEIGHTS} records none for it: made by "
                "hand?): its settings and class names are loaded unchecked"
            ),
            stacklevel=3,
        )
    # (a model.safetensors without any digest has warned already: one line per folder is enough)
    try:
        config = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, RecursionError) as err:
        raise CheckpointError(f"{config_file}: not valid JSON text ({type(err).__name__})") from None
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{config_file}:{err.lineno}: invalid JSON: {err.msg}") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f'{config_file}: not a haltingvt config.json (no "format": "{FORMAT}")')
    unknown = sorted(k for k in config if k not in PRETRAINED_KEYS)
    if unknown:
        raise CheckpointError(
            f'{config_file}: unknown key "{unknown[0]}" (a config.json of haltingvt holds {", ".join(PRETRAINED_KEYS)})'
        )
    version = config.get("format_version", FORMAT_VERSION)
    if not is_int(version) or not 1 <= version <= FORMAT_VERSION:
        raise CheckpointError(
            f"{config_file}: format_version {version!r:.40} is not one this haltingvt reads "
            f"(1 to {FORMAT_VERSION}; a newer haltingvt wrote it?)"
        )
    for key in ("model", "data", "test"):
        if not isinstance(config.get(key), dict):
            raise CheckpointError(f'{config_file}: "{key}" must be a mapping')
    name = config.get("name")
    if name is not None:
        if not isinstance(name, str) or len(name) > 1000:
            raise CheckpointError(f'{config_file}: "name" must be a string, got {type(name).__name__}')
        bad = unsafe_char(name)
        if bad is not None:
            raise CheckpointError(
                f"{config_file}: \"name\" ('{escape(name)[:80]}') contains the control character "
                f"{describe_char(bad)}: refused"
            )
    check_plain(config, config_file, "config.json")
    arch = check_arch(config["model"], config_file)
    if obj.get("arch") is not None and check_arch(obj["arch"], weights) != arch:
        raise CheckpointError(
            f"{folder}: the architecture in {PRETRAINED_CONFIG} differs from the one stored "
            f"with the weights in {PRETRAINED_WEIGHTS}"
        )
    classes = config.get("classes", obj.get("classes"))
    if classes is not None:
        classes = check_class_names(classes, arch["num_classes"], f'{config_file}: "classes"')
    if obj.get("classes") is not None and classes is not None:
        stored = check_class_names(obj["classes"], arch["num_classes"], f"{weights}: 'classes'")
        if stored != classes:
            diff = next(i for i, (a, b) in enumerate(zip(stored, classes)) if a != b)
            raise CheckpointError(
                f"{folder}: the class names in {PRETRAINED_CONFIG} differ from the ones stored with "
                f"the weights in {PRETRAINED_WEIGHTS} (class {diff}: '{escape(classes[diff])[:80]}' vs "
                f"'{escape(stored[diff])[:80]}')"
            )
    obj.update(
        arch=arch,
        classes=classes,
        config={"name": str(name or folder.name), "model": arch, "data": config["data"], "test": config["test"]},
    )
    return obj


# ----------------------------------------------------------------------------- loading into a model
def _check_and_load(model: torch.nn.Module, sd: Mapping[str, torch.Tensor], source: str) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    common = sorted(set(own) & set(sd))
    shapes = [
        f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
        for k in common
        if sd[k].shape != own[k].shape
    ]
    dtypes = [
        f"{k}: checkpoint {sd[k].dtype} vs model {own[k].dtype}"
        for k in common
        if sd[k].is_floating_point() != own[k].is_floating_point()
    ]
    if missing or unexpected or shapes or dtypes:
        parts = [f"{source}: checkpoint does not fit the model"]
        for what, keys in (("missing keys", missing), ("unexpected keys", unexpected)):
            if keys:
                parts.append(f"{what} ({len(keys)}): {', '.join(keys[:20])}{' ...' if len(keys) > 20 else ''}")
        for what, diffs in (("shape differences", shapes), ("floating/integer dtype differences", dtypes)):
            if diffs:
                parts.append(f"{what} ({len(diffs)}): " + "; ".join(diffs[:20]))
        raise CheckpointError(" | ".join(parts))
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in sd.items()}, strict=True)


def load_checkpoint(
    model: torch.nn.Module, path: str | os.PathLike[str], strict: bool = True, init: bool = False
) -> dict[str, Any]:
    """Load weights into ``model`` from a release, DeiT/ViT/timm or haltingvt checkpoint, a folder written
    by ``save_pretrained``, or a timm name.

    Returns the checkpoint's metadata (``format`` plus, for ours, ``arch``/``config``/``classes``/``epoch``...;
    for ImageNet weights ``init``: the keys copied, copied into temporal layers, resized, left new, dropped).
    Raises CheckpointError (one line) listing missing/unexpected keys, shape and dtype differences.

    ``init=True`` is for ``init.pretrained``: full-model weights (ours or the release's) are then loaded as
    a whole (never as an ImageNet backbone), except a classifier of another class count, which keeps the
    model's initialisation; ``meta["init"]`` says so ({"kind": "haltingvt", "new": [keys left at init]}),
    and :func:`describe_init` puts it in one log line.
    """
    if (
        not Path(path).exists()
        and isinstance(path, str)
        and "/" not in path
        and not path.endswith((".pth", ".pt", ".safetensors"))
    ):
        obj = _timm_state_dict(path)
    else:
        obj = read_checkpoint(path)
    kind = detect_format(obj, path)
    sd: dict[str, torch.Tensor]
    meta: dict[str, Any]
    if kind == "haltingvt":
        sd = dict(obj["model"])
        meta = {k: v for k, v in obj.items() if k not in ("model", "optimizer", "scheduler", "scaler", "rng")}
    elif kind == "release":
        sd = from_release(state_dict_of(obj, kind))
        meta = {"format": "release"}
    else:
        report: dict[str, list[str]] = {}
        sd = from_imagenet(state_dict_of(obj, kind), model, report)
        meta = {"format": "imagenet", "init": report}
    resized = fit_embeddings(sd, model)
    if kind == "imagenet":
        meta["init"]["resized"] = resized
    elif init:  # our own or the release's full-model weights
        own = model.state_dict()
        head = [
            k
            for k in ("head.fc_cls.weight", "head.fc_cls.bias")
            if k in sd and k in own and sd[k].shape != own[k].shape
        ]
        for key in head:
            sd[key] = own[key]
        meta["init"] = {"kind": kind, "new": head, "resized": resized}
    if not strict:
        own = model.state_dict()
        sd = {k: v for k, v in sd.items() if k in own and own[k].shape == v.shape}
        model.load_state_dict(sd, strict=False)
    else:
        _check_and_load(model, sd, str(path))
    return meta


def describe_init(source: str | os.PathLike[str], meta: Mapping[str, Any]) -> str:
    """One log line saying how ``init.pretrained`` (``source``) went into the model."""
    init = meta.get("init") or {}
    resized = f"; resized {', '.join(init['resized'])}" if init.get("resized") else ""
    inflated = f"; inflated over time {', '.join(init['inflated'])}" if init.get("inflated") else ""
    if meta.get("format") == "imagenet":
        return (
            f"init.pretrained {source}: ImageNet backbone weights: {len(init['copied'])} tensors copied, "
            f"{len(init['temporal_copies'])} copied into temporal layers, {len(init['new'])} left new "
            f"(time_embed, temporal_fc, heads), {len(init['dropped'])} not used{resized}{inflated}"
        )
    what = "HaltingVT weights of ours" if meta.get("format") == FORMAT else "the release's HaltingVT weights"
    new = f"; {', '.join(init['new'])} left new (another class count)" if init.get("new") else ""
    return f"init.pretrained {source}: full {what}, loaded as a whole model (heads included){new}{resized}"


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
def refuse_converted(model: Any) -> None:
    """CheckpointError for a model converted to a reduced precision for inference
    (:func:`haltingvt.models.precision.convert_precision`): its weights are no longer the fp32 ones, so it is
    never written where an fp32 checkpoint could be replaced."""
    precision = model_precision(model)
    if precision != "fp32":
        raise CheckpointError(
            f"refusing to save a model converted to {precision} for inference: save the fp32 model it came from"
        )


def save_checkpoint(path: str | os.PathLike[str], payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` (``model_payload`` plus any training state) as one of our checkpoints, atomically
    (see :func:`atomic_write`)."""
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    # Serialised in memory first: torch.save reports a failing file write (a full disk) as an unrelated
    # "unexpected pos" error, a plain file write gives the operating system's errno.
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return atomic_write(path, lambda f: f.write(buffer.getbuffer()))


def model_payload(
    model: torch.nn.Module, config: Mapping[str, Any] | None = None, classes: Sequence[str] | None = None, **extra: Any
) -> dict[str, Any]:
    """The model part of one of our checkpoints: weights, architecture, (optionally) the config and the
    class names -- as a list of strings, so that a checkpoint never makes a reader open a path.
    ``model`` is the bare model (``haltingvt.engine.distributed.unwrap`` a DDP wrapper first)."""
    refuse_converted(model)
    arch = dict(getattr(model, "arch", {}))
    payload = {"model": model.state_dict(), "arch": arch, "config": dict(config or {}), **extra}
    if classes is not None:
        payload["classes"] = check_class_names(list(classes), arch.get("num_classes"), "classes")
    return payload


def write_pretrained(
    model: Any,
    folder: str | os.PathLike[str],
    *,
    name: str,
    classes: Sequence[str] | None = None,
    extras: Mapping[str, Any] | None = None,
    files: Mapping[str, bytes] | None = None,
) -> Path:
    """Write ``model`` as a ``save_pretrained`` folder, whole or not at all
    (``haltingvt.io.atomic.atomic_write_folder``).

    ``config.json``: format, name, the architecture (``model``), each entry of ``extras`` (JSON-able
    sections: e.g. ``data``/``test``, the test pipeline that ``haltingvt.hub`` composes) and the class names;
    ``model.safetensors``: the weights with the architecture and the class names in its metadata, config.json's
    sha256 and a digest over all of it. ``files`` (name -> bytes, e.g. a model card) are written first.
    """
    refuse_converted(model)
    folder = Path(folder)
    arch = dict(model.arch)
    if classes is not None:
        classes = check_class_names(list(classes), arch["num_classes"], "classes")
    bad = unsafe_char(name)
    if bad is not None:
        raise CheckpointError(
            f"model name '{escape(name)[:80]}' contains the control character {describe_char(bad)}: refused"
        )
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "library_name": "haltingvt",
        "name": name,
        "model": arch,
        **(extras or {}),
        "classes": classes,
    }
    unknown = sorted(k for k in doc if k not in PRETRAINED_KEYS)
    if unknown:
        raise ValueError(f"config.json cannot hold {', '.join(unknown)} (it holds {', '.join(PRETRAINED_KEYS)})")
    config_json = json.dumps(doc, indent=2).encode() + b"\n"
    weights = safetensors_bytes(
        model.state_dict(),
        {"arch": arch, "classes": classes},
        raw_metadata={CONFIG_DIGEST_KEY: hashlib.sha256(config_json).hexdigest()},
    )
    # model.safetensors last: a folder cut short (never visible under the target's name) has no weights
    return atomic_write_folder(folder, {**(files or {}), PRETRAINED_CONFIG: config_json, PRETRAINED_WEIGHTS: weights})
