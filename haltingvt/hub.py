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
The folder is written whole or not at all (``haltingvt.io.atomic.atomic_write_folder``).

This is huggingface_hub's ``PyTorchModelHubMixin`` contract (save_pretrained / from_pretrained /
push_to_hub, the same two file names) written out here rather than inherited: the mixin records every
constructor call's arguments through ``__new__`` and feeds config.json's keys back to ``__init__``
unchecked, while ours must hold nested sections (architecture, pipeline, classes) and be validated first.
huggingface_hub itself does the Hub transfers (``hf_hub_download``, ``HfApi.upload_folder``).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Callable

import torch

from . import models
from .config import ConfigError, defaults, validate
from .io.atomic import interrupted_save
from .io.errors import CheckpointError, error_text
from .models.weights import PRETRAINED_CONFIG, PRETRAINED_WEIGHTS

#: The ``data`` keys of a config that the test pipeline reads (``haltingvt.data.load_views``).
TEST_PIPELINE_KEYS = (
    "clip_len",
    "frame_interval",
    "test_num_clips",
    "test_num_crops",
    "test_scale",
    "crop_size",
    "short_video",
    "test_sampling",
    "resize",
    "filename_tmpl",
    "start_index",
)
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


class HaltingVT(models.HaltingVT):
    """The model with the test pipeline, class names and Hub transfers: ``haltingvt.HaltingVT``.

    :meth:`save_pretrained` stores the test pipeline (``data``/``test`` sections composed from a config) and
    a model card beside the architecture and weights that :class:`haltingvt.models.HaltingVT` writes;
    :meth:`from_pretrained` also takes a Hub id and checks the stored pipeline; :meth:`push_to_hub` uploads.
    """

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        *,
        classes: Sequence[str] | None = None,
        config: Mapping[str, Any] | None = None,
        name: str | None = None,
        extras: Mapping[str, Any] | None = None,
        files: Mapping[str, bytes] | None = None,
    ) -> Path:
        """Write ``model.safetensors``, ``config.json`` and a model card ``README.md`` as the folder, whole or
        not at all: a kill at any instant leaves the previous folder or the new one (other files of a
        previous folder, e.g. a Hub clone's ``.git``, are kept).

        classes: the class names (default: ``self.classes`` when the model was loaded with names).
        config: a full config (its ``data``/``test`` sections give the test pipeline); default: the
        pipeline the model was loaded with, else the default one for its input size and frame count.
        """
        return save_pretrained(
            self, save_directory, classes=classes, config=config, name=name, extras=extras, files=files
        )

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        device: str | torch.device = "cpu",
        check_config: Callable[[Mapping[str, Any]], None] | None = None,
    ) -> Any:
        """A model from a folder written by :meth:`save_pretrained` (offline), or a Hub id (downloads the two
        files once into the Hub cache). The model is in eval mode; ``model.classes`` holds the class names
        and ``model.pretrained_config`` the stored config (name, model, data, test)."""
        folder = resolve_pretrained(
            name_or_path, revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, token=token
        )

        def check(stored: Mapping[str, Any]) -> None:
            try:  # every setting's type and range, the test pipeline's too
                validate({k: v for k, v in stored.items() if k in ("model", "data", "test")})
            except ConfigError as err:
                raise CheckpointError(f"{folder}: stored config: {err}") from None
            if check_config is not None:
                check_config(stored)

        return super().from_pretrained(folder, device=device, check_config=check)

    def push_to_hub(
        self,
        repo_id: str,
        *,
        classes: Sequence[str] | None = None,
        config: Mapping[str, Any] | None = None,
        private: bool | None = None,
        token: str | None = None,
        commit_message: str = "Upload HaltingVT weights",
        revision: str | None = None,
    ) -> Any:
        """save_pretrained into a temporary folder, then upload it to the Hub repository ``repo_id``
        (created if needed). Returns the commit information of ``HfApi.upload_folder``."""
        from huggingface_hub import HfApi  # deferred (optional): huggingface_hub, only for Hub transfers

        api = HfApi(token=token)
        repo_id = api.create_repo(repo_id=repo_id, private=private, exist_ok=True).repo_id
        with tempfile.TemporaryDirectory() as tmp:
            folder = self.save_pretrained(
                Path(tmp) / repo_id.split("/")[-1], classes=classes, config=config, name=repo_id.split("/")[-1]
            )
            return api.upload_folder(
                repo_id=repo_id, folder_path=folder, commit_message=commit_message, revision=revision
            )


