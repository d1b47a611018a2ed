"""Classify video files and frame folders with a trained HaltingVT, and show where it looked.

Command line::

    haltingvt predict work_dirs/minik_g03_b10/best.pth clip.mp4 frames_dir/ --topk 5 --views 1x3
    haltingvt predict release.pth *.mp4 --config minik_g03_b10 --classes classes.txt --json
    haltingvt predict best.pth clip.mp4 --save-vis vis/          # vis/clip.png + vis/clip.gif

Python::

    predictor = haltingvt.Predictor("best.pth")              # config and class names from the checkpoint
    predictor = haltingvt.Predictor.from_pretrained("my-model")  # a save_pretrained folder or a Hub id
    result = predictor.predict("clip.mp4")                   # or a uint8 (3,T,H,W) / (V,3,T,H,W) tensor
    result["top"][0]["label"], result["gflops"]
    results = predictor.predict_many(paths)                  # batched; bad files become {"error": ...}
    paths = find_inputs(["videos/"], predictor.cfg)          # a folder of videos/frame folders, any depth

Each input goes through the test pipeline of the config (``haltingvt.data.load_views``), giving V views
(clips x crops). As in the release, softmax probabilities are averaged over the views. GFLOPs are the
multiply-accumulates actually spent (``haltingvt.flops.clip_gflops`` of the measured token counts), summed
over the views.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from .api import create_model
from .config import ConfigError, load_config, resolve_arch
from .data import DataError, build_transform, is_video_path, load_views, normalize, read_class_names
from .data.decoding import frame_filename
from .data.folders import IMAGE_EXTENSIONS
from .flops import clip_gflops
from .hub import pipeline_config, resolve_pretrained, save_pretrained
from .io.errors import CheckpointError
from .io.textsafe import describe_char, escape, fold_lines, safe_path, unsafe_char
from .models import HaltingVT
from .models.compile import compile_glimpser, compile_unavailable
from .models.config import BEHAVIOUR_KEYS, STRUCTURAL_KEYS
from .models.keymaps import arch_from_weights, detect_format
from .models.precision import check_precision, convert_precision, precision_context
from .models.weights import check_arch, load_checkpoint, read_checkpoint
from .visualize import save_token_gif, save_token_grid, tokens_of

# Architecture settings that must match between a checkpoint and the config (STRUCTURAL_KEYS): a difference
# gives wrong results (num_heads) or weights that do not fit. The others (BEHAVIOUR_KEYS) change behaviour
# only and give a warning.
#: data keys naming files; never taken from a checkpoint's stored config.
PATH_KEYS = ("classes", "data_root", "train_list", "val_list", "test_list")

RESULT_KEYS = (
    "path",
    "error",
    "top",
    "num_views",
    "gflops",
    "gflops_per_view",
    "tokens_per_layer",
    "halting_layers",
    "glimpser_tokens",
    "motion_prob",
    "vis",
)

__all__ = ["Predictor", "convert_checkpoint", "find_inputs", "is_frame_folder", "parse_views"]


def parse_views(views: str | Sequence[int]) -> tuple[int, int]:
    """``"1x3"`` or ``(1, 3)`` -> (clips, crops)."""
    try:
        if isinstance(views, str):
            clips, crops = (int(v) for v in views.lower().split("x"))
        else:
            clips, crops = (int(v) for v in views)
    except (ValueError, TypeError):
        raise ConfigError(f"views '{escape(views)}' must look like CLIPSxCROPS, e.g. 1x3") from None
    if clips < 1 or crops < 1:
        raise ConfigError(f"views '{escape(views)}': clips and crops must be at least 1")
    return clips, crops


def is_frame_folder(path: str | os.PathLike, cfg: Mapping[str, Any]) -> bool:
    """True when ``path`` is a folder holding the first frame that ``data.filename_tmpl`` /
    ``data.start_index`` of ``cfg`` name (``img_00001.jpg`` by default)."""
    data = cfg["data"]
    try:
        first = frame_filename(data["filename_tmpl"], data["start_index"])
    except DataError:
        return False
    return os.path.isdir(path) and os.path.isfile(os.path.join(path, first))


def find_inputs(paths: Iterable[str | os.PathLike], cfg: Mapping[str, Any]) -> list[str]:
    """The inputs to predict: each path as given, except a folder that is not a frame folder
    (:func:`is_frame_folder`), which gives the video files (``haltingvt.data.lists.VIDEO_EXTENSIONS``) and
    frame folders found in it at any depth, sorted by their path inside it. Hidden files and folders are
    left out and frame folders are not searched further. A folder in which nothing is found stays in the list
    as it is (predicting it then reports why it is not a frame folder)."""
    found: list[str] = []
    for path in paths:
        path = os.fspath(path)
        if not os.path.isdir(path) or is_frame_folder(path, cfg):
            found.append(path)
            continue
        inside: list[str] = []
        for folder, dirs, files in os.walk(path):
            keep = []
            for name in sorted(d for d in dirs if not d.startswith(".")):
                sub = os.path.join(folder, name)
                if is_frame_folder(sub, cfg):
                    inside.append(sub)
                else:
                    keep.append(name)
            dirs[:] = keep
            inside.extend(os.path.join(folder, f) for f in files if not f.startswith(".") and is_video_path(f))
        found.extend(sorted(inside, key=lambda p: os.path.relpath(p, path).split(os.sep)) or [path])
    return found


def resolve_precision(precision: str, device: torch.device) -> str:
    """``precision`` when it runs on ``device``, else ConfigError naming the option and what is supported."""
    try:
        return check_precision(precision, device)
    except ValueError as err:
        raise ConfigError(f"--precision (test.precision): {err}") from None


def prepare_inference(
    model: HaltingVT,
    test: Mapping[str, Any],
    device: torch.device,
    precision: str | None = None,
    compile: bool | None = None,
) -> tuple[str, bool]:
    """Readies an eval-mode model on ``device`` for inference, in place: converted to the precision and its
    Glimpser compiled when asked (``precision`` / ``compile`` win over the config's ``test.precision`` /
    ``test.compile``). Returns (precision, compiled); ConfigError, one line naming the option, when the device
    cannot run what was asked (checked before anything changes)."""
    precision = resolve_precision(precision or test["precision"], device)
    compiled = bool(test["compile"] if compile is None else compile)
    reason = compile_unavailable(device) if compiled else None
    if reason is not None:
        raise ConfigError(f"--compile (test.compile): {reason}")
    convert_precision(model, precision, device)
    if compiled:
        compile_glimpser(model, device)
    return precision, compiled


def _config_from_arch(arch: Mapping[str, Any], name: str) -> dict:
    """A full config for a checkpoint that stores only its architecture: defaults + the test pipeline that
    fits the architecture (``haltingvt.hub.pipeline_config``)."""
    return {"name": name, "model": dict(arch), **pipeline_config(arch, None)}


def _resolve_config(
    path: Path, obj: Any, kind: str, config: str | os.PathLike | Mapping | None, overrides: Iterable[str]
) -> tuple[dict, dict | None]:
    """The config to predict with, and the architecture stored in the checkpoint (ours only)."""
    stored_arch = dict(obj["arch"]) if kind == "haltingvt" and obj.get("arch") else None
    if config is not None:
        return load_config(Path(config) if isinstance(config, os.PathLike) else config, overrides), stored_arch
    if kind == "haltingvt":
        stored = dict(obj.get("config") or {})
        if stored.get("model"):
            # Paths in a stored config are the training machine's: a checkpoint must not make predict open
            # files (data.classes=/etc/passwd). Class names travel as data, in the checkpoint's "classes".
            stored["data"] = {k: v for k, v in (stored.get("data") or {}).items() if k not in PATH_KEYS}
            try:
                cfg = load_config(stored, overrides)
            except ConfigError as err:
                raise ConfigError(f"{safe_path(path)}: stored config: {escape(err)}") from None
            cfg.setdefault("name", path.stem)
            return cfg, stored_arch
        if stored_arch:
            return load_config(_config_from_arch(stored_arch, path.stem), overrides), stored_arch
        raise ConfigError(f"{safe_path(path)}: the checkpoint stores no config or architecture; pass --config")
    raise ConfigError(
        f"{safe_path(path)}: release checkpoint needs --config "
        "(its architecture and test pipeline are not stored in it)"
    )


#: One input's decoded test views may take at most this many bytes (uint8 frames at the test scale).
MAX_INPUT_BYTES = 8 << 30


def _check_input_size(path: Path, cfg: Mapping[str, Any]) -> None:
    """Refuse a test pipeline (possibly read from a checkpoint) whose views would need more than
    MAX_INPUT_BYTES per input: views x clip_len frames, short side test_scale, up to 16:9."""
    data = cfg["data"]
    frames = data["test_num_clips"] * data["test_num_crops"] * data["clip_len"]
    need = frames * 3 * data["test_scale"] * (data["test_scale"] * 16 // 9 + 1) + frames * 3 * data["crop_size"] ** 2
    if need > MAX_INPUT_BYTES:
        raise ConfigError(
            f"{safe_path(path)}: the test pipeline of config '{escape(cfg.get('name', 'given'))}' "
            f"({frames} frames per input, test_scale "
            f"{data['test_scale']}, crop_size {data['crop_size']}) needs about {need / 2**30:.0f} GiB per input, over "
            f"{MAX_INPUT_BYTES >> 30} GiB: refused"
        )


def _check_fit(path: Path, cfg: dict, arch: dict, stored_arch: dict | None, weights_arch: dict) -> None:
    name = cfg.get("name", "given")
    classes = weights_arch.get("num_classes")
    if classes is not None and classes != arch["num_classes"]:
        raise CheckpointError(
            f"{path}: checkpoint has {classes} classes but config '{name}' has "
            f"model.num_classes={arch['num_classes']} (use the matching config or --set model.num_classes={classes})"
        )
    stored = {**(resolve_arch(stored_arch) if stored_arch else {}), **weights_arch}
    diff = [k for k in STRUCTURAL_KEYS if k in stored and stored[k] != arch.get(k)]
    if diff:
        raise CheckpointError(
            f"{path}: architecture differs from config '{name}': "
            + ", ".join(f"{k} {stored[k]} in checkpoint vs {arch.get(k)} in config" for k in diff)
        )
    soft = [k for k in BEHAVIOUR_KEYS if k in stored and stored[k] != arch.get(k)]
    if soft:
        warnings.warn(
            f"{safe_path(path)}: config '{escape(name)}' runs the model with "
            + ", ".join(f"{k}={arch.get(k)} (trained with {stored[k]})" for k in soft),
            stacklevel=3,
        )


class Predictor:
    """Top-k classes, GFLOPs spent and tokens per halting layer for videos, frame folders or clips.

    Args:
        checkpoint: ours (``.pth``, ``.safetensors`` or a ``save_pretrained`` folder: config and class names
            stored inside) or a release checkpoint (needs ``config``).
        config: config name, YAML path or dict; default: the config stored in the checkpoint.
        device: default ``cuda`` when available, else ``cpu``.
        classes: class-name file or list of names; default: the names stored in the checkpoint, else the
            ``data.classes`` file of a ``config`` given here (never a path stored in the checkpoint), else
            class_<i>. ``self.classes`` is None when no names are known.
        overrides: ``section.key=value`` strings applied to the config.
        views: ``"CLIPSxCROPS"`` test views per input (default: the config's test_num_clips x test_num_crops).
        topk: number of classes reported.
        batch_size: inputs per forward pass (default: the config's ``test.batch_size``).
        num_workers: decoding processes for :meth:`predict_many`.
        precision: fp32 | bf16 | fp16 | int8 (default: the config's ``test.precision``, fp32): the blocks' matrix
            products in that precision, the halting arithmetic in fp32 (:mod:`haltingvt.models.precision`;
            docs/guide.md, "Precision"). int8 runs on the CPU, fp16 on CUDA.
        compile: torch.compile the Glimpser's blocks (default: the config's ``test.compile``, False;
            :mod:`haltingvt.models.compile`): the first batch of each shape compiles (10-20 s on a CPU).

    Raises ConfigError / CheckpointError (one line, naming the file) when the checkpoint, config and class
    names do not fit together.
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike,
        config: str | os.PathLike | Mapping | None = None,
        device: str | torch.device | None = None,
        classes: str | os.PathLike | Sequence[str] | None = None,
        overrides: Iterable[str] = (),
        views: str | Sequence[int] | None = None,
        topk: int = 5,
        batch_size: int | None = None,
        num_workers: int = 0,
        precision: str | None = None,
        compile: bool | None = None,
    ) -> None:
        self.checkpoint = Path(checkpoint)
        obj = read_checkpoint(self.checkpoint)
        kind = detect_format(obj, self.checkpoint)
        if kind == "imagenet":
            raise CheckpointError(
                f"{self.checkpoint}: holds ImageNet (DeiT/ViT) weights, not a trained HaltingVT; "
                "nothing to predict with"
            )
        cfg, stored_arch = _resolve_config(self.checkpoint, obj, kind, config, overrides)
        if views is not None:
            cfg["data"]["test_num_clips"], cfg["data"]["test_num_crops"] = parse_views(views)
            cfg = load_config(cfg)  # checks the views against the schema
        build_transform(cfg, "test")  # test-pipeline settings fail here, once, not per input
        arch = resolve_arch(cfg)
        _check_fit(self.checkpoint, cfg, arch, stored_arch, arch_from_weights(obj, kind))
        # Sizes first: the config may come from the checkpoint, and nothing is allocated for a huge one.
        check_arch(arch, self.checkpoint, f"architecture of config '{cfg.get('name', 'given')}'")
        _check_input_size(self.checkpoint, cfg)
        stored_classes = obj.get("classes") if kind == "haltingvt" else None
        del obj

        self.cfg = cfg
        self.model = create_model(arch)
        try:
            self.meta = load_checkpoint(self.model, self.checkpoint)
        except CheckpointError as err:
            message = fold_lines(err)
            message = message if len(message) <= 400 else message[:400] + " ..."
            raise CheckpointError(f"{message} (config '{cfg.get('name', 'given')}')") from None
        self.arch = self.model.arch
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model.to(self.device).eval()
        #: the inference precision (the model is converted in place; it can no longer be saved) and whether the
        #: Glimpser is compiled
        self.precision, self.compiled = prepare_inference(self.model, cfg["test"], self.device, precision, compile)
        #: the class names given, stored in the checkpoint or in the config's data.classes file (None: unknown)
        self.classes = self._class_names(classes if classes is not None else stored_classes)
        self.class_names = self.classes or [f"class_{i}" for i in range(self.arch["num_classes"])]
        self.topk = max(1, min(int(topk), self.arch["num_classes"]))
        self.batch_size = max(1, int(batch_size or cfg["test"]["batch_size"]))
        self.num_workers = int(num_workers)
        self.execution, self.early_exit = cfg["test"]["execution"], cfg["test"]["early_exit"]

    # ------------------------------------------------------------------ setup
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        **kwargs: Any,
    ) -> Predictor:
        """A Predictor for a folder written by ``save_pretrained`` (offline) or a Hub id (downloaded once
        into the Hub cache); ``kwargs`` as for the constructor."""
        folder = resolve_pretrained(
            name_or_path, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, token=token
        )
        return cls(folder, **kwargs)

    def _class_names(self, classes: str | os.PathLike | Sequence[str] | None) -> list[str] | None:
        num = self.arch["num_classes"]
        source = classes if classes is not None else self.cfg["data"]["classes"]
        if source is None:
            return None
        if isinstance(source, (str, os.PathLike)):
            if not Path(source).is_file():
                raise ConfigError(f"class-name file {safe_path(source)} not found")
            try:
                names = list(read_class_names(source))  # refuses names with control characters (file:line)
            except DataError as err:
                raise ConfigError(fold_lines(err)) from None
            where = safe_path(source)
        else:
            names, where = [str(n) for n in source], "the class list"
            for index, name in enumerate(names):
                bad = unsafe_char(name)
                if bad is not None:
                    raise ConfigError(
                        f"{where}: class {index} ('{escape(name)[:80]}') contains the control character "
                        f"{describe_char(bad)}: refused"
                    )
        if len(names) != num:
            raise ConfigError(f"{where} has {len(names)} class names but the model has {num} classes")
        return names

    @property
    def views(self) -> tuple[int, int]:
        """(clips, crops) per input."""
        return self.cfg["data"]["test_num_clips"], self.cfg["data"]["test_num_crops"]

    # ------------------------------------------------------------------ prediction
    def predict(
        self, path_or_tensor: str | os.PathLike | torch.Tensor, save_vis: str | os.PathLike | None = None
    ) -> dict:
        """One video file, frame folder or uint8 clip tensor ((3,T,H,W) or (V,3,T,H,W)) -> result dict
        (the fields of ``--json``). A file that cannot be read raises ``haltingvt.data.DataError``."""
        if isinstance(path_or_tensor, torch.Tensor):
            views = path_or_tensor
            if views.dim() == 4:
                views = views[None]
            if views.dim() != 5 or views.shape[1] != 3 or views.dtype != torch.uint8:
                raise ValueError(
                    "clip tensor must be uint8 (3, T, H, W) or (V, 3, T, H, W), "
                    f"got {views.dtype} {tuple(path_or_tensor.shape)}"
                )
            name = None
        else:
            name = str(path_or_tensor)
            views = load_views(path_or_tensor, self.cfg)
        stems: dict[str, int] = {}
        return self._forward([views], [name], save_vis, stems)[0]

    def predict_many(
        self, paths: Sequence[str | os.PathLike], save_vis: str | os.PathLike | None = None, progress: bool = False
    ) -> list[dict]:
        """Many files/folders, decoded in ``num_workers`` processes and run ``batch_size`` at a time.
        Results keep the input order; an input that cannot be read gives ``{"path": ..., "error": message}``
        (other fields None) and does not stop the others."""
        results: list[dict | None] = [None] * len(paths)
        loader = DataLoader(
            _ViewsDataset([str(p) for p in paths], self.cfg),
            batch_size=self.batch_size,
            num_workers=self.num_workers if len(paths) > self.batch_size else 0,
            collate_fn=list,
        )
        stems: dict[str, int] = {}
        with tqdm(total=len(paths), desc="predict", unit="video", disable=not progress, file=sys.stderr) as bar:
            for batch in loader:
                good = [item for item in batch if "views" in item]
                for item in batch:
                    if "error" in item:
                        results[item["index"]] = _error_result(item["path"], item["error"])
                # inputs of one config share one shape; group anyway in case a pipeline returns different sizes
                groups: dict[tuple[int, ...], list[dict]] = {}
                for item in good:
                    groups.setdefault(tuple(item["views"].shape), []).append(item)
                for items in groups.values():
                    outs = self._forward([i["views"] for i in items], [i["path"] for i in items], save_vis, stems)
                    for item, res in zip(items, outs):
                        results[item["index"]] = res
                bar.update(len(batch))
        return [r for r in results if r is not None]

    @torch.inference_mode()
    def _forward(
        self,
        views: list[torch.Tensor],
        names: list[str | None],
        save_vis: str | os.PathLike | None,
        stems: dict[str, int],
    ) -> list[dict]:
        """views: b uint8 tensors (V, 3, T, H, W) of one shape -> b result dicts."""
        b, V = len(views), views[0].shape[0]
        clips = torch.stack(views).flatten(0, 1)  # (b*V, 3, T, H, W)
        x = normalize(clips.to(self.device))
        with precision_context(self.precision, self.device):
            out = self.model(x, execution=self.execution, early_exit=self.early_exit)
        T, H, W = clips.shape[2:]
        size = H if H == W else (H, W)
        probs = out.logits.float().softmax(-1).view(b, V, -1).mean(1).cpu()  # release: average softmax over views
        motion = out.motion_logits.float().softmax(-1)[:, 1].view(b, V).mean(1).cpu()
        gflops = clip_gflops(self.arch, out.token_counts, num_frames=T, img_size=size).view(b, V)
        tokens = out.token_counts.double().view(b, V, -1).mean(1).cpu()
        first = self.arch["divid_depth"]
        layers = list(range(first + 1, self.arch["depth"] + 1))
        top_p, top_i = probs.topk(self.topk, dim=-1)
        results = []
        for i in range(b):
            res = {
                "path": names[i],
                "error": None,
                "top": [
                    {"class_id": int(c), "label": self.class_names[int(c)], "prob": float(p)}
                    for p, c in zip(top_p[i], top_i[i])
                ],
                "num_views": int(V),
                "gflops": float(gflops[i].sum()),
                "gflops_per_view": float(gflops[i].mean()),
                "tokens_per_layer": [round(float(t), 3) for t in tokens[i]],
                "halting_layers": layers,
                "glimpser_tokens": list(out.left_tokens),
                "motion_prob": float(motion[i]),
                "vis": None,
            }
            if save_vis is not None:
                res["vis"] = self._save_vis(save_vis, views[i][0], out, i * V, names[i], res, stems)
            results.append(res)
        return results

    def _save_vis(
        self,
        folder: str | os.PathLike,
        clip: torch.Tensor,
        out: Any,
        index: int,
        name: str | None,
        res: dict,
        stems: dict[str, int],
    ) -> list[str]:
        """Picture of the first view of an input: <folder>/<stem>.png and .gif (stem made unique)."""
        stem = Path(name.rstrip("/\\")).stem if name else "clip"
        count = stems.get(stem, 0)
        stems[stem] = count + 1
        if count:
            stem = f"{stem}_{count}"
        kept, depth = tokens_of(out, index)
        best = res["top"][0]
        title = (
            f"{Path(name).name if name else 'clip'}: {best['label']} ({best['prob']:.1%}), "
            f"{res['gflops_per_view']:.3g} GFLOPs/view"
        )
        folder = Path(folder)
        png = save_token_grid(clip, kept, depth, self.arch, folder / f"{stem}.png", title=title)
        gif = save_token_gif(clip, kept, depth, self.arch, folder / f"{stem}.gif", title=title)
        return [str(png), str(gif)]


