"""``haltingvt app``: the Gradio page, headless through Gradio's own client and in a real browser (slow), its
example clips, its one-line errors, and the command's options and its message when gradio is missing.

The page tests skip when the ``app`` extra (gradio, gradio_client) is not installed; the browser test also
needs selenium (the ``browser`` extra) and Chromium with chromedriver from the system's packages.
"""

from __future__ import annotations

import argparse
import shutil
import socket
from pathlib import Path

import av
import numpy as np
import pytest

import haltingvt
from haltingvt.app import (
    INSTALL_HINT,
    classify,
    dense_gflops_per_view,
    folder_examples,
    markdown_text,
    synthetic_examples,
)
from haltingvt.cli import build_parser, main
from haltingvt.commands import app as app_command
from haltingvt.config import ConfigError
from haltingvt.data import DataError
from haltingvt.data.synthetic import CLASSES, make_clip

from model_helpers import refuse_imports
from tests.harness import app_screenshot

NAMES = ["move_right", "move_left", "move_up", "move_down", "grow"]  # app_screenshot.tiny_checkpoint's classes
ROOT = Path(__file__).resolve().parents[1]
# gradio's queue calls a pandas option that pandas 3 deprecates (its own code, not ours)
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:gradio.queueing")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return app_screenshot.tiny_checkpoint(tmp_path_factory.mktemp("app"))


@pytest.fixture(scope="module")
def predictor(checkpoint) -> haltingvt.Predictor:
    return haltingvt.Predictor(checkpoint, device="cpu")


@pytest.fixture(scope="module")
def served(checkpoint):
    """The page of the tiny model on a free port of 127.0.0.1: (url, folder of its example clips)."""
    pytest.importorskip("gradio")
    demo, url, work = app_screenshot.serve(checkpoint)
    yield url, Path(work.name) / "examples"
    demo.close()
    work.cleanup()


@pytest.fixture(scope="module")
def client(served):
    gradio_client = pytest.importorskip("gradio_client")
    return gradio_client.Client(served[0], verbose=False)


def _upload(client, path):
    from gradio_client import handle_file

    return client.predict(handle_file(str(path)), api_name="/classify")


