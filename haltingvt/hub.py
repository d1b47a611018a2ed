"""Weights in the format the Hugging Face Hub shares: a folder with ``model.safetensors`` + ``config.json``.

    model.save_pretrained("my-model", classes=names, config=cfg)    # a local folder
    model = haltingvt.HaltingVT.from_pretrained("my-model")          # a folder, or "user/repo" on the Hub
    model.push_to_hub("user/my-model", classes=names, config=cfg)    # needs a Hub token
    predictor = haltingvt.Predictor.from_pretrained("my-model")
    haltingvt predict my-model/ clip.mp4

``config.json`` holds ``format: haltingvt``, the architecture (``model``), the test pipeline (``data``:
clip length, frame interval, views, scales), the test settings (``test``) and the class names as a list;
``model.safetensors`` holds the weights with the architecture and the class names in its metadata, a
sha256 of config.json's bytes, and a digest over all of it (tensors and metadata); every load checks both,
so an edited or damaged byte of either file, or a config.json from another save, is refused. Nothing in
either file is code, and both are checked (types, ranges, size of the model) before anything is allocated.
The folder is written whole or not at all (``haltingvt.models.weights.atomic_write_folder``).

This is huggingface_hub's ``PyTorchModelHubMixin`` contract (save_pretrained / from_pretrained /
push_to_hub, the same two file names) written out here rather than inherited: the mixin records every
constructor call's arguments through ``__new__`` and feeds config.json's keys back to ``__init__``
unchecked, while ours must hold nested sections (architecture, pipeline, classes) and be validated first.
huggingface_hub itself does the Hub transfers (``hf_hub_download``, ``HfApi.upload_folder``).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

#: The ``data`` keys of a config that the test pipeline reads (``haltingvt.data.load_views``).
TEST_PIPELINE_KEYS = ("clip_len", "frame_interval", "test_num_clips", "test_num_crops", "test_scale", "crop_size",
                      "short_video", "test_sampling", "resize", "filename_tmpl", "start_index")
TEST_KEYS = ("batch_size", "execution", "early_exit", "amp")
MODEL_CARD = """---
library_name: haltingvt
tags:
- video-classification
- haltingvt
pipeline_tag: video-classification
---

# {name}

HaltingVT video classifier (Glimpser token selection + adaptive token halting; arXiv 2401.04975),
{num_classes} classes, {num_frames} frames of {img_size}x{img_size}, embed_dim {embed_dim}, depth {depth}.

```python
import haltingvt
predictor = haltingvt.Predictor.from_pretrained("{repo}")
print(predictor.predict("clip.mp4")["top"][0])
```

