"""Reading frames: JPEG/PNG frame folders with Pillow, video files with PyAV.

Both readers give RGB frames as numpy uint8 arrays (H, W, 3) for 0-based frame indices and
raise :class:`~haltingvt.data.DataError` naming the path for anything unreadable.

Video files: the container's frame count is only an estimate (``stream.frames`` is 0 in
webm/mkv and can be wrong anywhere). :class:`VideoReader` estimates it from the header /
duration, and when decoding reaches the real end of the stream earlier it corrects the
count and maps the missing indices with the ``short_video`` rule (loop / clamp).
Sparse clips are read by seeking to the key frame before each wanted frame instead of
decoding the whole video; frames are identified by their presentation timestamp, so a
frame read after a seek is the same frame a sequential decode gives. FFmpeg threading is
off by default (one decoding thread per reader): DataLoader workers are the parallelism,
and no FFmpeg thread pool exists that a ``fork`` could copy in a locked state. Containers
are opened and closed inside each read, never kept across a fork.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

import av
import numpy as np
import torch
from PIL import Image

from .errors import DataError
from .sampling import wrap_indices

if TYPE_CHECKING:
    from av.container import InputContainer

DEFAULT_FILENAME_TMPL = "img_{:05}.jpg"


def frame_filename(filename_tmpl: str, number: int) -> str:
    try:
        return filename_tmpl.format(number)
    except (IndexError, KeyError, ValueError) as err:
        raise DataError(f"bad data.filename_tmpl '{filename_tmpl}': {err}") from None


def _frame_numbers(filename_tmpl: str, names: Iterable[str]) -> list[int]:
    """The frame numbers of the file names that ``filename_tmpl`` (one ``{}`` field) would give."""
    parts = [(literal, field is not None) for literal, field, _, _ in string.Formatter().parse(filename_tmpl)]
    pattern = re.compile("".join(re.escape(literal) + (r"(\d+)" if has_field else "") for literal, has_field in parts))
    numbers = []
    for name in names:
        match = pattern.fullmatch(name)
        if match and match.groups():
            numbers.append(int(match.group(1)))
    return numbers


class FrameFolderReader:
    """Frames stored as images in one folder: frame ``i`` (0-based) is the file
    ``filename_tmpl.format(start_index + offset + i)``.

    ``num_frames``: the count from the annotation list; None counts the consecutive files
    present from the first one.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        filename_tmpl: str = DEFAULT_FILENAME_TMPL,
        start_index: int = 1,
        num_frames: int | None = None,
        offset: int = 0,
    ) -> None:
        self.path = os.fspath(path)
        self.filename_tmpl = filename_tmpl
        self.first = start_index + offset
        if not os.path.isdir(self.path):
            what = "is not a folder" if os.path.exists(self.path) else "not found"
            raise DataError(f"{self.path}: frame folder {what}")
        self.num_frames = self._count() if num_frames is None else int(num_frames)

    def _count(self) -> int:
        names = set(os.listdir(self.path))
        n = 0
        while frame_filename(self.filename_tmpl, self.first + n) in names:
            n += 1
        if n == 0:
            raise DataError(
                f"{self.path}: no frame named '{frame_filename(self.filename_tmpl, self.first)}' "
                f"(data.filename_tmpl='{self.filename_tmpl}', data.start_index={self.first})"
            )
        later = sorted(k for k in _frame_numbers(self.filename_tmpl, names) if k > self.first + n)
        if later:  # frames after a gap: using only those before it would silently shorten the video
            raise DataError(
                f"{self.path}: frame {frame_filename(self.filename_tmpl, self.first + n)} is missing "
                f"(frames {self.first}..{self.first + n - 1} and {len(later)} more from {later[0]} on are present)"
            )
        return n

    def frame_path(self, index: int) -> str:
        return os.path.join(self.path, frame_filename(self.filename_tmpl, self.first + int(index)))

    def read(self, indices: Sequence[int], short_video: str = "loop") -> list[np.ndarray]:
        """Frames for ``indices`` (each file decoded once) -> list of uint8 (H, W, 3)."""
        cache: dict[int, np.ndarray] = {}
        out = []
        for i in indices:
            i = int(i)
            if i not in cache:
                cache[i] = load_image(self.frame_path(i), folder=self.path)
            out.append(cache[i])
        _check_same_size(out, self.path)
        return out


