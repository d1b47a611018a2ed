"""haltingvt predict / haltingvt.Predictor on real mp4 files and JPEG frame folders."""

import errno
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import haltingvt
from haltingvt.cli import main
from haltingvt.config import ConfigError, load_config
from haltingvt.data import load_views, normalize
from haltingvt.data.encode import write_mp4
from haltingvt.flops import clip_gflops
from haltingvt.models.weights import CheckpointError, model_payload

from model_helpers import OFFICIAL, TINY_OVERRIDES, write_tiny_checkpoint

TINY = TINY_OVERRIDES


def _frames(n: int, moving: bool, h: int = 40, w: int = 48) -> np.ndarray:
    frames = np.full((n, h, w, 3), 50, dtype=np.uint8)
    for t in range(n):
        x = (2 + 2 * t) % (w - 12) if moving else 10
        frames[t, 12:24, x : x + 12] = (240, 180, 30)
    return frames


def _write_mp4(path: Path, frames: np.ndarray) -> Path:
    return write_mp4(path, frames, fps=8, codec="mpeg4", pix_fmt="yuv420p")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    cfg, model, ckpt = write_tiny_checkpoint(root)
    # the same weights in the release's layout (no config inside)
    release = {"backbone.model." + k: v for k, v in model.state_dict().items() if not k.startswith("head.")}
    release.update({"cls_head." + k[len("head.") :]: v for k, v in model.state_dict().items() if k.startswith("head.")})
    torch.save({"meta": {}, "state_dict": release}, root / "release.pth")
    moving = _write_mp4(root / "moving.mp4", _frames(16, True))
    static = _write_mp4(root / "static.mp4", _frames(16, False))
    folder = root / "frames"
    folder.mkdir()
    for i, frame in enumerate(_frames(12, True), start=1):
        Image.fromarray(frame).save(folder / f"img_{i:05d}.jpg", quality=95)
    bad = root / "broken.mp4"
    bad.write_bytes(b"this is not a video" * 50)
    return dict(
        root=root,
        cfg=cfg,
        model=model.eval(),
        ckpt=ckpt,
        release=root / "release.pth",
        yaml=root / "tiny.yaml",
        moving=moving,
        static=static,
        folder=folder,
        bad=bad,
    )


def _check_result(res, num_classes=5, views=1):
    assert res["error"] is None
    probs = [t["prob"] for t in res["top"]]
    assert len(res["top"]) == min(5, num_classes) and probs == sorted(probs, reverse=True)
    assert 0 < sum(probs) <= 1 + 1e-5
    assert all(t["label"] == f"class_{t['class_id']}" for t in res["top"])
    assert res["num_views"] == views and res["gflops"] > 0
    assert res["gflops"] == pytest.approx(res["gflops_per_view"] * views)
    assert res["halting_layers"] == [3, 4] and len(res["tokens_per_layer"]) == 2
    assert res["tokens_per_layer"][0] == 1 + 8 * 4  # cls + 8 kept patches x 4 frames enter layer 3
    assert res["glimpser_tokens"] == [64, 32]


def test_api_matches_model(setup):
    predictor = haltingvt.Predictor(setup["ckpt"], device="cpu")
    res = predictor.predict(setup["moving"])
    _check_result(res)
    assert res["path"] == str(setup["moving"])
    views = load_views(setup["moving"], setup["cfg"])
    assert views.dtype == torch.uint8 and views.shape == (1, 3, 4, 32, 32)
    with torch.no_grad():
        out = setup["model"](normalize(views))
    probs = out.logits.softmax(-1).mean(0)
    assert res["top"][0]["class_id"] == int(probs.argmax())
    assert res["top"][0]["prob"] == pytest.approx(float(probs.max()), abs=1e-5)
    assert res["gflops"] == pytest.approx(float(clip_gflops(setup["model"].arch, out.token_counts).sum()))
    # a tensor gives the same answer as the file, with or without the view axis
    for tensor in (views, views[0]):
        same = predictor.predict(tensor)
        assert same["path"] is None and same["top"] == res["top"]