or `haltingvt predict {repo} clip.mp4` (a local folder or a Hub id).
"""


class HubMixin:
    """``save_pretrained`` / ``from_pretrained`` / ``push_to_hub`` for :class:`haltingvt.models.HaltingVT`.

    (Deferred imports below: the model class inherits this mixin, so this module cannot import the model
    package or the config module at the top.)
    """

    def save_pretrained(self, save_directory: str | os.PathLike, *, classes: Sequence[str] | None = None,
                        config: Mapping[str, Any] | None = None, name: str | None = None) -> Path:
        """Write ``model.safetensors``, ``config.json`` and a model card ``README.md`` as the folder, whole or
        not at all: a kill at any instant leaves the previous folder or the new one (other files of a
        previous folder, e.g. a Hub clone's ``.git``, are kept).

        classes: the class names (default: ``self.classes`` when the model was loaded with names).
        config: a full config (its ``data``/``test`` sections give the test pipeline); default: the
        pipeline the model was loaded with, else the default one for its input size and frame count.
        """
        from .models.weights import (CONFIG_DIGEST_KEY, PRETRAINED_CONFIG, PRETRAINED_WEIGHTS, FORMAT, FORMAT_VERSION,
                                     CheckpointError, atomic_write_folder, check_class_names, safetensors_bytes)
        from .textsafe import describe_char, escape, unsafe_char

        folder = Path(save_directory)
        arch = dict(getattr(self, "arch", None) or self.cfg.to_dict())  # HaltingVT(cfg) built directly has no .arch
        classes = classes if classes is not None else getattr(self, "classes", None)
        if classes is not None:
            classes = check_class_names(list(classes), arch["num_classes"], "classes")
        sections = pipeline_config(arch, config if config is not None else getattr(self, "pretrained_config", None))
        name = str(name or (config or {}).get("name") or getattr(self, "pretrained_config", {}).get("name") or folder.name)
        if unsafe_char(name) is not None:
            raise CheckpointError(f"model name '{escape(name)[:80]}' contains the control character "
                                  f"{describe_char(unsafe_char(name))}: refused")
        doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "library_name": "haltingvt", "name": name,
               "model": arch, **sections, "classes": classes}
        config_json = json.dumps(doc, indent=2).encode() + b"\n"
        weights = safetensors_bytes(self.state_dict(), {"arch": arch, "classes": classes},
                                    raw_metadata={CONFIG_DIGEST_KEY: hashlib.sha256(config_json).hexdigest()})
        card = MODEL_CARD.format(name=name, repo=folder.name, **arch).encode()
        # model.safetensors last: a folder cut short (never visible under the target's name) has no weights
        return atomic_write_folder(folder, {"README.md": card, PRETRAINED_CONFIG: config_json,
                                            PRETRAINED_WEIGHTS: weights})

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, *, revision: str | None = None,
                        cache_dir: str | os.PathLike | None = None, local_files_only: bool = False,
                        token: str | bool | None = None, device: str | torch.device = "cpu") -> Any:
        """A model from a folder written by :meth:`save_pretrained` (offline), or a Hub id (downloads the two
        files once into the Hub cache). The model is in eval mode; ``model.classes`` holds the class names
        and ``model.pretrained_config`` the stored config (name, model, data, test)."""
        from .models import create_model
        from .models.weights import CheckpointError, arch_from_weights, load_checkpoint, read_checkpoint

        from .config import ConfigError, validate

        folder = resolve_pretrained(name_or_path, revision=revision, cache_dir=cache_dir,
                                    local_files_only=local_files_only, token=token)
        obj = read_checkpoint(folder)
        try:  # every setting's type and range, the test pipeline's too
            stored = validate({k: v for k, v in obj["config"].items() if k in ("model", "data", "test")})
        except ConfigError as err:
            raise CheckpointError(f"{folder}: stored config: {err}") from None
        arch = stored["model"]
        seen = arch_from_weights(obj, "haltingvt")  # shapes first: nothing is allocated for a mismatch
        diff = [k for k, v in seen.items() if k in arch and v != arch[k]]
        if diff:
            raise CheckpointError(f"{folder}: the weights do not have the stored architecture: "
                                  + ", ".join(f"{k} {seen[k]} in the weights vs {arch[k]}" for k in diff))
        model = create_model(arch)
        if not isinstance(model, cls):
            raise TypeError(f"{cls.__name__}.from_pretrained builds a {type(model).__name__}")
        load_checkpoint(model, folder)
        model.classes = obj.get("classes")
        model.pretrained_config = obj["config"]
        return model.to(device).eval()

    def push_to_hub(self, repo_id: str, *, classes: Sequence[str] | None = None,
                    config: Mapping[str, Any] | None = None, private: bool | None = None, token: str | None = None,
                    commit_message: str = "Upload HaltingVT weights", revision: str | None = None) -> Any:
        """save_pretrained into a temporary folder, then upload it to the Hub repository ``repo_id``
        (created if needed). Returns the commit information of ``HfApi.upload_folder``."""
        # Deferred: huggingface_hub is only needed (and imported) for Hub transfers.
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        repo_id = api.create_repo(repo_id=repo_id, private=private, exist_ok=True).repo_id
        with tempfile.TemporaryDirectory() as tmp:
            folder = self.save_pretrained(Path(tmp) / repo_id.split("/")[-1], classes=classes, config=config,
                                          name=repo_id.split("/")[-1])
            return api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message=commit_message,
                                     revision=revision)


def pipeline_config(arch: Mapping[str, Any], config: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The ``data`` (test-pipeline keys only: no paths) and ``test`` sections stored with the weights.
    Without a config: the defaults, with a short side of img_size*256/224, a centre crop of img_size
    and clips of num_frames frames (the release's test pipeline scaled to the model's input)."""
    from .config import defaults, validate

    if config is None:
        cfg = defaults()
        cfg["data"].update(clip_len=int(arch["num_frames"]), crop_size=int(arch["img_size"]),
                           test_scale=int(round(arch["img_size"] * 256 / 224)))
    else:
        cfg = validate({k: config[k] for k in ("data", "test") if k in config})
    return {"data": {k: cfg["data"][k] for k in TEST_PIPELINE_KEYS},
            "test": {k: cfg["test"][k] for k in TEST_KEYS}}


def resolve_pretrained(name_or_path: str | os.PathLike, *, revision: str | None = None,
                       cache_dir: str | os.PathLike | None = None, local_files_only: bool = False,
                       token: str | bool | None = None) -> Path:
    """A local path as it is; otherwise a Hub id whose config.json and model.safetensors are downloaded
    (or found in the Hub cache). A failure is one CheckpointError line naming the id."""
    from .models.weights import PRETRAINED_CONFIG, PRETRAINED_WEIGHTS, CheckpointError, error_text, interrupted_save

    path = Path(name_or_path)
    if path.exists():
        return path
    name = str(name_or_path)
    if name.count("/") != 1 or name.startswith((".", "/")) or name.endswith((".pth", ".pt", ".safetensors")):
        left = interrupted_save(path)
        raise CheckpointError(f"{name}: no such file or folder (and not a Hub id of the form user/model)" + (
            f"; an interrupted save_pretrained left the previous folder as {left}" if left else ""))
    # Deferred: huggingface_hub is only needed (and imported) for Hub downloads.
    from huggingface_hub import hf_hub_download

    try:
        for filename in (PRETRAINED_CONFIG, PRETRAINED_WEIGHTS):
            local = hf_hub_download(repo_id=name, filename=filename, revision=revision, cache_dir=cache_dir,
                                    local_files_only=local_files_only, token=token)
    except Exception as err:  # noqa: BLE001 - network, authentication and missing-file errors all end here
        raise CheckpointError(f"{name}: not a local folder, and the Hub download failed "
                              f"({type(err).__name__}: {error_text(err)})") from None
    return Path(local).parent


def convert_checkpoint(checkpoint: str | os.PathLike, out_dir: str | os.PathLike, *,
                       config: str | os.PathLike | Mapping[str, Any] | None = None, overrides: Sequence[str] = (),
                       classes: str | os.PathLike | Sequence[str] | None = None, name: str | None = None) -> tuple[Path, Any]:
    """Write ``checkpoint`` (the release's, with ``config``; or ours) as a ``save_pretrained`` folder.

    The checkpoint goes through :class:`haltingvt.Predictor`'s checks (the architecture of the config must
    fit the weights; class names must number num_classes). Returns (folder, the Predictor)."""
    from .predict import Predictor

    predictor = Predictor(checkpoint, config=config, device="cpu", classes=classes, overrides=overrides)
    folder = predictor.model.save_pretrained(out_dir, classes=predictor.classes, config=predictor.cfg,
                                             name=name or predictor.cfg.get("name"))
    return folder, predictor
