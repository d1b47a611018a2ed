"""Everything about model weights: reading, format detection, key conversion, resizing, writing.

Three kinds are read into a :class:`~haltingvt.models.HaltingVT`:

* the release's MMEngine checkpoints (keys ``backbone.model.*`` and ``cls_head.*``), read without
  mmengine/mmcv and without running code from the file: a restricted unpickler rebuilds tensors and
  plain containers and turns every other class into an inert placeholder;
* DeiT/ViT ImageNet weights (``{'model': {...}}``, a plain timm state dict, a ``.safetensors`` file, or
  a timm model name for users online) used as initialisation (SPEC section 1);
* our own checkpoints (``{'format': 'haltingvt', ...}``), written atomically by :func:`save_checkpoint`;
  ``.safetensors`` of ours carry a sha256 over everything a load reads (:func:`content_digest`), and a
  ``save_pretrained`` folder is written whole or not at all (:func:`atomic_write_folder`).

:func:`detect_format` is the one place that tells the kinds apart; :func:`arch_from_weights` reads the
architecture settings that the weight shapes reveal. Training state (optimizer, RNG, resumption) is
``haltingvt.engine.checkpoint``'s business.
"""
from __future__ import annotations

import ctypes
import errno
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import timm
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save as save_safetensors_bytes
from timm.layers import resample_abs_pos_embed

from ..offline import pretrained_hint, timm_download_problem
from ..textsafe import describe_char, escape, safe_path, unsafe_char
from .archive import ArchiveError, Placeholder, find_placeholder, read_torch_zip

if TYPE_CHECKING:  # the model imports the resize functions below, so only a type hint goes the other way
    from .haltingvt import HaltingVT

FORMAT = "haltingvt"
FORMAT_VERSION = 1
#: A folder written by ``save_pretrained``: these two files (the Hub's names).
PRETRAINED_WEIGHTS, PRETRAINED_CONFIG = "model.safetensors", "config.json"
#: Limits on what a file may ask for: architectures above MAX_PARAMS parameters are refused before
#: anything is allocated; an embedded config holds at most MAX_CONFIG_VALUES values.
MAX_PARAMS = 2_000_000_000
MAX_CONFIG_VALUES = 100_000
MAX_CONFIG_JSON_BYTES = 16 << 20


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read or does not fit the model; the message says which file and keys.

    The message is made safe to print: control characters of a file name or a quoted value are shown
    escaped (``haltingvt.textsafe.escape``), so printing it cannot drive the terminal."""

    def __init__(self, message: object = "", *args: Any) -> None:
        super().__init__(escape(message), *args)


class IntegrityWarning(UserWarning):
    """A file of ours is loaded without a digest covering all of it (made by hand, or by an older haltingvt)."""


def error_text(err: BaseException, limit: int = 200) -> str:
    """A library error's message on one line (whitespace folded), at most ``limit`` characters."""
    return " ".join(str(err).split())[:limit]


