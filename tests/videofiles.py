"""Short videos for tests, encoded with PyAV from pictures: each shown for some seconds."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from PIL import Image


def make_video(
    path: Path,
    pictures: list[Path],
    *,
    seconds_each: float = 1.0,
    fps: int = 10,
    size: tuple[int, int] = (160, 120),
    codec: str = "mpeg4",
) -> Path:
    """A video showing each picture in turn; returns its path."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        for picture in pictures:
            with Image.open(picture) as img:
                frame_rgb = np.asarray(img.convert("RGB").resize(size))
            for _ in range(max(1, round(seconds_each * fps))):
                frame = av.VideoFrame.from_ndarray(frame_rgb, format="rgb24")
                for packet in stream.encode(frame):
                    container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def truncate(path: Path, keep: float) -> Path:
    """Cut a file to ``keep`` of its bytes, as an interrupted download leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path
