"""A web page for predicting with a trained HaltingVT (Gradio): ``haltingvt app CHECKPOINT_OR_HUB_FOLDER``.

The page takes one video (an upload or one of the example clips), and shows, after "Classify":

* the top-k classes with their probabilities;
* the GFLOPs the clip cost (all test views) against the dense model's (the same backbone without the
  Glimpser's selection and without halting), and the fraction;
* the tokens entering each layer (the Glimpser's layers, then the halting layers; mean over the views);
* the halting picture (PNG grid) and GIF that :meth:`haltingvt.Predictor.predict` writes with ``save_vis``.

A file that cannot be classified (not a video, corrupt, too short ...) gives one line on the page, with its
control characters escaped; never a traceback.

Python::

    from haltingvt.app import build_app, launch
    predictor = haltingvt.Predictor("best.pth", device="cpu")
    launch(predictor, examples_dir="my_clips/", port=7860)        # blocks until Ctrl-C
    demo = build_app(predictor, examples=["a.mp4"])                # or a gradio.Blocks to launch yourself

gradio (the optional extra ``pip install 'haltingvt[app]'``) is imported when a page is built
(:func:`import_gradio`), so that this module and ``haltingvt --help`` load without it.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import ConfigError
from .data import DataError, is_video_path
from .data.encode import write_mp4
from .data.synthetic import MOTIONS, make_clip
from .flops import dense_gflops, dense_tokens
from .io.errors import CheckpointError
from .io.textsafe import escape, fold_lines, safe_path
from .predict import Predictor

if TYPE_CHECKING:
    import gradio as gr

__all__ = ["INSTALL_HINT", "build_app", "classify", "folder_examples", "import_gradio", "launch", "synthetic_examples"]

#: What ``haltingvt app`` prints, alone, when gradio is not installed.
INSTALL_HINT = "haltingvt app needs the optional extra: pip install 'haltingvt[app]'"

#: At most this many synthetic example clips (one per class) are written at start-up.
MAX_SYNTHETIC_EXAMPLES = 6
#: At most this many clips of ``--examples DIR`` are offered.
MAX_FOLDER_EXAMPLES = 24
#: Result folders (PNG + GIF of one request) kept on disk; older ones are removed.
KEEP_RESULTS = 16
#: A message on the page is cut to this many characters.
MAX_MESSAGE = 400

#: The errors that an input (rather than the page) causes: shown as their message.
INPUT_ERRORS = (DataError, ConfigError, CheckpointError, ValueError)
TOKEN_HEADERS = ["layer", "kind", "tokens entering", "dense"]
PICTURE_HELP = (
    "**Where the model looked** (first view): the sampled frames, and below them the patch tokens, greyed out "
    "where the Glimpser dropped them, else coloured by the layer at which the token halted."
)

log = logging.getLogger(__name__)
# Characters that start inline markup in one line of Gradio's Markdown (its LaTeX too: $), or HTML.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>&~|#$])")


def import_gradio() -> Any:
    """The gradio module (imported here: it is the optional extra ``app``); ImportError when it is missing.
    Sets GRADIO_ANALYTICS_ENABLED=False unless set: no telemetry and no version check from this page."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    import gradio

    return gradio


# ----------------------------------------------------------------------------------------- text
def one_line(text: object, limit: int = MAX_MESSAGE) -> str:
    """``text`` on one line (line breaks folded into spaces), control characters escaped, at most ``limit``
    characters."""
    line = escape(fold_lines(text))
    return line if len(line) <= limit else line[: limit - 4] + " ..."


def markdown_text(text: object) -> str:
    """Plain text for a Markdown component: escaped (:func:`haltingvt.io.textsafe.escape`), with Markdown's
    and HTML's special characters backslash-escaped so that they show as they are."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", escape(text))


# ----------------------------------------------------------------------------------------- examples
def has_synthetic_classes(predictor: Predictor) -> bool:
    """True when the model's class names are classes of the built-in synthetic dataset."""
    names = predictor.classes
    return bool(names) and all(name in MOTIONS for name in names or ())


def synthetic_examples(
    predictor: Predictor, folder: str | os.PathLike, limit: int = MAX_SYNTHETIC_EXAMPLES
) -> list[str]:
    """One short mp4 per class (the first ``limit`` classes) for a model trained on the built-in synthetic
    clips, written into ``folder``: clip ``i`` of the test split (seed ``data.synthetic_seed``), whose label
    is class ``i``, at the model's frame size with ``data.clip_len x data.frame_interval`` frames. Nothing
    (an empty list) for a model with other classes. Deterministic; a few milliseconds per clip."""
    if not has_synthetic_classes(predictor):
        return []
    names = list(predictor.classes or ())
    data = predictor.cfg["data"]
    frames = int(data["clip_len"]) * int(data["frame_interval"])
    size = int(predictor.arch["img_size"])
    seed = int(data.get("synthetic_seed") or 0)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(min(limit, len(names))):
        clip, label, _ = make_clip(index, "test", seed, frames, size, names)
        paths.append(str(write_mp4(folder / f"{names[label]}.mp4", clip, fps=8)))
    return paths


