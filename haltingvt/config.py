"""Configuration: human-readable YAML files with dotted command-line overrides.

A config is a nested dict with the sections ``model`` (architecture), ``init`` (pretrained
weights), ``loss``, ``data``, ``train`` and ``test``. Files live in ``haltingvt/configs``
(also reachable as ``configs/`` at the repository root) and are addressed by name
(``minik_g03_b10``) or by path. Overrides use ``section.key=value`` with YAML values::

    cfg = load_config("minik_g03_b10", ["train.lr=2e-5", "model.keep_rate=[1.0,0.5]"])
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


class ConfigError(ValueError):
    """A config file, key or value is wrong; the message names it."""


def available_configs() -> list[str]:
    """Names of the configs shipped with the package."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if not p.stem.startswith("_"))


def _resolve(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return path
    shipped = CONFIG_DIR / f"{Path(str(name_or_path)).stem}.yaml"
    if path.suffix in ("", ".yaml", ".yml") and shipped.exists():
        return shipped
    raise ConfigError(
        f"unknown config '{name_or_path}': not a file and not one of {', '.join(available_configs())}"
    )


def _merge(base: dict, update: Mapping) -> dict:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    # `_base_: other.yaml` inherits another file (path relative to this file, or a shipped name).
    base_name = data.pop("_base_", None)
    if base_name is None:
        return data
    base_path = (path.parent / base_name) if (path.parent / base_name).exists() else _resolve(base_name)
    return _merge(_read_yaml(base_path), data)


def apply_overrides(cfg: dict, overrides: Iterable[str]) -> dict:
    """Apply ``section.key=value`` strings; unknown keys are an error naming the key."""
    cfg = copy.deepcopy(cfg)
    for item in overrides or ():
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not of the form key=value")
        dotted, raw = item.split("=", 1)
        keys = dotted.strip().split(".")
        node = cfg
        for depth, key in enumerate(keys[:-1]):
            if not isinstance(node.get(key), dict):
                raise ConfigError(f"unknown config key '{'.'.join(keys[:depth + 1])}' in override '{item}'")
            node = node[key]
        if keys[-1] not in node:
            raise ConfigError(
                f"unknown config key '{dotted}' (known in this section: {', '.join(sorted(node))})"
            )
        try:
            node[keys[-1]] = _number_or_self(yaml.safe_load(raw))
        except yaml.YAMLError as err:
            raise ConfigError(f"override '{item}': cannot parse value: {err}") from err
    return cfg


def _number_or_self(value: Any) -> Any:
    # YAML 1.1 reads "2e-5" (no dot) as a string; on the command line it is meant as a number.
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def load_config(name_or_path: str | Path | Mapping, overrides: Iterable[str] = ()) -> dict:
    """Load a config by shipped name, YAML path or an already-built dict, then apply overrides."""
    if isinstance(name_or_path, Mapping):
        cfg = copy.deepcopy(dict(name_or_path))
    else:
        path = _resolve(name_or_path)
        cfg = _read_yaml(path)
        cfg.setdefault("name", path.stem)
    return apply_overrides(cfg, overrides)


def require(cfg: Mapping, dotted: str) -> Any:
    """Read ``section.key``; a missing key raises ConfigError naming it."""
    node: Any = cfg
    for key in dotted.split("."):
        if not isinstance(node, Mapping) or key not in node:
            raise ConfigError(f"config key '{dotted}' is missing")
        node = node[key]
    return node
