"""Annotation lists and class-name files.

Three list formats, one sample per line (blank lines and lines starting with ``#`` are skipped):

``rawframes`` (MMAction2 ``RawframeDataset``)
    ``frame_dir total_frames label [label ...]``; with ``with_offset=True`` the form is
    ``frame_dir offset total_frames label [label ...]`` (frames ``offset .. offset+total-1``).
``video`` (MMAction2 ``VideoDataset``)
    ``path label [label ...]``.
``arnet`` (AR-Net Mini-Kinetics lists, paths may contain spaces)
    ``images/val/air drumming/7LSJ2Ryv1a8_000000_000010 60 0``: the last two fields are the
    frame count and the label, everything before them is the path.

In every format a line containing ``;`` is split on ``;`` instead of on whitespace, so
``images/val/air drumming/clip;60;0`` or ``videos/a b.mp4;3`` are read with their spaces.
Several labels per line are a multi-label sample (ActivityNet); they are only accepted when
the dataset is multi-label. Relative paths are joined to ``data_root``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from ..io.textsafe import describe_char, escape, safe_path, unsafe_char
from .errors import ListFormatError

LIST_FORMATS = ("video", "rawframes", "arnet")
VIDEO_EXTENSIONS = (".mp4", ".webm", ".avi", ".mkv", ".mov", ".m4v", ".mpg", ".mpeg", ".ogv", ".flv")


@dataclass
class VideoRecord:
    """One annotated sample.

    ``path`` is a video file or a frame folder (already joined to the data root),
    ``labels`` the class indices, ``total_frames`` the frame count from the list (None for
    video lists: read from the container), ``offset`` the first frame of a rawframe clip,
    ``source`` the ``file:line`` it came from (for messages).
    """

    path: str
    labels: list[int]
    total_frames: int | None = None
    offset: int = 0
    source: str = ""
    is_video: bool = field(default=False)


def is_video_path(path: str | os.PathLike) -> bool:
    """True when the path has a video file extension (``.mp4``, ``.webm``, ``.avi``, ``.mkv``, ...)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def _fields(line: str) -> list[str]:
    if ";" in line:
        return [f.strip() for f in line.split(";")]
    return line.split()


