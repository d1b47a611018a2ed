"""Resuming after SIGKILL gives the same run; a NaN loss stops training with a usable checkpoint."""

import csv
import json
import signal
import subprocess
import sys
import time

import pytest
import torch

import haltingvt
import haltingvt.engine.train as train_mod
from haltingvt.engine.train import NonFiniteLossError, train
from haltingvt.models.weights import read_checkpoint

from engine_helpers import HELPERS, datasets, one_thread, subprocess_env, tiny_config


@pytest.fixture(autouse=True)
def _setup():
    with one_thread():
        yield


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(tmp_path):
    cfg = tiny_config(tmp_path / "killed", epochs=2, ckpt_interval=2)
    cfg["train"]["val_interval"] = 1
    cfg_file = tmp_path / "cfg.json"
    # Slow samples (0.1 s each) so that the run is surely still in epoch 1 when it is killed.
    cfg_file.write_text(json.dumps({**cfg, "_test": {"train_n": 24, "val_n": 6, "delay": 0.1}}))
    proc = subprocess.Popen(
        [sys.executable, str(HELPERS), "train", str(cfg_file)],
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    latest = tmp_path / "killed" / "latest.pth"
    deadline = time.time() + 120
    while not latest.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    output = proc.communicate()[0].decode()
    assert proc.returncode == -signal.SIGKILL, output
    killed_at = read_checkpoint(latest)
    assert killed_at["epoch"] == 0 and 0 < killed_at["iteration"] < 6, "expected a mid-epoch checkpoint"

    resumed = train(cfg, resume=True, datasets=datasets(24, 6), progress=False)
    reference = train(
        tiny_config(tmp_path / "straight", epochs=2, ckpt_interval=2), datasets=datasets(24, 6), progress=False
    )
    assert resumed["optimizer_steps"] == reference["optimizer_steps"] == 12

    # Same data order, optimizer and RNG states: the weights end up the same.
    a = read_checkpoint(tmp_path / "killed" / "epoch_2.pth")["model"]
    b = read_checkpoint(tmp_path / "straight" / "epoch_2.pth")["model"]
    for key in b:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-6, msg=key)
    # Log rows written after the checkpoint by the killed run were dropped, not duplicated, and the rows equal
    # the uninterrupted run's (wall-clock columns aside).
    with open(tmp_path / "killed" / "train_log.csv") as f:
        steps = [int(r["step"]) for r in csv.DictReader(f)]
    assert steps == sorted(set(steps)) and steps[-1] == 12
    for name in ("train_log.csv", "val_log.csv"):
        rows = [_untimed(tmp_path / run / name) for run in ("killed", "straight")]
        assert rows[0] == rows[1], name


def _untimed(path):
    with open(path, newline="") as f:
        return [{k: v for k, v in r.items() if k not in ("clips_per_s", "clips_per_second")} for r in csv.DictReader(f)]


def test_nan_loss_stops_with_clear_message_and_usable_checkpoint(tmp_path, monkeypatch):
    class NaNAfter8(haltingvt.HaltingVTLoss):
        calls = 0

        def forward(self, *args, **kwargs):
            terms = super().forward(*args, **kwargs)
            if NaNAfter8.checking:  # the trainer's check of the weights before a save
                return terms
            NaNAfter8.calls += 1
            if NaNAfter8.calls > 8:
                terms.total = terms.total * float("nan")
            return terms

    real_check = train_mod.Trainer._weights_problem

    def check(self):
        NaNAfter8.checking = True
        try:
            return real_check(self)
        finally:
            NaNAfter8.checking = False

    NaNAfter8.checking = False
    monkeypatch.setattr(train_mod.Trainer, "_weights_problem", check)
    monkeypatch.setattr(train_mod, "HaltingVTLoss", NaNAfter8)
    cfg = tiny_config(tmp_path / "run", epochs=2, ckpt_interval=4, val_interval=0)
    with pytest.raises(NonFiniteLossError) as err:
        train(cfg, datasets=datasets(24), progress=False)
    message = str(err.value)
    assert "nan" in message and "epoch 2, iteration 3" in message and str(tmp_path / "run" / "latest.pth") in message

    ckpt = read_checkpoint(tmp_path / "run" / "latest.pth")
    assert ckpt["step"] == 8 and all(torch.isfinite(v).all() for v in ckpt["model"].values())
    model = haltingvt.create_model(cfg["model"])
    haltingvt.load_checkpoint(model, tmp_path / "run" / "latest.pth")

    monkeypatch.undo()
    summary = train(cfg, resume=True, datasets=datasets(24), progress=False)
    assert summary["optimizer_steps"] == 12


