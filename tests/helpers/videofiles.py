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
    sound_seconds: float = 0.0,
) -> Path:
    """A video showing each picture in turn (with ``sound_seconds`` of a tone beside it, if
    any); returns its path."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        if sound_seconds:
            _tone(container, sound_seconds)
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


def _tone(container: av.container.OutputContainer, seconds: float, rate: int = 8000) -> None:
    audio = container.add_stream("pcm_s16le", rate=rate)
    audio.layout = "mono"
    t = np.arange(int(seconds * rate)) / rate
    samples = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
    for start in range(0, len(samples), 1152):
        chunk = samples[start : start + 1152].reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="mono")
        frame.sample_rate = rate
        frame.pts = start
        for packet in audio.encode(frame):
            container.mux(packet)
    for packet in audio.encode():
        container.mux(packet)


def truncate(path: Path, keep: float) -> Path:
    """Cut a file to ``keep`` of its bytes, as an interrupted download leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path
