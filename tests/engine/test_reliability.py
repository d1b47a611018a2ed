"""Runs that cannot work fail (issue 22, parts 5-7): an epoch with no readable sample, a high skip rate, two
trainings in one work dir, a model over the size limit, exit codes, and a resume that logs the very same rows."""

import csv
import errno
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import haltingvt.engine.lock as lock_mod
import haltingvt.engine.train as train_mod
from haltingvt.config import ConfigError
from haltingvt.data.errors import DataError
from haltingvt.engine.lock import LOCK_NAME, WorkDirBusyError, WorkDirLock
from haltingvt.engine.train import train
from haltingvt.models.weights import CheckpointWriteError, read_checkpoint

from engine_helpers import datasets, one_thread, subprocess_env, tiny_config

ROOT = Path(__file__).resolve().parents[2]
TIMING = {"clips_per_s", "clips_per_second", "wall_seconds"}


@pytest.fixture(autouse=True)
def _setup():
    with one_thread():
        yield


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: v for k, v in r.items() if k not in TIMING} for r in csv.DictReader(f)]


# ----------------------------------------------------------------------------- unreadable data
def test_epoch_with_no_readable_sample_fails_and_saves_nothing(tmp_path):
    cfg = tiny_config(tmp_path / "run", epochs=2, ckpt_interval=1)
    with pytest.raises(DataError) as err:
        train(cfg, datasets=datasets(12, bad=tuple(range(12))), progress=False)
    message = str(err.value)
    assert "\n" not in message and "epoch 1: none of the 12 training samples could be read" in message
    assert "(the first: /data/tiny/train_0" in message and "no checkpoint was written" in message
    assert not list((tmp_path / "run").glob("*.pth")), "a checkpoint of the untrained model was written"
    assert not (tmp_path / "run" / "summary.json").exists() and not (tmp_path / "run" / LOCK_NAME).exists()


def test_unreadable_second_epoch_keeps_the_first_epochs_checkpoints(tmp_path):
    class GoneAfterEpoch1(type(datasets(12)["train"])):
        def __getitem__(self, index):
            self.calls = getattr(self, "calls", 0) + 1
            if self.calls > 12:  # the files went away after epoch 1
                return {"error": f"/data/tiny/train_{index:03d}.mp4: gone (test)", "index": index, "path": ""}
            return super().__getitem__(index)

    cfg = tiny_config(tmp_path / "run", epochs=2, ckpt_interval=1, val_interval=0)
    with pytest.raises(DataError, match="epoch 2: none of the 12 .* the last checkpoint is .*latest.pth"):
        train(cfg, datasets={"train": GoneAfterEpoch1(12)}, progress=False)
    assert read_checkpoint(tmp_path / "run" / "latest.pth")["epoch"] == 1  # epoch 1's, not an epoch-2 one
    assert not (tmp_path / "run" / "epoch_2.pth").exists()


@pytest.mark.parametrize("ratio, warned", [(0.5, True), (0.8, False)])
def test_skip_ratio_above_threshold_warns(tmp_path, capsys, ratio, warned):
    cfg = tiny_config(tmp_path / "run", epochs=1, val_interval=0, max_skip_ratio=ratio)
    summary = train(cfg, datasets=datasets(12, bad=(0, 1, 2, 3, 4, 5, 6)), progress=False)  # 7 of 12 unreadable
    err = capsys.readouterr().err
    line = "warning: epoch 1: 7 of 12 training samples (58%) could not be read, more than train.max_skip_ratio"
    assert (line in err) is warned and (line in (tmp_path / "run" / "train.log").read_text()) is warned
    assert summary["skipped_samples"] == 7


# ----------------------------------------------------------------------------- one training per work dir
def test_second_training_into_a_busy_work_dir_is_refused(tmp_path):
    work = tmp_path / "run"
    with WorkDirLock(work) as held:
        info = json.loads((work / LOCK_NAME).read_text())
        assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
        with pytest.raises(WorkDirBusyError) as err:
            train(tiny_config(work, epochs=1), datasets=datasets(8), progress=False)
        assert isinstance(err.value, ConfigError) and err.value.key == "train.work_dir"
        assert f"PID {os.getpid()} on {socket.gethostname()}" in str(err.value) and "\n" not in str(err.value)
        assert held.fd is not None and not list(work.glob("*.csv")) and not (work / "config.yaml").exists()
    assert not (work / LOCK_NAME).exists()
    train(tiny_config(work, epochs=1, val_interval=0), datasets=datasets(8), progress=False)  # free again
    assert not (work / LOCK_NAME).exists()


