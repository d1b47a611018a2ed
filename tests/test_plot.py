"""haltingvt.plot: training curves from the CSV logs, confusion matrices; per-class metrics of evaluate."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from haltingvt.engine.evaluate import confusion_matrix, evaluate, format_metrics, per_class_metrics
from haltingvt.plot import PlotError, plot_after_training, plot_run, read_log, save_confusion

from engine_helpers import TINY_MODEL, TinyEvalSet, one_thread, tiny_config

TRAIN_COLUMNS = [
    "epoch",
    "step",
    "lr",
    "loss",
    "loss_action",
    "loss_ponder",
    "loss_motion",
    "acc",
    "motion_acc",
    "gflops_per_clip",
    "clips_per_s",
    "grad_norm",
    "tokens_L0",
    "tokens_L1",
]


def write_csv(path: Path, columns: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(columns)
        w.writerows(rows)
    return path


def fake_run(work_dir: Path, val: bool = True) -> Path:
    work_dir.mkdir(parents=True, exist_ok=True)
    rows = [
        [
            1 + s // 10,
            s,
            1e-3 * (1 - s / 40),
            3 - s / 20,
            2 - s / 30,
            4 - s / 20,
            0.7 - s / 100,
            s / 40,
            0.5 + s / 100,
            0.02 - s / 4000,
            30.0,
            "nan",
            65,
            60 - s,
        ]
        for s in range(2, 41, 2)
    ]
    write_csv(work_dir / "train_log.csv", TRAIN_COLUMNS, rows)
    if val:
        write_csv(
            work_dir / "val_log.csv",
            ["epoch", "step", "top1", "top5", "mean_class_acc", "gflops_per_clip", "clips_per_second"],
            [[e, 10 * e, 0.2 * e, 0.9, 0.2 * e, 0.02 - e / 1000, 50.0] for e in range(1, 5)],
        )
    return work_dir


def test_read_log_columns_and_missing_cells(tmp_path):
    log = read_log(fake_run(tmp_path / "run") / "train_log.csv")
    assert list(log)[:3] == ["epoch", "step", "lr"] and len(log["step"]) == 20
    assert log["step"][0] == 2 and (log["grad_norm"] != log["grad_norm"]).all()  # "nan" and empty cells -> NaN


def test_plot_run_writes_curves_png(tmp_path):
    run = fake_run(tmp_path / "run")
    png = plot_run(run)
    assert png == run / "curves.png"
    with Image.open(png) as im:
        assert im.width >= 1000 and im.height >= 600  # 3 x 2 panels
    # Without a val log, and to a path of one's choice.
    other = plot_run(fake_run(tmp_path / "noval", val=False), tmp_path / "pics" / "c.png")
    assert other.is_file() and other.stat().st_size > 10_000


def test_plot_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope: no such work dir"):
        plot_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty: no train_log\.csv"):
        plot_run(tmp_path / "empty")
    (tmp_path / "empty" / "train_log.csv").write_text("epoch,step,loss\n")
    with pytest.raises(PlotError, match=r"train_log\.csv: the log has no rows"):
        plot_run(tmp_path / "empty")
    write_csv(tmp_path / "empty" / "train_log.csv", ["step", "other"], [[1, 2]])
    with pytest.raises(PlotError, match="nothing to draw"):
        plot_run(tmp_path / "empty")


def test_plot_after_training_never_raises(tmp_path):
    notes = []
    assert plot_after_training(tmp_path / "missing", notes.append) is None
    assert notes == [f"training curves not drawn: FileNotFoundError: {tmp_path / 'missing'}: no such work dir"]
    assert plot_after_training(fake_run(tmp_path / "run"), notes.append) == tmp_path / "run" / "curves.png"
    assert notes[-1] == f"training curves: {tmp_path / 'run' / 'curves.png'}"


def test_confusion_matrix_and_per_class_metrics():
    scores = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.5, 0.1, 0.4], [0.1, 0.2, 0.7], [0.6, 0.3, 0.1]])
    labels = torch.tensor([0, 1, 2, 2, 0])
    m = confusion_matrix(scores, labels, 4)
    assert m.tolist() == [[2, 0, 0, 0], [0, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    rows = per_class_metrics(scores, labels, 4, ["a", "b", "c", "d"])
    assert [(r["name"], r["clips"], r["top1"]) for r in rows] == [
        ("a", 2, 1.0),
        ("b", 1, 1.0),
        ("c", 2, 0.5),
        ("d", 0, None),
    ]
    multi = per_class_metrics(
        scores[:, :3], torch.tensor([[1, 0, 0], [0, 1, 1], [0, 0, 1], [0, 0, 1], [1, 0, 0]]), 3, None, multi_label=True
    )
    assert [r["clips"] for r in multi] == [2, 1, 3] and multi[0]["ap"] == 1.0 and multi[1]["name"] is None


def test_save_confusion_png_and_bad_shapes(tmp_path):
    png = save_confusion(torch.tensor([[3, 1], [0, 4]]), ["walk", "run"], tmp_path / "c.png", title="val")
    with Image.open(png) as im:
        assert im.width > 300
    with pytest.raises(ValueError, match="square"):
        save_confusion([[1, 2, 3]], None, tmp_path / "x.png")
    with pytest.raises(ValueError, match="3 class names for a 2 x 2"):
        save_confusion([[1, 0], [0, 1]], ["a", "b", "c"], tmp_path / "x.png")


class NamedEvalSet(TinyEvalSet):
    classes = ["still", "brighter", "darker"]


def test_evaluate_per_class_and_confusion_png(tmp_path):
    import haltingvt

    torch.manual_seed(0)
    model = haltingvt.create_model(TINY_MODEL).eval()
    with one_thread():
        m = evaluate(
            model,
            tiny_config(tmp_path),
            "val",
            "cpu",
            dataset=NamedEvalSet(6, views=1),
            confusion=tmp_path / "confusion.png",
            progress=False,
        )
    assert [(r["name"], r["clips"]) for r in m["per_class"]] == [("still", 2), ("brighter", 2), ("darker", 2)]
    hits = sum(r["top1"] * r["clips"] for r in m["per_class"])
    assert hits / 6 == pytest.approx(m["top1"])
    assert (tmp_path / "confusion.png").is_file()
    assert "lowest per-class top-1" in format_metrics(m)
    json.dumps(m)  # the metrics stay JSON-serialisable