def folder_examples(folder: str | os.PathLike, limit: int = MAX_FOLDER_EXAMPLES) -> list[str]:
    """The video files (``haltingvt.data.lists.VIDEO_EXTENSIONS``) directly in ``folder``, sorted, hidden ones
    left out, at most ``limit``. A folder that does not exist or holds no video is a ConfigError."""
    path = Path(folder)
    if not path.is_dir():
        raise ConfigError(f"--examples {safe_path(path)}: no such folder")
    found = sorted(
        str(p.resolve()) for p in path.iterdir() if p.is_file() and not p.name.startswith(".") and is_video_path(p)
    )
    if not found:
        raise ConfigError(f"--examples {safe_path(path)}: no video files in this folder")
    return found[:limit]


# ----------------------------------------------------------------------------------------- prediction
def _test_geometry(predictor: Predictor) -> dict[str, int]:
    """The test pipeline's clip length and crop size, as the FLOPs functions take them."""
    data = predictor.cfg["data"]
    return {"num_frames": int(data["clip_len"]), "img_size": int(data["crop_size"])}


def dense_gflops_per_view(predictor: Predictor) -> float:
    """GMACs of one test view for the dense model (same backbone, no selection, no halting), at the test
    pipeline's clip length and crop size."""
    return dense_gflops(predictor.arch, **_test_geometry(predictor))


def token_rows(predictor: Predictor, res: dict) -> list[list[Any]]:
    """One row per layer: [layer, kind, tokens entering (cls included, mean over views), dense model's]."""
    dense = dense_tokens(predictor.arch, **_test_geometry(predictor))
    entering = [float(dense)] + [float(t + 1) for t in res["glimpser_tokens"][:-1]]  # +1: the cls token
    rows: list[list[Any]] = [[i + 1, "Glimpser", tokens, dense] for i, tokens in enumerate(entering)]
    for layer, tokens in zip(res["halting_layers"], res["tokens_per_layer"]):
        rows.append([layer, "halting", round(float(tokens), 1), dense])
    return rows


def _labels(res: dict) -> dict[str, float]:
    out: dict[str, float] = {}
    for t in res["top"]:
        name = escape(t["label"])
        out[name if name not in out else f"{name} (class {t['class_id']})"] = float(t["prob"])
    return out


def _new_result_folder(root: Path) -> Path:
    """A fresh folder for one request's pictures; the oldest beyond KEEP_RESULTS are removed."""
    root.mkdir(parents=True, exist_ok=True)
    old = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    for path in old[: max(0, len(old) - KEEP_RESULTS + 1)]:
        shutil.rmtree(path, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix="result-", dir=root))


def _error_outputs(message: str) -> tuple:
    return (f"**Error:** {markdown_text(message)}", None, "", [], None, None)


def classify(predictor: Predictor, video: str | None, results_dir: str | os.PathLike) -> tuple:
    """The page's outputs for one video file: (status Markdown, gr.Label value, GFLOPs Markdown, token table
    rows, PNG path, GIF path). An input that cannot be classified gives the one-line message in the status and
    empty outputs; an unexpected failure too (its traceback goes to the log only)."""
    if not video:
        return _error_outputs("upload a video or pick an example first")
    name = Path(video).name
    try:
        res = predictor.predict(video, save_vis=_new_result_folder(Path(results_dir)))
    except INPUT_ERRORS as err:
        # the upload's path is in the server's cache: show its file name only
        return _error_outputs(one_line(str(err).replace(str(video), name)))
    except Exception as err:  # noqa: BLE001 - a page shows one line, the log keeps the traceback
        log.exception("haltingvt app: predicting %s failed", video)
        return _error_outputs(one_line(f"{name}: unexpected error: {type(err).__name__}: {err}"))
    dense = dense_gflops_per_view(predictor)
    views = int(res["num_views"])
    fraction = res["gflops_per_view"] / dense if dense > 0 else float("nan")
    best = res["top"][0]
    status = (
        f"**{markdown_text(best['label'])}** ({best['prob']:.1%}) for {markdown_text(name)}, "
        f"{views} view{'s' if views > 1 else ''}"
    )
    flops = (
        f"**{res['gflops']:.4g} GFLOPs** for this clip ({views} view{'s' if views > 1 else ''}, "
        f"{res['gflops_per_view']:.4g} each) against **{dense * views:.4g} GFLOPs** for the dense model: "
        f"**{fraction:.1%}** of the dense compute"
    )
    png, gif = res["vis"] if res.get("vis") else (None, None)
    return status, _labels(res), flops, token_rows(predictor, res), png, gif


