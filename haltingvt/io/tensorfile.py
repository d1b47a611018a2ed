"""Our ``.safetensors``: weights plus JSON metadata, with a sha256 digest over everything a load reads.

Someone else's ``.safetensors`` reads as its plain tensors; one of ours (metadata ``format: haltingvt``)
is checked against its digest first (:func:`read_safetensors`).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save as save_safetensors_bytes

from .atomic import atomic_write
from .errors import CheckpointError, IntegrityWarning, error_text
from .textsafe import safe_path

FORMAT = "haltingvt"
FORMAT_VERSION = 1


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


def save_safetensors(
    path: str | os.PathLike[str],
    state_dict: Mapping[str, torch.Tensor],
    metadata: Mapping[str, Any] | None = None,
    *,
    raw_metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write weights as ``.safetensors`` in our format (atomically): metadata ``format: haltingvt``, each
    ``metadata`` entry as JSON (arch, classes ...), each ``raw_metadata`` entry as it is, the sha256 of the
    tensors and the ``digest`` over all of it (:func:`content_digest`)."""
    return atomic_write(path, lambda f: f.write(safetensors_bytes(state_dict, metadata, raw_metadata=raw_metadata)))


def safetensors_bytes(
    state_dict: Mapping[str, torch.Tensor],
    metadata: Mapping[str, Any] | None = None,
    *,
    raw_metadata: Mapping[str, str] | None = None,
) -> bytes:
    """The bytes :func:`save_safetensors` writes."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    meta = {key: json.dumps(value) for key, value in (metadata or {}).items()}
    meta.update(raw_metadata or {})
    meta.update(format=FORMAT, format_version=str(FORMAT_VERSION))
    meta[TENSOR_DIGEST_KEY] = tensor_digest(tensors)
    meta[DIGEST_KEY] = content_digest(tensors, meta)
    return save_safetensors_bytes(tensors, metadata=meta)


def read_safetensors(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """-> (the tensors (someone else's file) or our checkpoint layout (format, model, arch, classes ...),
    the file's metadata as stored).

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
            raise CheckpointError(
                f"{path}: the contents (tensors and metadata) do not match their sha256 digest "
                "(the file is damaged or was edited): refused"
            )
        if meta.get("format") != FORMAT:
            raise CheckpointError(f'{path}: has a haltingvt digest but no "format": "{FORMAT}" metadata: refused')
    elif meta.get("format") != FORMAT:
        return tensors, meta
    elif TENSOR_DIGEST_KEY in meta:
        if tensor_digest(tensors) != meta[TENSOR_DIGEST_KEY]:
            raise CheckpointError(
                f"{path}: the tensors do not match their sha256 digest (the file is damaged): refused"
            )
        warnings.warn(
            IntegrityWarning(
                f"{safe_path(path)}: written by an older haltingvt: its tensors are checked, its metadata "
                "(architecture, class names) is not covered by a digest; save it again to cover it"
            ),
            stacklevel=4,
        )
    else:
        warnings.warn(
            IntegrityWarning(
                f"{safe_path(path)}: haltingvt .safetensors without a digest (made by hand?): loaded unchecked, "
                "damage to it would go unnoticed"
            ),
            stacklevel=4,
        )
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