# ----------------------------------------------------------------------------- reading
def read_checkpoint(path: str | os.PathLike) -> Any:
    """Read a checkpoint on the CPU without running code from it, and check its structure.

    ``.pth``/``.pt``: a ``torch.save`` zip archive, read by :func:`haltingvt.models.archive.read_torch_zip`
    (never ``torch.load``); ``.safetensors``: ours carry a digest of their tensors and metadata, checked here; a
    folder: ``model.safetensors`` + ``config.json`` as :func:`save_pretrained` writes them. Whatever is
    returned passed :func:`check_structure`; anything else is a one-line CheckpointError naming the file.
    """
    path = Path(path)
    if path.is_dir():
        obj = read_pretrained(path)
    elif not path.is_file():
        left = interrupted_save(path)
        raise CheckpointError(f"{path}: checkpoint file not found" + (
            f"; an interrupted save_pretrained left the previous folder as {left}" if left else ""))
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
    if isinstance(sd, Mapping) and "head.fc_motion.weight" in sd and not any(
            isinstance(k, str) and k.startswith("backbone.model.") for k in sd):
        return {"format": FORMAT, "model": sd}
    return obj


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def check_structure(obj: Any, path: str | os.PathLike) -> str:
    """The checkpoint's kind ('haltingvt', 'release', 'imagenet') after checking what the loaders use:
    the weights map names to tensors, nothing used refers to code (an unpickled placeholder), and our
    own metadata (format_version, arch, classes, config, counters) has the right types and sane sizes."""
    if isinstance(obj, Placeholder):
        raise CheckpointError(f"{path}: the top level refers to code ({obj.refers_to}): refused")
    kind = detect_format(obj, path)
    if kind != "haltingvt":
        sd = state_dict_of(obj, kind)
        _check_weights(sd, path, "state_dict" if kind == "release" and "state_dict" in obj else "model")
        return kind
    hit = find_placeholder(obj)
    if hit is not None:
        raise CheckpointError(f"{path}: {hit[0]} refers to code ({hit[1]}): refused")
    version = obj.get("format_version", FORMAT_VERSION)
    if not _is_int(version) or not 1 <= version <= FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {version!r:.40} is not one this haltingvt reads "
                              f"(1 to {FORMAT_VERSION}; a newer haltingvt wrote it?)")
    _check_weights(obj.get("model"), path, "model")
    ints = [k for k, v in obj["model"].items() if not v.is_floating_point()]
    if ints:  # a HaltingVT has floating-point weights only; an integer one would be cast silently
        raise CheckpointError(f"{path}: weight {ints[0]} has dtype {obj['model'][ints[0]].dtype}, "
                              "a HaltingVT's weights are floating point")
    arch = check_arch(obj["arch"], path) if obj.get("arch") else None  # {}: written without one
    for key in ("epoch", "iteration", "step"):
        if key in obj and not (_is_int(obj[key]) and obj[key] >= 0):
            raise CheckpointError(f"{path}: '{key}' must be a count (an integer >= 0), got {obj[key]!r:.40}")
    if obj.get("config") is not None:
        _check_plain(obj["config"], path, "config")
        if not isinstance(obj["config"], Mapping):
            raise CheckpointError(f"{path}: 'config' must be a mapping, got {type(obj['config']).__name__}")
    if obj.get("classes") is not None:
        head = obj["model"].get("head.fc_cls.weight")
        num = arch["num_classes"] if arch else head.shape[0] if isinstance(head, torch.Tensor) else None
        check_class_names(obj["classes"], num, f"{path}: 'classes'")
    return kind


def _check_weights(sd: Any, path: str | os.PathLike, where: str) -> None:
    if isinstance(sd, Placeholder):
        raise CheckpointError(f"{path}: '{where}' refers to code ({sd.refers_to}): refused")
    if not isinstance(sd, Mapping):
        raise CheckpointError(f"{path}: '{where}' must map weight names to tensors, got {type(sd).__name__}")
    for key, value in sd.items():
        for item in (key, value):
            if isinstance(item, Placeholder):
                raise CheckpointError(f"{path}: {where}.{key!s:.80} refers to code ({item.refers_to}): refused")
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: '{where}' must map weight names to tensors; "
                                  f"{key!r:.80} holds {type(value).__name__}")


def _check_plain(value: Any, path: str | os.PathLike, where: str) -> None:
    """YAML-like data only (mappings with string keys, lists, strings, numbers, booleans, null), at most
    MAX_CONFIG_VALUES values counted as written out: a pickle that repeats one list by reference
    (a "billion laughs") is refused instead of being expanded by whoever copies or prints it."""
    stack, count = [value], 0
    while stack:
        item = stack.pop()
        count += 1
        if count > MAX_CONFIG_VALUES:
            raise CheckpointError(f"{path}: '{where}' is too large (over {MAX_CONFIG_VALUES} values): refused")
        if isinstance(item, Mapping):
            if not all(isinstance(k, str) for k in item):
                raise CheckpointError(f"{path}: '{where}' must have string keys")
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif not (item is None or isinstance(item, (str, int, float, bool))):
            raise CheckpointError(f"{path}: '{where}' must be plain data, holds {type(item).__name__}")


def check_class_names(names: Any, num_classes: int | None, where: str) -> list[str]:
    """Class names travel as data: a list of ``num_classes`` strings (never a path to be opened), none
    holding a character that cannot be meant in a name (a control character such as ESC, NUL or CR, a
    bidirectional override, a line separator: ``haltingvt.textsafe.unsafe_char``)."""
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) and len(n) <= 1000 for n in names):
        raise CheckpointError(f"{where} must be a list of class names (strings), got {type(names).__name__}"
                              + (f" {names!r:.60}" if isinstance(names, str) else ""))
    for index, name in enumerate(names):
        bad = unsafe_char(name)
        if bad is not None:
            raise CheckpointError(f"{where}[{index}] ('{escape(name)[:80]}') contains the control character "
                                  f"{describe_char(bad)}: refused")
    if num_classes is not None and len(names) != num_classes:
        raise CheckpointError(f"{where} has {len(names)} class names but the model has {num_classes} classes")
    return list(names)