def load_image(path: str, folder: str | None = None) -> np.ndarray:
    """One image file -> RGB uint8 (H, W, 3); DataError naming the file when missing/corrupt."""
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except FileNotFoundError:
        where = f" (frame folder {folder})" if folder else ""
        raise DataError(f"{path}: frame file missing{where}") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise DataError(f"{path}: cannot read image: {err}") from None


def _check_same_size(frames: list[np.ndarray], path: str) -> None:
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        raise DataError(f"{path}: frames of different sizes {sorted(shapes)}")


class _NeedSequential(Exception):
    """Internal: timestamps cannot be trusted; restart with a sequential decode."""


class VideoReader:
    """Frames of one video file (mp4, webm, avi, mkv, ... anything FFmpeg reads) via PyAV.

    Args:
        path: the video file.
        threads: FFmpeg decoding threads (1 = no FFmpeg threads; safe in DataLoader workers).
        seek_gap: seek forward when the next wanted frame is more than this many frames
            ahead of the decoder; None = adaptive (the key-frame interval seen so far,
            32 before one is seen); 0 = always seek (tests); a huge value = never seek.
        num_frames_hint: frame count to use instead of the container's estimate (a frame
            count from an annotation list); corrected like the estimate if wrong.

    Usage: ``VideoReader(path).read(indices)`` or as a context manager. The container is
    opened on demand and closed by :meth:`close` (``read`` closes it when done).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        threads: int = 1,
        seek_gap: int | None = None,
        num_frames_hint: int | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self.threads = int(threads)
        self.seek_gap = seek_gap
        if not os.path.isfile(self.path):
            what = "is not a file" if os.path.exists(self.path) else "not found"
            raise DataError(f"{self.path}: video file {what}")
        self._container: InputContainer | None = None
        self._stream: av.VideoStream | None = None
        self.seeks = 0  # seeks done so far (for tests and benchmarks)
        self.fell_back = False  # timestamps were unusable and a sequential decode was used
        self._open()
        try:
            self.num_frames = int(num_frames_hint) if num_frames_hint else self._estimate_frames()
        except BaseException:
            self.close()
            raise

    # -- container handling -------------------------------------------------------------
    def _open(self) -> None:
        self.close()
        try:
            container = av.open(self.path, metadata_errors="ignore")
        except (av.FFmpegError, OSError, ValueError) as err:
            raise DataError(f"{self.path}: cannot open video: {err}") from None
        if not container.streams.video:
            container.close()
            raise DataError(f"{self.path}: no video stream")
        stream = container.streams.video[0]
        cc = stream.codec_context
        cc.thread_count = self.threads
        cc.thread_type = "NONE" if self.threads == 1 else "AUTO"
        self._container, self._stream = container, stream
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        self.fps = float(rate) if rate else None
        self._time_base = float(stream.time_base) if stream.time_base else None
        self._start = stream.start_time if stream.start_time is not None else 0
        self._seekable = bool(self.fps and self._time_base)

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
        self._container = self._stream = None

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _estimate_frames(self) -> int:
        # both set: called while open
        stream, container = cast("av.VideoStream", self._stream), cast("InputContainer", self._container)
        if stream.frames and stream.frames > 0:
            return int(stream.frames)
        if self.fps:
            if stream.duration and self._time_base:
                return max(1, round(stream.duration * self._time_base * self.fps))
            if container.duration:
                return max(1, round(container.duration / av.time_base * self.fps))
        # No usable header: count packets (demuxing only, no decoding), then rewind.
        try:
            n = sum(1 for p in container.demux(stream) if p.size)
        except av.FFmpegError as err:
            raise DataError(f"{self.path}: cannot read video: {err}") from None
        self._open()
        if n == 0:
            raise DataError(f"{self.path}: no video frames")
        return n

    # -- decoding -------------------------------------------------------------------------
    def _index(self, frame, counter: int, use_pts: bool) -> int:
        if not use_pts:
            return counter
        if frame.pts is None:
            raise _NeedSequential
        return round((frame.pts - self._start) * self._time_base * self.fps)

    def _decode_targets(self, targets: list[int], use_pts: bool) -> tuple[dict[int, np.ndarray], int | None]:
        """Decode the sorted unique ``targets`` -> ({index: frame}, frame count if the end was reached)."""
        found: dict[int, np.ndarray] = {}
        frames_iter = None
        cur = -1  # index of the last decoded frame
        counter = -1
        last = None  # (index, array) of the last converted frame
        keys: list[int] = []  # key-frame indices seen, to learn the GOP length
        try:
            for t in targets:
                if last is not None and t <= last[0]:
                    found[t] = last[1]  # timestamp gap (variable frame rate): nearest following frame
                    continue
                seek = use_pts and self._seekable and t - cur > self._seek_threshold(keys)
                if seek:
                    # _seekable: fps and time base are known
                    target_pts = self._start + int(t / cast(float, self.fps) / cast(float, self._time_base))
                    try:
                        container = cast("InputContainer", self._container)  # open while decoding
                        container.seek(target_pts, stream=self._stream, backward=True, any_frame=False)
                    except av.FFmpegError:
                        raise _NeedSequential from None  # e.g. a stream without an index
                    self.seeks += 1
                    frames_iter = cast("InputContainer", self._container).decode(cast("av.VideoStream", self._stream))
                elif frames_iter is None:
                    frames_iter = cast("InputContainer", self._container).decode(cast("av.VideoStream", self._stream))
                for frame in frames_iter:
                    counter += 1
                    idx = self._index(frame, counter, use_pts)
                    if seek:
                        if idx > t:
                            raise _NeedSequential  # the seek landed past the frame: timestamps unreliable
                        seek = False
                    cur = idx
                    if frame.key_frame:
                        keys.append(idx)
                    if idx >= t:
                        last = (idx, frame.to_ndarray(format="rgb24"))
                        found[t] = last[1]
                        break
                else:
                    return found, cur + 1 if cur >= 0 else 0
        except av.FFmpegError as err:
            raise DataError(f"{self.path}: cannot decode video: {err}") from None
        return found, None

    def _seek_threshold(self, keys: list[int]) -> int:
        if self.seek_gap is not None:
            return self.seek_gap
        gops = [b - a for a, b in zip(keys, keys[1:]) if b > a]
        return max(8, min(gops)) if gops else 32

    def read(self, indices: Sequence[int], short_video: str = "loop") -> list[np.ndarray]:
        """Frames for 0-based ``indices`` -> list of uint8 (H, W, 3), in the order asked.

        Indices past the real end of the stream (the frame count was over-estimated) are
        mapped with ``short_video`` ("loop" / "clamp") and :attr:`num_frames` is corrected.
        Closes the container when done.
        """
        if self._container is None:
            self._open()
        wanted = [int(i) for i in indices]
        try:
            try:
                frames = self._read(wanted, short_video, use_pts=True)
            except _NeedSequential:
                self.fell_back = True
                self._open()
                frames = self._read(wanted, short_video, use_pts=False)
        finally:
            self.close()
        return frames

    def _read(self, wanted: list[int], short_video: str, use_pts: bool) -> list[np.ndarray]:
        targets = sorted(set(wanted))
        found, end = self._decode_targets(targets, use_pts)
        if len(found) < len(targets):
            if not end:
                raise DataError(f"{self.path}: no decodable video frames")
            # The stream ended before the estimated frame count: correct it and wrap the rest.
            self.num_frames = end
            missing = [t for t in targets if t not in found]
            remap = {t: int(w) for t, w in zip(missing, wrap_indices(_as_tensor(missing), end, short_video))}
            self._open()
            more, _ = self._decode_targets(sorted(set(remap.values()) - set(found)), use_pts)
            more.update(found)
            for t, w in remap.items():
                if w not in more:
                    raise DataError(f"{self.path}: frame {w} could not be decoded")
                found[t] = more[w]
        frames = [found[i] for i in wanted]
        _check_same_size(frames, self.path)
        return frames


def _as_tensor(values: list[int]):
    return torch.tensor(values, dtype=torch.long)


def open_reader(
    path: str | os.PathLike,
    *,
    is_video: bool | None = None,
    filename_tmpl: str = DEFAULT_FILENAME_TMPL,
    start_index: int = 1,
    num_frames: int | None = None,
    offset: int = 0,
    threads: int = 1,
) -> FrameFolderReader | VideoReader:
    """A reader for a video file or a frame folder (``is_video=None``: a folder is frames,
    anything else a video)."""
    if is_video is None:
        is_video = not Path(path).is_dir()
    if is_video:
        return VideoReader(path, threads=threads, num_frames_hint=num_frames)
    return FrameFolderReader(path, filename_tmpl, start_index, num_frames, offset)
