"""Evaluation: metrics, multi-view averaging, unreadable samples, release checkpoints, 2-process torchrun."""

import json
import subprocess
import sys

import pytest
import torch

import haltingvt
from haltingvt.data import normalize
from haltingvt.engine.evaluate import evaluate, format_metrics
from haltingvt.engine.metrics import average_precision, classification_metrics, mean_average_precision
from haltingvt.models.weights import model_payload

from engine_helpers import HELPERS, TINY_MODEL, TinyEvalSet, one_thread, subprocess_env, tiny_config
from model_helpers import OFFICIAL


@pytest.fixture(autouse=True)
def _setup():
    with one_thread():
        yield


def test_topk_and_mean_class_accuracy():
    scores = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.5, 0.1, 0.4], [0.1, 0.2, 0.7]])
    labels = torch.tensor([0, 1, 2, 2])
    m = classification_metrics(scores, labels)
    assert m["top1"] == pytest.approx(0.75) and m["top5"] == 1.0
    assert m["mean_class_acc"] == pytest.approx((1 + 1 + 0.5) / 3)


def test_average_precision_by_hand():
    # ranks: + - + -  -> precision at the positives 1/1 and 2/3 -> AP = (1 + 2/3) / 2
    assert average_precision(torch.tensor([0.9, 0.8, 0.7, 0.1]), torch.tensor([1, 0, 1, 0])) == pytest.approx(5 / 6)
    # a tie between a positive and a negative is one threshold: precision 1/2 at recall 1
    assert average_precision(torch.tensor([0.5, 0.5]), torch.tensor([1, 0])) == pytest.approx(0.5)
    scores = torch.tensor([[0.9, 0.1, 0.3], [0.2, 0.8, 0.1], [0.6, 0.3, 0.2]])
    targets = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 1, 0]])  # class 2 has no positive: left out
    assert mean_average_precision(scores, targets) == pytest.approx((1.0 + (1 + 1) / 2) / 2)


def _tiny_model(seed: int = 0):
    torch.manual_seed(seed)
    return haltingvt.create_model(TINY_MODEL).eval()


def test_evaluate_multiview_unreadable_and_dump(tmp_path):
    model = _tiny_model()
    cfg = tiny_config(tmp_path)
    data = TinyEvalSet(7, views=3, bad=(2,))
    m = evaluate(model, cfg, "val", "cpu", dataset=data, dump=tmp_path / "pred.json", progress=False)
    assert m["num_evaluated"] == 6 and m["views"] == 3
    assert m["unreadable"] == ["/data/tiny/val_002.mp4"] and "file not found" in m["unreadable_errors"][0]

    # Reference: softmax averaged over the 3 views of each video (the release's "prob" averaging).
    good = [data[i] for i in range(7) if i != 2]
    with torch.no_grad():
        probs = torch.stack([model(normalize(s["clips"])).logits.softmax(1).mean(0) for s in good])
    labels = torch.stack([s["label"] for s in good])
    assert m["top1"] == pytest.approx((probs.argmax(1) == labels).float().mean().item())
    assert len(m["tokens_per_layer"]) == 2 and m["gflops_per_clip"] > 0 and m["clips_per_second"] > 0

    dump = json.loads((tmp_path / "pred.json").read_text())
    assert [p["index"] for p in dump["predictions"]] == [0, 1, 3, 4, 5, 6]
    assert dump["unreadable"][0]["path"] == "/data/tiny/val_002.mp4"
    assert "1 unreadable video(s)" in format_metrics(m)

    early = evaluate(
        model, {**cfg, "test": {**cfg["test"], "early_exit": True}}, "val", "cpu", dataset=data, progress=False
    )
    assert early["early_exit"] and early["num_evaluated"] == 6


def test_evaluate_multi_label_map(tmp_path):
    cfg = tiny_config(tmp_path)
    cfg["loss"]["multi_label"] = True
    m = evaluate(_tiny_model(), cfg, "val", "cpu", dataset=TinyEvalSet(8, views=1, multi_label=True), progress=False)
    assert 0 < m["mAP"] <= 1 and "top5" not in m and "mAP" in format_metrics(m)


def test_evaluate_release_checkpoint():
    arch = json.loads((OFFICIAL / "config.json").read_text())
    model = haltingvt.create_model(arch, num_classes=7)
    haltingvt.load_checkpoint(model, OFFICIAL / "checkpoint.pth")
    cfg = {
        "model": model.arch,
        "loss": {"multi_label": False},
        "data": {"num_workers": 0},
        "test": {"batch_size": 2, "execution": "compact", "early_exit": False},
    }
    m = evaluate(model, cfg, "val", "cpu", dataset=TinyEvalSet(4, views=1, frames=4, size=64), progress=False)
    assert m["num_evaluated"] == 4 and len(m["tokens_per_layer"]) == 10


@pytest.mark.slow
def test_torchrun_two_processes_match_one_process(tmp_path):
    cfg = tiny_config(tmp_path)
    cfg["test"]["batch_size"] = 2  # shards of 6 and 5 videos (one unreadable): uneven, no padding
    model = _tiny_model(seed=3)
    ckpt = tmp_path / "model.pth"
    haltingvt.save_checkpoint(ckpt, model_payload(model, cfg))
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))

    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(HELPERS),
        "eval",
        str(tmp_path / "cfg.json"),
        str(ckpt),
        str(tmp_path / "two.json"),
    ]
    done = subprocess.run(cmd, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    two = json.loads((tmp_path / "two.json").read_text())

    one = evaluate(model, cfg, "val", "cpu", dataset=TinyEvalSet(11, views=2, bad=(4,)), progress=False)
    assert two["world_size"] == 2 and one["world_size"] == 1
    assert two["num_evaluated"] == one["num_evaluated"] == 10
    assert two["unreadable"] == one["unreadable"] == ["/data/tiny/val_004.mp4"]
    for key in ("top1", "top5", "mean_class_acc", "gflops_per_clip"):
        assert two[key] == pytest.approx(one[key], abs=1e-6), key
    assert two["tokens_per_layer"] == pytest.approx(one["tokens_per_layer"], abs=1e-3)
    pred = json.loads((tmp_path / "two.json.pred.json").read_text())["predictions"]
    assert [p["index"] for p in pred] == [i for i in range(11) if i != 4]  # each video exactly once
