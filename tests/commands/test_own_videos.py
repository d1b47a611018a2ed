"""The README's "Train on your own videos" path, end to end through the CLI: a folder of mp4 clips per class
-> config with _base_ -> train -> plot -> eval (per-class, confusion) -> predict -> config."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import yaml

from haltingvt.cli import main
from haltingvt.config import load_config
from haltingvt.data.export import export

from engine_helpers import one_thread

CLASSES = ["move_left", "move_right", "grow"]  # folder names; sorted: grow, move_left, move_right


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


def write_clips(root: Path, counts: dict[str, int], frames: int = 4) -> None:
    """Tiny mp4 clips in ROOT/<split>/<class>/<clip>.mp4, written with the package's mp4 writer."""
    for split, n in counts.items():
        export(root, split, "mp4", n, num_frames=frames, size=32, classes=CLASSES, layout="folders")


MY_YAML = """\
_base_: demo_synthetic      # a shipped config name, or a path relative to this file
model:
  num_classes: 3            # the number of class folders
  num_frames: 4
data:
  format: folders
  data_root: {root}
  clip_len: 4
train:
  epochs: 1
  batch_size: 3
  log_interval: 1
test:
  batch_size: 6
"""


@pytest.mark.slow
def test_folder_of_clips_to_train_eval_predict(tmp_path, capsys):
    clips = tmp_path / "my_clips"
    write_clips(clips, {"train": 9, "val": 6})
    config = tmp_path / "my.yaml"
    config.write_text(MY_YAML.format(root=clips))
    run = tmp_path / "runs" / "mine"

    assert (
        main(
            [
                "train",
                str(config),
                "--work-dir",
                str(run),
                "--seed",
                "0",
                "--no-progress",
                "--cfg-options",
                "train.warmup_epochs=0",
            ]
        )
        == 0
    )
    for name in ("best.pth", "latest.pth", "train_log.csv", "val_log.csv", "curves.png", "summary.json"):
        assert (run / name).is_file(), name
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["train"]["seed"] == 0 and saved["train"]["warmup_epochs"] == 0 and saved["data"]["format"] == "folders"

    (run / "curves.png").unlink()
    assert main(["plot", str(run)]) == 0 and (run / "curves.png").is_file()

    capsys.readouterr()
    assert (
        main(
            [
                "eval",
                str(config),
                str(run / "best.pth"),
                "--confusion",
                str(run / "confusion.png"),
                "--work-dir",
                str(run),
                "--split",
                "test",
            ]
        )
        == 0
    )
    report = capsys.readouterr().out
    assert "lowest per-class top-1" in report and f"metrics: {run / 'eval_test.json'}" in report
    metrics = json.loads((run / "eval_test.json").read_text())
    assert metrics["num_evaluated"] == 6  # no test/ folder: the test split is val/
    assert [(r["name"], r["clips"]) for r in metrics["per_class"]] == [("grow", 2), ("move_left", 2), ("move_right", 2)]
    assert (run / "confusion.png").read_bytes()[:4] == b"\x89PNG"

    clip = next((clips / "val" / "grow").glob("*.mp4"))
    assert main(["predict", str(run / "best.pth"), str(clip), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    text = json.dumps(result)
    assert all(name in text for name in sorted(CLASSES)), "the checkpoint carries the folder names"

    assert main(["config", str(config)]) == 0
    resolved = capsys.readouterr().out
    (tmp_path / "resolved.yaml").write_text(resolved)
    assert load_config(tmp_path / "resolved.yaml") == load_config(config)  # what it prints is a usable config


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["folders", "lists"])
def test_synthetic_prints_a_train_command_that_works(tmp_path, capsys, monkeypatch, layout):
    monkeypatch.chdir(tmp_path)
    assert (
        main(
            [
                "synthetic",
                "clips",
                "--format",
                "mp4",
                "--layout",
                layout,
                "--splits",
                "train",
                "val",
                "--num",
                "8",
                "4",
                "--frames",
                "4",
                "--classes",
                *CLASSES,
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    command = shlex.split(printed)
    assert command[:3] == ["haltingvt", "train", "demo_synthetic"]
    assert "model.num_classes=3" in command and ("data.format=folders" in command) == (layout == "folders")
    assert (
        main(
            command[1:]
            + [
                "--no-progress",
                "--work-dir",
                "run",
                "--set",
                "train.epochs=1",
                "train.batch_size=4",
                "train.log_interval=1",
            ]
        )
        == 0
    )
    assert Path("run/best.pth").is_file()


@pytest.mark.slow
def test_the_same_path_from_python(tmp_path):
    import haltingvt
    from haltingvt.data import build_dataset
    from haltingvt.engine.evaluate import evaluate
    from haltingvt.engine.train import train
    from haltingvt.plot import plot_run

    clips = tmp_path / "my_clips"
    write_clips(clips, {"train": 9, "val": 3, "test": 3})
    config = tmp_path / "my.yaml"
    config.write_text(MY_YAML.format(root=clips))
    run = tmp_path / "runs" / "mine"
    cfg = haltingvt.load_config(config, [f"train.work_dir={run}", "train.val_interval=0"])
    assert build_dataset(cfg, "train").classes == sorted(CLASSES)
    summary = train(cfg, progress=False)
    assert summary["optimizer_steps"] == 3 and (run / "curves.png").is_file()
    assert plot_run(run) == run / "curves.png"
    model = haltingvt.create_model(cfg["model"])
    haltingvt.load_checkpoint(model, run / "latest.pth")
    metrics = evaluate(model, cfg, "test", confusion=run / "confusion.png", progress=False)
    assert metrics["num_evaluated"] == 3 and [r["clips"] for r in metrics["per_class"]] == [1, 1, 1]
    clip = next((clips / "test").glob("*/*.mp4"))
    top = haltingvt.Predictor(run / "latest.pth").predict(clip)["top"][0]
    assert top["label"] in CLASSES
