"""Configuration: human-readable YAML files with dotted command-line overrides, checked against one schema.

A config is a nested dict with the sections ``model`` (architecture), ``init`` (pretrained weights),
``loss``, ``data``, ``train`` and ``test``. Files live in ``haltingvt/configs`` (also reachable as
``configs/`` at the repository root) and are addressed by name (``minik_g03_b10``) or by path; a file
may inherit another with ``_base_: other.yaml``. Overrides use ``section.key=value`` with YAML values::

    cfg = load_config("minik_g03_b10", ["train.lr=2e-5", "model.keep_rate=[1.0,0.5]"])

Defaults live in code, once: the model's in :class:`haltingvt.models.HaltingVTConfig`, the loss's in
:class:`haltingvt.models.LossConfig` (with their types, ranges and rules: :mod:`haltingvt.models.config`),
the other sections' in :data:`SCHEMA` below. A loaded config has
every key filled; an unknown key, a wrong type or a value out of range is a :class:`ConfigError` naming
the key, the value and what is allowed. YAML files hold only what differs from the defaults.
"""

from __future__ import annotations

import copy
import difflib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from .models.config import ARCH_RULES, MAX_PARAMS, ArchError, HaltingVTConfig, LossConfig, Spec, estimate_params, specs

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
SPLITS = ("train", "val", "test")


class ConfigError(ValueError):
    """A config file, key or value is wrong; the message names it. ``key``: the dotted key at fault, if any."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


# ----------------------------------------------------------------------------------------- schema
class _Bad(Exception):
    """A value does not pass a check; the argument says what is allowed."""


@dataclass(frozen=True)
class Key:
    """One config key: its default and the check that turns a value into its canonical form."""

    default: Any
    check: Callable[[Any], Any]
    allowed: str


def _number(
    kind: type, lo: float | None = None, hi: float | None = None, lo_open: bool = False, hi_open: bool = False
) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Bad
        try:
            if not math.isfinite(value) or (kind is int and not float(value).is_integer()):
                raise _Bad
        except OverflowError:  # an integer beyond a float's range (10**400): no setting needs it
            raise _Bad from None
        value = kind(value)
        if lo is not None and (value < lo or (lo_open and value == lo)):
            raise _Bad
        if hi is not None and (value > hi or (hi_open and value == hi)):
            raise _Bad
        return value

    return check


def _range_text(
    kind: str, lo: float | None = None, hi: float | None = None, lo_open: bool = False, hi_open: bool = False
) -> str:
    if lo is None and hi is None:
        return kind
    left = "(" if lo_open else "["
    right = ")" if hi_open or hi is None else "]"
    return f"{kind} in {left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"


def num(
    kind: type,
    default: Any,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
) -> Key:
    name = "an integer" if kind is int else "a number"
    return Key(default, _number(kind, lo, hi, lo_open, hi_open), _range_text(name, lo, hi, lo_open, hi_open))


def flag(default: bool) -> Key:
    def check(value: Any) -> bool:
        if not isinstance(value, bool):
            raise _Bad
        return value

    return Key(default, check, "true or false")


def choice(default: Any, options: Sequence[Any]) -> Key:
    def check(value: Any) -> Any:
        if value not in options:
            raise _Bad
        return value

    return Key(default, check, "one of " + ", ".join(str(o) for o in options))


def text(default: str | None, optional: bool = True) -> Key:
    def check(value: Any) -> Any:
        if value is None and optional:
            return None
        if not isinstance(value, str):
            raise _Bad
        return value

    return Key(default, check, "a string" + (" or null" if optional else ""))


def number_list(
    default: Any,
    kind: type,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    length: int | None = None,
    scalar_ok: bool = False,
) -> Key:
    item = _number(kind, lo, hi, lo_open)

    def check(value: Any) -> Any:
        if scalar_ok and not isinstance(value, (list, tuple)):
            return item(value)
        if not isinstance(value, (list, tuple)) or (length is not None and len(value) != length):
            raise _Bad
        return [item(v) for v in value]

    what = f"a list of {length or ''} {_range_text('integers' if kind is int else 'numbers', lo, hi, lo_open)}"
    return Key(default, check, ("an integer or " if scalar_ok else "") + " ".join(what.split()))


def optional(key: Key) -> Key:
    """``key`` that also accepts null."""
    return Key(key.default, lambda value: None if value is None else key.check(value), key.allowed + " or null")


def optional_mapping(default: Any) -> Key:
    def check(value: Any) -> Any:
        if value is not None and not isinstance(value, Mapping):
            raise _Bad
        return None if value is None else dict(value)

    return Key(default, check, "a mapping or null")


def string_list(default: Any) -> Key:
    def check(value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise _Bad
        return list(value)

    return Key(default, check, "a list of names or null")


def from_spec(default: Any, spec: Spec) -> Key:
    """The config key of a model or loss setting: its type and range as its field's :class:`Spec` says."""
    if spec.kind in ("int", "float"):
        key = num(int if spec.kind == "int" else float, default, spec.lo, spec.hi, spec.lo_open, spec.hi_open)
    elif spec.kind == "bool":
        key = flag(default)
    elif spec.kind == "choice":
        key = choice(default, spec.options)
    elif spec.kind == "floats":
        key = number_list(default, float, spec.lo, spec.hi, spec.lo_open)
    else:
        raise ValueError(f"unknown setting kind {spec.kind!r}")
    return optional(key) if spec.optional else key