@pytest.mark.slow
def test_lock_of_a_killed_run_is_taken_over(tmp_path):
    """A process holding the lock is killed with SIGKILL: its lock file stays, naming it; the next run takes over."""
    work = tmp_path / "run"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from haltingvt.engine.lock import WorkDirLock; "
            "WorkDirLock(sys.argv[1]).acquire(); print('locked', flush=True); time.sleep(120)",
            str(work),
        ],
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert holder.stdout.readline().strip() == b"locked"
        with pytest.raises(WorkDirBusyError, match=f"PID {holder.pid} "):
            WorkDirLock(work).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert json.loads((work / LOCK_NAME).read_text())["pid"] == holder.pid  # left behind
    train(tiny_config(work, epochs=1, val_interval=0), datasets=datasets(8), progress=False)
    assert (
        f"took over the lock of a run that ended without releasing it (PID {holder.pid}"
        in (work / "train.log").read_text()
    )
    assert not (work / LOCK_NAME).exists()


def test_lock_without_flock_uses_pid_and_host(tmp_path, monkeypatch):
    monkeypatch.setattr(lock_mod, "fcntl", None)
    work = tmp_path / "run"
    first = WorkDirLock(work).acquire()
    with pytest.raises(WorkDirBusyError, match=f"PID {os.getpid()} "):  # alive (this process)
        WorkDirLock(work).acquire()
    first.release()
    # a lock file of a process gone from this host is taken over; one of another host is respected
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (work / LOCK_NAME).write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    taken = WorkDirLock(work).acquire()
    assert taken.previous["pid"] == int(dead.stdout)
    assert json.loads((work / LOCK_NAME).read_text())["pid"] == os.getpid()
    taken.release()
    (work / LOCK_NAME).write_text(json.dumps({"pid": 1, "host": "elsewhere.example"}))
    with pytest.raises(WorkDirBusyError, match="elsewhere.example"):
        WorkDirLock(work).acquire()


def test_lock_recheck_when_the_file_was_replaced(tmp_path, monkeypatch):
    """A run that locked a lock file which its holder removed meanwhile locks the new file instead."""
    work = tmp_path / "run"
    work.mkdir()
    real_flock = lock_mod.fcntl.flock
    calls = []

    def flock(fd, op):
        calls.append(fd)
        if len(calls) == 1:  # the holder finished between our open() and flock(): its file is gone
            os.unlink(work / LOCK_NAME)
        return real_flock(fd, op)

    monkeypatch.setattr(lock_mod.fcntl, "flock", flock)
    held = WorkDirLock(work).acquire()
    assert len(calls) == 2 and os.fstat(held.fd).st_ino == os.stat(work / LOCK_NAME).st_ino
    held.release()


# ----------------------------------------------------------------------------- size limit
def test_model_over_the_checkpoint_size_limit_is_refused_before_allocation(tmp_path, monkeypatch):
    built = []
    monkeypatch.setattr(train_mod, "create_model", lambda *a, **k: built.append(1))
    cfg = tiny_config(tmp_path / "run", epochs=1)
    cfg["model"].update(embed_dim=400_000, num_heads=4)
    with pytest.raises(ConfigError, match=r"model.embed_dim=400000.* billion parameters, over the limit of 2 billion"):
        train(cfg, datasets=datasets(8), progress=False)
    assert not built and not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- exit codes (CLI)
def _cli(argv):
    from haltingvt.cli import main

    return main(argv)


TINY_SET = [
    "data.synthetic_num_train=8",
    "data.synthetic_num_val=4",
    "data.synthetic_num_test=4",
    "train.batch_size=4",
    "train.epochs=1",
    "test.batch_size=4",
    "train.val_interval=0",
]


