"""Crafted checkpoints (tests/security_helpers.py) through every reader: nothing runs code, nothing loads
silently, every refusal is one line naming the file. Also the writer: umask, stale temporaries, full disk."""
from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
import torch

import haltingvt
from haltingvt.cli import main
from haltingvt.config import ConfigError, load_config
from haltingvt.models.weights import (CheckpointError, CheckpointWriteError, atomic_write, load_checkpoint,
                                      model_payload, read_checkpoint, save_checkpoint)
from security_helpers import CLASSES, TINY, build_catalogue


@pytest.fixture(scope="module")
def crafted(tmp_path_factory):
    root = tmp_path_factory.mktemp("crafted")
    cfg = load_config("minik_g03_b10", TINY)
    torch.manual_seed(0)
    model = haltingvt.create_model(cfg)
    base = save_checkpoint(root / "base.pth", model_payload(model, cfg, classes=CLASSES))
    folder = model.save_pretrained(root / "pretrained", classes=CLASSES, config=cfg)
    (root / "tiny.yaml").write_text(yaml.safe_dump(cfg))
    marker = root / "MARKER"
    cases = build_catalogue(root / "cases", marker, base, folder / "model.safetensors")
    clip = root / "clip"
    clip.mkdir()
    from PIL import Image

    for i in range(1, 5):
        Image.new("RGB", (40, 36), (20 * i, 40, 90)).save(clip / f"img_{i:05d}.jpg")
    return SimpleNamespace(root=root, cfg=cfg, model=model, base=base, folder=folder, marker=marker, cases=cases,
                           yaml=root / "tiny.yaml", clip=clip)


def _one_line_refusal(err: BaseException, case) -> str | None:
    """None if ``err`` is a good refusal of ``case``, else what is wrong with it."""
    msg = str(err)
    if not isinstance(err, CheckpointError):
        return f"{type(err).__name__} instead of CheckpointError: {msg[:200]}"
    if "\n" in msg:
        return f"more than one line: {msg[:200]}"
    if str(case.path) not in msg:
        return f"does not name the file: {msg[:200]}"
    if not re.search(case.reason, msg, re.IGNORECASE):
        return f"reason does not match /{case.reason}/: {msg[:200]}"
    return None


def test_catalogue_size_and_controls(crafted):
    assert len(crafted.cases) >= 80
    assert len({c.name for c in crafted.cases}) == len(crafted.cases)
    # the files the cases are made from load: each refusal below is about what was changed
    for source in (crafted.base, crafted.folder / "model.safetensors", crafted.folder):
        meta = load_checkpoint(haltingvt.create_model(crafted.cfg), source)
        assert meta["classes"] == CLASSES


def test_payloads_are_live(crafted, tmp_path):
    """Unrestricted torch.load of each live case creates the marker: the catalogue's payloads are real."""
    live = [str(c.path) for c in crafted.cases if c.live]
    assert len(live) >= 15
    marker = tmp_path / "MARKER"
    script = f"""
import os, sys, time, torch, warnings
warnings.simplefilter("ignore")
marker, made = {str(crafted.marker)!r}, 0
for path in sys.argv[1:]:
    try:
        torch.load(path, weights_only=False)
    except BaseException:
        pass
    for _ in range(100):
        if os.path.exists(marker):
            break
        time.sleep(0.02)
    made += os.path.exists(marker)
    if os.path.exists(marker):
        os.remove(marker)
print(made)
"""
    out = subprocess.run([sys.executable, "-c", script, *live], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path)
    assert out.stdout.strip().splitlines()[-1] == str(len(live)), out.stderr[-2000:]
    assert not marker.exists()


def _entries(crafted):
    def predictor(path):
        return haltingvt.Predictor(path, device="cpu")

    def from_pretrained(path):
        return haltingvt.HaltingVT.from_pretrained(path)

    model = haltingvt.create_model(crafted.cfg)  # a refused load changes no weight: one model serves all
    return {
        "read_checkpoint": read_checkpoint,
        "load_checkpoint": lambda p: load_checkpoint(model, p),
        "init": lambda p: load_checkpoint(model, p, init=True),
        "Predictor": predictor,
        "from_pretrained": from_pretrained,
    }


def test_every_case_refused_through_the_api(crafted):
    problems = []
    for name, entry in _entries(crafted).items():
        for case in crafted.cases:
            try:
                entry(case.path)
            except Exception as err:  # noqa: BLE001 - judged below
                problem = _one_line_refusal(err, case)
                if problem:
                    problems.append(f"{name} {case.name}: {problem}")
            else:
                problems.append(f"{name} {case.name}: loaded silently")
    assert not crafted.marker.exists()
    assert not problems, "\n".join(problems)


CLI_SAMPLE = ("payload_os_system", "opcode_newobj", "torchscript", "legacy_format", "bitflip_weight", "truncated_half",
              "build_on_tensor", "arch_huge", "weight_is_string", "classes_is_path", "memo_bomb", "st_bitflip",
              "st_header_huge", "compressed_bomb")


#: The tiny config's test geometry, as synthetic data (rendered at img_size) requires it.
SYNTHETIC = ["data.test_scale=32", "data.crop_size=32", "data.train_scale=[32,32]", "data.randaugment=null"]


def _cli(argv, capsys):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.err


