"""Crafted checkpoints (tests/security_helpers.py) through every reader: nothing runs code, nothing loads
silently, every refusal is one line naming the file. Also the writer: umask, stale temporaries, full disk."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
import yaml

import haltingvt
from haltingvt.cli import main
from haltingvt.config import ConfigError, load_config
from haltingvt.data.errors import ListFormatError
from haltingvt.data.lists import read_class_names
from haltingvt.io.textsafe import describe_char, escape, escape_lines, unsafe_char
from haltingvt.models.weights import (
    CheckpointError,
    CheckpointWriteError,
    atomic_write,
    load_checkpoint,
    model_payload,
    read_checkpoint,
    save_checkpoint,
)

from security_helpers import CLASSES, CONTROL_NAMES, TINY, build_catalogue


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
    return SimpleNamespace(
        root=root,
        cfg=cfg,
        model=model,
        base=base,
        folder=folder,
        marker=marker,
        cases=cases,
        yaml=root / "tiny.yaml",
        clip=clip,
    )


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


@pytest.mark.slow
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
    out = subprocess.run(
        [sys.executable, "-c", script, *live], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
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


CLI_SAMPLE = (
    "payload_os_system",
    "opcode_newobj",
    "torchscript",
    "legacy_format",
    "bitflip_weight",
    "truncated_half",
    "build_on_tensor",
    "arch_huge",
    "weight_is_string",
    "classes_is_path",
    "memo_bomb",
    "st_bitflip",
    "st_header_huge",
    "compressed_bomb",
)


#: The tiny config's test geometry, as synthetic data (rendered at img_size) requires it.
SYNTHETIC = ["data.test_scale=32", "data.crop_size=32", "data.train_scale=[32,32]", "data.randaugment=null"]


def _cli(argv, capsys):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.err


@pytest.mark.slow
@pytest.mark.parametrize("command", ["predict", "eval", "flops", "resume", "init"])
def test_cli_refuses_with_one_line(crafted, command, capsys, tmp_path):
    cases = [c for c in crafted.cases if c.name in CLI_SAMPLE]
    assert len(cases) == len(CLI_SAMPLE)
    for case in cases:
        argv = {
            "predict": ["predict", case.path, crafted.clip, "--workers", "0"],
            "eval": ["eval", crafted.yaml, case.path, "--device", "cpu"],
            "flops": ["flops", crafted.yaml, "--checkpoint", case.path, "--random-input"],
            "resume": [
                "train",
                crafted.yaml,
                "--resume",
                case.path,
                "--set",
                "data.format=synthetic",
                *SYNTHETIC,
                f"train.work_dir={tmp_path / case.name}",
                "data.synthetic_num_train=8",
                "train.batch_size=2",
            ],
            "init": [
                "train",
                crafted.yaml,
                "--set",
                "data.format=synthetic",
                *SYNTHETIC,
                f"init.pretrained={case.path}",
                f"train.work_dir={tmp_path / case.name}",
                "data.synthetic_num_train=8",
                "train.batch_size=2",
            ],
        }[command]
        code, err = _cli(argv, capsys)
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2, (case.name, err[-1000:])
        assert "Traceback" not in err
        errors = [line for line in lines if ": error: " in line]
        assert len(errors) == 1 and str(case.path) in errors[0], (case.name, err[-1000:])
        assert re.search(case.reason, errors[0], re.IGNORECASE), (case.name, errors[0])
    assert not crafted.marker.exists()


@pytest.mark.slow
def test_cli_subprocess_end_to_end(crafted):
    """The real command line (python -m haltingvt.cli): exit 2, one line, no traceback, no code run."""
    case = next(c for c in crafted.cases if c.name == "payload_os_system")
    out = subprocess.run(
        [sys.executable, "-m", "haltingvt.cli", "predict", str(case.path), str(crafted.clip)],
        capture_output=True,
        text=True,
        timeout=300,
    )
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
@pytest.mark.parametrize(
    "section,key,value,message",
    [
        ("model", "img_size", 1_600_000, "billion parameters"),
        ("model", "num_frames", 10**9, "billion parameters"),
        ("data", "test_scale", 100_000, "GiB per input"),
        ("data", "clip_len", 10**7, "GiB per input"),
    ],
)
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


# ----------------------------------------------------------------------------------------- text from files
RAW_CONTROLS = "\x1b\x00\x07\r\x9b\u202e\u2066\u2028"


def _no_raw_controls(text: str) -> bool:
    return not any(c in text for c in RAW_CONTROLS)


def test_escape_and_unsafe_char():
    assert escape("plain name ok") == "plain name ok"
    assert escape("a\x1b[2Jb\r\n\t\x00\x7f\x9b") == "a\\x1b[2Jb\\r\\n\\t\\x00\\x7f\\x9b"
    assert escape("\u202eevil\u2066\u2028") == "\\u202eevil\\u2066\\u2028"
    assert (
        escape("caf\u00e9 \u6f22\u5b57 \U0001f600 \u200d") == "caf\u00e9 \u6f22\u5b57 \U0001f600 \u200d"
    )  # printable kept
    assert escape(os.fsdecode(b"clip\xff.mp4")) == "clip\\xff.mp4"  # a non-UTF-8 file name's byte
    assert escape_lines("line 1\nname\x1b[31m\rx") == "line 1\nname\\x1b[31m\\rx"
    for name, bad in CONTROL_NAMES.items():
        assert unsafe_char(f"clap{bad}ping") == bad[0], name
    assert unsafe_char("Persian \u200c joiner, emoji \U0001f44b\u200d") is None  # ZWNJ/ZWJ are meant
    assert describe_char("\u202e") == "U+202E RIGHT-TO-LEFT OVERRIDE" and describe_char("\x00") == "U+0000 NUL"


@pytest.mark.parametrize("name", sorted(set(CONTROL_NAMES) - {"lf"}))
def test_class_name_file_with_control_character_refused(crafted, tmp_path, name, capsys):
    """A class-name file whose line 3 holds a control character: one line naming file:3 (the character
    shown escaped), from read_class_names, the Predictor and the command line; the indexed form too."""
    bad = CONTROL_NAMES[name]
    for form, lines in (
        ("plain", ["waving", "clapping", f"stand{bad}ing"]),
        ("indexed", ["0 waving", "1 clapping", f"2 stand{bad}ing"]),
    ):
        path = tmp_path / f"{form}_{name}.txt"
        path.write_bytes("\n".join(lines).encode() + b"\n")
        with pytest.raises(
            ListFormatError, match=rf"{re.escape(str(path))}:3: class name .*control character U\+"
        ) as info:
            read_class_names(path)
        assert "\n" not in str(info.value) and _no_raw_controls(str(info.value))
        with pytest.raises(ConfigError, match=r":3: class name") as info:
            haltingvt.Predictor(crafted.base, device="cpu", classes=path)
        assert "\n" not in str(info.value) and _no_raw_controls(str(info.value))
        code, err = _cli(["predict", crafted.base, crafted.clip, "--classes", path, "--workers", "0"], capsys)
        assert code == 2 and err.count("\n") == 1 and f"{path}:3:" in err and _no_raw_controls(err)


def test_class_name_file_crlf_and_unicode_accepted(tmp_path):
    path = tmp_path / "classes.txt"
    path.write_bytes("waving\r\nclapping \u6f22\u5b57\r\n\ufeffstanding\u200dstill\r\n".encode())
    assert read_class_names(path) == ["waving", "clapping \u6f22\u5b57", "\ufeffstanding\u200dstill"]


def test_class_names_refused_wherever_given(crafted, tmp_path):
    """Names with control characters given in Python, stored with weights or asked for as the model name."""
    bad = ["waving", "clap\x1b]52;c;cm0gLXJmIH4=\x07ping", "standing"]
    with pytest.raises(ConfigError, match=r"class 1 .*control character U\+001B ESC") as info:
        haltingvt.Predictor(crafted.base, device="cpu", classes=bad)
    assert _no_raw_controls(str(info.value))
    with pytest.raises(CheckpointError, match=r"classes\[1\] .*control character"):
        model_payload(crafted.model, crafted.cfg, classes=bad)
    with pytest.raises(CheckpointError, match=r"classes\[1\] .*control character"):
        crafted.model.save_pretrained(tmp_path / "m", classes=bad)
    with pytest.raises(CheckpointError, match=r"model name .*control character U\+000D CR"):
        crafted.model.save_pretrained(tmp_path / "m", classes=CLASSES, name="tiny\rfake")
    assert not (tmp_path / "m").exists()


def test_paths_with_control_characters_escaped_in_text_kept_in_json(crafted, tmp_path, capsys):
    """Inputs whose names hold ESC, BEL, a newline or an RLO: the text table, the warnings and the error lines
    show them escaped, one line each; --json and predictions.json keep the real names."""
    good = tmp_path / "clip\x1b[31mred\nsecond line\u202e"
    shutil.copytree(crafted.clip, good)
    broken = tmp_path / "bad\x1b]0;title\x07.mp4"
    broken.write_bytes(b"not a video" * 20)
    missing = tmp_path / "gone\r.mp4"
    argv = ["predict", crafted.base, good, broken, missing, "--workers", "0"]
    assert main([str(a) for a in argv]) == 1
    out = capsys.readouterr()
    assert _no_raw_controls(out.out) and _no_raw_controls(out.err)
    assert escape(str(good)) in out.out.splitlines()  # the path is one line of the table
    errors = [line for line in out.err.splitlines() if ": error: " in line]
    assert len(errors) == 2 and escape(str(broken)) in errors[0] and escape(str(missing)) in errors[1]
    assert main([str(a) for a in argv] + ["--json", "--save-vis", str(tmp_path / "vis")]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert [r["path"] for r in doc["results"]] == [str(good), str(broken), str(missing)]
    saved = json.loads((tmp_path / "vis" / "predictions.json").read_text())
    assert saved["results"][0]["path"] == str(good) and saved["results"][0]["vis"]
    code, err = _cli(["predict", tmp_path / "no\x1b[2Jsuch.pth", crafted.clip], capsys)
    assert code == 2 and err.count("\n") == 1 and "no\\x1b[2Jsuch.pth" in err and _no_raw_controls(err)


def test_eval_report_escapes_what_it_quotes(crafted, tmp_path, monkeypatch, capsys):
    """The eval text report escapes class names and error messages from files; --out keeps the real strings."""
    metrics = {
        "split": "test",
        "num_evaluated": 2,
        "views": 1,
        "execution": "masked",
        "early_exit": True,
        "world_size": 1,
        "top1": 0.5,
        "top5": 1.0,
        "mean_class_acc": 0.5,
        "gflops_per_clip": 0.01,
        "gflops_per_video": 0.01,
        "tokens_per_layer": [5.0],
        "clips_per_second": 10.0,
        "per_class": [
            {"index": 0, "name": "wav\x1b[2Jing", "top1": 0.0, "clips": 1},
            {"index": 1, "name": "clap\u202eping", "top1": 1.0, "clips": 1},
        ],
        "unreadable": ["bad\x1b]0;x\x07.mp4"],
        "unreadable_errors": ["bad\x1b]0;x\x07.mp4: cannot read\rfake"],
    }
    monkeypatch.setattr("haltingvt.commands.eval.evaluate", lambda *a, **k: json.loads(json.dumps(metrics)))
    out_file = tmp_path / "m\x1b.json"
    assert main(["eval", str(crafted.yaml), str(crafted.base), "--device", "cpu", "--out", str(out_file)]) == 0
    out = capsys.readouterr().out
    assert _no_raw_controls(out) and "wav\\x1b[2Jing" in out and "cannot read\\rfake" in out and "m\\x1b.json" in out
    assert json.loads(out_file.read_text())["per_class"][0]["name"] == "wav\x1b[2Jing"
