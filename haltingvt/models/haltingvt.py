"""HaltingVT: Glimpser layers (divided space-time attention with token selection) followed by joint
space-time layers with adaptive token halting, and the action/motion heads. docs/design.md, section 1."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, cast

import torch
import torch.nn as nn
from einops import rearrange
from timm.layers import trunc_normal_

from ..io.errors import CheckpointError
from .config import HaltingVTConfig
from .glimpser import GlimpserBlock
from .halting import AdaptiveHalting, halting_depth
from .heads import ActionMotionHead
from .keymaps import arch_from_weights
from .layers import Block
from .posembed import resize_pos_embed, resize_time_embed, sincos_1d, sincos_2d
from .weights import load_checkpoint, read_checkpoint, write_pretrained


@dataclass
class HaltingVTOutput:
    """Model outputs for B clips; M = tokens after the Glimpser, n = number of halting layers."""

    features: torch.Tensor  # (B, C) final cls feature
    logits: torch.Tensor  # (B, num_classes)
    motion_logits: torch.Tensor  # (B, 2)
    token_counts: torch.Tensor  # (B, n) active tokens entering each halting layer
    rho: torch.Tensor  # (B, M) ponder cost per token
    counter: torch.Tensor  # (B, M) release's counter_token: 1-based halting layer of each token
    halting_masks: torch.Tensor  # (B, n, M) bool, token still active after layer j
    left_tokens: list[int]  # tokens per clip after each Glimpser layer (cls excluded)
    kept_patches: list[torch.Tensor]  # per selecting Glimpser layer: (B, T, k) original patch index per slot
    exit_layer: torch.Tensor  # (B,) layer after which the clip stopped early (early exit), -1 otherwise
    layer_scores: torch.Tensor  # (n,) mean halting score of active tokens per layer
    execution: str

    @property
    def halt_depth(self) -> torch.Tensor:
        """(B, M): 1-based halting layer at which each token stopped."""
        return halting_depth(self.halting_masks)

    @property
    def early_exited(self) -> torch.Tensor:
        """(B,) bool: the clip stopped computing once its cls token halted."""
        return self.exit_layer >= 0

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class HaltingVT(nn.Module):
    """HaltingVT backbone + heads. Input clips: float (B, 3, T, H, W), normalised (x - 127.5) / 127.5.

    :meth:`save_pretrained` / :meth:`from_pretrained` write and read the architecture and the weights as a
    folder; ``haltingvt.HaltingVT`` (``haltingvt.hub``) adds the test pipeline and Hub transfers to them."""

    def __init__(self, cfg: HaltingVTConfig | Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        """cfg: the architecture (a HaltingVTConfig or a dict of its keys); keyword arguments override it."""
        super().__init__()
        cfg = HaltingVTConfig.from_mapping(cfg if cfg is not None else {}, **kwargs).check()
        self.cfg = cfg
        img_size, patch_size, num_frames, embed_dim = cfg.img_size, cfg.patch_size, cfg.num_frames, cfg.embed_dim
        num_heads, depth, divid_depth, keep_rate = cfg.num_heads, cfg.depth, cfg.divid_depth, cfg.keep_rate
        mlp_ratio, num_classes, init_scheme = cfg.mlp_ratio, cfg.num_classes, cfg.init_scheme
        #: class names and the stored config (name, model, data, test) of a model read by from_pretrained
        self.classes: list[str] | None = None
        self.pretrained_config: dict[str, Any] | None = None
        self.tubelet_size = cfg.tubelet_size
        self.img_size, self.patch_size, self.num_frames = img_size, patch_size, num_frames
        self.embed_dim, self.depth, self.divid_depth = embed_dim, depth, divid_depth
        self.keep_rate, self.halting = keep_rate, cfg.halting
        self.num_classes = num_classes
        grid = img_size // patch_size

        self.patch_embed = nn.Module()
        if self.tubelet_size == 1:
            self.patch_embed.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)
        else:  # one token per tubelet_size frames x patch_size^2 pixels: the embedding itself sees motion
            tube = (self.tubelet_size, patch_size, patch_size)
            self.patch_embed.proj = nn.Conv3d(3, embed_dim, kernel_size=tube, stride=tube)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, grid * grid + 1, embed_dim))
        # One time step per token slot: num_frames // tubelet_size of them.
        self.time_embed = nn.Parameter(torch.zeros(1, num_frames // self.tubelet_size, embed_dim))

        dpr = torch.linspace(0, cfg.drop_path_rate, depth).tolist()
        glimpser: list[Block] = [
            GlimpserBlock(embed_dim, num_heads, keep_rate[i], cfg.fuse_token, mlp_ratio, drop_path=dpr[i])
            for i in range(divid_depth)
        ]
        joint = [Block(embed_dim, num_heads, mlp_ratio, drop_path=dpr[i]) for i in range(divid_depth, depth)]
        # One list in release order so that checkpoint keys blocks.{i} line up.
        self.blocks = nn.ModuleList(glimpser + joint)
        self.adaptive_halting = AdaptiveHalting(cfg.halt_scale, cfg.halt_center, cfg.eps)
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = ActionMotionHead(embed_dim, num_classes, cfg.head_dropout)
        self._init_weights()
        if init_scheme == "scratch":
            self._init_scratch()

    @property
    def arch(self) -> dict[str, Any]:
        """The architecture (every key of HaltingVTConfig), as checkpoints and FLOP counts record it."""
        return self.cfg.to_dict()

    @property
    def glimpser_blocks(self) -> list[GlimpserBlock]:
        return cast("list[GlimpserBlock]", list(self.blocks[: self.divid_depth]))

    @property
    def num_halting_layers(self) -> int:
        return self.depth - self.divid_depth

    def _init_weights(self) -> None:
        trunc_normal_(self.pos_embed, std=0.02)
        trunc_normal_(self.cls_token, std=0.02)
        for m in self.blocks.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # TimeSformer convention: temporal_fc starts at zero in every Glimpser layer but the first,
        # which keeps its random init (reproduced from the release).
        for block in self.glimpser_blocks[1:]:
            nn.init.zeros_(block.temporal_fc.weight)
            nn.init.zeros_(block.temporal_fc.bias)

    def _init_scratch(self) -> None:
        """Initialisation for training from scratch, without pretrained weights (``init_scheme: scratch``).

        Sin-cos position (2-D) and time (1-D) embeddings and Xavier-uniform weights in every Linear layer
        (blocks and heads; biases stay zero). With the
        default init (embeddings and Linear weights at std 0.02) a small model trained from scratch sits on a
        long plateau before it uses *where* and *when* a token is, which motion classes depend on.
        Pretrained weights loaded afterwards replace all of it.
        """
        grid = self.img_size // self.patch_size
        C = self.embed_dim
        with torch.no_grad():
            # Channel 0 stays zero: the halting score reads channel 0, and embeddings of size ~1 there would
            # make most tokens halt in the first halting layer before anything is learned.
            self.pos_embed.zero_()
            self.time_embed.zero_()
            self.pos_embed[0, 1:, 1:] = sincos_2d(grid, C - 1)
            steps = self.time_embed.shape[1]
            self.time_embed[0, :, 1:] = sincos_1d(torch.arange(steps), C - 1, max(steps, 2))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
        # The patch embedding too, as the Linear layer it is (MAE does the same): with PyTorch's default conv
        # init a patch's content is ~3x smaller than its sin-cos position and time codes, and a model from
        # scratch takes far longer to notice that content changes over time (motion).
        w = cast("nn.Conv2d | nn.Conv3d", self.patch_embed.proj).weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        # As with the embeddings, no residual branch writes channel 0 at first, so tokens start far from halting
        # (as with the default init, where branches are nearly zero) and the ponder loss moves them.
        with torch.no_grad():
            for block in cast("Sequence[Block]", self.blocks):
                for fc in (block.attn.proj, block.mlp.fc2, getattr(block, "temporal_fc", None)):
                    if fc is not None:
                        fc.weight[0].zero_()

    def time_steps(self, num_frames: int) -> int:
        """Token time steps of a clip of num_frames frames (num_frames // tubelet_size)."""
        if num_frames % self.tubelet_size:
            raise ValueError(f"clips of {num_frames} frames do not split into tubelets of {self.tubelet_size} frames")
        return num_frames // self.tubelet_size

    def embed(self, clips: torch.Tensor) -> torch.Tensor:
        """clips (B, 3, F, H, W) -> tokens (B, 1 + S*T, C), spatial-major, time-minor; T = F // tubelet_size."""
        B = clips.shape[0]
        T = self.time_steps(clips.shape[2])
        proj = cast("nn.Conv2d | nn.Conv3d", self.patch_embed.proj)
        if self.tubelet_size == 1:
            x = proj(rearrange(clips, "b c t h w -> (b t) c h w"))  # (B*T, C, gh, gw)
        else:
            x = rearrange(proj(clips), "b c t h w -> (b t) c h w")  # (B*T, C, gh, gw)
        gh, gw = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)  # (B*T, S, C)
        pos = resize_pos_embed(self.pos_embed, (gh, gw))
        # cls is prepended per frame, gets its position embedding, and one copy is kept (all identical).
        cls = self.cls_token + pos[:, :1]
        x = x + pos[:, 1:]
        x = rearrange(x, "(b t) s c -> (b s) t c", b=B) + resize_time_embed(self.time_embed, T)
        x = rearrange(x, "(b s) t c -> b (s t) c", b=B)
        return torch.cat([cls.expand(B, -1, -1), x], dim=1)

    def forward_features(
        self, clips: torch.Tensor, execution: str | None = None, early_exit: bool = False
    ) -> dict[str, Any]:
        """Embedding, Glimpser, halting (or dense joint) layers and the final norm.

        clips: (B, 3, T, H, W) normalised -> the fields of :class:`HaltingVTOutput` except the logits:
        ``features`` (B, C) is the normalised final cls feature that :meth:`forward_head` classifies."""
        if clips.dim() != 5 or clips.shape[1] != 3:
            raise ValueError(f"clips must be (B, 3, T, H, W), got {tuple(clips.shape)}")
        if execution is None:
            execution = "masked" if self.training else "compact"
        T = self.time_steps(clips.shape[2])
        x = self.embed(clips)
        B = x.shape[0]
        left_tokens, kept_slots = [], []
        for block in self.glimpser_blocks:
            x, kept = block(x, T)
            if kept is not None:
                kept_slots.append(kept)
            left_tokens.append(x.shape[1] - 1)
        out: dict[str, Any] = {
            "left_tokens": left_tokens,
            "kept_patches": self._compose_kept(kept_slots, B, T),
            "execution": execution,
        }
        joint = cast("Sequence[Block]", self.blocks[self.divid_depth :])
        if self.halting:
            res = self.adaptive_halting(joint, x, execution=execution, early_exit=early_exit)
            cls_output = res.cls_output
            out.update(
                token_counts=res.token_counts,
                rho=res.rho,
                counter=res.counter,
                halting_masks=res.halting_masks,
                exit_layer=res.exit_layer,
                layer_scores=res.layer_scores,
            )
        else:
            for joint_block in joint:
                x = joint_block(x)
            cls_output = x[:, 0]
            n, M = self.num_halting_layers, x.shape[1]
            out.update(
                token_counts=x.new_full((B, n), float(M)),
                rho=x.new_zeros(B, M),
                counter=x.new_full((B, M), float(n)),
                halting_masks=torch.ones(B, n, M, dtype=torch.bool, device=x.device),
                exit_layer=torch.full((B,), -1, dtype=torch.long, device=x.device),
                layer_scores=x.new_zeros(n),
            )
        out["features"] = self.norm(cls_output)
        return out

    def forward_head(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """features (B, C) -> action logits (B, num_classes), motion logits (B, 2)."""
        return cast("tuple[torch.Tensor, torch.Tensor]", self.head(features))

    def forward(self, clips: torch.Tensor, execution: str | None = None, early_exit: bool = False) -> HaltingVTOutput:
        """clips: (B, 3, T, H, W) normalised. execution: 'masked' (release, training) or 'compact'
        (halted tokens removed; default in eval mode). early_exit: stop a clip once its cls halted
        (compact only; its later token counts are 0 and ``exit_layer`` says where it stopped)."""
        feats = self.forward_features(clips, execution, early_exit)
        logits, motion_logits = self.forward_head(feats["features"])
        return HaltingVTOutput(logits=logits, motion_logits=motion_logits, **feats)

    def save_pretrained(
        self,
        save_directory: str | os.PathLike[str],
        *,
        classes: Sequence[str] | None = None,
        name: str | None = None,
        extras: Mapping[str, Any] | None = None,
        files: Mapping[str, bytes] | None = None,
    ) -> Path:
        """Write the architecture and the weights as the folder ``save_directory`` (``model.safetensors`` +
        ``config.json``), whole or not at all: a kill at any instant leaves the previous folder or the new one
        (other files of a previous folder, e.g. a Hub clone's ``.git``, are kept).

        classes: the class names (default: ``self.classes``); name: default the stored config's, else the
        folder's name; extras: more JSON-able sections of config.json; files: more files (name -> bytes).
        See :func:`haltingvt.models.weights.write_pretrained`."""
        folder = Path(save_directory)
        name = str(name or (self.pretrained_config or {}).get("name") or folder.name)
        return write_pretrained(
            self,
            folder,
            name=name,
            classes=classes if classes is not None else self.classes,
            extras=extras,
            files=files,
        )

    @classmethod
    def from_pretrained(
        cls,
        folder: str | os.PathLike[str],
        *,
        device: str | torch.device = "cpu",
        check_config: Callable[[Mapping[str, Any]], None] | None = None,
    ) -> Any:
        """A model from a folder written by :meth:`save_pretrained`, in eval mode; ``model.classes`` holds the
        class names and ``model.pretrained_config`` the stored config (name, model, data, test).

        Everything is checked before anything is allocated: the files (digests, types, sizes), then
        ``check_config(stored config)`` if given (it raises to refuse), then the architecture against the
        weights' shapes."""
        folder = Path(folder)
        obj = read_checkpoint(folder)
        if check_config is not None:
            check_config(obj["config"])
        arch = obj["arch"]
        seen = arch_from_weights(obj, "haltingvt")  # shapes first: nothing is allocated for a mismatch
        diff = [k for k, v in seen.items() if k in arch and v != arch[k]]
        if diff:
            raise CheckpointError(
                f"{folder}: the weights do not have the stored architecture: "
                + ", ".join(f"{k} {seen[k]} in the weights vs {arch[k]}" for k in diff)
            )
        model = cls(arch)
        load_checkpoint(model, folder)
        model.classes = obj.get("classes")
        model.pretrained_config = obj["config"]
        return model.to(device).eval()

    @staticmethod
    def _compose_kept(kept: list[torch.Tensor], B: int, T: int) -> list[torch.Tensor]:
        """Per selecting layer, map its kept slot indices back to original patch indices: (B, T, k).
        A fused token (fuse_token) is not an original patch; it is reported as -1."""
        out, ids = [], None
        for idx in kept:
            if ids is None:
                ids_now = idx
            else:  # the slot after the kept ones, if selected, is the previous layer's fused token
                ids = torch.cat([ids, ids.new_full((ids.shape[0], 1), -1)], dim=1)
                ids_now = ids.gather(1, idx.clamp(max=ids.shape[1] - 1))
            out.append(rearrange(ids_now, "(b t) k -> b t k", b=B, t=T))
            ids = ids_now
        return out


def create_model(arch: Mapping[str, Any] | HaltingVTConfig | None = None, **overrides: Any) -> HaltingVT:
    """Build a HaltingVT from an architecture (a HaltingVTConfig or a dict of its keys) plus overrides
    (None values ignored). Unknown keys raise ArchError (a ValueError) naming them."""
    return HaltingVT(HaltingVTConfig.from_mapping(arch if arch is not None else {}, **overrides))
