"""Conventions users know: --version, python -m haltingvt, a --help that says what the tool is, MMAction2's
--cfg-options/--work-dir/--seed/--amp, haltingvt config NAME, a `base:` typo, timm names while offline."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import pytest

import haltingvt
from haltingvt.cli import build_parser, main
from haltingvt.commands.options import amp_mode, run_overrides

from engine_helpers import subprocess_env


@pytest.mark.slow
def test_version_and_python_m_haltingvt():
    out = subprocess.run(
        [sys.executable, "-m", "haltingvt", "--version"],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=120,
    )
    assert out.returncode == 0 and out.stdout.strip() == f"haltingvt {haltingvt.__version__}"


def test_help_says_what_the_tool_is(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    first = text.split("\n\n")[1]  # argparse prints usage, then the description
    assert first.startswith("haltingvt: train, evaluate and run HaltingVT video transformers")
    for name in ("plot", "config", "configs", "train", "eval"):
        assert f"\n    {name} " in text


def test_cfg_options_is_set_and_both_accumulate():
    args = build_parser(["train"]).parse_args(
        ["train", "my.yaml", "--set", "a.b=1", "--cfg-options", "c.d=2", "e.f=3", "--set", "g.h=4"]
    )
    assert args.set == ["a.b=1", "c.d=2", "e.f=3", "g.h=4"]
    args = build_parser(["eval"]).parse_args(["eval", "my.yaml", "ckpt.pth", "--cfg-options", "test.amp=bf16"])
    assert args.set == ["test.amp=bf16"]


def test_work_dir_seed_amp_become_overrides_after_set():
    args = argparse.Namespace(set=["train.seed=1"], work_dir="runs/my run: 1", seed=7, amp="bf16", device="cpu")
    assert run_overrides(args, work_dir_key="train.work_dir", seed_key="train.seed", amp_key="train.amp") == [
        "train.seed=1",
        'train.work_dir="runs/my run: 1"',
        "train.seed=7",
        "train.amp=bf16",
    ]
    assert (
        amp_mode("auto", "cpu") == "bf16" and amp_mode("auto", "cuda:0") == "fp16" and amp_mode("none", None) == "none"
    )
    cfg = haltingvt.load_config(
        "demo_synthetic", run_overrides(args, work_dir_key="train.work_dir", seed_key="train.seed", amp_key="train.amp")
    )
    assert cfg["train"]["work_dir"] == "runs/my run: 1" and cfg["train"]["seed"] == 7 and cfg["train"]["amp"] == "bf16"


def test_config_prints_the_resolved_yaml(capsys):
    assert main(["config", "demo_synthetic", "--set", "model.num_classes=5"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("name: demo_synthetic\nmodel:\n") and "  num_classes: 5\n" in text
    assert "  keep_rate: [1.0, 0.5]\n" in text  # short lists inline
    assert main(["configs"]) == 0 and "demo_synthetic" in capsys.readouterr().out.split()


def test_base_typo_names_the_key_and_the_file(tmp_path, capsys):
    cfg = tmp_path / "my.yaml"
    cfg.write_text("base: demo_synthetic\nmodel:\n  num_classes: 3\n")
    assert main(["config", str(cfg)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"haltingvt config: error: unknown top-level key 'base' in {cfg}; did you mean '_base_'?"
    )


def test_timm_name_offline_fails_fast_with_the_hint(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    start = time.perf_counter()
    code = main(
        [
            "train",
            "demo_synthetic",
            "--work-dir",
            str(tmp_path / "run"),
            "--no-progress",
            "--set",
            "init.pretrained=deit_small_patch16_224",
            "data.synthetic_num_train=8",
            "data.synthetic_num_val=4",
            "model.init_scheme=default",
        ]
    )
    assert code == 2 and time.perf_counter() - start < 30  # timm's own retries take about a minute
    err = capsys.readouterr().err
    assert "init.pretrained: 'deit_small_patch16_224' names timm's ImageNet weights, but HF_HUB_OFFLINE" in err
    assert "--set init.pretrained=/path/to/deit_small_patch16_224.pth" in err and len(err.strip().splitlines()) == 1
