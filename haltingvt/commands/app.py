"""``haltingvt app CHECKPOINT_OR_HUB_FOLDER``: a web page (Gradio) that classifies an uploaded video and shows its
top-5 classes, the GFLOPs it cost against the dense model's, the tokens per halting layer and the halting picture.

Needs the optional extra ``pip install 'haltingvt[app]'``; gradio is imported only when the command runs.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import warnings
from typing import Any

from ..app import INSTALL_HINT, import_gradio, launch
from ..io.textsafe import escape, warning_lines
from ..predict import Predictor
from .options import add_predictor_options, inference_overrides


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoint",
        metavar="CHECKPOINT_OR_HUB_FOLDER",
        help="trained checkpoint (ours: .pth, .safetensors or a save_pretrained folder; a release checkpoint "
        "with --config) or a Hub id (user/model, downloaded once into the Hub cache)",
    )
    add_predictor_options(parser)
    parser.add_argument(
        "--examples",
        metavar="DIR",
        help="offer the video files in DIR as example clips (besides the synthetic ones written at start-up for "
        "a model trained on the built-in synthetic classes)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1; 0.0.0.0: all)")
    parser.add_argument("--port", type=int, default=7860, help="port to serve on (default 7860)")
    parser.add_argument(
        "--share", action="store_true", help="also open a public Gradio share link (off by default; needs internet)"
    )


def _gradio_missing() -> bool:
    try:
        import_gradio()
    except ImportError:
        return True
    return False


def predictor_options(args: argparse.Namespace) -> dict:
    """Keyword arguments of ``Predictor.from_pretrained`` from the command line (``--precision`` and ``--compile``
    as ``test.precision`` / ``test.compile``)."""
    return dict(
        config=args.config,
        device=args.device,
        classes=args.classes,
        overrides=inference_overrides(args),
        views=args.views,
    )


def run(args: argparse.Namespace) -> int:
    if _gradio_missing():
        print(INSTALL_HINT, file=sys.stderr)
        return 1

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # a local file or folder as it is (as `haltingvt predict` reads it), else a Hub id
        predictor = Predictor.from_pretrained(args.checkpoint, **predictor_options(args))
    for line in warning_lines(caught):
        print(f"haltingvt app: warning: {line}", file=sys.stderr)
    try:
        demo, url, work = launch(
            predictor,
            examples_dir=args.examples,
            host=args.host,
            port=args.port,
            share=args.share,
            prevent_thread_lock=True,
            quiet=True,
        )
    except OSError as err:
        if "empty port" not in str(err):  # gradio's words for a port it cannot bind
            raise
        print(
            f"haltingvt app: error: cannot serve on {escape(args.host)}:{args.port}: pass another --port",
            file=sys.stderr,
        )
        return 1
    share_url = getattr(demo, "share_url", None)
    print(
        f"haltingvt app: serving {escape(predictor.cfg.get('name') or predictor.checkpoint.name)} on {url}"
        + (f" and {share_url}" if share_url else "")
        + " (Ctrl-C to stop)",
        file=sys.stderr,
    )
    previous = _stop_on_sigterm()
    try:
        demo.block_thread()  # returns on Ctrl-C (or SIGTERM), having closed the server
    finally:
        demo.close()
        work.cleanup()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _stop_on_sigterm() -> Any:
    """SIGTERM (``kill``, a service manager) stops the page as Ctrl-C does, so that its temporary folder of
    example clips and pictures is removed. Returns the previous handler (None outside the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _interrupt)
