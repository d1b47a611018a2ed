"""Dataset preparation: video files -> JPEG frame folders (or re-encoded mp4 files) and a list file.

What MMAction2's ``tools/data/build_rawframes.py`` does for RGB frames (its OpenCV path,
``--use-opencv``), with PyAV as the decoder:

* every video ``VIDEO_DIR/<rel>/<name>.<ext>`` becomes ``OUT_DIR/<rel>/<name>/img_00001.jpg ...``:
  all frames, decoded in presentation order, numbered from 1;
* resizing: none (the frames keep their size), ``new_short`` (the short side becomes
  ``new_short`` and the long side ``int((new_short / short) * long)``, truncated as
  build_rawframes.py computes it, not rounded as ``mmcv.rescale_size``), or ``new_width`` x
  ``new_height``; always :func:`~haltingvt.data.transforms.imresize` (``mmcv.imresize``,
  OpenCV bilinear);
* JPEG through OpenCV at quality 95 (``cv2.imwrite``'s default, which ``mmcv.imwrite`` uses;
  4:2:0 chroma), encoded with ``cv2.imencode`` so that any file name can be written.

``to_video=True`` re-encodes each video instead to ``OUT_DIR/<rel>/<name>.mp4`` at the same
size (H.264 4:2:0, ``crf``, key frame every ``gop`` frames, no audio; the frame rate is kept),
as MMAction2's ``tools/data/resize_videos.py`` with ``--dense`` (``-g 16``). H.264 4:2:0 needs
even sizes, so an odd width or height is made even by dropping one pixel (as ffmpeg's
``scale=-2:N``, which resize_videos.py uses, also keeps sizes even).

Resumable: a video whose output (folder or mp4) exists is skipped; frames are written into
``<name>.partial`` (``<name>.partial.mp4``) and renamed when the video is done, so an
interrupted one is redone. A video that cannot be read is reported (one line naming it),
skipped and counted. At the end: a list file relative to ``OUT_DIR`` (frames: the
``rawframes`` format ``frame_dir total_frames label``; videos: ``path label``), a class-name
file when the videos sit in class folders, and a JSON summary.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, cast

import av
import cv2
import numpy as np
from tqdm import tqdm

from ..io.textsafe import escape
from .decoding import DEFAULT_FILENAME_TMPL, FrameFolderReader
from .encode import write_mp4
from .errors import DataError
from .lists import VIDEO_EXTENSIONS, write_class_names
from .transforms import imresize

__all__ = ["extract_videos", "find_videos", "new_size", "list_line", "PARTIAL"]

PARTIAL = ".partial"
JPEG_QUALITY = 95  # cv2.imwrite's default quality, which mmcv.imwrite (build_rawframes.py) uses


def new_size(width: int, height: int, new_short: int = 0, new_width: int = 0, new_height: int = 0) -> tuple[int, int]:
    """(width, height) of the extracted frames.

    ``new_short``: the short side becomes ``new_short``, the long side ``int((new_short / short) * long)``
    -- truncated, the arithmetic of MMAction2's build_rawframes.py (e.g. 640x272 at 256 -> 602x256;
    ``mmcv.rescale_size`` would round instead). Else ``new_width`` x ``new_height`` when both are
    set, else the size unchanged.
    """
    if new_short:
        if height <= width:
            return int((new_short / height) * width), new_short
        return new_short, int((new_short / width) * height)
    if new_width and new_height:
        return new_width, new_height
    return width, height


def list_path_problem(rel: str) -> str | None:
    """Why ``rel`` cannot be written in a list file haltingvt reads back (None: it can)."""
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        return "its name is not UTF-8"
    if ";" in rel:
        return "its path contains ';' (the list-file separator)"
    if "\n" in rel:
        return "its path contains a newline"
    if rel != rel.rstrip():
        return "its path ends in a space"
    return None


def list_line(rel: str, *fields: object) -> str:
    """One list-file line: ``rel field ...``; with ``;`` separators when the path has whitespace (how
    :mod:`haltingvt.data.lists` reads paths with spaces) and ``./`` before a path that would start a comment."""
    if rel.startswith("#") or rel != rel.lstrip():
        rel = "./" + rel
    parts = [rel, *(str(f) for f in fields)]
    return ";".join(parts) if any(ch.isspace() for ch in rel) else " ".join(parts)


def find_videos(
    video_dir: str | os.PathLike,
    level: int | None = None,
    extensions: Sequence[str] = VIDEO_EXTENSIONS,
    exclude: str | os.PathLike | None = None,
) -> list[str]:
    """Video files under ``video_dir`` as sorted relative paths (``/``-separated).

    ``level`` 1: files directly in ``video_dir``; 2: files in its sub-folders (``<class>/<video>``, as
    build_rawframes.py's ``--level 2``); None: any depth. Hidden files and folders and the folder
    ``exclude`` (the output folder, when it lies inside) are left out.
    """
    root = Path(video_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"video folder not found: {escape(root)}")
    exts = {e.lower() if e.startswith(".") else "." + e.lower() for e in extensions}
    skip = os.path.realpath(exclude) if exclude is not None else None
    found = []
    for folder, dirs, files in os.walk(root):
        rel_dir = os.path.relpath(folder, root)
        depth = 0 if rel_dir == "." else rel_dir.count(os.sep) + 1
        dirs[:] = sorted(
            d
            for d in dirs
            if not d.startswith(".")
            and (skip is None or os.path.realpath(os.path.join(folder, d)) != skip)
            and (level is None or depth + 1 < level)
        )
        if level is not None and depth != level - 1:
            continue
        for name in files:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in exts:
                rel = name if rel_dir == "." else os.path.join(rel_dir, name)
                found.append(rel.replace(os.sep, "/"))
    return sorted(found)


def _strip_ext(rel: str) -> str:
    return os.path.splitext(rel)[0]


@dataclass(frozen=True)
class _Job:
    src: str
    dst: str
    to_video: bool
    new_short: int
    new_width: int
    new_height: int
    gop: int
    crf: int
    preset: str
    quality: int
    threads: int


def _frames(path: str, threads: int) -> Iterator[tuple[np.ndarray, Fraction | None]]:
    """All frames of a video in presentation order (RGB uint8), with the stream's frame rate."""
    try:
        container = av.open(path, metadata_errors="ignore")
    except (av.FFmpegError, OSError, ValueError) as err:
        raise DataError(f"cannot open video: {err}") from None
    with container:
        if not container.streams.video:
            raise DataError("no video stream")
        stream = container.streams.video[0]
        stream.codec_context.thread_count = threads
        stream.codec_context.thread_type = "NONE" if threads == 1 else "AUTO"
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        try:
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24"), rate
        except av.FFmpegError as err:
            raise DataError(f"cannot decode video: {err}") from None


def _resized(frame: np.ndarray, job: _Job, even: bool = False) -> np.ndarray:
    h, w = frame.shape[:2]
    nw, nh = new_size(w, h, job.new_short, job.new_width, job.new_height)
    if even:
        nw, nh = max(2, nw - nw % 2), max(2, nh - nh % 2)
    return frame if (nw, nh) == (w, h) else imresize(frame, nw, nh)


def _write_frames(job: _Job, tmp: Path) -> dict:
    tmp.mkdir(parents=True)
    n, size = 0, None
    params = [cv2.IMWRITE_JPEG_QUALITY, job.quality]
    for frame, _ in _frames(job.src, job.threads):
        out = _resized(frame, job)
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(out, cv2.COLOR_RGB2BGR), params)
        if not ok:
            raise DataError(f"frame {n + 1}: JPEG encoding failed")
        n += 1
        (tmp / DEFAULT_FILENAME_TMPL.format(n)).write_bytes(buf.tobytes())
        size = size or [out.shape[1], out.shape[0]]
    if n == 0:
        raise DataError("no video frames decoded")
    return {"frames": n, "size": size}


