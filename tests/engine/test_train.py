"""Training loop: loss goes down, files written, bad samples counted, optimizer groups, lr schedule."""

import csv
import json
import math

import pytest

import haltingvt
from haltingvt.engine.train import build_optimizer, effective_lr, ponder_weight, train, warmup_cosine

from engine_helpers import TINY_MODEL, datasets, one_thread, tiny_config


@pytest.fixture(autouse=True)
def _setup():
    with one_thread():
        yield


@pytest.mark.slow
def test_training_reduces_loss_and_writes_run_files(tmp_path, capsys):
    cfg = tiny_config(tmp_path / "run", epochs=3, log_interval=6, ckpt_interval=4)
    summary = train(cfg, datasets=datasets(train_n=24, val_n=6, bad=(5,)), progress=False)

    assert summary["optimizer_steps"] == 3 * 6  # 24 samples, batch 4; one batch has 3 good samples
    with open(tmp_path / "run" / "train_log.csv") as f:
        rows = list(csv.DictReader(f))
    losses = [float(r["loss"]) for r in rows]
    assert len(losses) == 3 and losses[-1] < losses[0] - 0.1, losses
    assert {"lr", "acc", "gflops_per_clip", "clips_per_s", "tokens_L0", "tokens_L1"} <= set(rows[0])
    assert float(rows[0]["gflops_per_clip"]) > 0

    # The bad sample is dropped by collate_train, reported with its path and counted once per epoch.
    assert summary["skipped_samples"] == 3
    log = (tmp_path / "run" / "train.log").read_text()
    assert "train_005.mp4" in log and "1 bad sample(s) skipped" in log

    for name in ("latest.pth", "epoch_1.pth", "epoch_3.pth", "best.pth", "summary.json", "val_log.csv", "config.yaml"):
        assert (tmp_path / "run" / name).exists(), name
    assert list((tmp_path / "run" / "tb").iterdir())
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["best"]["metric"] == "top1"
    assert summary["last_val"]["num_evaluated"] == 6

    model = haltingvt.create_model(TINY_MODEL)
    meta = haltingvt.load_checkpoint(model, tmp_path / "run" / "best.pth")
    assert meta["format"] == "haltingvt" and meta["epoch"] == summary["best"]["epoch"]


def test_accumulation_and_amp_bf16_cpu(tmp_path):
    # batch 2 x accum 2 = the same samples per step as batch 4; bf16 autocast on the CPU.
    cfg = tiny_config(tmp_path / "run", epochs=1, batch_size=2, accum_steps=2, amp="bf16", val_interval=0)
    summary = train(cfg, datasets=datasets(train_n=12), progress=False)
    assert summary["optimizer_steps"] == 3 and summary["total_batch_size"] == 4
    assert summary["last_val"] is None and not (tmp_path / "run" / "best.pth").exists()


def test_multi_label_training_selects_best_by_map(tmp_path):
    cfg = tiny_config(tmp_path / "run", epochs=1)
    cfg["loss"]["multi_label"] = True
    summary = train(cfg, datasets=datasets(train_n=8, val_n=4, multi_label=True), progress=False)
    assert summary["best"]["metric"] == "mAP" and 0 < summary["last_val"]["mAP"] <= 1


def test_optimizer_groups_exclude_embeddings_biases_norms():
    model = haltingvt.create_model(TINY_MODEL)
    names = {id(p): n for n, p in model.named_parameters()}
    opt = build_optimizer(model, 1e-3, 0.05, no_decay_bias_norm=True)
    decayed = {names[id(p)] for p in opt.param_groups[0]["params"]}
    plain = {names[id(p)] for p in opt.param_groups[1]["params"]}
    assert opt.param_groups[0]["weight_decay"] == 0.05 and opt.param_groups[1]["weight_decay"] == 0.0
    assert {"cls_token", "pos_embed", "time_embed", "norm.weight", "blocks.0.attn.qkv.bias"} <= plain
    assert "blocks.0.attn.qkv.weight" in decayed and "head.fc_cls.weight" in decayed
    release_like = build_optimizer(model, 1e-3, 0.05, no_decay_bias_norm=False)
    assert {names[id(p)] for p in release_like.param_groups[1]["params"]} == {"cls_token", "pos_embed", "time_embed"}


