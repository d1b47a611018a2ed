"""Checks of untrusted data read from a file: plain (YAML/JSON-like) data of bounded size, weight maps
that hold tensors and no code, class names that are plain strings."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch

from .archive import Placeholder
from .errors import CheckpointError
from .textsafe import describe_char, escape, unsafe_char

#: An embedded config holds at most MAX_CONFIG_VALUES values.
MAX_CONFIG_VALUES = 100_000


def is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def check_weights(sd: Any, path: str | os.PathLike[str], where: str) -> None:
    if isinstance(sd, Placeholder):
        raise CheckpointError(f"{path}: '{where}' refers to code ({sd.refers_to}): refused")
    if not isinstance(sd, Mapping):
        raise CheckpointError(f"{path}: '{where}' must map weight names to tensors, got {type(sd).__name__}")
    for key, value in sd.items():
        for item in (key, value):
            if isinstance(item, Placeholder):
                raise CheckpointError(f"{path}: {where}.{key!s:.80} refers to code ({item.refers_to}): refused")
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"{path}: '{where}' must map weight names to tensors; {key!r:.80} holds {type(value).__name__}"
            )


def check_plain(value: Any, path: str | os.PathLike[str], where: str) -> None:
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
    bidirectional override, a line separator: ``haltingvt.io.textsafe.unsafe_char``)."""
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) and len(n) <= 1000 for n in names):
        raise CheckpointError(
            f"{where} must be a list of class names (strings), got {type(names).__name__}"
            + (f" {names!r:.60}" if isinstance(names, str) else "")
        )
    for index, name in enumerate(names):
        bad = unsafe_char(name)
        if bad is not None:
            raise CheckpointError(
                f"{where}[{index}] ('{escape(name)[:80]}') contains the control character {describe_char(bad)}: refused"
            )
    if num_classes is not None and len(names) != num_classes:
        raise CheckpointError(f"{where} has {len(names)} class names but the model has {num_classes} classes")
    return list(names)