#: Architecture settings that size the model: integers, at least 1 (divid_depth at least 0).
SIZE_KEYS = ("img_size", "patch_size", "num_frames", "tubelet_size", "embed_dim", "num_heads", "depth", "divid_depth",
             "num_classes")


def check_arch(arch: Any, path: str | os.PathLike, what: str = "stored architecture") -> dict[str, Any]:
    """An architecture read from a file, checked before anything is allocated: known keys, the settings
    that size the model positive integers that fit together, and at most MAX_PARAMS parameters.
    (The other settings' types and ranges are checked where a config is built from it: haltingvt.config.)"""
    from .haltingvt import ArchError, HaltingVTConfig  # deferred: haltingvt.py imports this module

    if not isinstance(arch, Mapping):
        raise CheckpointError(f"{path}: 'arch' must be a mapping of model settings, got {type(arch).__name__}")
    try:
        full = HaltingVTConfig.from_mapping(arch).to_dict()
    except (ArchError, TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: {what}: {error_text(err)}") from None
    for key in SIZE_KEYS:
        lowest = 0 if key == "divid_depth" else 1
        if not _is_int(full[key]) or full[key] < lowest:
            raise CheckpointError(f"{path}: {what}: {key} {full[key]!r:.40} is not allowed "
                                  f"(an integer >= {lowest})")
    if isinstance(full["mlp_ratio"], bool) or not isinstance(full["mlp_ratio"], (int, float)) or not full["mlp_ratio"] > 0:
        raise CheckpointError(f"{path}: {what}: mlp_ratio {full['mlp_ratio']!r:.40} is not a positive number")
    for a, b in (("embed_dim", "num_heads"), ("img_size", "patch_size"), ("num_frames", "tubelet_size")):
        if full[a] % full[b]:
            raise CheckpointError(f"{path}: {what}: {a} {full[a]} is not a multiple of {b} {full[b]}")
    if full["divid_depth"] >= full["depth"] or len(full["keep_rate"]) != full["divid_depth"]:
        raise CheckpointError(f"{path}: {what}: divid_depth {full['divid_depth']} must be below depth "
                              f"{full['depth']}, with one keep rate per Glimpser layer (got {full['keep_rate']})")
    params = estimate_params(full)
    if params > MAX_PARAMS:
        raise CheckpointError(
            f"{path}: {what} (embed_dim {full['embed_dim']}, depth {full['depth']}, img_size "
            f"{full['img_size']}, num_classes {full['num_classes']}) has about {params / 1e9:.3g} billion "
            f"parameters, over the limit of {MAX_PARAMS / 1e9:g} billion: refused")
    return full


def estimate_params(arch: Mapping[str, Any]) -> int:
    """Parameters of a HaltingVT of ``arch`` (keys of HaltingVTConfig), from the shapes alone."""
    C, p, r = int(arch["embed_dim"]), int(arch["patch_size"]), float(arch["mlp_ratio"])
    tube = int(arch["tubelet_size"])
    hidden = int(C * r)
    block = 4 * C * C + 4 * C + 2 * C * hidden + hidden + C + 4 * C  # attention, MLP, two LayerNorms
    glimpser = 4 * C * C + 4 * C + C * C + C + 2 * C  # temporal attention, temporal_fc, temporal_norm1
    grid = (int(arch["img_size"]) // p) ** 2
    embed = 3 * tube * p * p * C + C + (grid + 1) * C + int(arch["num_frames"]) // tube * C + C
    head = (int(arch["num_classes"]) + 2) * (C + 1) + 2 * C
    return int(arch["depth"]) * block + int(arch["divid_depth"]) * glimpser + embed + head


# ----------------------------------------------------------------------------- safetensors
#: Metadata keys of our ``.safetensors``: ``digest`` is the sha256 of :func:`content_digest` (tensors and every
#: other metadata entry); ``sha256`` (tensors only) is what haltingvt 0.x before the digest wrote and checked,
#: still written so that those versions read the file; ``config_sha256`` (``save_pretrained`` folders) is the
#: sha256 of the folder's config.json bytes.
DIGEST_KEY, TENSOR_DIGEST_KEY, CONFIG_DIGEST_KEY = "digest", "sha256", "config_sha256"


def tensor_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 over the tensors' names, dtypes, shapes and bytes (in name order)."""
    h = hashlib.sha256()
    _update_tensors(h, tensors)
    return h.hexdigest()


def _update_tensors(h: Any, tensors: Mapping[str, torch.Tensor]) -> None:
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(json.dumps([name, str(t.dtype), list(t.shape)]).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())


def content_digest(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> str:
    """sha256 over everything a load of our ``.safetensors`` reads: every metadata entry but ``digest``
    itself (format, format_version, arch, classes, config, the config.json digest ...: names and values,
    in name order), then the tensors as :func:`tensor_digest` hashes them."""
    h = hashlib.sha256(b"haltingvt content digest 1\0")
    entries = sorted((k, v) for k, v in metadata.items() if k != DIGEST_KEY)
    h.update(json.dumps(entries, ensure_ascii=True).encode() + b"\0")
    _update_tensors(h, tensors)
    return h.hexdigest()


def save_safetensors(path: str | os.PathLike, state_dict: Mapping[str, torch.Tensor],
                     metadata: Mapping[str, Any] | None = None, *, raw_metadata: Mapping[str, str] | None = None) -> Path:
    """Write weights as ``.safetensors`` in our format (atomically): metadata ``format: haltingvt``, each
    ``metadata`` entry as JSON (arch, classes ...), each ``raw_metadata`` entry as it is, the sha256 of the
    tensors and the ``digest`` over all of it (:func:`content_digest`)."""
    return atomic_write(path, lambda f: f.write(safetensors_bytes(state_dict, metadata, raw_metadata=raw_metadata)))


def safetensors_bytes(state_dict: Mapping[str, torch.Tensor], metadata: Mapping[str, Any] | None = None, *,
                      raw_metadata: Mapping[str, str] | None = None) -> bytes:
    """The bytes :func:`save_safetensors` writes."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    meta = {key: json.dumps(value) for key, value in (metadata or {}).items()}
    meta.update(raw_metadata or {})
    meta.update(format=FORMAT, format_version=str(FORMAT_VERSION))
    meta[TENSOR_DIGEST_KEY] = tensor_digest(tensors)
    meta[DIGEST_KEY] = content_digest(tensors, meta)
    return save_safetensors_bytes(tensors, metadata=meta)


def _read_safetensors(path: Path) -> Any:
    """Someone else's ``.safetensors``: its tensors (a plain state dict). Ours: a dict in our checkpoint
    layout (format, model, arch, classes ...) once its digest matched."""
    return _read_safetensors_meta(path)[0]


def _read_safetensors_meta(path: Path) -> tuple[Any, dict[str, str]]:
    """(:func:`_read_safetensors`'s result, the file's metadata as stored).

    A file with a ``digest`` entry is checked against it whatever else its metadata says (a flipped bit in
    ``format`` is refused, not read as someone else's file); a file of ours without one still loads, with
    an :class:`IntegrityWarning`: its tensors are checked when it has the tensor-only ``sha256`` of older
    haltingvt versions, nothing is when it has neither (made by hand).
    """
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # noqa: BLE001 - the native reader's errors vary; each is reported with the path
        message = error_text(err) or type(err).__name__
        raise CheckpointError(f"{path}: not a readable .safetensors file (damaged or truncated?): {message}") from None
    if DIGEST_KEY in meta:
        if content_digest(tensors, meta) != meta[DIGEST_KEY]:
            raise CheckpointError(f"{path}: the contents (tensors and metadata) do not match their sha256 digest "
                                  "(the file is damaged or was edited): refused")
        if meta.get("format") != FORMAT:
            raise CheckpointError(f"{path}: has a haltingvt digest but no \"format\": \"{FORMAT}\" metadata: refused")
    elif meta.get("format") != FORMAT:
        return tensors, meta
    elif TENSOR_DIGEST_KEY in meta:
        if tensor_digest(tensors) != meta[TENSOR_DIGEST_KEY]:
            raise CheckpointError(f"{path}: the tensors do not match their sha256 digest (the file is damaged): refused")
        warnings.warn(IntegrityWarning(
            f"{safe_path(path)}: written by an older haltingvt: its tensors are checked, its metadata (architecture, "
            "class names) is not covered by a digest; save it again to cover it"), stacklevel=4)
    else:
        warnings.warn(IntegrityWarning(
            f"{safe_path(path)}: haltingvt .safetensors without a digest (made by hand?): loaded unchecked, "
            "damage to it would go unnoticed"), stacklevel=4)
    obj: dict[str, Any] = {"format": FORMAT, "model": tensors}
    key = "format_version"
    try:
        obj["format_version"] = int(meta.get("format_version", FORMAT_VERSION))
        for key in ("arch", "classes", "config"):
            if key in meta:
                obj[key] = json.loads(meta[key])
    except (ValueError, RecursionError) as err:
        raise CheckpointError(f"{path}: metadata '{key}' is not valid ({error_text(err, 80)})") from None
    return obj, meta


#: The keys a config.json of ours may hold (save_pretrained writes them all).
PRETRAINED_KEYS = ("format", "format_version", "library_name", "name", "model", "data", "test", "classes")


def read_pretrained(folder: str | os.PathLike) -> dict[str, Any]:
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
        raise CheckpointError(f"{folder}: not a haltingvt model folder (it needs {PRETRAINED_WEIGHTS} and "
                              f"{PRETRAINED_CONFIG}, as save_pretrained writes them)"
                              + (f"; an interrupted save_pretrained left the previous folder as {left}" if left else ""))
    try:
        if config_file.stat().st_size > MAX_CONFIG_JSON_BYTES:
            raise CheckpointError(f"{config_file}: larger than {MAX_CONFIG_JSON_BYTES >> 20} MB: refused")
        raw = config_file.read_bytes()
    except OSError as err:
        raise CheckpointError(f"{config_file}: cannot read: {err.strerror or err}") from None
    obj, meta = _read_safetensors_meta(weights)
    if obj.get("format") != FORMAT:
        raise CheckpointError(f"{weights}: not written by haltingvt (no format metadata): refused")
    recorded = meta.get(CONFIG_DIGEST_KEY)
    if recorded is not None:
        if hashlib.sha256(raw).hexdigest() != recorded:
            raise CheckpointError(f"{config_file}: does not match the sha256 recorded for it in {PRETRAINED_WEIGHTS} "
                                  "(edited or damaged, or the two files come from different saves): refused")
    elif DIGEST_KEY in meta:  # ours, written without the folder: config.json was put beside it by hand
        warnings.warn(IntegrityWarning(
            f"{safe_path(config_file)}: not covered by a digest ({PRETRAINED_WEIGHTS} records none for it: made by "
            "hand?): its settings and class names are loaded unchecked"), stacklevel=3)
    # (a model.safetensors without any digest has warned already: one line per folder is enough)
    try:
        config = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, RecursionError) as err:
        raise CheckpointError(f"{config_file}: not valid JSON text ({type(err).__name__})") from None
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{config_file}:{err.lineno}: invalid JSON: {err.msg}") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f"{config_file}: not a haltingvt config.json (no \"format\": \"{FORMAT}\")")
    unknown = sorted(k for k in config if k not in PRETRAINED_KEYS)
    if unknown:
        raise CheckpointError(f"{config_file}: unknown key \"{unknown[0]}\" (a config.json of haltingvt holds "
                              f"{', '.join(PRETRAINED_KEYS)})")
    version = config.get("format_version", FORMAT_VERSION)
    if not _is_int(version) or not 1 <= version <= FORMAT_VERSION:
        raise CheckpointError(f"{config_file}: format_version {version!r:.40} is not one this haltingvt reads "
                              f"(1 to {FORMAT_VERSION}; a newer haltingvt wrote it?)")
    for key in ("model", "data", "test"):
        if not isinstance(config.get(key), dict):
            raise CheckpointError(f"{config_file}: \"{key}\" must be a mapping")
    name = config.get("name")
    if name is not None:
        if not isinstance(name, str) or len(name) > 1000:
            raise CheckpointError(f"{config_file}: \"name\" must be a string, got {type(name).__name__}")
        if unsafe_char(name) is not None:
            raise CheckpointError(f"{config_file}: \"name\" ('{escape(name)[:80]}') contains the control character "
                                  f"{describe_char(unsafe_char(name))}: refused")
    _check_plain(config, config_file, "config.json")
    arch = check_arch(config["model"], config_file)
    if obj.get("arch") is not None and check_arch(obj["arch"], weights) != arch:
        raise CheckpointError(f"{folder}: the architecture in {PRETRAINED_CONFIG} differs from the one stored "
                              f"with the weights in {PRETRAINED_WEIGHTS}")
    classes = config.get("classes", obj.get("classes"))
    if classes is not None:
        classes = check_class_names(classes, arch["num_classes"], f"{config_file}: \"classes\"")
    if obj.get("classes") is not None and classes is not None:
        stored = check_class_names(obj["classes"], arch["num_classes"], f"{weights}: 'classes'")
        if stored != classes:
            diff = next(i for i, (a, b) in enumerate(zip(stored, classes)) if a != b)
            raise CheckpointError(f"{folder}: the class names in {PRETRAINED_CONFIG} differ from the ones stored with "
                                  f"the weights in {PRETRAINED_WEIGHTS} (class {diff}: '{escape(classes[diff])[:80]}' vs "
                                  f"'{escape(stored[diff])[:80]}')")
    obj.update(arch=arch, classes=classes, config={
        "name": str(name or folder.name), "model": arch, "data": config["data"], "test": config["test"]})
    return obj


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
        if patch.ndim == 5:  # Conv3d: (C, 3, tubelet, p, p)
            arch["tubelet_size"] = int(patch.shape[2])
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
        report.update(copied=copied, inflated=inflated, temporal_copies=sorted(temporal), new=sorted(new),
                      dropped=sorted(set(state_dict) - set(copied) - set(inflated)))
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
        sd["time_embed"] = resize_time_embed(sd["time_embed"], model.time_embed.shape[1])
        resized.append("time_embed")
    return resized


def _check_and_load(model: "HaltingVT", sd: Mapping[str, torch.Tensor], source: str) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    common = sorted(set(own) & set(sd))
    shapes = [f"{k}: checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
              for k in common if sd[k].shape != own[k].shape]
    dtypes = [f"{k}: checkpoint {sd[k].dtype} vs model {own[k].dtype}"
              for k in common if sd[k].is_floating_point() != own[k].is_floating_point()]
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


def load_checkpoint(model: "HaltingVT", path: str | os.PathLike, strict: bool = True,
                    init: bool = False) -> dict[str, Any]:
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
    if not Path(path).exists() and isinstance(path, str) and "/" not in path and not path.endswith(
            (".pth", ".pt", ".safetensors")):
        obj = _timm_state_dict(path)
    else:
        obj = read_checkpoint(path)
    kind = detect_format(obj, path)
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
    resized = _fit_embeddings(sd, model)
    if kind == "imagenet":
        meta["init"]["resized"] = resized
    elif init:  # our own or the release's full-model weights
        own = model.state_dict()
        head = [k for k in ("head.fc_cls.weight", "head.fc_cls.bias")
                if k in sd and k in own and sd[k].shape != own[k].shape]
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


def describe_init(source: str | os.PathLike, meta: Mapping[str, Any]) -> str:
    """One log line saying how ``init.pretrained`` (``source``) went into the model."""
    init = meta.get("init") or {}
    resized = f"; resized {', '.join(init['resized'])}" if init.get("resized") else ""
    inflated = f"; inflated over time {', '.join(init['inflated'])}" if init.get("inflated") else ""
    if meta.get("format") == "imagenet":
        return (f"init.pretrained {source}: ImageNet backbone weights: {len(init['copied'])} tensors copied, "
                f"{len(init['temporal_copies'])} copied into temporal layers, {len(init['new'])} left new "
                f"(time_embed, temporal_fc, heads), {len(init['dropped'])} not used{resized}{inflated}")
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
class CheckpointWriteError(CheckpointError, OSError):
    """A checkpoint could not be written (full disk, read-only folder ...); the previous file is intact.
    An OSError too: ``errno`` (e.g. ``errno.ENOSPC``), ``strerror`` and ``filename`` (the final path)."""

    def __init__(self, path: str | os.PathLike, err: BaseException) -> None:
        reason = getattr(err, "strerror", None) or error_text(err) or type(err).__name__
        super().__init__(f"{path}: cannot write: {reason} (the previous file, if any, is kept)")
        self.errno, self.strerror, self.filename = getattr(err, "errno", None), reason, str(path)

    def __str__(self) -> str:
        return str(self.args[0])


# mkstemp names of atomic_write: ".<target name>.p<writer's process id>.<random>.tmp"
_TMP_NAME = re.compile(r"^\.(?P<target>.+)\.p(?P<pid>\d+)\.[A-Za-z0-9_]{8}\.tmp$")
_writing: set[str] = set()  # temporary files this process is writing now


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete temporary files that an interrupted :func:`atomic_write` left in ``folder``: those of our
    naming pattern whose writer process is gone (or is this process, not writing it now)."""
    removed = []
    for tmp in folder.glob(".*.tmp"):
        match = _TMP_NAME.match(tmp.name)
        if match is None or str(tmp) in _writing:
            continue
        pid = int(match["pid"])
        if pid != os.getpid():
            try:
                os.kill(pid, 0)
                continue  # its writer is still running
            except ProcessLookupError:
                pass
            except OSError:  # PermissionError: alive, someone else's
                continue
        try:
            tmp.unlink()
            removed.append(tmp)
        except OSError:
            pass
    return removed


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[io.BufferedWriter], Any]) -> Path:
    """Write ``path`` atomically: ``write(f)`` to a temporary file in the same folder, fsync, then rename.

    A crash leaves the previous file intact; the next write in that folder removes the temporary file an
    interrupted one left behind. The file gets the mode other tools give (0o666 minus the umask), not
    mkstemp's 0o600. A failure (e.g. a full disk) raises CheckpointWriteError naming the file.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path.parent)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.p{os.getpid()}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise CheckpointWriteError(path, err) from None
    _writing.add(tmp)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise CheckpointWriteError(path, err) from None
        raise
    finally:
        _writing.discard(tmp)
    return path


# ----------------------------------------------------------------------------- writing a folder whole
# mkdtemp names of atomic_write_folder beside its target: ".<target name>.p<writer's process id>.<random>.new";
# a target renamed away (where the atomic exchange is unavailable) becomes "....old".
_TMP_DIR_NAME = re.compile(r"^\.(?P<target>.+)\.p(?P<pid>\d+)\.[A-Za-z0-9_]{8}\.(?P<kind>new|old)$")
_RENAME_EXCHANGE, _AT_FDCWD = 2, -100
_renameat2: Any = None


def _exchange(a: Path, b: Path) -> bool:
    """Swap the two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``): True when done, False where the
    system or file system does not offer it; another failure raises OSError."""
    global _renameat2
    if _renameat2 is None:
        try:
            fn = ctypes.CDLL(None, use_errno=True).renameat2
            fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
            fn.restype = ctypes.c_int
            _renameat2 = fn
        except (AttributeError, OSError, TypeError):
            _renameat2 = False
    if _renameat2 is False:
        return False
    if _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: alive, someone else's
        return True
    return True


def _leftovers(folder: Path) -> list[tuple[Path, str]]:
    """(path, 'new' or 'old') of what interrupted writes of ``folder`` by processes now gone left beside it."""
    out = []
    try:
        entries = list(folder.parent.iterdir())
    except OSError:
        return out
    for entry in entries:
        match = _TMP_DIR_NAME.match(entry.name)
        if (match is not None and match["target"] == folder.name and not _alive(int(match["pid"]))
                and entry.is_dir() and not entry.is_symlink()):
            out.append((entry, match["kind"]))
    def age(entry: tuple[Path, str]) -> float:
        try:
            return entry[0].stat().st_mtime
        except OSError:
            return 0.0

    return sorted(out, key=age)


def interrupted_save(folder: str | os.PathLike) -> Path | None:
    """The previous ``folder`` that an interrupted :func:`atomic_write_folder` renamed away and did not put
    back (only where the atomic exchange is unavailable), when ``folder`` is missing; else None."""
    folder = Path(folder)
    if folder.exists():
        return None
    old = [p for p, kind in _leftovers(folder) if kind == "old"]
    return old[-1] if old else None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_new_file(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
    try:
        view, done = memoryview(data), 0
        while done < len(view):
            done += os.write(fd, view[done:done + (1 << 22)])
        os.fsync(fd)
    finally:
        os.close(fd)


def _link_tree(src: Path, dst: Path) -> None:
    """Another file of the previous folder (.git, .gitattributes, notes ...) into the new one: hard links
    (copies where links fail), symbolic links kept as links; the previous folder is left as it is."""
    def link(a: str, b: str) -> None:
        try:
            os.link(a, b, follow_symlinks=False)
        except OSError:
            shutil.copy2(a, b, follow_symlinks=False)

    if src.is_symlink():
        os.symlink(os.readlink(src), dst)
    elif src.is_dir():
        shutil.copytree(src, dst, symlinks=True, copy_function=link)
    else:
        link(str(src), str(dst))


def atomic_write_folder(folder: str | os.PathLike, files: Mapping[str, bytes]) -> Path:
    """Write ``files`` (name -> bytes, in that order) as the folder ``folder``, whole or not at all.

    The files go into a new folder beside the target (``.<name>.p<pid>.<random>.new``), fsynced, which is
    then swapped with the target in one step (Linux ``renameat2(RENAME_EXCHANGE)``; renamed in where the
    target does not exist), and the previous folder is removed. A kill at any instant leaves the previous
    folder or the new one, never a mix. Other entries of the previous folder (``.git`` of a Hub clone ...)
    are carried into the new one as hard links. Where the exchange is unavailable the target is renamed
    away first, and for an instant only that previous folder exists (under the ``.old`` name): the next
    write of ``folder`` puts it back before anything else, and loading the missing folder names it.
    Leftovers of interrupted writes (their process gone) are removed at the next write. A failure raises
    CheckpointWriteError naming the folder; the previous folder is then intact.
    """
    folder = Path(folder)
    if folder.is_symlink():  # write where the link points; the link stays
        folder = Path(os.path.realpath(folder))
    tmp: Path | None = None
    old: Path | None = None
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        for path, kind in _leftovers(folder):
            if kind == "old" and not folder.exists():
                os.rename(path, folder)  # the previous folder, renamed away by an interrupted write
            else:
                shutil.rmtree(path, ignore_errors=True)
        if folder.exists() and not folder.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "exists and is not a folder")
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.p{os.getpid()}.", suffix=".new", dir=folder.parent))
        os.chmod(tmp, 0o777 & ~_umask())
        if folder.exists():
            for entry in folder.iterdir():
                if entry.name not in files and not _TMP_NAME.match(entry.name):
                    _link_tree(entry, tmp / entry.name)
        for name, data in files.items():
            _write_new_file(tmp / name, data)
        _fsync_dir(tmp)
        if not folder.exists():
            os.rename(tmp, folder)
        elif _exchange(tmp, folder):
            pass  # tmp now holds the previous folder
        else:
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.p{os.getpid()}.", suffix=".old", dir=folder.parent))
            os.rename(folder, old)  # replaces the empty folder just made
            os.rename(tmp, folder)
            tmp, old = old, None
        _fsync_dir(folder.parent)
    except BaseException as err:
        if old is not None and old.exists() and not folder.exists():
            os.rename(old, folder)  # the previous folder back
        for path in (tmp, old):
            if path is not None and path.exists() and not (folder.exists() and path.samefile(folder)):
                shutil.rmtree(path, ignore_errors=True)
        if isinstance(err, OSError):
            raise CheckpointWriteError(folder, err) from None
        raise
    shutil.rmtree(tmp, ignore_errors=True)  # the previous folder
    return folder


def save_checkpoint(path: str | os.PathLike, payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` (``model_payload`` plus any training state) as one of our checkpoints, atomically
    (see :func:`atomic_write`)."""
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    # Serialised in memory first: torch.save reports a failing file write (a full disk) as an unrelated
    # "unexpected pos" error, a plain file write gives the operating system's errno.
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return atomic_write(path, lambda f: f.write(buffer.getbuffer()))


def model_payload(model: torch.nn.Module, config: Mapping[str, Any] | None = None,
                  classes: Sequence[str] | None = None, **extra: Any) -> dict[str, Any]:
    """The model part of one of our checkpoints: weights, architecture, (optionally) the config and the
    class names -- as a list of strings, so that a checkpoint never makes a reader open a path.
    ``model`` is the bare model (``haltingvt.engine.distributed.unwrap`` a DDP wrapper first)."""
    arch = dict(getattr(model, "arch", None) or (model.cfg.to_dict() if hasattr(model, "cfg") else {}))
    payload = {"model": model.state_dict(), "arch": arch, "config": dict(config or {}), **extra}
    if classes is not None:
        payload["classes"] = check_class_names(list(classes), arch.get("num_classes"), "classes")
    return payload