def test_multi_view_averages_probabilities(setup):
    predictor = haltingvt.Predictor(setup["ckpt"], device="cpu", views="1x3", topk=10)
    assert predictor.views == (1, 3)
    res = predictor.predict(setup["moving"])
    _check_result(res, views=3)
    assert sum(t["prob"] for t in res["top"]) == pytest.approx(1.0, abs=1e-5)  # topk clipped to 5 classes
    views = load_views(setup["moving"], predictor.cfg)
    assert views.shape[0] == 3
    with torch.no_grad():
        out = setup["model"](normalize(views))
    expected = out.logits.softmax(-1).mean(0)
    got = torch.zeros(5)
    for t in res["top"]:
        got[t["class_id"]] = t["prob"]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_predict_many_batches_and_survives_bad_file(setup):
    predictor = haltingvt.Predictor(setup["ckpt"], device="cpu", batch_size=2)
    paths = [setup["moving"], setup["bad"], setup["folder"], setup["static"]]
    results = predictor.predict_many(paths)
    assert [r["path"] for r in results] == [str(p) for p in paths]
    bad = results[1]
    assert "broken.mp4" in bad["error"] and bad["top"] is None and "\n" not in bad["error"]
    for res in (results[0], results[2], results[3]):
        _check_result(res)
    single = predictor.predict(setup["static"])
    assert [t["class_id"] for t in single["top"]] == [t["class_id"] for t in results[3]["top"]]
    assert single["top"][0]["prob"] == pytest.approx(results[3]["top"][0]["prob"], abs=1e-5)
    with pytest.raises(Exception, match="broken.mp4"):
        predictor.predict(setup["bad"])


def test_cli_text_json_and_pictures(setup, capsys):
    vis = setup["root"] / "vis"
    rc = main(
        [
            "predict",
            str(setup["ckpt"]),
            str(setup["moving"]),
            str(setup["static"]),
            str(setup["folder"]),
            "--json",
            "--save-vis",
            str(vis),
            "--workers",
            "0",
            "--topk",
            "3",
        ]
    )
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    doc = json.loads(captured.out)
    assert doc["config"] == "minik_g03_b10" and doc["num_failed"] == 0 and doc["views"] == "1x1"
    assert [len(r["top"]) for r in doc["results"]] == [3, 3, 3]
    for res in doc["results"]:
        assert len(res["vis"]) == 2 and all(Path(p).is_file() for p in res["vis"])
    assert {p.name for p in vis.iterdir()} == {
        "moving.png",
        "moving.gif",
        "static.png",
        "static.gif",
        "frames.png",
        "frames.gif",
        "predictions.json",
    }
    with Image.open(vis / "moving.png") as a, Image.open(vis / "static.png") as b:
        assert a.size == b.size and a.width >= 400
        assert not np.array_equal(np.asarray(a.convert("RGB")), np.asarray(b.convert("RGB")))
    assert json.loads((vis / "predictions.json").read_text())["results"][0]["top"] == doc["results"][0]["top"]

    rc = main(["predict", str(setup["ckpt"]), str(setup["moving"]), "--workers", "0", "--views", "1x3"])
    out = capsys.readouterr().out
    assert rc == 0 and "moving.mp4" in out and "1. class_" in out and "GFLOPs" in out
    assert "tokens entering layers 3-4: 33" in out and "3 views" in out


def test_cli_bad_file_among_good(setup, capsys):
    rc = main(["predict", str(setup["ckpt"]), str(setup["bad"]), str(setup["moving"]), "--json", "--workers", "0"])
    captured = capsys.readouterr()
    assert rc == 1
    doc = json.loads(captured.out)
    assert doc["num_failed"] == 1
    assert doc["results"][0]["error"] and doc["results"][1]["error"] is None and doc["results"][1]["top"]
    errors = [line for line in captured.err.splitlines() if "error" in line]
    assert len(errors) == 1 and "broken.mp4" in errors[0]


