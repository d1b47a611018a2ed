"""The package-level model factory: names and paths resolved through :mod:`haltingvt.config`, then
:func:`haltingvt.models.create_model` (which takes an architecture only)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from . import models
from .config import resolve_arch
from .models import HaltingVT, HaltingVTConfig


def create_model(
    name_or_path_or_arch: str | Path | Mapping[str, Any] | HaltingVTConfig | None = None,
    num_classes: int | None = None,
    **overrides: Any,
) -> HaltingVT:
    """A HaltingVT from a shipped config name (``"minik_g03_b10"``), a YAML path, a full config dict,
    an architecture dict or a HaltingVTConfig; ``num_classes`` and other keyword overrides replace
    architecture settings. Unknown settings raise ConfigError naming them."""
    return models.create_model(resolve_arch(name_or_path_or_arch, num_classes=num_classes, **overrides))