# ----------------------------------------------------------------------------------------- page
def _describe(predictor: Predictor) -> str:
    arch, data = predictor.arch, predictor.cfg["data"]
    clips, crops = predictor.views
    return (
        f"Model **{markdown_text(predictor.cfg.get('name') or predictor.checkpoint.name)}**: "
        f"{arch['num_classes']} classes, {data['clip_len']} frames x {data['crop_size']} px, "
        f"{clips} clip(s) x {crops} crop(s) per video, on {markdown_text(predictor.device)}. "
        f"Dense model: {dense_gflops_per_view(predictor):.4g} GFLOPs per view."
    )


def build_app(
    predictor: Predictor,
    examples: Sequence[str | os.PathLike] = (),
    *,
    results_dir: str | os.PathLike | None = None,
    title: str = "HaltingVT",
) -> gr.Blocks:
    """The page for ``predictor``; ``examples``: video files offered under the upload box. ``results_dir``:
    where each request's PNG and GIF go (default: a new temporary folder)."""
    gr = import_gradio()
    results = Path(results_dir) if results_dir is not None else Path(tempfile.mkdtemp(prefix="haltingvt-app-"))
    topk = predictor.topk

    def run(video: str | None) -> tuple:
        return classify(predictor, video, results)

    with gr.Blocks(title=title, analytics_enabled=False) as demo:
        gr.Markdown(f"# {markdown_text(title)}: video classification with token halting\n\n{_describe(predictor)}")
        with gr.Row():
            with gr.Column(scale=1):
                video = gr.Video(
                    label="Video", sources=["upload"], format=None, include_audio=True, elem_id="video", height=260
                )
                button = gr.Button("Classify", variant="primary", elem_id="classify")
                if examples:
                    gr.Examples(
                        examples=[[str(p)] for p in examples],
                        inputs=[video],
                        example_labels=[Path(p).name for p in examples],
                        label="Example clips",
                        cache_examples=False,
                        examples_per_page=MAX_FOLDER_EXAMPLES,
                    )
                animation = gr.Image(label="Tokens over time (GIF)", type="filepath", elem_id="gif", height=300)
            with gr.Column(scale=1):
                status = gr.Markdown(
                    "Upload a video or pick an example, then press **Classify**.", label="result", elem_id="status"
                )
                label = gr.Label(num_top_classes=topk, label=f"Top-{topk} classes", elem_id="top")
                flops = gr.Markdown(label="GFLOPs", elem_id="gflops")
                tokens = gr.Dataframe(
                    headers=TOKEN_HEADERS,
                    label="Tokens entering each layer (cls included, mean over views)",
                    interactive=False,
                    elem_id="tokens",
                )
        gr.Markdown(PICTURE_HELP)
        picture = gr.Image(show_label=False, type="filepath", elem_id="picture")
        button.click(
            run,
            inputs=[video],
            outputs=[status, label, flops, tokens, picture, animation],
            api_name="classify",
            concurrency_limit=1,
        )
    return demo


def launch(
    predictor: Predictor,
    *,
    examples_dir: str | os.PathLike | None = None,
    host: str = "127.0.0.1",
    port: int | None = 7860,
    share: bool = False,
    prevent_thread_lock: bool = False,
    quiet: bool = False,
    synthetic: bool = True,
) -> tuple[gr.Blocks, str, tempfile.TemporaryDirectory]:
    """Build the page (the synthetic example clips when the model has the synthetic classes and
    ``synthetic`` is set, plus the clips of ``examples_dir``) and serve it on ``host:port`` (a Gradio share
    link with ``share``). Blocks until Ctrl-C unless ``prevent_thread_lock``; returns (the Blocks, its local
    URL, the temporary folder of example clips and results: cleaned up with ``.cleanup()`` or at exit)."""
    work = tempfile.TemporaryDirectory(prefix="haltingvt-app-")
    root = Path(work.name)
    examples = synthetic_examples(predictor, root / "examples") if synthetic else []
    allowed = [str(root)]
    if examples_dir is not None:
        examples += folder_examples(examples_dir)
        allowed.append(str(Path(examples_dir).resolve()))
    demo = build_app(predictor, examples, results_dir=root / "results")
    _, url, _ = demo.launch(
        server_name=host,
        server_port=port,
        share=share,
        prevent_thread_lock=prevent_thread_lock,
        allowed_paths=allowed,
        quiet=quiet,
        show_error=False,
    )
    return demo, url, work