def test_release_checkpoint_needs_config(setup, capsys):
    rc = main(["predict", str(setup["release"]), str(setup["moving"]), "--workers", "0"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "release checkpoint needs --config" in err and len(err.splitlines()) == 1
    with pytest.raises(ConfigError, match="needs --config"):
        haltingvt.Predictor(setup["release"])
    # with the config it gives the same answer as our checkpoint
    ours = haltingvt.Predictor(setup["ckpt"], device="cpu").predict(setup["moving"])
    release = haltingvt.Predictor(setup["release"], config=setup["yaml"], device="cpu").predict(setup["moving"])
    assert release["top"] == ours["top"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--config", "{yaml}", "--set", "model.num_classes=7"], "has 5 classes but config"),
        (["--set", "model.num_heads=6"], "architecture differs"),
        (["--config", "no_such_config"], "unknown config 'no_such_config'"),
        (["--views", "3"], "CLIPSxCROPS"),
        (["--views", "1x2", "--workers", "2"], "test_num_crops"),
        (["--classes", "{root}/four.txt"], "4 class names but the model has 5"),
        (["--classes", "{root}/missing.txt"], "missing.txt"),
    ],
)
def test_cli_mismatch_errors(setup, capsys, args, message):
    (setup["root"] / "four.txt").write_text("a\nb\nc\nd\n")
    args = [a.format(yaml=setup["yaml"], root=setup["root"]) for a in args]
    rc = main(["predict", str(setup["ckpt"]), str(setup["moving"]), "--workers", "0", *args])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and message in err and len(err.splitlines()) == 1, err


def test_release_class_mismatch_and_class_names(setup, tmp_path):
    with pytest.raises(CheckpointError, match="5 classes but config"):
        haltingvt.Predictor(setup["release"], config=setup["yaml"], overrides=["model.num_classes=7"])
    names = tmp_path / "names.txt"
    names.write_text("jump\nrun\nswim\nwave\nclap\n")
    predictor = haltingvt.Predictor(setup["ckpt"], device="cpu", classes=names)
    res = predictor.predict(setup["folder"])
    assert all(t["label"] == ["jump", "run", "swim", "wave", "clap"][t["class_id"]] for t in res["top"])
    # class names from the config's data.classes
    cfg = dict(setup["cfg"], data=dict(setup["cfg"]["data"], classes=str(names)))
    assert haltingvt.Predictor(setup["ckpt"], config=cfg, device="cpu").class_names[0] == "jump"


@pytest.mark.slow
def test_release_fixture_through_predictor(official_arch, official_expected):
    """The release's own outputs on its tiny checkpoint, reproduced through Predictor (tensor input)."""
    cfg = load_config("minik_g03_b10")
    cfg["model"].update(official_arch, num_classes=7)
    with pytest.raises(CheckpointError, match="architecture differs.*embed_dim 96 in checkpoint vs 384"):
        haltingvt.Predictor(OFFICIAL / "checkpoint.pth", config="minik_g03_b10", overrides=["model.num_classes=7"])
    predictor = haltingvt.Predictor(OFFICIAL / "checkpoint.pth", config=cfg, device="cpu", topk=7)
    for b in range(3):
        res = predictor.predict(official_expected["input_uint8"][b])
        got = torch.zeros(7)
        for t in res["top"]:
            got[t["class_id"]] = t["prob"]
        torch.testing.assert_close(got, official_expected["cls_scores"][b].softmax(-1), atol=1e-4, rtol=0)
        assert res["tokens_per_layer"] == official_expected["token_nums"][b].tolist()


def test_checkpoint_with_architecture_only(setup, tmp_path):
    """A checkpoint saved without its config: the test pipeline is derived from the architecture."""
    ckpt = haltingvt.save_checkpoint(tmp_path / "arch_only.pth", model_payload(setup["model"]))
    predictor = haltingvt.Predictor(ckpt, device="cpu")
    assert predictor.cfg["data"]["crop_size"] == 32 and predictor.cfg["data"]["clip_len"] == 4
    _check_result(predictor.predict(setup["folder"]))


def test_cli_warns_on_behaviour_change(setup, capsys):
    rc = main(
        ["predict", str(setup["ckpt"]), str(setup["moving"]), "--workers", "0", "--set", "model.keep_rate=[1.0,0.25]"]
    )
    captured = capsys.readouterr()
    assert rc == 0 and "tokens entering layers 3-4: 17" in captured.out  # cls + 4 kept x 4 frames
    assert captured.err.strip().splitlines() == [
        f"haltingvt predict: warning: {setup['ckpt']}: config 'minik_g03_b10' runs the model with "
        "keep_rate=[1.0, 0.25] (trained with [1.0, 0.5])"
    ]


def test_save_vis_on_a_full_disk_names_the_file(setup, tmp_path, capsys, monkeypatch):
    import matplotlib.figure

    def full_disk(self, f, *args, **kwargs):
        f.write(b"half a picture")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", full_disk)
    vis = tmp_path / "vis"
    rc = main(["predict", str(setup["ckpt"]), str(setup["moving"]), "--device", "cpu", "--save-vis", str(vis)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1
    assert f"{vis / 'moving.png'}: cannot write: No space left on device" in err[0]
    assert not list(vis.iterdir())  # no half-written picture, no temporary file


@pytest.mark.slow
def test_cli_folder_scan_workers_batches_csv_and_json(setup, tmp_path, capsys):
    """A folder that is not a frame folder is searched at any depth for video files and frame folders; decoded in
    2 DataLoader workers, 2 inputs per forward pass, the results are those of predicting each input alone
    without workers (1e-5); the broken file is reported by its path; JSON (--out) and CSV (--csv) are written."""
    import csv
    import shutil

    root = tmp_path / "videos"
    (root / "a" / "deeper").mkdir(parents=True)
    (root / "b").mkdir()
    (root / "empty").mkdir()
    shutil.copy(setup["moving"], root / "a" / "moving.mp4")
    shutil.copy(setup["static"], root / "a" / "deeper" / "static.MP4")
    _write_mp4(root / "b" / "short.mp4", _frames(6, True, h=36, w=36))
    shutil.copytree(setup["folder"], root / "b" / "frames")
    (root / "b" / "frames" / "sub").mkdir()  # a frame folder is not searched further
    shutil.copy(setup["moving"], root / "b" / "frames" / "sub" / "hidden_in_frames.mp4")
    shutil.copy(setup["bad"], root / "broken.mp4")
    (root / "notes.txt").write_text("not a video")
    (root / ".hidden.mp4").write_bytes(b"skipped")
    expected = [
        root / "a" / "deeper" / "static.MP4",
        root / "a" / "moving.mp4",
        root / "b" / "frames",
        root / "b" / "short.mp4",
        root / "broken.mp4",
    ]
    assert haltingvt.predict.find_inputs([root], setup["cfg"]) == [str(p) for p in expected]
    assert haltingvt.predict.find_inputs([root / "b" / "frames", root / "a" / "moving.mp4"], setup["cfg"]) == [
        str(root / "b" / "frames"),
        str(root / "a" / "moving.mp4"),
    ]

    out, table = tmp_path / "results.json", tmp_path / "results.csv"
    rc = main(
        ["predict", str(setup["ckpt"]), str(root), "--workers", "2", "--batch-size", "2"]
        + ["--out", str(out), "--csv", str(table), "--device", "cpu"]
    )
    captured = capsys.readouterr()
    assert rc == 1  # the broken file
    assert "5 inputs" in captured.err and "clips/s" in captured.err
    errors = [line for line in captured.err.splitlines() if "error:" in line]
    assert len(errors) == 1 and str(root / "broken.mp4") in errors[0]
    doc = json.loads(out.read_text())
    assert doc["num_failed"] == 1 and [r["path"] for r in doc["results"]] == [str(p) for p in expected]
    assert doc["results"][-1]["error"] and doc["results"][-1]["top"] is None

    single = haltingvt.Predictor(setup["ckpt"], device="cpu", num_workers=0, batch_size=1)
    for res, path in zip(doc["results"][:-1], expected[:-1]):
        alone = single.predict(path)
        assert [t["class_id"] for t in res["top"]] == [t["class_id"] for t in alone["top"]]
        np.testing.assert_allclose([t["prob"] for t in res["top"]], [t["prob"] for t in alone["top"]], atol=1e-5)
        assert res["gflops"] == pytest.approx(alone["gflops"], abs=1e-5)

    with table.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["path"] for r in rows] == [str(p) for p in expected]
    for row, res in zip(rows[:-1], doc["results"][:-1]):
        assert row["label"] == res["top"][0]["label"] and row["error"] == ""
        assert float(row["prob"]) == pytest.approx(res["top"][0]["prob"], abs=1e-6)
        assert float(row["gflops"]) == pytest.approx(res["gflops"], rel=1e-5)
    assert rows[-1]["label"] == "" and "broken.mp4" in rows[-1]["error"]

    rc = main(["predict", str(setup["ckpt"]), str(root / "empty"), "--json", "--workers", "0"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 1 and "no video file or frame folder" in doc["results"][0]["error"]