# ------------------------------------------------------------------------------------- the page (client)
def test_page_gives_top5_gflops_tokens_and_pictures(client, served, predictor):
    clip = served[1] / "move_up.mp4"
    status, label, flops, table, png, gif = _upload(client, clip)
    expected = predictor.predict(clip)
    # top-5: the Predictor's classes and probabilities, best first
    got = [(c["label"], c["confidence"]) for c in label["confidences"]]
    assert [name for name, _ in got] == [t["label"] for t in expected["top"]] and len(got) == 5
    assert [p for _, p in got] == pytest.approx([t["prob"] for t in expected["top"]], abs=1e-6)
    assert label["label"] == expected["top"][0]["label"]
    assert status.startswith(f"**{markdown_text(expected['top'][0]['label'])}**") and "move\\_up.mp4" in status
    # GFLOPs spent against the dense model's, and the fraction
    dense = dense_gflops_per_view(predictor)
    assert f"**{expected['gflops']:.4g} GFLOPs**" in flops and f"**{dense:.4g} GFLOPs**" in flops
    assert f"**{expected['gflops'] / dense:.1%}**" in flops and 0 < expected["gflops"] < dense
    # tokens entering each layer: 2 Glimpser layers (16 patches x 4 frames + cls, then half kept), 2 halting layers
    assert table["headers"] == ["layer", "kind", "tokens entering", "dense"]
    rows = table["data"]
    assert [r[:2] for r in rows] == [[1, "Glimpser"], [2, "Glimpser"], [3, "halting"], [4, "halting"]]
    assert [float(r[2]) for r in rows] == pytest.approx([65, 65] + expected["tokens_per_layer"], abs=0.05)
    assert {r[3] for r in rows} == {65}
    # the halting picture and its GIF come back as files
    assert Path(png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and Path(gif).read_bytes()[:6] in (b"GIF89a", b"GIF87a")


def test_corrupt_upload_gives_one_line(client, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(bytes(range(256)) * 8)
    status, label, flops, table, png, gif = _upload(client, bad)
    assert status.startswith("**Error:** broken.mp4: ") and "\n" not in status
    assert "Traceback" not in status and "/gradio/" not in status  # the server's upload path is not shown
    assert label in (None, {}) or not label.get("confidences")
    assert flops == "" and table["data"] in ([], [[]]) and png is None and gif is None


def test_example_clips_are_offered(client, served):
    names = sorted(p.name for p in served[1].iterdir())
    assert names == sorted(f"{n}.mp4" for n in NAMES)
    assert "/classify" in client.view_api(print_info=False, return_format="dict")["named_endpoints"]


# ------------------------------------------------------------------------------------- messages (no server)
def test_errors_are_one_escaped_line(predictor, tmp_path, monkeypatch):
    assert classify(predictor, None, tmp_path)[0] == "**Error:** upload a video or pick an example first"
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"x")

    def fail(error):
        def predict(*args, **kwargs):
            raise error

        return predict

    monkeypatch.setattr(predictor, "predict", fail(DataError(f"{clip}: bad\x1b[31m frame\nsecond line")))
    status, *rest = classify(predictor, str(clip), tmp_path)
    assert status == "**Error:** clip.mp4: bad\\\\x1b\\[31m frame second line"
    assert rest == [None, "", [], None, None]
    monkeypatch.setattr(predictor, "predict", fail(RuntimeError("boom\n  at line 3")))
    status = classify(predictor, str(clip), tmp_path)[0]
    assert status == "**Error:** clip.mp4: unexpected error: RuntimeError: boom at line 3"
    monkeypatch.setattr(predictor, "predict", fail(ValueError("x" * 2000)))
    assert len(classify(predictor, str(clip), tmp_path)[0]) < 450


def test_markdown_text_shows_markup_as_it_is():
    assert markdown_text("a_b *c* <img src=x> $x$ [l](u) `c`") == (
        "a\\_b \\*c\\* \\<img src=x\\> \\$x\\$ \\[l\\](u) \\`c\\`"
    )


# ------------------------------------------------------------------------------------- example clips
def test_synthetic_examples_one_per_class(predictor, tmp_path):
    paths = synthetic_examples(predictor, tmp_path / "a")
    assert [Path(p).name for p in paths] == [f"{n}.mp4" for n in NAMES]
    data = predictor.cfg["data"]
    for index, path in enumerate(paths):  # clip i of the synthetic test split, encoded near-losslessly
        clip, label, _ = make_clip(index, "test", 0, data["clip_len"] * data["frame_interval"], 32, NAMES)
        decoded = np.stack(_frames(path)).astype(int)
        assert NAMES[label] == Path(path).stem and decoded.shape == clip.shape
        assert np.abs(decoded - clip.astype(int)).mean() < 3
    assert len(_frames(paths[0])) == data["clip_len"] * data["frame_interval"]
    # at most 6, and none for a model whose classes are not the synthetic ones
    predictor_all = _with_classes(predictor, list(CLASSES))
    assert len(synthetic_examples(predictor_all, tmp_path / "c")) == 6
    assert synthetic_examples(_with_classes(predictor, None), tmp_path / "d") == []
    assert synthetic_examples(_with_classes(predictor, ["cat", *NAMES[1:]]), tmp_path / "e") == []


def _with_classes(predictor, classes):
    other = object.__new__(type(predictor))
    other.__dict__.update(predictor.__dict__, classes=classes)
    return other


def _frames(path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def test_folder_examples(tmp_path):
    (tmp_path / "b.MP4").write_bytes(b"")
    (tmp_path / "a.webm").write_bytes(b"")
    (tmp_path / ".hidden.mp4").write_bytes(b"")
    (tmp_path / "notes.txt").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.mp4").write_bytes(b"")
    assert [Path(p).name for p in folder_examples(tmp_path)] == ["a.webm", "b.MP4"]
    with pytest.raises(ConfigError, match="no such folder"):
        folder_examples(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="no video files in this folder"):
        folder_examples(tmp_path / "empty")


# ------------------------------------------------------------------------------------- the command
def test_command_without_gradio_prints_one_line(checkpoint, monkeypatch, capsys):
    refuse_imports(monkeypatch, "gradio")
    assert main(["app", str(checkpoint)]) == 1
    out = capsys.readouterr()
    assert out.err == INSTALL_HINT + "\n" and out.out == ""
    assert INSTALL_HINT == "haltingvt app needs the optional extra: pip install 'haltingvt[app]'"


def test_command_passes_its_options(checkpoint, tmp_path, monkeypatch, capsys):
    pytest.importorskip("gradio")
    (tmp_path / "clip.mp4").write_bytes(b"")
    seen = {}

    class Page:
        def block_thread(self):
            seen["blocked"] = True

        def close(self):
            seen["closed"] = True

    class Work:
        def cleanup(self):
            seen["cleaned"] = True

    def fake_launch(predictor, **kwargs):
        seen.update(kwargs, predictor=predictor)
        return Page(), "http://127.0.0.1:9999/", Work()

    monkeypatch.setattr(app_command, "launch", fake_launch)
    argv = ["app", str(checkpoint), "--examples", str(tmp_path), "--port", "9999", "--host", "0.0.0.0"]
    argv += ["--share", "--device", "cpu", "--set", "test.early_exit=true", "--views", "1x3"]
    assert main(argv) == 0
    assert seen["host"] == "0.0.0.0" and seen["port"] == 9999 and seen["share"] is True
    assert seen["examples_dir"] == str(tmp_path) and seen["blocked"] and seen["closed"] and seen["cleaned"]
    predictor = seen["predictor"]
    assert predictor.views == (1, 3) and predictor.cfg["test"]["early_exit"] is True and str(predictor.device) == "cpu"
    assert "on http://127.0.0.1:9999/ (Ctrl-C to stop)" in capsys.readouterr().err


def test_precision_option(monkeypatch):
    parser = build_parser(["app"])
    args = parser.parse_args(["app", "model/"])
    assert args.precision is None and args.host == "127.0.0.1" and args.port == 7860 and not args.share
    assert app_command.predictor_options(args)["overrides"] == []
    args = parser.parse_args(["app", "model/", "--precision", "bf16", "--set", "test.early_exit=true"])
    assert app_command.predictor_options(args)["overrides"] == ["test.early_exit=true", "test.precision=bf16"]
    with pytest.raises(SystemExit):
        parser.parse_args(["app", "model/", "--precision", "fp64"])


def test_missing_checkpoint_is_one_line(tmp_path, capsys):
    pytest.importorskip("gradio")
    assert main(["app", str(tmp_path / "nothing.pth")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("haltingvt app: error: ") and "nothing.pth" in err


def test_port_in_use_is_one_line(checkpoint, capsys):
    pytest.importorskip("gradio")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["app", str(checkpoint), "--port", str(port)]) == 1
    assert capsys.readouterr().err == f"haltingvt app: error: cannot serve on 127.0.0.1:{port}: pass another --port\n"


def test_docs_screenshot_is_small():
    shot = ROOT / "docs" / "images" / "app.png"
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size < 300_000


# ------------------------------------------------------------------------------------- a real browser
@pytest.mark.slow
def test_browser_uploads_a_clip_and_sees_the_top_class(served, predictor, tmp_path):
    pytest.importorskip("selenium")
    try:
        driver = app_screenshot.chrome()
    except app_screenshot.NoBrowser as err:
        pytest.skip(str(err))
    clip = shutil.copy(served[1] / "grow.mp4", tmp_path / "my clip.mp4")
    try:
        top, status = app_screenshot.classify_in_browser(driver, served[0], video=clip)
        assert top == predictor.predict(clip)["top"][0]["label"]
        assert "my clip.mp4" in status
        shot = app_screenshot.save_screenshot(driver, tmp_path / "page.png")
        assert 0 < shot.stat().st_size < 300_000
        # an example clip picked on the page gives its result too
        top, status = app_screenshot.classify_in_browser(driver, served[0], example="move_left.mp4")
        assert top == predictor.predict(served[1] / "move_left.mp4")["top"][0]["label"] and "move_left.mp4" in status
    finally:
        driver.quit()


def test_help_names_the_argument_and_options():
    parser = argparse.ArgumentParser(prog="haltingvt app")
    app_command.add_arguments(parser)
    text = parser.format_help()
    assert "CHECKPOINT_OR_HUB_FOLDER" in text and "--examples DIR" in text and "{fp32,bf16,fp16,int8}" in text
