"""Encoding clips to video files with PyAV (the synthetic export, tests and benchmarks use it)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import numpy as np
from av.codec.context import Flags

__all__ = ["write_mp4"]


def write_mp4(
    path: str | os.PathLike[str],
    frames: Iterable[np.ndarray],
    fps: int | Fraction = 8,
    codec: str = "libx264",
    pix_fmt: str = "yuv444p",
    options: Mapping[str, str] | None = None,
    gop: int | None = None,
    qscale: int | None = None,
) -> Path:
    """Encode uint8 RGB frames (T, H, W, 3) (an array or any iterable of (H, W, 3)) to ``path``.

    The container comes from the file extension. Defaults suit tiny synthetic clips: H.264 with full-resolution
    chroma (4:2:0 would smear saturated colours over whole patches) at near-lossless ``crf 12``.
    ``options``: codec options (replace the defaults), ``gop``: keyframe interval, ``qscale``: fixed
    quantiser (mpeg4).
    """
    path = Path(path)
    if options is None:
        options = {"crf": "12", "preset": "veryfast"} if codec in ("libx264", "h264") else {}
    with av.open(str(path), mode="w") as container:
        stream = None
        for frame in frames:
            frame = np.ascontiguousarray(frame)
            if stream is None:
                stream = cast(av.VideoStream, container.add_stream(codec, rate=fps))  # a video codec
                stream.width, stream.height, stream.pix_fmt = frame.shape[1], frame.shape[0], pix_fmt
                if gop is not None:
                    stream.codec_context.gop_size = gop
                if qscale is not None:
                    # PyAV's qscale is the AV_CODEC_FLAG_QSCALE flag (a bool): it is set here, the value is not
                    stream.codec_context.qscale = bool(qscale)
                    stream.codec_context.flags |= int(Flags.qscale)
                stream.options = dict(options)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        if stream is None:
            raise ValueError(f"{path}: no frames to encode")
        for packet in stream.encode():
            container.mux(packet)
    return path