def test_lr_schedule_and_scaling():
    f = warmup_cosine(total_steps=100, warmup_steps=10, start_factor=0.1)
    assert f(0) == pytest.approx(0.1) and f(5) == pytest.approx(0.55) and f(10) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.5) and f(100) == pytest.approx(0.0)
    assert all(f(s) >= f(s + 1) for s in range(10, 100))
    tc = {"lr": 1e-5, "batch_size": 16, "accum_steps": 1, "scale_lr": True, "base_batch_size": 128}
    assert effective_lr(tc, 8) == pytest.approx(1e-5)
    assert effective_lr(tc, 1) == pytest.approx(1.25e-6)
    assert effective_lr({**tc, "scale_lr": False}, 1) == 1e-5
    assert math.isclose(effective_lr({**tc, "accum_steps": 2}, 4), 1e-5)


def test_ponder_schedule():
    assert [ponder_weight(s, 0, 0) for s in (0, 7)] == [1.0, 1.0]  # the release: constant
    assert [ponder_weight(s, 10, 0) for s in (0, 9, 10, 50)] == [0.0, 0.0, 1.0, 1.0]
    assert [ponder_weight(s, 10, 4) for s in (9, 10, 12, 14, 99)] == [0.0, 0.0, 0.5, 1.0, 1.0]


def test_too_small_train_set_is_a_clear_error(tmp_path):
    cfg = tiny_config(tmp_path / "run", batch_size=8)
    with pytest.raises(haltingvt.ConfigError, match="fewer than one optimizer step"):
        train(cfg, datasets=datasets(train_n=5), progress=False)


def _logged(work_dir, column: str) -> list[float]:
    with open(work_dir / "train_log.csv") as f:
        return [float(r[column]) for r in csv.DictReader(f)]


@pytest.mark.slow
def test_compute_target_gates_the_ponder_term_by_the_batch_cost(tmp_path):
    def run(name: str, scale: float, target: float | None) -> list[float]:
        cfg = tiny_config(tmp_path / name, epochs=1, log_interval=1, val_interval=0)
        cfg["loss"].update(ponder_token_scale=scale, target_gflops_ratio=target)
        train(cfg, datasets=datasets(train_n=12), progress=False)
        return _logged(tmp_path / name, "loss_action")

    no_ponder, constant = run("no_ponder", 0.0, None), run("constant", 5e-2, None)
    assert constant != no_ponder
    # every clip costs at most the dense model: a target of 1 never lets the ponder term act ...
    assert run("target_1", 5e-2, 1.0) == no_ponder
    # ... and a target below any clip's cost always does: the release's constant weight
    assert run("target_low", 5e-2, 0.01) == constant


def test_scratch_motion_recipe_trains_tubelets_and_counts_their_flops(tmp_path):
    """configs/scratch_motion.yaml's model, loss and optimizer keys (4-px patches over 2 frames, the
    compute-target gate, the lower learning rate, static clips on the motion head only) through the trainer."""
    recipe = haltingvt.load_config("scratch_motion")
    assert recipe["model"]["tubelet_size"] == 2 and recipe["model"]["patch_size"] == 4
    assert recipe["loss"]["target_gflops_ratio"] == 0.45
    assert recipe["train"]["lr"] == 5e-4 and recipe["train"]["warmup_epochs"] == 1
    assert recipe["train"]["epochs"] == 8 and recipe["data"]["synthetic_num_train"] == 6000  # as measured
    assert recipe["loss"]["static_action_loss"] is False  # the release's default is True
    assert haltingvt.load_config("minik_g03_b10")["loss"]["static_action_loss"] is True
    cfg = tiny_config(tmp_path / "run", epochs=2, log_interval=3)
    cfg["model"].update(patch_size=4, tubelet_size=2)
    cfg["loss"].update(
        target_gflops_ratio=recipe["loss"]["target_gflops_ratio"],
        static_action_loss=recipe["loss"]["static_action_loss"],
    )
    summary = train(cfg, datasets=datasets(train_n=12, val_n=6), progress=False)
    assert summary["optimizer_steps"] == 6
    with open(tmp_path / "run" / "train_log.csv") as f:
        rows = list(csv.DictReader(f))
    dense = haltingvt.flops.dense_gflops(cfg["model"])
    assert 0 < float(rows[-1]["gflops_per_clip"]) <= dense
    assert float(rows[0]["tokens_L0"]) == 1 + 64 * 2 // 2  # 8x8 patches, 4 frames = 2 tubelets, half kept
    model = haltingvt.create_model(cfg["model"])
    haltingvt.load_checkpoint(model, tmp_path / "run" / "latest.pth")
    assert model.patch_embed.proj.weight.shape[2:] == (2, 4, 4)