def _write_video(job: _Job, tmp: Path) -> dict:
    tmp.parent.mkdir(parents=True, exist_ok=True)
    info: dict[str, Any] = {"frames": 0, "size": None}
    source = _frames(job.src, job.threads)
    try:
        first, rate = next(source)
    except StopIteration:
        raise DataError("no video frames decoded") from None

    def frames() -> Iterator[np.ndarray]:
        for frame in itertools.chain([first], (f for f, _ in source)):
            out = _resized(frame, job, even=True)
            info["frames"] += 1
            info["size"] = info["size"] or [out.shape[1], out.shape[0]]
            yield out

    write_mp4(
        tmp,
        frames(),
        fps=rate or Fraction(25),
        codec="libx264",
        pix_fmt="yuv420p",
        options={"crf": str(job.crf), "preset": job.preset},
        gop=job.gop,
    )
    return info


def _partial(dst: Path, to_video: bool) -> Path:
    return dst.with_name(dst.stem + PARTIAL + ".mp4") if to_video else dst.with_name(dst.name + PARTIAL)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _run_job(job: _Job) -> dict:
    """Extract one video (in a worker process) -> {"status": "done" | "already" | "failed", ...}."""
    dst = Path(job.dst)
    try:
        tmp = _partial(dst, job.to_video)
        if dst.exists():
            _remove(tmp)  # a stale temporary beside a finished output
            if job.to_video:
                return {"status": "already", "frames": None}
            reader = FrameFolderReader(dst)  # counts the frames; a gap is reported, never deleted
            return {"status": "already", "frames": reader.num_frames}
        _remove(tmp)  # a half-written one from an interrupted run
        try:
            info = (_write_video if job.to_video else _write_frames)(job, tmp)
            os.rename(tmp, dst)
        except BaseException:
            _remove(tmp)
            raise
        return {"status": "done", **info}
    except Exception as err:  # noqa: BLE001 -- any unreadable video is reported and skipped, never fatal
        message = str(err) if isinstance(err, (DataError, OSError)) else f"{type(err).__name__}: {err}"
        return {"status": "failed", "error": message}