def test_full_disk_exits_1_naming_the_file(tmp_path, monkeypatch, capsys):
    import haltingvt.engine.checkpoint as ckpt_mod

    def full(path, payload):
        raise CheckpointWriteError(path, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))

    monkeypatch.setattr(ckpt_mod, "save_checkpoint", full)
    code = _cli(["train", "demo_synthetic", "--no-progress", "--set", *TINY_SET, f"train.work_dir={tmp_path / 'w'}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1, err
    assert err[-1] == (
        f"haltingvt train: error: {tmp_path / 'w' / 'epoch_1.pth'}: cannot write: No space left on "
        "device (the previous file, if any, is kept)"
    )
    assert not (tmp_path / "w" / LOCK_NAME).exists()


def test_exit_codes_of_bad_input_and_busy_work_dir(tmp_path, capsys):
    work = tmp_path / "w"
    assert _cli(["train", "demo_synthetic", "--set", "train={epochs: two}"]) == 2
    with WorkDirLock(work):
        assert _cli(["train", "demo_synthetic", "--no-progress", "--set", *TINY_SET, f"train.work_dir={work}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "train.epochs" in err[0] and "another training is running" in err[1]


# ----------------------------------------------------------------------------- resume: identical logs
class _Stop(BaseException):
    """Stands for kill -9 right after a checkpoint was written."""


def _interrupt_after_save(monkeypatch, n):
    real_save = train_mod.Trainer.save
    count = [0]

    def save(self, names):
        real_save(self, names)
        count[0] += 1
        if count[0] == n:
            raise _Stop

    monkeypatch.setattr(train_mod.Trainer, "save", save)


@pytest.mark.slow
@pytest.mark.parametrize("stop_after", [1, 2, 5])
def test_resumed_run_logs_the_same_rows(tmp_path, monkeypatch, stop_after):
    """log_interval 4 with a checkpoint every step and bad samples: stopped mid-interval (after save 1, 2 or
    5: steps 1, 2 and 5 of 6 per epoch), the resumed run's train_log.csv, val_log.csv, skipped counts and
    summary equal the uninterrupted run's."""
    bad = (3, 10, 17)
    straight = train(
        tiny_config(tmp_path / "straight", epochs=2, ckpt_interval=1, log_interval=4),
        datasets=datasets(24, 6, bad=bad),
        progress=False,
    )
    cfg = tiny_config(tmp_path / "cut", epochs=2, ckpt_interval=1, log_interval=4)
    _interrupt_after_save(monkeypatch, stop_after)
    with pytest.raises(_Stop):
        train(cfg, datasets=datasets(24, 6, bad=bad), progress=False)
    assert 0 < read_checkpoint(tmp_path / "cut" / "latest.pth")["iteration"]  # stopped mid-epoch
    monkeypatch.undo()
    resumed = train(cfg, resume=True, datasets=datasets(24, 6, bad=bad), progress=False)

    assert [r["step"] for r in _rows(tmp_path / "cut" / "train_log.csv")] == ["4", "6", "8", "12"]
    assert _rows(tmp_path / "cut" / "train_log.csv") == _rows(tmp_path / "straight" / "train_log.csv")
    assert _rows(tmp_path / "cut" / "val_log.csv") == _rows(tmp_path / "straight" / "val_log.csv")
    for key in ("skipped_samples", "last_log", "best", "optimizer_steps"):
        a = (
            {k: v for k, v in (resumed[key] or {}).items() if k not in TIMING}
            if isinstance(resumed[key], dict)
            else resumed[key]
        )
        b = (
            {k: v for k, v in (straight[key] or {}).items() if k not in TIMING}
            if isinstance(straight[key], dict)
            else straight[key]
        )
        assert a == b, key
    # epoch 1's summary line, written after the resume, counts the bad samples read before the interruption too
    after_resume = (tmp_path / "cut" / "train.log").read_text().split("resumed from")[-1]
    assert "epoch 1 done: step 6, 3 bad sample(s) skipped" in after_resume
    for name in ("epoch_2.pth", "latest.pth"):
        a, b = read_checkpoint(tmp_path / "cut" / name), read_checkpoint(tmp_path / "straight" / name)
        for key in b["model"]:
            assert torch.equal(a["model"][key], b["model"][key]), (name, key)


def test_checkpoint_without_progress_still_resumes(tmp_path, monkeypatch):
    """A checkpoint written before the meters were stored (no 'progress'): resumes, logs over the steps since."""
    import haltingvt.engine.checkpoint as ckpt_mod

    cfg = tiny_config(tmp_path / "run", epochs=1, ckpt_interval=1, log_interval=4, val_interval=0)
    real = ckpt_mod.Checkpointer.save
    monkeypatch.setattr(
        ckpt_mod.Checkpointer, "save", lambda self, names, state, progress=None: real(self, names, state)
    )
    _interrupt_after_save(monkeypatch, 2)
    with pytest.raises(_Stop):
        train(cfg, datasets=datasets(24), progress=False)
    assert "progress" not in read_checkpoint(tmp_path / "run" / "latest.pth")
    monkeypatch.undo()
    summary = train(cfg, resume=True, datasets=datasets(24), progress=False)
    assert summary["optimizer_steps"] == 6


def test_skipped_sample_messages_show_control_characters_escaped(tmp_path, capsys):
    class EscapingNames(type(datasets(12)["train"])):
        def __getitem__(self, index):
            if index == 3:
                return {"error": "/data/\x1b[2J\x1b]52;c;cHduZWQ=\x07evil\r.mp4: cannot open", "index": 3, "path": ""}
            return super().__getitem__(index)

    cfg = tiny_config(tmp_path / "run", epochs=1, val_interval=0)
    train(cfg, datasets={"train": EscapingNames(12)}, progress=False)
    shown = capsys.readouterr().out + (tmp_path / "run" / "train.log").read_text()
    assert "\x1b" not in shown and "\x07" not in shown and "\r" not in shown
    assert "/data/\\x1b[2J\\x1b]52;c;cHduZWQ=\\x07evil\\r.mp4: cannot open" in shown


def test_cli_error_lines_show_control_characters_escaped(tmp_path, capsys):
    assert _cli(["train", str(tmp_path / "no\x1b[31mpe.yaml")]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "no\\x1b[31mpe.yaml" in err and err.count("\n") == 1