def dataclass_section(cls: type) -> dict[str, Key]:
    """The keys of a section from the dataclass that owns its settings (defaults, types, ranges)."""
    default = cls()
    return {name: from_spec(getattr(default, name), spec) for name, spec in specs(cls).items()}


_AMP = ("none", "bf16", "fp16")

#: Every section's keys: default, type and allowed values. The model and loss sections are built from
#: haltingvt.models.config (HaltingVTConfig, LossConfig): their settings are listed there, once.
SCHEMA: dict[str, dict[str, Key]] = {
    "model": dataclass_section(HaltingVTConfig),
    "init": {
        # timm model name (needs internet), a local .pth/.safetensors file, or null (random init)
        "pretrained": text("deit_small_patch16_224"),
    },
    "loss": dataclass_section(LossConfig),
    "data": {
        "format": choice("video", ("video", "rawframes", "arnet", "folders", "synthetic")),
        # data.format: folders (haltingvt.data.folders): data_root/<class>/<clip>, or data_root/{train,val,test}/...;
        # without split folders each class is split by split_ratio ([train, val, test] or [train, val]) and split_seed
        "split_ratio": number_list([0.8, 0.1, 0.1], float, 0, 1),
        "split_seed": num(int, 0, 0),
        "data_root": text(None),
        "train_list": text(None),
        "val_list": text(None),
        "test_list": text(None),
        "classes": text(None),  # optional class-name file
        "filename_tmpl": text("img_{:05}.jpg", optional=False),
        "start_index": num(int, 1, 0),
        "with_offset": flag(False),  # rawframe lists: "frame_dir offset total_frames label" form
        "clip_len": num(int, 8, 1),
        "frame_interval": num(int, 32, 1),
        "num_clips": num(int, 1, 1),
        "test_num_clips": num(int, 1, 1),
        "test_num_crops": choice(1, (1, 3)),
        "short_video": choice("loop", ("loop", "clamp")),  # frame indices past the end of a short video
        # test-mode clip starts: mmaction2 (1.x, the release's) | segments (0.x segment centres); docs/pipeline.md
        "test_sampling": choice("mmaction2", ("mmaction2", "segments")),
        # resize and crop geometry: mmcv (cv2 bilinear, no antialias, MMAction2's rounding and crop offsets: the
        # release's) | torchvision (antialiased bilinear, torchvision's rounding); docs/pipeline.md
        "resize": choice("mmcv", ("mmcv", "torchvision")),
        "train_scale": number_list([256, 320], int, 1, length=2, scalar_ok=True),  # short side range
        "crop_size": num(int, 224, 1),
        "test_scale": num(int, 256, 1),
        "randaugment": optional_mapping({"num_ops": 2, "magnitude": 9}),
        "static_from_other_video": flag(False),
        "num_workers": num(int, 8, 0),
        # data.format: synthetic (haltingvt.data.synthetic): clips per split, seed, classes (null: all), cache
        "synthetic_num_train": num(int, 600, 1),
        "synthetic_num_val": num(int, 200, 1),
        "synthetic_num_test": num(int, 200, 1),
        "synthetic_seed": num(int, 0),
        "synthetic_classes": string_list(None),
        "synthetic_cache": flag(False),
    },
    "train": {
        "epochs": num(int, 20, 1),
        "batch_size": num(int, 16, 1),  # samples per process (real + static clip each)
        "optimizer": choice("adam", ("adam", "adamw")),
        "lr": num(float, 1.0e-5, 0, lo_open=True),  # for 8 GPUs x 16 samples; scaled linearly (scale_lr)
        "scale_lr": flag(True),  # lr x (batch_size x processes x accum_steps) / base_batch_size
        "base_batch_size": num(int, 128, 1),
        "weight_decay": num(float, 1.0e-5, 0),  # never on cls_token / pos_embed / time_embed
        "no_decay_bias_norm": flag(True),  # none on biases and LayerNorm weights either (false: as the release)
        "warmup_epochs": num(float, 5.0, 0),
        "warmup_start_factor": num(float, 0.1, 0, 1, lo_open=True),
        "grad_clip": num(float, 40.0, 0),  # 0: no clipping
        "accum_steps": num(int, 1, 1),
        "amp": choice("none", _AMP),
        "seed": num(int, 0, 0),
        # how halting runs in training: compact (halted tokens removed: the same loss and gradients, less time and
        # memory) | masked (the release's computation)
        "execution": choice("compact", ("compact", "masked")),
        "val_interval": num(int, 1, 0),  # epochs between validations (0: none)
        "log_interval": num(int, 20, 1),  # optimizer steps between log lines
        "ckpt_interval": num(int, 500, 0),  # optimizer steps between latest.pth saves (0: only at epoch end)
        # an epoch that skips more than this fraction of its samples (unreadable files) warns loudly; an epoch
        # with no readable sample at all stops the run (docs/reliability.md)
        "max_skip_ratio": num(float, 0.5, 0, 1),
        "work_dir": text(None),  # default work_dirs/<config name>
    },
    "test": {
        "batch_size": num(int, 8, 1),
        "execution": choice("compact", ("compact", "masked")),
        "early_exit": flag(False),
        "amp": choice("none", _AMP),  # fp16: CUDA only
        # inference precision of predict/eval/app (haltingvt.models.precision; docs/guide.md, "Precision"):
        # int8 on the CPU only, fp16 on CUDA only
        "precision": choice("fp32", ("fp32", "bf16", "fp16", "int8")),
        # torch.compile the Glimpser's blocks for predict/eval/app (haltingvt.models.compile; docs/guide.md,
        # "Compiling the Glimpser")
        "compile": flag(False),
    },
}
SECTIONS = tuple(SCHEMA)


