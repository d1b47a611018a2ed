"""List and class files for a dataset from its official annotation file.

ActivityNet v1.3 (``activity_net.v1-3.min.json``)::

    {"version": "VERSION 1.3", "taxonomy": [...],
     "database": {"<video id>": {"subset": "training" | "validation" | "testing",
                                 "duration": 82.7, "url": "...",
                                 "annotations": [{"label": "Ballet", "segment": [3.1, 79.9]}, ...]}}}

Classes: the sorted unique ``label`` names over the annotations of every training and
validation video in the file (whether or not its frames are present, so the class indices
do not depend on which videos were downloaded): 200 for v1.3. Written one name per line
(line order = class index), the form :func:`~haltingvt.data.lists.read_class_names` reads.

Lists: one ``rawframes`` line per training / validation video that has annotations and whose
frame folder exists under the frames folder (named ``v_<id>`` as MMAction2's ActivityNet
rawframes, or ``<id>``): ``v_<id> total_frames label [label ...]``, the labels being the
sorted distinct class indices of the video's annotations (a multi-label sample; read with
``loss.multi_label=true``). Paths are relative to the frames folder (``data.data_root``).
Videos without frames are skipped and counted; the testing subset has no labels and is
not listed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..io.textsafe import escape
from .decoding import DEFAULT_FILENAME_TMPL, FrameFolderReader
from .errors import DataError
from .extract import list_line
from .lists import write_class_names

__all__ = ["prepare_activitynet", "read_activitynet", "ACTIVITYNET_SUBSETS"]

#: subset name in the annotation file -> list file written
ACTIVITYNET_SUBSETS = {"training": "train.txt", "validation": "val.txt"}
_ALL_SUBSETS = ("training", "validation", "testing")


def read_activitynet(annotation_file: str | os.PathLike) -> tuple[list[str], dict[str, dict[str, list[str]]]]:
    """Parse and check an ActivityNet annotation file -> (sorted class names, {subset: {video id: labels}})
    for the training and validation subsets (labels in annotation order, repeats kept).

    Raises FileNotFoundError, or DataError as one line naming the file (and the video id) for
    anything that is not the ActivityNet format.
    """
    path = Path(annotation_file)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {escape(path)}")
    where = escape(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(f"{where}: not UTF-8 text (byte {err.start})") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{where}: not JSON: {err.msg} at line {err.lineno} column {err.colno}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("database"), dict):
        raise DataError(
            f'{where}: no "database" object (ActivityNet\'s format: '
            '{"database": {video_id: {"subset": ..., "annotations": [...]}}})'
        )
    videos: dict[str, dict[str, list[str]]] = {subset: {} for subset in ACTIVITYNET_SUBSETS}
    for vid, entry in doc["database"].items():
        at = f"{where}: video {escape(vid)}"
        if not vid or vid in (".", "..") or "/" in vid or "\\" in vid or "\0" in vid:
            raise DataError(f"{at}: not a video id (a folder name is made of it)")
        if not isinstance(entry, dict):
            raise DataError(f"{at}: expected an object, got {type(entry).__name__}")
        if "subset" not in entry:
            raise DataError(f'{at}: no "subset"')
        subset = entry["subset"]
        if subset not in _ALL_SUBSETS:
            raise DataError(f"{at}: unknown subset {escape(repr(subset))} (expected one of {', '.join(_ALL_SUBSETS)})")
        if subset == "testing":
            continue  # no labels (its "annotations" are empty in the official file)
        if "annotations" not in entry:
            raise DataError(f'{at}: no "annotations"')
        anns = entry["annotations"]
        if not isinstance(anns, list):
            raise DataError(f'{at}: "annotations" must be a list, got {type(anns).__name__}')
        labels = []
        for i, ann in enumerate(anns):
            label = ann.get("label") if isinstance(ann, dict) else None
            if label is None:
                raise DataError(f'{at}: annotation {i} has no "label"')
            if not isinstance(label, str) or not label.strip() or label != label.strip() or "\n" in label:
                raise DataError(f"{at}: annotation {i}: bad label {escape(repr(label))} (a class name on one line)")
            labels.append(label)
        videos[subset][vid] = labels
    classes = sorted({label for subset in videos.values() for labels in subset.values() for label in labels})
    if not classes:
        raise DataError(f"{where}: no labelled training or validation video")
    return classes, videos


def _frame_folder(frames_dir: Path, vid: str) -> str | None:
    for name in (f"v_{vid}", vid):
        if (frames_dir / name).is_dir():
            return name
    return None


def prepare_activitynet(
    annotation_file: str | os.PathLike,
    frames_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    filename_tmpl: str = DEFAULT_FILENAME_TMPL,
    start_index: int = 1,
    class_file: str = "classes.txt",
) -> dict:
    """Write ``out_dir/train.txt``, ``out_dir/val.txt`` (rawframes, multi-label) and ``out_dir/classes.txt``.

    Every output is written to a temporary file and renamed once all are ready, so an error leaves the
    files of an earlier run whole. A subset without any frame folder gets no list (its count is 0).
    Returns a summary: ``classes``, ``files``, and per subset ``listed``, ``missing`` (no frame folder),
    ``unlabelled`` (no annotations), ``missing_ids`` (the first 10 missing).
    """
    classes, videos = read_activitynet(annotation_file)
    index = {name: i for i, name in enumerate(classes)}
    frames_dir, out_dir = Path(frames_dir), Path(out_dir)
    if not frames_dir.is_dir():
        raise FileNotFoundError(f"frames folder not found: {escape(frames_dir)}")
    summary: dict = {"classes": len(classes), "files": {}, "subsets": {}}
    texts: dict[Path, str] = {}
    for subset, list_name in ACTIVITYNET_SUBSETS.items():
        lines, missing, unlabelled = [], [], 0
        for vid in sorted(videos[subset]):
            labels = videos[subset][vid]
            if not labels:
                unlabelled += 1
                continue
            folder = _frame_folder(frames_dir, vid)
            if folder is None:
                missing.append(vid)
                continue
            try:
                total = FrameFolderReader(frames_dir / folder, filename_tmpl, start_index).num_frames
            except DataError as err:
                raise DataError(f"{escape(annotation_file)}: video {escape(vid)}: {err}") from None
            lines.append(list_line(folder, total, *sorted({index[label] for label in labels})))
        summary["subsets"][subset] = {
            "listed": len(lines),
            "missing": len(missing),
            "unlabelled": unlabelled,
            "missing_ids": missing[:10],
        }
        if lines:
            texts[out_dir / list_name] = "".join(line + "\n" for line in lines)
            summary["files"][subset] = str(out_dir / list_name)
    if not texts:
        raise DataError(
            f"{escape(frames_dir)}: no frame folder of a training or validation video of "
            f"{escape(annotation_file)} (looked for v_<id> and <id>)"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    temps = []
    try:
        for target, text in texts.items():
            tmp = target.with_name(target.name + ".partial")
            tmp.write_text(text, encoding="utf-8")
            temps.append((tmp, target))
        tmp = out_dir / (class_file + ".partial")
        write_class_names(classes, tmp)
        temps.append((tmp, out_dir / class_file))
        for tmp, target in temps:
            os.replace(tmp, target)
    finally:
        for tmp, _ in temps:
            if tmp.exists():
                tmp.unlink()
    summary["files"]["classes"] = str(out_dir / class_file)
    return summary