def save_pretrained(
    model: models.HaltingVT,
    save_directory: str | os.PathLike,
    *,
    classes: Sequence[str] | None = None,
    config: Mapping[str, Any] | None = None,
    name: str | None = None,
    extras: Mapping[str, Any] | None = None,
    files: Mapping[str, bytes] | None = None,
) -> Path:
    """:meth:`HaltingVT.save_pretrained` for any HaltingVT (one built by ``haltingvt.models`` too): the test
    pipeline of ``config`` (default: the one the model was loaded with, else the default for its input)
    and a model card, composed here, beside what ``haltingvt.models.HaltingVT.save_pretrained`` writes."""
    folder = Path(save_directory)
    arch = model.arch
    sections = pipeline_config(arch, config if config is not None else model.pretrained_config)
    name = str(name or (config or {}).get("name") or (model.pretrained_config or {}).get("name") or folder.name)
    card = MODEL_CARD.format(name=name, repo=folder.name, **arch).encode()
    return models.HaltingVT.save_pretrained(
        model,
        folder,
        classes=classes,
        name=name,
        extras={**sections, **(extras or {})},
        files={"README.md": card, **(files or {})},
    )


def pipeline_config(arch: Mapping[str, Any], config: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """The ``data`` (test-pipeline keys only: no paths) and ``test`` sections stored with the weights.
    Without a config: the defaults, with a short side of img_size*256/224, a centre crop of img_size
    and clips of num_frames frames (the release's test pipeline scaled to the model's input)."""
    if config is None:
        cfg = defaults()
        cfg["data"].update(
            clip_len=int(arch["num_frames"]),
            crop_size=int(arch["img_size"]),
            test_scale=int(round(arch["img_size"] * 256 / 224)),
        )
    else:
        cfg = validate({k: config[k] for k in ("data", "test") if k in config})
    return {"data": {k: cfg["data"][k] for k in TEST_PIPELINE_KEYS}, "test": {k: cfg["test"][k] for k in TEST_KEYS}}


def resolve_pretrained(
    name_or_path: str | os.PathLike,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
) -> Path:
    """A local path as it is; otherwise a Hub id whose config.json and model.safetensors are downloaded
    (or found in the Hub cache). A failure is one CheckpointError line naming the id."""
    path = Path(name_or_path)
    if path.exists():
        return path
    name = str(name_or_path)
    if name.count("/") != 1 or name.startswith((".", "/")) or name.endswith((".pth", ".pt", ".safetensors")):
        left = interrupted_save(path)
        raise CheckpointError(
            f"{name}: no such file or folder (and not a Hub id of the form user/model)"
            + (f"; an interrupted save_pretrained left the previous folder as {left}" if left else "")
        )
    from huggingface_hub import hf_hub_download  # deferred (optional): huggingface_hub, only for Hub downloads

    try:
        for filename in (PRETRAINED_CONFIG, PRETRAINED_WEIGHTS):
            local = hf_hub_download(
                repo_id=name,
                filename=filename,
                revision=revision,
                cache_dir=None if cache_dir is None else os.fspath(cache_dir),
                local_files_only=local_files_only,
                token=token,
            )
    except Exception as err:  # noqa: BLE001 - network, authentication and missing-file errors all end here
        raise CheckpointError(
            f"{name}: not a local folder, and the Hub download failed ({type(err).__name__}: {error_text(err)})"
        ) from None
    return Path(local).parent