def defaults() -> dict[str, Any]:
    """A config holding every default (no name)."""
    return {section: {k: copy.deepcopy(key.default) for k, key in keys.items()} for section, keys in SCHEMA.items()}


def check_section(section: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """One section with defaults filled in and every value checked; ConfigError names key, value, allowed."""
    keys = SCHEMA[section]
    if not isinstance(values, Mapping):
        raise ConfigError(f"config section '{section}' must be a mapping, got {values!r}")
    unknown = sorted(set(values) - set(keys))
    if unknown:
        raise ConfigError(f"unknown config key '{section}.{unknown[0]}' (known in this section: {', '.join(keys)})")
    out = {}
    for name, key in keys.items():
        value = values[name] if name in values else copy.deepcopy(key.default)
        try:
            out[name] = key.check(value)
        except _Bad:
            raise ConfigError(
                f"config key '{section}.{name}': {_show(value)} is not allowed (allowed: {key.allowed})",
                f"{section}.{name}",
            ) from None
    return out


def _show(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters (a 5000-digit number or a huge list stays one short line)."""
    try:
        text = repr(value)
    except ValueError:  # an int beyond Python's int-string conversion limit
        return f"an integer of about {value.bit_length() * 0.30103:.0f} digits"
    return text if len(text) <= limit else text[: limit - 3] + "..."


#: ``name`` names the run (and its default work dir ``work_dirs/<name>``): a plain name, never a path.
MAX_NAME_LENGTH = 128
_UNSAFE_NAME = re.compile(r"[/\\\x00-\x1f\x7f]")


def check_name(name: Any) -> str:
    """``name`` if it is a plain run name: a string of 1 to 128 characters without '/', '\\' or control
    characters, not '.' or '..' (so ``work_dirs/<name>`` stays inside ``work_dirs``); else ConfigError."""
    if (
        not isinstance(name, str)
        or not 0 < len(name) <= MAX_NAME_LENGTH
        or _UNSAFE_NAME.search(name)
        or name in (".", "..")
        or name != name.strip()
    ):
        raise ConfigError(
            f"config key 'name': {_show(name)} is not allowed (allowed: a plain name of 1 to "
            f"{MAX_NAME_LENGTH} characters, no '/', '\\', control characters or surrounding spaces, "
            "not '.' or '..')",
            "name",
        )
    return name


def name_from_stem(stem: str) -> str:
    """A run name from a file name: characters a name may not hold become '_'."""
    name = _UNSAFE_NAME.sub("_", stem).strip()[:MAX_NAME_LENGTH]
    return name if name not in ("", ".", "..") else "config"


#: Data keys that data.format=synthetic does not use: its clips are rendered at model.img_size, without
#: resizing, cropping or augmentation. A value other than the default or the one that matches what synthetic
#: clips are is refused (docs/reliability.md), so that a setting is never silently ignored.
SYNTHETIC_IGNORES = ("crop_size", "train_scale", "test_scale", "randaugment")


def _synthetic_neutral(key: str, value: Any, size: int) -> bool:
    """Whether ``data.<key> = value`` is what synthetic clips of ``size`` pixels are anyway (or the default)."""
    if value == SCHEMA["data"][key].default:
        return True
    if key == "randaugment":
        return value is None
    if key == "train_scale":
        return value in (size, [size, size])
    return value == size


def check_synthetic_keys(cfg: Mapping[str, Any], given: Iterable[str] = ()) -> None:
    """With data.format=synthetic, a key of SYNTHETIC_IGNORES set to something synthetic clips are not
    (``given``: dotted keys set explicitly, where even the default is refused unless it fits) is a ConfigError."""
    data = cfg["data"]
    if data["format"] != "synthetic":
        return
    size = cfg["model"]["img_size"]
    for key in SYNTHETIC_IGNORES:
        value = data[key]
        fits = (
            value is None
            if key == "randaugment"
            else value in ((size, [size, size]) if key == "train_scale" else (size,))
        )
        if fits or (f"data.{key}" not in given and _synthetic_neutral(key, value, size)):
            continue
        what = (
            "no augmentation is applied"
            if key == "randaugment"
            else f"clips are rendered at model.img_size = {size} px, never resized or cropped"
        )
        fix = "null" if key == "randaugment" else f"[{size}, {size}]" if key == "train_scale" else str(size)
        raise ConfigError(
            f"config key 'data.{key}': {_show(value)} has no effect with data.format=synthetic ({what}); "
            f"remove it or set it to {fix}",
            f"data.{key}",
        )


def check_model_size(model: Mapping[str, Any]) -> int:
    """The number of parameters of the model of ``model`` (a config's model section), or a ConfigError when
    it is above MAX_PARAMS: the limit a checkpoint's architecture is held to when it is loaded
    (haltingvt.models.weights.check_arch), here checked before anything is allocated for training."""
    params = estimate_params(model)
    if params > MAX_PARAMS:
        sizes = ", ".join(
            f"model.{k}={model[k]}"
            for k in (
                "embed_dim",
                "depth",
                "mlp_ratio",
                "img_size",
                "patch_size",
                "num_frames",
                "tubelet_size",
                "num_classes",
            )
        )
        raise ConfigError(
            f"config section 'model': {sizes} give about {params / 1e9:.3g} billion parameters, over "
            f"the limit of {MAX_PARAMS / 1e9:g} billion (the same as for a loaded checkpoint)",
            "model",
        )
    return params


def validate(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """A complete, checked copy of ``cfg``: every section and key present, unknown ones an error."""
    unknown = sorted(set(cfg) - set(SECTIONS) - {"name"})
    if unknown:
        raise ConfigError(f"unknown config section '{unknown[0]}' (known: name, {', '.join(SECTIONS)})")
    out: dict[str, Any] = {"name": check_name(cfg["name"])} if "name" in cfg else {}
    for section in SECTIONS:
        out[section] = check_section(section, cfg.get(section) or {})
    model = out["model"]
    if "keep_rate" not in (cfg.get("model") or {}):  # default keep rates follow divid_depth
        model["keep_rate"] = HaltingVTConfig.from_mapping({"divid_depth": model["divid_depth"]}).keep_rate
    for rule in ARCH_RULES:  # the rules between model settings (haltingvt.models.config)
        if not rule.ok(model):
            raise ConfigError(f"config key 'model.{rule.key}': {rule.config_text(model)}")
    scale = out["data"]["train_scale"]
    if isinstance(scale, list) and scale[0] > scale[1]:
        raise ConfigError(f"config key 'data.train_scale': {scale} must be [smallest, largest] short side")
    check_synthetic_keys(out)
    return out


# ------------------------------------------------------------------------------------ files, overrides
def available_configs() -> list[str]:
    """Names of the configs shipped with the package."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if not p.stem.startswith("_"))


def _resolve(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    if len(path.parts) > 1:  # a path, not a name: never fall back to the shipped file of the same name
        raise ConfigError(f"config file {path} not found")
    shipped = CONFIG_DIR / f"{Path(str(name_or_path)).stem}.yaml"
    if path.suffix in ("", ".yaml", ".yml") and shipped.exists():
        return shipped
    raise ConfigError(f"unknown config '{name_or_path}': not a file and not one of {', '.join(available_configs())}")


def _merge(base: dict, update: Mapping) -> dict:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


#: Limits on a config's shape: YAML nesting (a config is 2-3 levels deep) and the length of a _base_ chain.
MAX_YAML_DEPTH = 32
MAX_BASE_CHAIN = 32


class _YamlProblem(yaml.MarkedYAMLError):
    """A problem our loader finds (duplicate key, too deep, a number too long), with its place in the text."""

    def __init__(self, problem: str, mark: Any) -> None:
        super().__init__(problem=problem, problem_mark=mark)


class ConfigLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (top-level sections included: a second
    ``train:`` block would silently replace the first), nesting deeper than MAX_YAML_DEPTH (900 levels ended
    in RecursionError) and integers too long to convert (Python's int-string limit gave a ValueError)."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise _YamlProblem(f"nested deeper than {MAX_YAML_DEPTH} levels", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` merges on purpose
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key)
                except TypeError:  # an unhashable key: SafeLoader's own error follows
                    continue
                seen.setdefault(key, key_node.start_mark.line)
                if first is not None:
                    raise _YamlProblem(
                        f"duplicate key {_show(key, 60)} (first given on line {first + 1}); each key may appear once",
                        key_node.start_mark,
                    )
        return super().construct_mapping(node, deep)

    def construct_yaml_int(self, node: Any) -> Any:
        try:
            return super().construct_yaml_int(node)
        except ValueError:
            text = str(node.value)
            raise _YamlProblem(
                f"the number {text[:12]}... ({len(text)} characters) is too long", node.start_mark
            ) from None


ConfigLoader.add_constructor("tag:yaml.org,2002:int", ConfigLoader.construct_yaml_int)


def parse_yaml(text: str) -> Any:
    """YAML text -> data, through :class:`ConfigLoader` (yaml.YAMLError on a problem, with its line)."""
    loader = ConfigLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _yaml_problem(err: yaml.YAMLError) -> tuple[int | None, str]:
    """(line number or None, the problem on one line) of a YAML error."""
    mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
    if isinstance(err, _YamlProblem):
        text = err.problem
    elif isinstance(err, yaml.MarkedYAMLError):
        text = " ".join(str(part) for part in (err.context, err.problem) if part)
    else:
        text = str(err)
    return (mark.line + 1 if mark is not None else None), " ".join(str(text).split())


def _read_yaml(path: Path, chain: tuple[Path, ...] = ()) -> dict:
    """The data of a config file with its ``_base_`` chain merged in; ``chain``: the files that inherit it."""
    here = path.resolve()
    if here in chain:
        cycle = " -> ".join(str(p) for p in (*chain[chain.index(here) :], here))
        raise ConfigError(f"{chain[-1]}: _base_ makes a cycle: {cycle}")
    if len(chain) >= MAX_BASE_CHAIN:
        raise ConfigError(f"{chain[-1]}: _base_ chain longer than {MAX_BASE_CHAIN} files (at {path})")
    raw = path.read_bytes()
    try:
        data = parse_yaml(raw.decode("utf-8-sig")) or {}
    except UnicodeDecodeError as err:
        line: int | None = raw[: err.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[err.start]:02x})") from None
    except yaml.YAMLError as err:
        line, text = _yaml_problem(err)
        where = f"{path}:{line}" if line else str(path)
        raise ConfigError(f"{where}: {text if isinstance(err, _YamlProblem) else 'invalid YAML: ' + text}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    _check_top_level(data, path)
    # `_base_: other.yaml` inherits another file (path relative to this file, or a shipped name).
    base_name = data.pop("_base_", None)
    if base_name is None:
        return data
    return _merge(_read_yaml(_base_path(base_name, path), (*chain, here)), data)


def _base_path(base_name: Any, path: Path | None) -> Path:
    """The file ``_base_: base_name`` names in ``path`` (None: in a dict): relative to the file, or shipped."""
    where = f"{path}: _base_" if path is not None else "_base_"
    if not isinstance(base_name, str) or not base_name or "\x00" in base_name:
        raise ConfigError(f"{where}: {_show(base_name)} is not a config name or path")
    try:
        if path is not None and (path.parent / base_name).is_file():
            return path.parent / base_name
        return _resolve(base_name)
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
    except OSError as err:  # a name too long for the file system ...
        raise ConfigError(f"{where}: {_show(base_name)}: {err.strerror or err}") from None


def _check_top_level(data: Mapping[str, Any], path: Path) -> None:
    """A top-level key that is neither a section, ``name`` nor ``_base_`` is named with the file (and the
    nearest known key: ``base:`` is a typo of ``_base_:``)."""
    known = ["_base_", "name", *SECTIONS]
    for key in data:
        if key not in known:
            guess = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            raise ConfigError(
                f"unknown top-level key '{key}' in {path}; "
                + (f"did you mean '{guess[0]}'?" if guess else f"known: {', '.join(known)}")
            )


def apply_overrides(cfg: dict, overrides: Iterable[str]) -> dict:
    """Apply ``section.key=value`` strings; unknown keys are an error naming the key. A whole section given
    as a mapping (``train={lr: 0.5, epochs: 3}``) is merged into the section: keys it does not name keep
    their values (never reset to the defaults)."""
    cfg = copy.deepcopy(cfg)
    for item in overrides or ():
        if "=" not in item:
            raise ConfigError(f"override '{_show(item, 60)[1:-1]}' is not of the form key=value")
        dotted, raw = item.split("=", 1)
        keys = dotted.strip().split(".")
        node = cfg
        for depth, key in enumerate(keys[:-1]):
            if not isinstance(node.get(key), dict):
                raise ConfigError(
                    f"unknown config key '{'.'.join(keys[: depth + 1])}' in override '{_show(item, 60)[1:-1]}'"
                )
            node = node[key]
        if keys[-1] not in node:
            raise ConfigError(f"unknown config key '{dotted}' (known in this section: {', '.join(sorted(node))})")
        try:
            value = _number_or_self(parse_yaml(raw))
        except yaml.YAMLError as err:
            raise ConfigError(
                f"override of '{dotted.strip()}': cannot parse value: {_yaml_problem(err)[1]}", dotted.strip()
            ) from None
        if len(keys) == 1 and keys[0] in SECTIONS and isinstance(node[keys[0]], dict):
            if not isinstance(value, Mapping):
                raise ConfigError(
                    f"config section '{keys[0]}' must be a mapping, got {_show(value)} (override "
                    f"one key with {keys[0]}.KEY=VALUE)",
                    keys[0],
                )
            value = _merge(node[keys[0]], value)  # a section merges; it never resets the keys it does not name
        node[keys[-1]] = value
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
    """Load a config by shipped name, YAML path or an already-built dict, fill in the defaults, apply the
    overrides and check every value. The result has every key of :data:`SCHEMA`. A dict may inherit with
    ``_base_`` as a file does (a shipped name or a path)."""
    path, given = None, set()
    if isinstance(name_or_path, Mapping):
        cfg = copy.deepcopy(dict(name_or_path))
        base_name = cfg.pop("_base_", None)
        if base_name is not None:
            cfg = _merge(_read_yaml(_base_path(base_name, None)), cfg)
    else:
        path = _resolve(name_or_path)
        cfg = _read_yaml(path)
        given = _dotted_keys(cfg)  # what the files set (a dict may be a complete config: every key "given")
        cfg.setdefault("name", name_from_stem(path.stem))
    try:
        cfg = validate(cfg)  # defaults first, so that every key can be overridden
        check_synthetic_keys(cfg, given)
    except ConfigError as err:
        if path is None:
            raise
        raise ConfigError(f"{path}: {err}", err.key) from None
    overrides = list(overrides or ())
    if not overrides:
        return cfg
    before = cfg
    cfg = validate(apply_overrides(cfg, overrides))
    check_synthetic_keys(
        cfg,
        given
        | {k for k, v in _flatten(cfg).items() if _flatten(before).get(k, v) != v}
        | {item.split("=", 1)[0].strip() for item in overrides},
    )
    return cfg


def _dotted_keys(cfg: Mapping[str, Any]) -> set[str]:
    return {f"{section}.{key}" for section, values in cfg.items() if isinstance(values, Mapping) for key in values}


def _flatten(cfg: Mapping[str, Any]) -> dict[str, Any]:
    return {
        f"{section}.{key}": value
        for section, values in cfg.items()
        if isinstance(values, Mapping)
        for key, value in values.items()
    }


def check_split(split: str) -> str:
    """``split`` if it is one of train/val/test, else ConfigError (a ValueError)."""
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    return split


# ------------------------------------------------------------------------------------------ models
def resolve_arch(
    source: str | Path | Mapping[str, Any] | HaltingVTConfig | None = None, **overrides: Any
) -> dict[str, Any]:
    """Architecture dict (every key of HaltingVTConfig) from a config name/path, a full config (with a
    ``model`` section), an architecture dict or a HaltingVTConfig, plus overrides (None values ignored).
    Unknown keys are a ConfigError naming the key."""
    if source is None:
        arch: Any = {}
    elif isinstance(source, HaltingVTConfig):
        arch = source
    elif isinstance(source, Mapping):
        arch = source["model"] if "model" in source else source
    else:
        arch = load_config(source)["model"]
    try:
        return HaltingVTConfig.from_mapping(arch, **overrides).to_dict()
    except ArchError as err:
        raise ConfigError(str(err)) from None
