"""``haltingvt extract-frames``: videos -> frame folders / re-encoded mp4 + list files
(MMAction2 build_rawframes.py)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import av
import numpy as np
from PIL import Image

from haltingvt.cli import main
from haltingvt.data import build_dataset, read_class_names, read_list
from haltingvt.data.extract import extract_videos, find_videos, list_line, new_size
from haltingvt.data.transforms import imresize, rescale_size
from haltingvt.io.textsafe import escape

from data_helpers import frame_number, small_config, truncate_file, write_numbered_video
from footage import clip_path


def _size(path: Path) -> tuple[int, int]:
    with Image.open(path) as img:
        return img.size


def _video_tree(root: Path) -> Path:
    """root/videos/{jump,run}/...: two classes, three clips of 12..16 numbered frames (64x48)."""
    videos = root / "videos"
    for rel, n in (("run/b.mp4", 12), ("jump/a clip.avi", 14), ("run/c.mkv", 16)):
        (videos / rel).parent.mkdir(parents=True, exist_ok=True)
        write_numbered_video(videos / rel, n, gop=5)
    return videos


def test_new_size_follows_build_rawframes_truncation():
    assert new_size(640, 272, 256) == (602, 256)  # int(256 / 272 * 640) = int(602.35)
    assert new_size(272, 640, 256) == (256, 602)
    assert new_size(176, 144, 256) == (312, 256)  # 312.89 truncated ...
    assert rescale_size(176, 144, 256) == (313, 256)  # ... where mmcv.rescale_size rounds
    assert new_size(1280, 720, 256) == (455, 256)
    assert new_size(64, 48, 0, 40, 30) == (40, 30) and new_size(64, 48) == (64, 48)


def test_list_line_and_escape():
    assert list_line("a/b", 12, 3) == "a/b 12 3"
    assert list_line("air drumming/x", 12, 3) == "air drumming/x;12;3"
    assert list_line("#x", 5, 0) == "./#x 5 0"
    assert escape("a\nb\x1bc d\udcff") == "a\\nb\\x1bc d\\xff"  # the byte of a non-UTF-8 name


def test_find_videos_levels_and_exclude(tmp_path):
    for rel in ("top.mp4", "c/one.webm", "c/d/deep.MOV", "c/notes.txt", ".hidden/x.mp4", "out/c/old.mp4"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    assert find_videos(tmp_path, exclude=tmp_path / "out") == ["c/d/deep.MOV", "c/one.webm", "top.mp4"]
    assert find_videos(tmp_path, level=1) == ["top.mp4"]
    assert find_videos(tmp_path, level=2, exclude=tmp_path / "out") == ["c/one.webm"]


def test_extract_generated_videos_list_reads_back(tmp_path, capsys):
    videos = _video_tree(tmp_path)
    out = tmp_path / "frames"
    assert main(["extract-frames", str(videos), str(out), "--workers", "2", "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "3 videos: 3 extracted (42 frames listed), 0 already done, 0 failed" in text
    assert (out / "rawframes.txt").read_text().splitlines() == ["jump/a clip;14;0", "run/b 12 1", "run/c 16 1"]
    assert read_class_names(out / "classes.txt") == ["jump", "run"]
    folder = out / "run" / "c"
    assert sorted(os.listdir(folder)) == [f"img_{i:05d}.jpg" for i in range(1, 17)]
    # all frames, in order, numbered from 1, full size
    assert [frame_number(np.asarray(Image.open(folder / f"img_{i:05d}.jpg"))) for i in range(1, 17)] == list(range(16))
    assert _size(folder / "img_00001.jpg") == (64, 48)
    summary = json.loads((out / "extract_summary.json").read_text())
    assert summary["extracted"] == 3 and summary["outputs"]["run/c.mkv"] == {"frames": 16, "size": [64, 48]}

    records = read_list(out / "rawframes.txt", "rawframes", out, num_classes=2)
    assert [(Path(r.path).relative_to(out).as_posix(), r.total_frames, r.labels) for r in records] == [
        ("jump/a clip", 14, [0]),
        ("run/b", 12, [1]),
        ("run/c", 16, [1]),
    ]
    cfg = small_config(out, "rawframes", out / "rawframes.txt", num_classes=2, classes=str(out / "classes.txt"))
    ds = build_dataset(cfg, "train")
    assert ds.classes == ["jump", "run"] and ds[0]["clips"].shape[1:] == (3, 4, 32, 32)


def test_extract_real_footage_short_side_256(tmp_path):
    bikes = clip_path("bikes.mp4")
    (tmp_path / "v").mkdir()
    os.symlink(bikes, tmp_path / "v" / "bikes.mp4")
    out = tmp_path / "out"
    assert (
        main(["extract-frames", str(tmp_path / "v"), str(out), "--new-short", "256", "--workers", "1", "--no-progress"])
        == 0
    )
    assert (out / "rawframes.txt").read_text() == "bikes 250 0\n"  # no class folders: label 0
    assert not (out / "classes.txt").exists()
    names = sorted(os.listdir(out / "bikes"))
    assert len(names) == 250 and names[0] == "img_00001.jpg" and names[-1] == "img_00250.jpg"
    assert _size(out / "bikes" / "img_00250.jpg") == (602, 256)
    # frame 1 is PyAV's first frame through mmcv.imresize, up to JPEG quality 95
    with av.open(str(bikes)) as c:
        first = next(c.decode(video=0)).to_ndarray(format="rgb24")
    want = imresize(first, 602, 256).astype(np.float64)
    got = np.asarray(Image.open(out / "bikes" / "img_00001.jpg"), dtype=np.float64)
    assert np.abs(got - want).mean() < 3


def test_resume_redoes_partial_and_skips_finished(tmp_path):
    videos = _video_tree(tmp_path)
    out = tmp_path / "frames"
    first = extract_videos(videos, out)
    assert first["extracted"] == 3
    # "run/b" was interrupted: only its temporary folder is left; "run/c" is finished and must stay untouched
    for f in (out / "run" / "b").iterdir():
        f.unlink()
    (out / "run" / "b").rmdir()
    (out / "run" / "b.partial").mkdir()
    (out / "run" / "b.partial" / "img_00001.jpg").write_bytes(b"half")
    marker = out / "run" / "c" / "img_00001.jpg"
    stamp = marker.stat().st_mtime_ns
    second = extract_videos(videos, out)
    assert (second["extracted"], second["already_done"], second["failed"]) == (1, 2, 0)
    assert not (out / "run" / "b.partial").exists() and len(os.listdir(out / "run" / "b")) == 12
    assert marker.stat().st_mtime_ns == stamp
    assert (out / "rawframes.txt").read_text() == "jump/a clip;14;0\nrun/b 12 1\nrun/c 16 1\n"


def test_broken_videos_reported_and_skipped(tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    write_numbered_video(videos / "good.mp4", 10)
    (videos / "garbage.mp4").write_bytes(b"\x00not a video" * 50)
    truncate_file(write_numbered_video(videos / "cut.mp4", 30), 0.3)  # moov atom lost: a broken download
    (videos / "bad\x1bname\n.mp4").write_bytes(b"junk")
    out = tmp_path / "out"
    assert main(["extract-frames", str(videos), str(out), "--workers", "1", "--no-progress"]) == 0
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 3
    assert err[0].startswith("skipped bad\\x1bname\\n.mp4: ")
    assert any(line.startswith("skipped cut.mp4: cannot open video") for line in err)
    assert any(line.startswith("skipped garbage.mp4: cannot open video") for line in err)
    assert "1 extracted (10 frames listed), 0 already done, 3 failed" in captured.out
    assert (out / "rawframes.txt").read_text() == "good 10 0\n"
    summary = json.loads((out / "extract_summary.json").read_text())
    assert summary["failed"] == 3 and {f["video"] for f in summary["failures"]} == {
        "bad\x1bname\n.mp4",  # JSON keeps the real name (escaped only on the terminal)
        "cut.mp4",
        "garbage.mp4",
    }
    assert not any(p.name.endswith(".partial") for p in out.iterdir())

    (videos / "good.mp4").unlink()  # nothing readable: a non-zero exit
    assert main(["extract-frames", str(videos), str(tmp_path / "out2"), "--workers", "1", "--no-progress"]) == 1


def test_no_videos_and_bad_options_are_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["extract-frames", str(tmp_path / "empty"), str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.startswith(f"haltingvt extract-frames: error: {tmp_path / 'empty'}: no video files")
    assert main(["extract-frames", str(tmp_path / "nope"), str(tmp_path / "o")]) == 2
    assert "video folder not found" in capsys.readouterr().err
    assert main(["extract-frames", str(tmp_path), str(tmp_path / "o"), "--new-short", "256", "--new-width", "3"]) == 2
    assert "not both" in capsys.readouterr().err


def test_to_video_reencodes_with_short_gop(tmp_path, capsys):
    videos = _video_tree(tmp_path)
    out = tmp_path / "mp4"
    # short side 33 -> 44x33; H.264 4:2:0 needs even sizes -> 44x32
    assert (
        main(
            [
                "extract-frames",
                str(videos),
                str(out),
                "--to-video",
                "--new-short",
                "33",
                "--gop",
                "4",
                "--workers",
                "1",
                "--no-progress",
                "--crf",
                "10",
            ]
        )
        == 0
    )
    assert "3 re-encoded" in capsys.readouterr().out
    assert (out / "videos.txt").read_text().splitlines() == ["jump/a clip.mp4;0", "run/b.mp4 1", "run/c.mp4 1"]
    with av.open(str(out / "run" / "c.mp4")) as c:
        s = c.streams.video[0]
        assert (s.codec_context.name, s.width, s.height, s.format.name) == ("h264", 44, 32, "yuv420p")
        keys = [i for i, p in enumerate(c.demux(s)) if p.size and p.is_keyframe]
    assert keys[0] == 0 and max(np.diff(keys + [16])) <= 4
    records = read_list(out / "videos.txt", "video", out, num_classes=2)
    from haltingvt.data import open_reader

    frames = open_reader(records[2].path).read(range(16))
    assert [frame_number(f) for f in frames] == list(range(16))
    again = extract_videos(videos, out, to_video=True, new_short=33)
    assert (again["extracted"], again["already_done"]) == (0, 3)


def test_class_names_of_the_training_split_label_the_validation_split(tmp_path, capsys):
    videos = _video_tree(tmp_path)  # classes jump, run
    val = tmp_path / "val"
    for rel in ("run/v1.mp4", "swim/v2.mp4"):  # no "jump" clip; "swim" is not a training class
        (val / rel).parent.mkdir(parents=True)
        write_numbered_video(val / rel, 6)
    assert main(["extract-frames", str(videos), str(tmp_path / "f" / "train"), "--workers", "1", "--no-progress"]) == 0
    classes = tmp_path / "f" / "train" / "classes.txt"
    assert (
        main(
            [
                "extract-frames",
                str(val),
                str(tmp_path / "f" / "val"),
                "--workers",
                "1",
                "--no-progress",
                "--class-names",
                str(classes),
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert "skipped swim/v2.mp4: its folder 'swim' is not a class of the class-name file" in captured.err
    assert (tmp_path / "f" / "val" / "rawframes.txt").read_text() == "run/v1 6 1\n"  # run is class 1, as in training
    assert not (tmp_path / "f" / "val" / "classes.txt").exists()


def test_split_lists_share_one_root_and_class_order(tmp_path, capsys):
    videos = tmp_path / "videos"
    for rel in ("train/run/a.mp4", "train/jump/b.mp4", "val/run/c.mp4", "val/swim/d.mp4"):
        (videos / rel).parent.mkdir(parents=True, exist_ok=True)
        write_numbered_video(videos / rel, 5)
    out = tmp_path / "frames"
    assert main(["extract-frames", str(videos), str(out), "--split-lists", "--workers", "1", "--no-progress"]) == 0
    assert "train_rawframes.txt" in capsys.readouterr().out
    assert read_class_names(out / "classes.txt") == ["jump", "run", "swim"]
    assert (out / "train_rawframes.txt").read_text() == "train/jump/b 5 0\ntrain/run/a 5 1\n"
    assert (out / "val_rawframes.txt").read_text() == "val/run/c 5 1\nval/swim/d 5 2\n"
    assert not (out / "rawframes.txt").exists()
    (videos / "loose.mp4").write_bytes(b"")
    assert main(["extract-frames", str(videos), str(out), "--split-lists"]) == 2
    assert "loose.mp4 is not in a split and a class folder" in capsys.readouterr().err
