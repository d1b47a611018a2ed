"""`haltingvt train` and `haltingvt eval` end to end on a tiny frame-folder dataset read by haltingvt.data."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from haltingvt.cli import main

from engine_helpers import one_thread
from model_helpers import OFFICIAL

TINY = [
    "model.img_size=32",
    "model.patch_size=8",
    "model.num_frames=4",
    "model.embed_dim=48",
    "model.num_heads=3",
    "model.depth=4",
    "model.keep_rate=[1.0,0.5]",
    "model.halt_center=3",
    "model.num_classes=3",
]


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


def _write_split(root: Path, name: str, n: int, missing: tuple[int, ...] = ()) -> Path:
    """Frame folders (8 JPEG frames, 40x40) whose brightness moves up, down or not at all (label 0/1/2)."""
    lines = []
    for i in range(n):
        label, folder = i % 3, root / f"{name}_{i}"
        if i not in missing:
            folder.mkdir(parents=True)
            rng = np.random.default_rng(i)
            for t in range(8):
                level = 100 + (0, 12 * t, -12 * t)[label]
                frame = np.clip(rng.integers(0, 40, (40, 40, 3)) + level, 0, 255).astype(np.uint8)
                Image.fromarray(frame).save(folder / f"img_{t + 1:05}.jpg", quality=95)
        lines.append(f"{folder.name} 8 {label}")
    path = root / f"{name}.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_train_then_eval_ours_and_release_checkpoint(tmp_path, capsys):
    root = tmp_path / "data"
    train_list, val_list = _write_split(root, "train", 8), _write_split(root, "val", 5, missing=(3,))
    data = [
        "data.format=rawframes",
        f"data.data_root={root}",
        f"data.train_list={train_list}",
        f"data.val_list={val_list}",
        f"data.test_list={val_list}",
        "data.clip_len=4",
        "data.frame_interval=2",
        "data.train_scale=[32,40]",
        "data.test_scale=32",
        "data.crop_size=32",
        "data.randaugment=null",
        "data.num_workers=0",
    ]
    work = tmp_path / "work"
    train_set = [
        "init.pretrained=null",
        "train.epochs=1",
        "train.batch_size=4",
        "train.scale_lr=false",
        "train.lr=1e-3",
        "train.warmup_epochs=0",
        "train.log_interval=1",
        f"train.work_dir={work}",
        "test.batch_size=2",
    ]
    assert main(["train", "minik_g03_b10", "--device", "cpu", "--no-progress", "--set", *TINY, *data, *train_set]) == 0
    summary = json.loads((work / "summary.json").read_text())
    assert summary["optimizer_steps"] == 2 and summary["last_val"]["num_evaluated"] == 4
    assert summary["last_val"]["unreadable"] and "val_3" in summary["last_val"]["unreadable"][0]
    capsys.readouterr()

    out = tmp_path / "metrics.json"
    code = main(
        [
            "eval",
            "minik_g03_b10",
            str(work / "best.pth"),
            "--device",
            "cpu",
            "--json",
            "--out",
            str(out),
            "--dump",
            str(tmp_path / "pred.json"),
            "--set",
            *TINY,
            *data,
            *train_set,
        ]
    )
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    assert printed["num_evaluated"] == 4 and printed["split"] == "test" and "val_3" in printed["unreadable"][0]
    assert printed["top1"] == pytest.approx(summary["last_val"]["top1"])
    assert len(json.loads((tmp_path / "pred.json").read_text())["predictions"]) == 4

    # A checkpoint in the release's MMEngine layout (tests/fixtures/official-tiny: 64 px, 7 classes).
    arch = json.loads((OFFICIAL / "config.json").read_text())
    release = [f"model.{k}={json.dumps(v)}" for k, v in arch.items()] + [
        "model.num_classes=7",
        "data.crop_size=64",
        "data.test_scale=64",
        "model.depth=12",
    ]
    code = main(
        ["eval", "minik_g03_b10", str(OFFICIAL / "checkpoint.pth"), "--device", "cpu", "--set", *data, *release]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "4 videos x 1 views" in text and "top-1" in text and "1 unreadable video(s)" in text


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert (
        main(["eval", "minik_g03_b10", str(tmp_path / "nope.pth"), "--device", "cpu", "--set", "init.pretrained=null"])
        == 2
    )
    assert "nope.pth" in capsys.readouterr().err
    assert main(["train", "minik_g03_b10", "--set", "train.no_such_key=1"]) == 2
    assert "train.no_such_key" in capsys.readouterr().err
