"""``haltingvt prepare activitynet``: ActivityNet v1.3 JSON -> multi-label rawframes lists + classes; AR-Net's
Mini-Kinetics list lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from haltingvt.cli import main
from haltingvt.data import build_dataset, read_class_names, read_list
from haltingvt.data.prepare import prepare_activitynet

from data_helpers import small_config, write_lines, write_numbered_folder


def _anet(path: Path, database: dict) -> Path:
    doc = {
        "version": "VERSION 1.3",
        "taxonomy": [{"nodeName": "Root", "parentName": None, "nodeId": 0}],
        "database": database,
    }
    path.write_text(json.dumps(doc))
    return path


def _video(subset: str, *labels: str, duration: float = 60.0) -> dict:
    anns = [{"label": lab, "segment": [1.0 + i, 20.0 + i]} for i, lab in enumerate(labels)]
    return {
        "subset": subset,
        "duration": duration,
        "resolution": "640x360",
        "url": "https://www.youtube.com/watch?v=x",
        "annotations": anns,
    }


DATABASE = {
    "sJFgo9H6zNo": _video("training", "Ballet"),
    "-Wn-zxH4kw8": _video("training", "Walking the dog", "Ballet", "Walking the dog"),  # repeated label
    "QOlSCBRmfWY": _video("training", "Archery"),  # no frames
    "cjQG8yQgvQs": _video("validation", "Zumba"),
    "Xm2qTI5x2dc": _video("validation", "Archery", "Zumba"),
    "5n7NCViB5TU": {"subset": "testing", "duration": 9.0, "annotations": []},
    "noLabels000": _video("training"),  # annotations: []
}


@pytest.fixture()
def anet(tmp_path):
    frames = tmp_path / "rawframes"
    write_numbered_folder(frames / "v_sJFgo9H6zNo", 7)
    write_numbered_folder(frames / "-Wn-zxH4kw8", 9)  # folders named <id> are accepted too
    write_numbered_folder(frames / "v_cjQG8yQgvQs", 5)
    write_numbered_folder(frames / "v_Xm2qTI5x2dc", 6)
    write_numbered_folder(frames / "v_5n7NCViB5TU", 3)  # testing: not listed
    return _anet(tmp_path / "activity_net.v1-3.min.json", DATABASE), frames


def test_activitynet_lists_classes_and_multi_label_lines(tmp_path, anet, capsys):
    ann, frames = anet
    out = tmp_path / "lists"
    assert main(["prepare", "activitynet", str(ann), "--frames", str(frames), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "training: 2 videos listed" in text and "1 skipped without a frame folder (e.g. QOlSCBRmfWY)" in text
    assert "1 without annotations" in text and "validation: 2 videos listed" in text and "4 classes" in text
    # class order: sorted label names of training + validation (Archery counts though its video has no frames)
    assert (out / "classes.txt").read_text() == "Archery\nBallet\nWalking the dog\nZumba\n"
    assert read_class_names(out / "classes.txt") == ["Archery", "Ballet", "Walking the dog", "Zumba"]
    assert (out / "train.txt").read_text() == "-Wn-zxH4kw8 9 1 2\nv_sJFgo9H6zNo 7 1\n"
    assert (out / "val.txt").read_text() == "v_Xm2qTI5x2dc 6 0 3\nv_cjQG8yQgvQs 5 3\n"

    records = read_list(out / "train.txt", "rawframes", frames, num_classes=4, multi_label=True)
    assert [(Path(r.path).name, r.total_frames, r.labels) for r in records] == [
        ("-Wn-zxH4kw8", 9, [1, 2]),
        ("v_sJFgo9H6zNo", 7, [1]),
    ]
    cfg = small_config(
        frames,
        "rawframes",
        out / "train.txt",
        out / "val.txt",
        num_classes=4,
        multi_label=True,
        classes=str(out / "classes.txt"),
    )
    ds = build_dataset(cfg, "val")
    assert ds.classes[3] == "Zumba" and ds[0]["clips"].shape[-2:] == (32, 32)
    assert "haltingvt train anet_g05_b10 --set model.num_classes=4 loss.multi_label=true" in text


def _bad_cases():
    ok = dict(DATABASE)
    yield "not json", '{"database": {', "not JSON: "
    yield "no database", json.dumps({"taxonomy": []}), 'no "database" object'
    yield "no subset", {**ok, "vidNoSubset": {"annotations": [{"label": "Ballet"}]}}, 'video vidNoSubset: no "subset"'
    yield "no annotations", {**ok, "vidNoAnns00": {"subset": "validation"}}, 'video vidNoAnns00: no "annotations"'
    yield (
        "no label",
        {**ok, "vidNoLabel0": {"subset": "training", "annotations": [{"segment": [1, 2]}]}},
        'video vidNoLabel0: annotation 0 has no "label"',
    )
    yield (
        "bad subset",
        {**ok, "vidSubset00": {"subset": "train", "annotations": []}},
        "video vidSubset00: unknown subset 'train'",
    )


@pytest.mark.parametrize(
    "case", ["not json", "no database", "no subset", "no annotations", "no label", "bad subset", "gap"]
)
def test_bad_annotations_are_one_line_naming_file_and_video(tmp_path, anet, capsys, case):
    ann, frames = anet
    out = tmp_path / "lists"
    assert main(["prepare", "activitynet", str(ann), "--frames", str(frames), "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    bad = tmp_path / "bad.json"
    if case == "gap":  # a frame folder with a missing frame
        bad.write_text(ann.read_text())
        (frames / "v_cjQG8yQgvQs" / "img_00003.jpg").unlink()
        expect = f"video cjQG8yQgvQs: {frames / 'v_cjQG8yQgvQs'}: frame img_00003.jpg is missing"
    else:
        content, expect = next((c, e) for name, c, e in _bad_cases() if name == case)
        if isinstance(content, dict):
            _anet(bad, content)
        else:
            bad.write_text(content)
    assert main(["prepare", "activitynet", str(bad), "--frames", str(frames), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert err.startswith(f"haltingvt prepare: error: {bad}: ") and expect in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing written is lost


def test_missing_inputs(tmp_path, anet):
    ann, frames = anet
    with pytest.raises(FileNotFoundError, match="annotation file not found"):
        prepare_activitynet(tmp_path / "nope.json", frames, tmp_path / "o")
    with pytest.raises(FileNotFoundError, match="frames folder not found"):
        prepare_activitynet(ann, tmp_path / "nope", tmp_path / "o")
    (tmp_path / "empty").mkdir()
    with pytest.raises(Exception, match="no frame folder of a training or validation video"):
        prepare_activitynet(ann, tmp_path / "empty", tmp_path / "o")


def test_arnet_minikinetics_lines(tmp_path):
    """AR-Net's Mini-Kinetics lists (``path frames label``, space-separated; Kinetics class folders keep their
    spaces, as in ``air drumming``): the last two fields are the frame count and the label."""
    lst = write_lines(
        tmp_path / "mini_val_videofolder.txt",
        [
            "abseiling/0wR5jVB-WPk_000417_000427 300 0",
            "air drumming/--nQbRBEz2s_000104_000114 300 1",
            "playing bass guitar/-1RJnnzIb2k_000022_000032 249 123",
            "zumba/zyvhQRNf8yQ_000005_000015 151 199",
        ],
    )
    recs = read_list(lst, "arnet", "/data/minik/images", num_classes=200)
    assert [(r.path, r.total_frames, r.labels, r.is_video) for r in recs] == [
        ("/data/minik/images/abseiling/0wR5jVB-WPk_000417_000427", 300, [0], False),
        ("/data/minik/images/air drumming/--nQbRBEz2s_000104_000114", 300, [1], False),
        ("/data/minik/images/playing bass guitar/-1RJnnzIb2k_000022_000032", 249, [123], False),
        ("/data/minik/images/zumba/zyvhQRNf8yQ_000005_000015", 151, [199], False),
    ]


def test_arnet_minikinetics_frames_read_through_build_dataset(tmp_path):
    """AR-Net's Mini-Kinetics frames are ``<frames>/<class>/<clip>/00001.jpg`` (its prefix ``{:05d}.jpg``)."""
    frames = tmp_path / "frames"
    write_numbered_folder(frames / "air drumming" / "--nQbRBEz2s_000104_000114", 12, filename_tmpl="{:05d}.jpg")
    write_numbered_folder(frames / "abseiling" / "0wR5jVB-WPk_000417_000427", 10, filename_tmpl="{:05d}.jpg")
    lst = write_lines(
        tmp_path / "mini_train_videofolder.txt",
        ["abseiling/0wR5jVB-WPk_000417_000427 10 0", "air drumming/--nQbRBEz2s_000104_000114 12 1"],
    )
    cfg = small_config(frames, "arnet", lst, num_classes=200, filename_tmpl="{:05d}.jpg")
    ds = build_dataset(cfg, "val")
    assert len(ds) == 2 and ds[1]["clips"].shape[-2:] == (32, 32)