def test_exploded_weights_are_never_saved_and_a_lower_lr_resumes(tmp_path, monkeypatch):
    """A step that leaves finite but exploded weights (x 1e28, NaN at the next forward) right before a save:
    the save is refused, the run stops, latest.pth stays the last good one and a resume with a lower
    train.lr (which must take effect on the restored optimizer) finishes."""
    real_build = train_mod.build_optimizer

    def exploding(*args, **kwargs):
        optimizer = real_build(*args, **kwargs)

        def after_step(opt, *_):
            opt.steps_done = getattr(opt, "steps_done", 0) + 1
            if opt.steps_done == 4:
                with torch.no_grad():
                    for group in opt.param_groups:
                        for p in group["params"]:
                            p.mul_(1e28)

        optimizer.register_step_post_hook(after_step)
        return optimizer

    monkeypatch.setattr(train_mod, "build_optimizer", exploding)
    cfg = tiny_config(tmp_path / "run", epochs=2, ckpt_interval=2, val_interval=0, warmup_epochs=0)
    with pytest.raises(NonFiniteLossError) as err:
        train(cfg, datasets=datasets(24), progress=False)
    latest = tmp_path / "run" / "latest.pth"
    assert "weights give a loss of nan" in str(err.value) and str(latest) in str(err.value)

    ckpt = read_checkpoint(latest)
    assert ckpt["step"] == 2
    model = haltingvt.create_model(cfg["model"]).eval()
    haltingvt.load_checkpoint(model, latest)
    clips = datasets(24)["val"][0]["clips"]
    with torch.no_grad():
        assert torch.isfinite(model(haltingvt.data.normalize(clips)).logits).all()

    monkeypatch.undo()
    cfg["train"]["lr"] = 1e-4
    summary = train(cfg, resume=True, datasets=datasets(24), progress=False)
    assert summary["optimizer_steps"] == 12
    with open(tmp_path / "run" / "train_log.csv") as f:
        lrs = {int(r["step"]): float(r["lr"]) for r in csv.DictReader(f)}
    # cosine from the new base lr 1e-4 (the old lr was 1e-3): after step 4 of 12, 1e-4 * 0.5 * (1 + cos(pi * 4/12))
    assert lrs[4] == pytest.approx(1e-4 * 0.75, rel=1e-4)
    assert "train.lr 0.001 -> 0.0001" in (tmp_path / "run" / "train.log").read_text()


def test_resume_refuses_settings_that_cannot_change(tmp_path):
    cfg = tiny_config(tmp_path / "run", epochs=1, val_interval=0)
    train(cfg, datasets=datasets(24), progress=False)
    cfg["train"]["epochs"] = 2
    cfg["train"]["batch_size"] = 3
    cfg["model"]["depth"] = 5
    with pytest.raises(haltingvt.ConfigError) as err:
        train(cfg, resume=True, datasets=datasets(24), progress=False)
    assert "model.depth 4 -> 5" in str(err.value) and "train.batch_size 4 -> 3" in str(err.value)


@pytest.mark.slow
def test_fault_injection_quick(tmp_path):
    """python -m tests.harness.fault_injection --quick: killed inside a log interval (before the first
    train_log.csv row, latest.pth from the step before), between epoch_1.pth and best.pth, a full disk while
    latest.pth is written, killed before summary.json; the resumed run ends bit-identical to an
    uninterrupted one, with every promised file and no orphan temp file."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.harness.fault_injection",
            "--quick",
            "--keep",
            str(tmp_path),
            "--json",
            str(tmp_path / "report.json"),
        ],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["trials"] == report["identical"] == 1 and report["kills"] == 3
