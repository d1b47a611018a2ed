"""The package-level model factory ``haltingvt.create_model``: config names and paths resolved through
:mod:`haltingvt.config`, the model built as ``haltingvt.HaltingVT`` (:mod:`haltingvt.hub`: with the test
pipeline and Hub transfers). :func:`haltingvt.models.create_model` takes an architecture only."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .config import resolve_arch
from .hub import HaltingVT
from .models import HaltingVTConfig


def create_model(
    name_or_path_or_arch: str | Path | Mapping[str, Any] | HaltingVTConfig | None = None,
    num_classes: int | None = None,
    **overrides: Any,
) -> HaltingVT:
    """A HaltingVT from a shipped config name (``"minik_g03_b10"``), a YAML path, a full config dict,
    an architecture dict or a HaltingVTConfig; ``num_classes`` and other keyword overrides replace
    architecture settings. Unknown settings raise ConfigError naming them."""
    return HaltingVT(resolve_arch(name_or_path_or_arch, num_classes=num_classes, **overrides))