@pytest.mark.parametrize("command", ["predict", "eval", "flops", "resume", "init"])
def test_cli_refuses_with_one_line(crafted, command, capsys, tmp_path):
    cases = [c for c in crafted.cases if c.name in CLI_SAMPLE]
    assert len(cases) == len(CLI_SAMPLE)
    for case in cases:
        argv = {
            "predict": ["predict", case.path, crafted.clip, "--workers", "0"],
            "eval": ["eval", crafted.yaml, case.path, "--device", "cpu"],
            "flops": ["flops", crafted.yaml, "--checkpoint", case.path, "--random-input"],
            "resume": ["train", crafted.yaml, "--resume", case.path, "--set", "data.format=synthetic", *SYNTHETIC,
                       f"train.work_dir={tmp_path / case.name}", "data.synthetic_num_train=8", "train.batch_size=2"],
            "init": ["train", crafted.yaml, "--set", "data.format=synthetic", *SYNTHETIC, f"init.pretrained={case.path}",
                     f"train.work_dir={tmp_path / case.name}", "data.synthetic_num_train=8", "train.batch_size=2"],
        }[command]
        code, err = _cli(argv, capsys)
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2, (case.name, err[-1000:])
        assert "Traceback" not in err
        errors = [line for line in lines if ": error: " in line]
        assert len(errors) == 1 and str(case.path) in errors[0], (case.name, err[-1000:])
        assert re.search(case.reason, errors[0], re.IGNORECASE), (case.name, errors[0])
    assert not crafted.marker.exists()


def test_cli_subprocess_end_to_end(crafted):
    """The real command line (python -m haltingvt.cli): exit 2, one line, no traceback, no code run."""
    case = next(c for c in crafted.cases if c.name == "payload_os_system")
    out = subprocess.run([sys.executable, "-m", "haltingvt.cli", "predict", str(case.path), str(crafted.clip)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().count("\n") == 0 and str(case.path) in out.stderr and "refers to code" in out.stderr
    assert not crafted.marker.exists()


def test_stored_class_path_is_never_opened(crafted, tmp_path, monkeypatch):
    """A checkpoint's embedded config naming data.classes=/etc/passwd: predict uses the stored names and
    opens no such file."""
    cfg = json.loads(json.dumps(crafted.cfg))
    cfg["data"]["classes"] = str(tmp_path / "secret.txt")
    (tmp_path / "secret.txt").write_text("a\nb\nc\n")
    path = save_checkpoint(tmp_path / "c.pth", model_payload(crafted.model, cfg, classes=CLASSES))
    opened = []
    real_open = open

    def spy(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", spy)
    predictor = haltingvt.Predictor(path, device="cpu")
    assert predictor.class_names == CLASSES
    assert not any("secret" in f for f in opened)
    no_names = save_checkpoint(tmp_path / "d.pth", model_payload(crafted.model, cfg))
    assert haltingvt.Predictor(no_names, device="cpu").class_names == ["class_0", "class_1", "class_2"]
    assert not any("secret" in f for f in opened)


# ----------------------------------------------------------------------------------------- writing
def test_checkpoint_mode_follows_umask(tmp_path):
    old = os.umask(0o027)
    try:
        path = save_checkpoint(tmp_path / "a.pth", {"model": {}})
        assert path.stat().st_mode & 0o777 == 0o640
        os.umask(0o002)
        path = save_checkpoint(tmp_path / "b.pth", {"model": {}})
        assert path.stat().st_mode & 0o777 == 0o664
    finally:
        os.umask(old)


def test_stale_temporaries_removed_at_next_write(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    stale = tmp_path / f".epoch_3.pth.p{pid}.abcd_123.tmp"
    stale.write_bytes(b"x" * 1000)
    alive = tmp_path / f".best.pth.p{os.getppid()}.abcd_123.tmp"  # a running writer's: kept
    alive.write_bytes(b"x")
    foreign = tmp_path / ".notes.txt.tmp"  # not our pattern: kept
    foreign.write_bytes(b"x")
    save_checkpoint(tmp_path / "latest.pth", {"model": {}})
    assert not stale.exists() and alive.exists() and foreign.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, foreign.name, "latest.pth"])


def test_full_disk_one_line_previous_file_kept(tmp_path, monkeypatch):
    path = save_checkpoint(tmp_path / "latest.pth", {"model": {"w": torch.ones(3)}})
    before = path.read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(CheckpointWriteError) as info:
        save_checkpoint(path, {"model": {"w": torch.zeros(3)}})
    err = info.value
    assert isinstance(err, OSError) and isinstance(err, CheckpointError) and err.errno == errno.ENOSPC
    assert "\n" not in str(err) and str(path) in str(err) and "No space left" in str(err)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["latest.pth"]
    with pytest.raises(CheckpointWriteError, match="No space left"):
        atomic_write(tmp_path / "x.bin", lambda f: f.write(b"1"))


@pytest.mark.filterwarnings("ignore:.*runs the model with")  # the size differs from the weights': warned, then refused
@pytest.mark.parametrize("section,key,value,message", [
    ("model", "img_size", 1_600_000, "billion parameters"),
    ("model", "num_frames", 10**9, "billion parameters"),
    ("data", "test_scale", 100_000, "GiB per input"),
    ("data", "clip_len", 10**7, "GiB per input"),
])
def test_huge_stored_config_refused_before_allocation(crafted, tmp_path, monkeypatch, section, key, value, message):
    """A checkpoint's embedded config (which predict uses) asking for a huge model or huge inputs: one line,
    nothing built."""
    cfg = json.loads(json.dumps(crafted.cfg))
    cfg[section][key] = value
    path = save_checkpoint(tmp_path / "huge.pth", {"model": crafted.model.state_dict(), "config": cfg})
    built = []
    monkeypatch.setattr("haltingvt.predict.create_model", lambda *a, **k: built.append(1))
    with pytest.raises((CheckpointError, ConfigError), match=message) as info:
        haltingvt.Predictor(path, device="cpu")
    assert str(path) in str(info.value) and "\n" not in str(info.value) and not built
