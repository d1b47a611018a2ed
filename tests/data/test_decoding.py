"""Frame folders (Pillow) and video files (PyAV): seeking, frame counts, bad files."""

import shutil

import numpy as np
import pytest

from haltingvt.data import DataError, FrameFolderReader, VideoReader, load_views

from data_helpers import (
    frame_number,
    small_config,
    textured_frame,
    truncate_file,
    write_frame_folder,
    write_numbered_folder,
    write_numbered_video,
    write_video,
)

SPARSE = [3, 17, 18, 31, 39, 5, 17]  # unsorted, repeated, backwards: all must come back in order


@pytest.mark.parametrize(
    "name, codec",
    [
        ("v.mp4", "mpeg4"),
        ("v.mp4", "libx264"),
        ("v.webm", "libvpx"),
        ("v.avi", "mpeg4"),
        ("v.mkv", "libx264"),
    ],
)
def test_seek_equals_sequential_decode(tmp_path, name, codec):
    path = write_numbered_video(tmp_path / name, 40, codec=codec, gop=8)
    seek = VideoReader(path, seek_gap=0)  # seek before every wanted frame
    assert seek.num_frames == 40  # webm/mkv have no frame count in the header: estimated from the duration
    by_seek = seek.read(SPARSE)
    assert seek.seeks >= 4 and not seek.fell_back
    sequential = VideoReader(path, seek_gap=10**9)
    by_decode = sequential.read(SPARSE)
    assert sequential.seeks == 0
    for a, b in zip(by_seek, by_decode):
        assert np.array_equal(a, b)
    assert [frame_number(f) for f in by_seek] == SPARSE
    counting = VideoReader(path)  # the fallback for streams without timestamps: count decoded frames
    assert [frame_number(f) for f in counting._read(SPARSE, "loop", use_pts=False)] == SPARSE
    adaptive = VideoReader(path)
    assert [frame_number(f) for f in adaptive.read(SPARSE)] == SPARSE
    assert by_seek[0].shape == (48, 64, 3) and by_seek[0].dtype == np.uint8


@pytest.mark.parametrize("short_video, expected", [("loop", [0, 5, 19, 39]), ("clamp", [0, 39, 39, 39])])
def test_frame_count_overestimated(tmp_path, short_video, expected):
    path = write_numbered_video(tmp_path / "v.mp4", 40)
    reader = VideoReader(path, num_frames_hint=60)  # e.g. a wrong count from a list
    assert reader.num_frames == 60
    frames = reader.read([0, 45, 59, 39], short_video=short_video)
    assert reader.num_frames == 40  # corrected at the end of the stream
    assert [frame_number(f) for f in frames] == expected


def test_truncated_mkv_reads_what_is_there(tmp_path):
    # Header intact, data cut: the duration promises 40 frames, fewer exist -> count corrected.
    path = write_video(tmp_path / "v.mkv", [textured_frame(i) for i in range(40)], codec="libx264")
    truncate_file(path, 0.5)
    reader = VideoReader(path)
    frames = reader.read(list(range(0, 40, 5)))
    assert len(frames) == 8 and reader.num_frames < 40


def test_bad_video_files(tmp_path):
    good = write_video(tmp_path / "good.mp4", [textured_frame(i) for i in range(20)])
    trunc = tmp_path / "truncated.mp4"
    shutil.copy(good, trunc)
    truncate_file(trunc, 0.5)  # mp4 index (moov) lost
    with pytest.raises(DataError, match="truncated.mp4: cannot open video"):
        VideoReader(trunc).read([0])
    garbage = tmp_path / "garbage.webm"
    garbage.write_bytes(b"not a video" * 50)
    with pytest.raises(DataError, match="garbage.webm"):
        VideoReader(garbage)
    with pytest.raises(DataError, match="nothere.mp4: video file not found"):
        VideoReader(tmp_path / "nothere.mp4")


def test_frame_folder_reader(tmp_path):
    folder = write_numbered_folder(tmp_path / "clip a", 12, filename_tmpl="image_{:04d}.jpg", start_index=0)
    reader = FrameFolderReader(folder, "image_{:04d}.jpg", start_index=0)
    assert reader.num_frames == 12  # counted
    assert [frame_number(f) for f in reader.read([11, 0, 4, 4])] == [11, 0, 4, 4]
    offset = FrameFolderReader(folder, "image_{:04d}.jpg", start_index=0, num_frames=5, offset=6)
    assert [frame_number(f) for f in offset.read([0, 4])] == [6, 10]
    with pytest.raises(DataError, match=r"img_00001.jpg' \(data.filename_tmpl"):
        FrameFolderReader(folder)  # wrong template
    with pytest.raises(DataError, match="frame folder not found"):
        FrameFolderReader(tmp_path / "none")


def test_missing_and_corrupt_frames(tmp_path):
    folder = write_numbered_folder(tmp_path / "f", 10)
    (folder / "img_00004.jpg").unlink()
    reader = FrameFolderReader(folder, num_frames=10)
    with pytest.raises(DataError, match=r"img_00004.jpg: frame file missing"):
        reader.read([0, 3, 6])
    (folder / "img_00005.jpg").write_bytes(b"\xff\xd8\xff broken")
    with pytest.raises(DataError, match=r"img_00005.jpg: cannot read image"):
        reader.read([4])


def test_video_and_frames_give_close_pixels(tmp_path):

    frames = [textured_frame(i, 96, 128) for i in range(24)]
    video = write_video(tmp_path / "v.mp4", frames)
    folder = write_frame_folder(tmp_path / "v_frames", frames)
    cfg = small_config(
        tmp_path,
        "video",
        "unused.txt",
        clip_len=4,
        frame_interval=4,
        test_scale=64,
        crop_size=56,
        test_num_crops=3,
        test_num_clips=2,
    )
    a = load_views(video, cfg).float()
    b = load_views(folder, cfg).float()
    assert a.shape == b.shape == (6, 3, 4, 56, 56)
    assert (a - b).abs().mean() < 4.0
    with pytest.raises(DataError, match="nothing.mp4"):
        load_views(tmp_path / "nothing.mp4", cfg)
