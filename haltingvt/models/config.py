"""The model's and the loss's settings: their defaults, allowed values and the rules between them, in one place.

:class:`HaltingVTConfig` (architecture) and :class:`LossConfig` (the ``loss`` section) are the ONE source of
these defaults and ranges: each field carries a :class:`Spec` (its type and range, and for the architecture
its role), and :data:`ARCH_RULES` holds the rules that tie architecture settings together. The model checks
an architecture with them, a checkpoint's stored architecture is checked with them before anything is
allocated (``haltingvt.models.weights.check_arch``), and ``haltingvt.config`` builds the ``model`` and
``loss`` sections of its schema from them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable

INIT_SCHEMES = ("default", "scratch")
#: Architectures above MAX_PARAMS parameters are refused (a config before training, a file before loading).
MAX_PARAMS = 2_000_000_000


class ArchError(ValueError):
    """An architecture setting is unknown or has a wrong value; the message names the key (``key``)."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


@dataclass(frozen=True)
class Spec:
    """What a setting allows: ``kind`` int, float, bool, choice (one of ``options``) or floats (a list of
    numbers); an open or closed range [lo, hi]; ``optional``: null allowed too.

    ``role`` (architecture settings): ``structure`` (must match a checkpoint: a difference gives weights that
    do not fit, or wrong results), ``behaviour`` (changes what the model computes, not its weights) or
    ``training`` (used in training only); ``sizes``: an integer that sizes the model."""

    kind: str
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    options: tuple[Any, ...] = ()
    optional: bool = False
    role: str = ""
    sizes: bool = False


def setting(default: Any, kind: str, **spec: Any) -> Any:
    """A dataclass field with its default and its :class:`Spec` (in the field's metadata)."""
    meta = {"spec": Spec(kind, **spec)}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


def spec_of(cls: type, name: str) -> Spec:
    spec: Spec = next(f.metadata["spec"] for f in fields(cls) if f.name == name)
    return spec


def specs(cls: type) -> dict[str, Spec]:
    """Every field of ``cls`` (HaltingVTConfig or LossConfig) -> its Spec, in field order."""
    return {f.name: f.metadata["spec"] for f in fields(cls)}


@dataclass
class HaltingVTConfig:
    """Architecture settings and their defaults (DeiT-S, 8 frames, 224x224, G03/b10): the ONE source of
    model defaults (the YAML configs and ``haltingvt.config`` read them from here)."""

    img_size: int = setting(224, "int", lo=1, role="behaviour", sizes=True)
    patch_size: int = setting(16, "int", lo=1, role="structure", sizes=True)
    num_frames: int = setting(8, "int", lo=1, role="behaviour", sizes=True)
    # frames per token (1: the release, one 2-D patch per frame; 2: ViViT/VideoMAE tubelets)
    tubelet_size: int = setting(1, "int", lo=1, role="structure", sizes=True)
    embed_dim: int = setting(384, "int", lo=1, role="structure", sizes=True)
    num_heads: int = setting(6, "int", lo=1, role="structure", sizes=True)
    depth: int = setting(12, "int", lo=1, role="structure", sizes=True)
    divid_depth: int = setting(2, "int", lo=0, role="structure", sizes=True)  # Glimpser layers
    # one per Glimpser layer; "G03" = 0.3 in the second
    keep_rate: list[float] = setting([1.0, 0.3], "floats", lo=0, hi=1, lo_open=True, role="behaviour")
    halting: bool = setting(True, "bool", role="behaviour")  # false: plain joint layers (the dense baseline)
    halt_scale: float = setting(10.0, "float", role="behaviour")
    halt_center: float = setting(10.0, "float", role="behaviour")  # "Beta" in the release's config names (b5, b10, b20)
    eps: float = setting(0.01, "float", lo=0, hi=1, role="behaviour")
    fuse_token: bool = setting(False, "bool", role="behaviour")
    num_classes: int = setting(200, "int", lo=1, role="structure", sizes=True)
    drop_path_rate: float = setting(0.0, "float", lo=0, hi=1, hi_open=True, role="training")
    head_dropout: float = setting(0.0, "float", lo=0, hi=1, hi_open=True, role="training")
    mlp_ratio: float = setting(4.0, "float", lo=0, lo_open=True, role="structure")
    # default (trunc-normal, as the release) | scratch (sin-cos embeddings, Xavier)
    init_scheme: str = setting("default", "choice", options=INIT_SCHEMES, role="training")

    @classmethod
    def from_mapping(cls, arch: Mapping[str, Any] | HaltingVTConfig, **overrides: Any) -> HaltingVTConfig:
        """Settings from a dict (keys of this class) plus overrides (None values ignored).
        Unknown keys raise ArchError naming them. Without an explicit keep_rate, a divid_depth other than
        the default's gets keep rate 1 (no selection) in every Glimpser layer."""
        spec = asdict(arch) if isinstance(arch, HaltingVTConfig) else dict(arch)
        spec.update({k: v for k, v in overrides.items() if v is not None})
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(spec) - set(known))
        if unknown:
            raise ArchError(f"unknown model setting(s): {', '.join(unknown)} (known: {', '.join(known)})")
        default_keep = cls().keep_rate
        if "keep_rate" not in spec and spec.get("divid_depth", len(default_keep)) != len(default_keep):
            spec["keep_rate"] = [1.0] * int(spec["divid_depth"])
        spec["keep_rate"] = [float(r) for r in spec.get("keep_rate", default_keep)]
        return cls(**spec)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def check(self) -> HaltingVTConfig:
        """The settings that size the model (integers in range) and :data:`ARCH_RULES`; ArchError naming the
        first problem. Returns self."""
        check_arch_rules(self.to_dict())
        return self


