"""`haltingvt demo --quick`: the whole demo path (data, trainer, evaluation, FLOPs, pictures) in seconds."""

import json
from pathlib import Path

import pytest

from haltingvt.cli import main

REQUIRED = {
    "val_top1",
    "test_top1",
    "static_top1",
    "motion_acc",
    "gflops_per_clip",
    "dense_gflops_per_clip",
    "glimpser_only_gflops_per_clip",
    "gflops_fraction_of_dense",
    "tokens_per_layer",
    "train_seconds",
    "total_seconds",
    "classes",
    "picture",
    "gif",
    "checkpoint",
}


@pytest.mark.slow
def test_quick_demo(tmp_path, capsys, monkeypatch):
    # No wall-clock assertion: timings belong in benchmarks/, and a loaded machine is 3-5x slower.
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--quick", "--no-progress"]) == 0
    assert not (tmp_path / "demo_out").exists()  # a smoke run never overwrites a full demo's model
    tmp_path = tmp_path / "demo_quick"

    summary = json.loads((tmp_path / "summary.json").read_text())
    assert REQUIRED <= set(summary), REQUIRED - set(summary)
    assert summary["quick"] is True
    for key in ("val_top1", "test_top1", "static_top1", "motion_acc"):
        assert 0.0 <= summary[key] <= 1.0
    assert 0 < summary["gflops_per_clip"] <= summary["glimpser_only_gflops_per_clip"] < summary["dense_gflops_per_clip"]
    n_layers = 4  # demo_synthetic: depth 6, 2 Glimpser layers
    assert len(summary["tokens_per_layer"]) == n_layers
    assert summary["train_seconds"] > 0

    for key, magic in (("picture", b"\x89PNG"), ("gif", b"GIF8")):
        path = Path(summary[key])
        assert path.is_file() and path.read_bytes()[:4] == magic
    assert (tmp_path / "work" / "best.pth").is_file()
    report = capsys.readouterr().out
    assert "val top-1" in report and "MMAC per clip" in report and "static clips" in report
    for line in report.splitlines():  # one unit per line
        assert not ("GFLOPs" in line and "MMAC" in line), line


def test_demo_rejects_non_synthetic_data(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path), "--no-progress", "--set", "data.format=video"]) == 2
    assert "synthetic" in capsys.readouterr().err


def test_demo_grid_variants_are_valid_configs():
    from experiments.demo_grid import VARIANTS
    from haltingvt.config import load_config

    for overrides in VARIANTS.values():
        load_config("demo_synthetic", overrides)