def extract_videos(
    video_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    to_video: bool = False,
    level: int | None = None,
    extensions: Sequence[str] = VIDEO_EXTENSIONS,
    new_short: int = 0,
    new_width: int = 0,
    new_height: int = 0,
    gop: int = 16,
    crf: int = 23,
    preset: str = "medium",
    quality: int = JPEG_QUALITY,
    workers: int = 1,
    threads: int = 1,
    list_file: str | os.PathLike | None = None,
    split_lists: bool = False,
    class_file: str | os.PathLike | None = None,
    class_names: Sequence[str] | None = None,
    summary_file: str | os.PathLike | None = None,
    progress: bool = False,
    report: Callable[[str], None] | None = None,
) -> dict:
    """Extract (or re-encode) every video under ``video_dir`` into ``out_dir``; returns the summary
    (also written as JSON to ``summary_file``, default ``out_dir/extract_summary.json``).

    List file (default ``out_dir/rawframes.txt``, ``out_dir/videos.txt`` with ``to_video``): paths
    relative to ``out_dir`` (use it as ``data.data_root``). When every video sits in a sub-folder, the
    label is the index of its folder's name (the class) among the sorted folder names, and the
    names are written one per line to ``class_file`` (default ``out_dir/classes.txt``); videos
    directly in ``video_dir`` get label 0 and no class file is written. ``class_names`` (e.g. the
    class file of the training split, for the validation split) fixes the class order instead: a
    video whose folder is not one of them is reported and skipped, and no class file is written.
    ``split_lists``: one list per top-level folder of ``video_dir`` (``<split>/<class>/<video>``) instead,
    ``<split>_rawframes.txt`` (``<split>_videos.txt``) beside ``list_file``, all with paths relative to
    ``out_dir`` and one class order (the class folders of every split).
    ``report`` gets one line per video that failed (default: stderr).
    """
    if new_short < 0 or new_width < 0 or new_height < 0:
        raise ValueError("sizes must be positive")
    if new_short and (new_width or new_height):
        raise ValueError("give either new_short or new_width and new_height, not both")
    if bool(new_width) != bool(new_height):
        raise ValueError("new_width and new_height go together")
    start = time.perf_counter()
    video_dir, out_dir = Path(video_dir), Path(out_dir)
    videos = find_videos(video_dir, level, extensions, exclude=out_dir)
    if not videos:
        where = f" at level {level}" if level else ""
        raise DataError(
            f"{escape(video_dir)}: no video files{where} "
            f"(extensions {' '.join(sorted({e.lower() for e in extensions}))})"
        )
    if split_lists and not all(rel.count("/") >= 2 for rel in videos):
        flat = next(rel for rel in videos if rel.count("/") < 2)
        raise DataError(
            f"{escape(video_dir)}: split lists need VIDEO_DIR/<split>/<class>/<video>, but "
            f"{escape(flat)} is not in a split and a class folder"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    list_file = Path(list_file) if list_file else out_dir / ("videos.txt" if to_video else "rawframes.txt")
    summary_file = Path(summary_file) if summary_file else out_dir / "extract_summary.json"
    if report is None:

        def report(line: str) -> None:
            tqdm.write(line, file=sys.stderr)

    failures: list[dict] = []
    outputs: dict[str, str] = {}  # output rel path -> first video that writes it
    jobs: dict[str, _Job] = {}
    for rel in videos:
        out_rel = _strip_ext(rel) + (".mp4" if to_video else "")
        problem = list_path_problem(rel)
        if problem is None and out_rel in outputs:
            problem = f"same output as {escape(outputs[out_rel])}"
        if problem is None and class_names is not None and Path(rel).parent.name not in class_names:
            problem = f"its folder {escape(repr(Path(rel).parent.name))} is not a class of the class-name file"
        if problem is None and _strip_ext(rel).endswith(PARTIAL):
            problem = f"its name ends in '{PARTIAL}', the suffix of unfinished outputs"
        if problem:
            failures.append({"video": rel, "error": problem})
            report(f"skipped {escape(rel)}: {escape(problem)}")
            continue
        outputs[out_rel] = rel
        jobs[rel] = _Job(
            str(video_dir / rel),
            str(out_dir / out_rel),
            to_video,
            new_short,
            new_width,
            new_height,
            gop,
            crf,
            preset,
            quality,
            threads,
        )

    results: dict[str, dict] = {}
    bar = tqdm(
        total=len(jobs),
        unit="video",
        desc="videos -> mp4" if to_video else "videos -> frames",
        disable=not progress,
        file=sys.stderr,
    )
    rels = list(jobs)
    try:
        if workers > 1 and len(jobs) > 1:
            with multiprocessing.get_context().Pool(min(workers, len(jobs))) as pool:
                for rel, res in zip(rels, pool.imap(_run_job, [jobs[r] for r in rels])):
                    _collect(rel, res, results, failures, report)
                    bar.update()
        else:
            for rel in rels:
                _collect(rel, _run_job(jobs[rel]), results, failures, report)
                bar.update()
    finally:
        bar.close()

    good = sorted(results)
    fixed = class_names is not None
    if fixed:
        class_names = list(cast("Sequence[str]", class_names))  # fixed: not None
    elif all("/" in rel for rel in videos):
        class_names = sorted({Path(rel).parent.name for rel in videos})
    index = {name: i for i, name in enumerate(class_names or [])}
    lists: dict[Path, list[str]] = {}
    for rel in good:
        label = index[Path(rel).parent.name] if class_names else 0
        out_rel = _strip_ext(rel) + (".mp4" if to_video else "")
        fields = (label,) if to_video else (results[rel]["frames"], label)
        target = list_file.with_name(f"{rel.split('/')[0]}_{list_file.name}") if split_lists else list_file
        lists.setdefault(target, []).append(list_line(out_rel, *fields))
    for target, lines in lists.items():
        _write_text(target, "".join(line + "\n" for line in lines))
    lines = [line for part in lists.values() for line in part]
    if class_names and lines and not fixed:
        class_file = Path(class_file) if class_file else out_dir / "classes.txt"
        tmp = class_file.with_name(class_file.name + PARTIAL)
        write_class_names(class_names, tmp)
        os.replace(tmp, class_file)
    else:
        class_file = None
    done = sum(r["status"] == "done" for r in results.values())
    summary = {
        "video_dir": str(video_dir),
        "out_dir": str(out_dir),
        "output": "mp4" if to_video else "frames",
        "resize": {"new_short": new_short, "new_width": new_width, "new_height": new_height},
        "jpeg_quality": None if to_video else quality,
        "gop": gop if to_video else None,
        "crf": crf if to_video else None,
        "videos": len(videos),
        "extracted": done,
        "already_done": len(results) - done,
        "failed": len(failures),
        "frames": sum(r.get("frames") or 0 for r in results.values()),
        "list": None if split_lists or not lines else str(list_file),
        "lists": {target.name: str(target) for target in lists},
        "classes": str(class_file) if class_file else None,
        "num_classes": len(class_names) if class_names else None,
        "failures": [{"video": f["video"], "error": f["error"]} for f in failures],  # JSON keeps the real strings
        "outputs": {rel: {k: v for k, v in results[rel].items() if k != "status"} for rel in good},
        "seconds": round(time.perf_counter() - start, 3),
    }
    _write_text(summary_file, json.dumps(summary, indent=2) + "\n")
    summary["summary"] = str(summary_file)
    return summary


def _collect(rel: str, res: dict, results: dict, failures: list, report: Callable[[str], None]) -> None:
    if res["status"] == "failed":
        failures.append({"video": rel, "error": res["error"]})
        report(f"skipped {escape(rel)}: {escape(res['error'])}")
    else:
        results[rel] = res


def _write_text(path: Path, text: str) -> None:
    """Write through a temporary file and a rename: an interrupted run leaves the old file whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + PARTIAL)
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