class _ViewsDataset(Dataset):
    """Decodes one input per item; a failure becomes an error item instead of an exception."""

    def __init__(self, paths: list[str], cfg: dict) -> None:
        self.paths, self.cfg = paths, cfg

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        path = self.paths[index]
        try:
            if os.path.isdir(path) and not is_frame_folder(path, self.cfg) and not _has_images(path):
                return {
                    "index": index,
                    "path": path,
                    "error": f"{path}: no video file or frame folder found in this folder",
                }
            return {"index": index, "path": path, "views": load_views(path, self.cfg)}
        # The message as it is (the path in it too): --json keeps the real strings, the text output escapes
        # control characters (a newline or CR in a file name is shown, not folded into a space).
        except DataError as err:
            return {"index": index, "path": path, "error": str(err).strip() or type(err).__name__}
        except ConfigError:
            raise  # a config problem (e.g. an unsupported crop count) concerns every input: stop with one line
        except Exception as err:  # noqa: BLE001 - one bad input must not stop the others
            return {
                "index": index,
                "path": path,
                "error": f"{path}: cannot read: {type(err).__name__}: {str(err).strip()}",
            }


def _has_images(folder: str) -> bool:
    try:
        return any(name.lower().endswith(IMAGE_EXTENSIONS) for name in os.listdir(folder))
    except OSError:
        return True  # let the reader say what is wrong


def _error_result(path: str, message: str) -> dict:
    res = dict.fromkeys(RESULT_KEYS)
    res.update(path=path, error=message)
    return res


def convert_checkpoint(
    checkpoint: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    config: str | os.PathLike | Mapping[str, Any] | None = None,
    overrides: Sequence[str] = (),
    classes: str | os.PathLike | Sequence[str] | None = None,
    name: str | None = None,
) -> tuple[Path, Predictor]:
    """Write ``checkpoint`` (the release's, with ``config``; or ours) as a ``save_pretrained`` folder.

    The checkpoint goes through :class:`Predictor`'s checks (the architecture of the config must fit the
    weights; class names must number num_classes). Returns (folder, the Predictor)."""
    # fp32 and eager whatever test.precision / test.compile say: the folder holds the weights as trained
    predictor = Predictor(
        checkpoint, config=config, device="cpu", classes=classes, overrides=overrides, precision="fp32", compile=False
    )
    folder = save_pretrained(
        predictor.model,
        out_dir,
        classes=predictor.classes,
        config=predictor.cfg,
        name=name or predictor.cfg.get("name"),
    )
    return folder, predictor