def _int(value: str, what: str, where: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ListFormatError(f"{where}: {what} must be an integer, got '{value}'") from None


def _join(root: str | os.PathLike | None, rel: str) -> str:
    if not root or os.path.isabs(rel):
        return rel
    return os.path.join(os.fspath(root), rel)


def parse_list_line(
    line: str, fmt: str, where: str, with_offset: bool = False
) -> tuple[str, list[int], int | None, int]:
    """Parse one non-empty line -> (relative path, labels, total_frames or None, offset).

    ``where`` is the ``file:line`` used in error messages.
    """
    if fmt not in LIST_FORMATS:
        raise ListFormatError(f"{where}: unknown list format '{fmt}' (expected one of {', '.join(LIST_FORMATS)})")
    parts = _fields(line)
    total: int | None = None
    offset = 0
    if fmt == "video":
        if len(parts) < 2:
            raise ListFormatError(f"{where}: expected 'path label [label ...]', got '{line}'")
        path, label_fields = parts[0], parts[1:]
    elif fmt == "rawframes":
        need = 4 if with_offset else 3
        form = "frame_dir offset total_frames label" if with_offset else "frame_dir total_frames label"
        if len(parts) < need:
            raise ListFormatError(f"{where}: expected '{form} [label ...]', got '{line}'")
        path = parts[0]
        if with_offset:
            offset = _int(parts[1], "offset", where)
            total = _int(parts[2], "total_frames", where)
            label_fields = parts[3:]
        else:
            total = _int(parts[1], "total_frames", where)
            label_fields = parts[2:]
    else:  # arnet: "<path possibly with spaces> <frames> <label>"
        if ";" in line:
            if len(parts) != 3:
                raise ListFormatError(f"{where}: expected 'path;frames;label', got '{line}'")
            path, frames_field, label_field = parts
        else:
            pieces = line.rsplit(None, 2)
            if len(pieces) != 3:
                raise ListFormatError(f"{where}: expected 'path frames label', got '{line}'")
            path, frames_field, label_field = pieces
        total = _int(frames_field, "frame count", where)
        label_fields = [label_field]
    if not path:
        raise ListFormatError(f"{where}: empty path in '{line}'")
    if total is not None and total <= 0:
        raise ListFormatError(f"{where}: frame count must be positive, got {total}")
    if offset < 0:
        raise ListFormatError(f"{where}: offset must be >= 0, got {offset}")
    labels = [_int(v, "label", where) for v in label_fields if v != ""]
    if not labels:
        raise ListFormatError(f"{where}: no label in '{line}'")
    return path, labels, total, offset


def read_text_lines(path: str | os.PathLike) -> list[str]:
    """The lines of a UTF-8 text file (a byte-order mark is dropped; any line ending).

    Bytes that are not UTF-8 are a :class:`ListFormatError` naming ``file:line``.
    """
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise ListFormatError(
            f"{path}:{line}: not UTF-8 text (byte 0x{raw[err.start]:02x}); save the file as UTF-8"
        ) from None
    return text.split("\n")  # not splitlines(): line numbers as editors count them (\\n only)


def read_list(
    list_file: str | os.PathLike,
    fmt: str,
    data_root: str | os.PathLike | None = None,
    *,
    with_offset: bool = False,
    num_classes: int | None = None,
    multi_label: bool = False,
) -> list[VideoRecord]:
    """Read an annotation list into :class:`VideoRecord` s.

    Raises FileNotFoundError for a missing list and :class:`ListFormatError` (message
    ``file:line: ...``) for a malformed line, a label outside ``[0, num_classes)`` or
    several labels on a line of a single-label dataset.
    """
    list_file = Path(list_file)
    if not list_file.is_file():
        raise FileNotFoundError(f"annotation list not found: {list_file}")
    records: list[VideoRecord] = []
    for lineno, raw in enumerate(read_text_lines(list_file), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{list_file}:{lineno}"
        rel, labels, total, offset = parse_list_line(line, fmt, where, with_offset=with_offset)
        if len(labels) > 1 and not multi_label:
            raise ListFormatError(
                f"{where}: {len(labels)} labels on one line but the dataset is single-label "
                "(set loss.multi_label=true for multi-label lists)"
            )
        for lab in labels:
            if lab < 0 or (num_classes is not None and lab >= num_classes):
                raise ListFormatError(f"{where}: label {lab} outside [0, {num_classes}) (model.num_classes)")
        path = _join(data_root, rel)
        video = fmt == "video" or is_video_path(rel)
        records.append(VideoRecord(path, labels, total, offset, where, video))
    if not records:
        raise ListFormatError(f"{list_file}: the annotation list has no samples")
    return records


_INDEXED = re.compile(r"^\s*(\d+)(?:\s*[,:;]\s*|\s+)(\S.*?)\s*$")


def write_class_names(class_names: Sequence[str], path: str | os.PathLike) -> Path:
    """One class name per line (the form :func:`read_class_names` reads)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{name}\n" for name in class_names), encoding="utf-8")
    return path


def read_class_names(path: str | os.PathLike) -> list[str]:
    """Class names, one per line (line order = class index), or ``index name`` lines.

    The indexed form is used when every line starts with an integer followed by a name
    (separator: whitespace, ``,``, ``:`` or ``;``) and the integers are ``0..n-1`` or
    ``1..n`` (UCF-style ``classInd.txt``; shifted to start at 0), in any order.
    A name holding a character that cannot be meant in one (a control character such as ESC,
    NUL or CR, a bidirectional override, a line separator: ``haltingvt.io.textsafe.unsafe_char``)
    is refused. Raises FileNotFoundError or :class:`ListFormatError` naming ``file:line``.
    """
    path = Path(path)
    where = safe_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"class-name file not found: {where}")
    lines = [(i, raw.strip()) for i, raw in enumerate(read_text_lines(path), start=1)]
    lines = [(i, s) for i, s in lines if s and not s.startswith("#")]
    if not lines:
        raise ListFormatError(f"{where}: the class-name file is empty")
    matches = [(i, _INDEXED.match(s)) for i, s in lines]
    if all(m is not None for _, m in matches):
        indexed = cast("list[tuple[int, re.Match[str]]]", matches)  # every line matched
        indices = [int(m.group(1)) for _, m in indexed]
        n = len(indices)
        base = min(indices)
        if sorted(indices) == list(range(base, base + n)) and base in (0, 1):
            names = [""] * n
            for (lineno, m), idx in zip(indexed, indices):
                names[idx - base] = _class_name(m.group(2), where, lineno)
            return names
        seen: dict[int, int] = {}
        for (lineno, _), idx in zip(matches, indices):
            if idx in seen:
                raise ListFormatError(f"{where}:{lineno}: class index {idx} already used on line {seen[idx]}")
            seen[idx] = lineno
        raise ListFormatError(
            f"{where}: 'index name' lines must number the classes 0..{n - 1} or 1..{n}, "
            f"got indices {min(indices)}..{max(indices)}"
        )
    return [_class_name(s, where, lineno) for lineno, s in lines]


def _class_name(name: str, where: str, lineno: int) -> str:
    bad = unsafe_char(name)
    if bad is not None:
        raise ListFormatError(
            f"{where}:{lineno}: class name '{escape(name)[:80]}' contains the control character "
            f"{describe_char(bad)}: refused"
        )
    return name