#: Settings by ``Spec.sizes`` and ``Spec.role``, in field order.
SIZE_KEYS = tuple(k for k, s in specs(HaltingVTConfig).items() if s.sizes)
STRUCTURAL_KEYS = tuple(k for k, s in specs(HaltingVTConfig).items() if s.role == "structure")
BEHAVIOUR_KEYS = tuple(k for k, s in specs(HaltingVTConfig).items() if s.role == "behaviour")

#: The defaults as a dict (``HaltingVTConfig`` is the source).
ARCH_DEFAULTS: dict[str, Any] = HaltingVTConfig().to_dict()


@dataclass(frozen=True)
class ArchRule:
    """A rule between architecture settings: ``key`` is the setting blamed; ``text`` says what is wrong as
    the model says it, ``config_text`` as a config check says it (after "config key 'model.<key>': ")."""

    key: str
    ok: Callable[[Mapping[str, Any]], bool]
    text: Callable[[Mapping[str, Any]], str]
    config_text: Callable[[Mapping[str, Any]], str]


ARCH_RULES: tuple[ArchRule, ...] = (
    ArchRule(
        "keep_rate",
        lambda a: len(a["keep_rate"]) == a["divid_depth"],
        lambda a: f"keep_rate needs one value per Glimpser layer ({a['divid_depth']}), got {a['keep_rate']}",
        lambda a: f"{a['keep_rate']} needs one value per Glimpser layer (model.divid_depth = {a['divid_depth']})",
    ),
    ArchRule(
        "divid_depth",
        lambda a: 0 <= a["divid_depth"] < a["depth"],
        lambda a: f"divid_depth must be in [0, depth), got {a['divid_depth']} with depth {a['depth']}",
        lambda a: f"{a['divid_depth']} must be below model.depth ({a['depth']})",
    ),
    ArchRule(
        "num_heads",
        lambda a: a["embed_dim"] % a["num_heads"] == 0,
        lambda a: f"embed_dim {a['embed_dim']} is not a multiple of num_heads {a['num_heads']}",
        lambda a: f"{a['num_heads']} must divide model.embed_dim ({a['embed_dim']})",
    ),
    ArchRule(
        "img_size",
        lambda a: a["img_size"] % a["patch_size"] == 0,
        lambda a: f"img_size {a['img_size']} is not a multiple of patch_size {a['patch_size']}",
        lambda a: f"{a['img_size']} must be a multiple of model.patch_size ({a['patch_size']})",
    ),
    ArchRule(
        "tubelet_size",
        lambda a: a["num_frames"] % a["tubelet_size"] == 0,
        lambda a: f"num_frames {a['num_frames']} is not a multiple of tubelet_size {a['tubelet_size']}",
        lambda a: f"{a['tubelet_size']} must divide model.num_frames ({a['num_frames']})",
    ),
)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def check_arch_rules(arch: Mapping[str, Any]) -> None:
    """ArchError (naming the key) unless the settings that size the model are integers in their range,
    mlp_ratio and init_scheme are allowed values and every rule of :data:`ARCH_RULES` holds."""
    for key in SIZE_KEYS:
        lowest = spec_of(HaltingVTConfig, key).lo
        if not _is_int(arch[key]) or arch[key] < lowest:
            raise ArchError(f"{key} {arch[key]!r:.40} is not allowed (an integer >= {lowest:g})", key)
    ratio = arch["mlp_ratio"]
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not ratio > 0:
        raise ArchError(f"mlp_ratio {ratio!r:.40} is not a positive number", "mlp_ratio")
    if arch["init_scheme"] not in INIT_SCHEMES:
        raise ArchError(f"init_scheme must be one of {INIT_SCHEMES}, got {arch['init_scheme']!r}", "init_scheme")
    for rule in ARCH_RULES:
        if not rule.ok(arch):
            raise ArchError(rule.text(arch), rule.key)


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


@dataclass
class LossConfig:
    """The ``loss`` section and its defaults (the release's recipe): the ONE source of loss defaults."""

    multi_label: bool = setting(False, "bool")  # multi-hot targets (ActivityNet): soft-label CE, metric mAP
    label_smoothing: float = setting(0.0, "float", lo=0, hi=1, hi_open=True)
    ponder_token_scale: float = setting(5.0e-4, "float", lo=0)
    # ponder weight 0 for this many epochs (training from scratch; 0: as the release)
    ponder_start_epoch: float = setting(0.0, "float", lo=0)
    # then a linear ramp over this many epochs (0: constant, as the release)
    ponder_warmup_epochs: float = setting(0.0, "float", lo=0)
    # A compute target, a fraction of the dense model's GFLOPs: the ponder term acts only on batches whose real
    # clips cost more (the trainer decides per micro-batch). None: the constant weight, as the release.
    target_gflops_ratio: float | None = setting(None, "float", lo=0, hi=1, lo_open=True, optional=True)
    motion_loss: bool = setting(True, "bool")
    # The release gives the static clips (one frame repeated) the action label too. Where one frame tells
    # nothing about the class (motion-only data) that half of the action loss cannot be learned and only
    # adds noise; false: static clips train the motion head only.
    static_action_loss: bool = setting(True, "bool")
    # the release names motion_loss_beta=0.001 but applies weight 1
    motion_loss_weight: float = setting(1.0, "float", lo=0)
    # A-ViT distribution prior: named in the release, not implemented there
    distr_prior: bool = setting(False, "bool")
    distr_prior_weight: float = setting(0.1, "float", lo=0)
    distr_target_depth: float = setting(7.0, "float", lo=0)
