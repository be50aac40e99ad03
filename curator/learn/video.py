"""Scoring a video: frames sampled every few seconds (decoded by FFmpeg through PyAV), each
scored like a picture, then a per-frame table, a timeline plot and an overall verdict.

The verdict is the class with the highest mean probability over the sampled frames, with the
share of frames that predicted it: a film of a couple is judged on all of it, not one frame.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torchvision.transforms import v2

from classifier import images
from curator.defaults import SCORE
from curator.errors import CuratorError
from curator.learn.models import LoadedModel
from curator.learn.scoring import ScoreProgress

if TYPE_CHECKING:
    import PIL.Image
    from av.container import InputContainer

VIDEO_SUFFIXES = frozenset(
    {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".wmv", ".flv", ".3gp"}
)


class VideoError(CuratorError):
    pass


@dataclass
class FrameScore:
    index: int
    seconds: float
    probs: list[float]


@dataclass
class VideoVerdict:
    path: str
    classes: list[str]
    duration: float | None
    frames: list[FrameScore] = field(default_factory=list)
    #: Set when decoding stopped early: the frames before it are scored.
    damaged_at: float | None = None
    damage: str | None = None

    @property
    def mean(self) -> list[float]:
        if not self.frames:
            return [math.nan] * len(self.classes)
        return np.mean([f.probs for f in self.frames], axis=0).tolist()

    @property
    def verdict(self) -> str | None:
        return self.classes[int(np.argmax(self.mean))] if self.frames else None

    @property
    def shares(self) -> dict[str, float]:
        votes = [self.classes[int(np.argmax(f.probs))] for f in self.frames]
        n = max(len(votes), 1)
        return {c: votes.count(c) / n for c in self.classes}

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "duration": self.duration,
            "frames": len(self.frames),
            "verdict": self.verdict,
            "mean": dict(zip(self.classes, self.mean, strict=True)),
            "frame_shares": self.shares,
            "damaged_at": self.damaged_at,
            "damage": self.damage,
        }


def _open(path: Path) -> InputContainer:
    import av

    if not path.exists():
        raise VideoError(f"no such file: {path}")
    try:
        container = av.open(str(path), mode="r", metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        raise VideoError(
            f"{path} cannot be read as a video: truncated, damaged, or a format FFmpeg does "
            f"not know ({_why(exc)})"
        ) from None
    except OSError as exc:
        raise VideoError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path} has no video stream")
    return container


def _why(exc: BaseException) -> str:
    return str(getattr(exc, "strerror", None) or exc).rstrip(".")


def sample_frames(
    path: Path, every: float, found: VideoVerdict
) -> Iterator[tuple[float, PIL.Image.Image]]:
    """(seconds, RGB picture) of the first frame at or after each multiple of ``every``."""
    import av

    container = _open(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if stream.duration is not None and stream.time_base is not None:
            found.duration = float(stream.duration * stream.time_base)
        elif container.duration is not None and len(container.streams) == 1:
            # Only a lone stream's length is the container's: with sound, it may run longer.
            found.duration = container.duration / 1_000_000
        next_at, last = 0.0, None
        try:
            for frame in container.decode(stream):
                if frame.time is None:
                    continue
                last = float(frame.time)
                if last + 1e-6 < next_at:
                    continue
                yield last, frame.to_image()
                next_at = (math.floor(last / every + 1e-6) + 1) * every
        except av.error.FFmpegError as exc:
            found.damaged_at, found.damage = last or 0.0, _why(exc)
        if last is None and found.damage is None:
            found.damage = "no frame could be decoded"
            found.damaged_at = 0.0
        elif found.duration and last is not None and found.damage is None:
            # A cut-off file ends early without an error: compare with what it declares.
            frame_gap = 1 / float(stream.average_rate or 25)
            if last + max(1.0, 3 * frame_gap) < found.duration:
                found.damaged_at = last
                found.damage = f"the file ends at {last:.1f} s of a declared {found.duration:.1f} s"
    finally:
        container.close()


def score_video(
    model: LoadedModel,
    path: Path,
    *,
    every: float = 1.0,
    batch_size: int = SCORE["batch_size"],
    on_progress: Callable[[ScoreProgress], None] = lambda _p: None,
) -> VideoVerdict:
    """Score frames sampled every ``every`` seconds."""
    if every <= 0:
        raise VideoError("--every must be more than 0 seconds")
    found = VideoVerdict(path=str(path), classes=model.classes, duration=None)
    pending: list[tuple[float, torch.Tensor]] = []
    progress = ScoreProgress(done=0, total=0)

    def run() -> None:
        batch = torch.stack([t for _s, t in pending])
        probs = model.predictor.probabilities(model.predictor.prepare(batch)).numpy()
        for (seconds, _t), p in zip(pending, probs, strict=True):
            found.frames.append(FrameScore(len(found.frames), seconds, [float(v) for v in p]))
        pending.clear()
        progress.done = len(found.frames)
        if found.duration:
            progress.total = max(progress.done, math.ceil(found.duration / every - 1e-9))
        on_progress(progress)

    for seconds, picture in sample_frames(path, every, found):
        fitted = images.fit(images.to_rgb(picture), model.size, model.fit)
        pending.append((seconds, v2.functional.pil_to_tensor(fitted)))
        if len(pending) == batch_size:
            run()
    if pending:
        run()
    if not found.frames:
        raise VideoError(
            f"{path} is damaged or empty ({found.damage or 'no frames'}); nothing was scored"
        )
    return found


def write_frames_csv(result: VideoVerdict, out: Path) -> None:
    with open(out, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["frame", "seconds", "predicted", *[f"p_{c}" for c in result.classes]])
        for f in result.frames:
            best = result.classes[int(np.argmax(f.probs))]
            writer.writerow([f.index, round(f.seconds, 3), best, *[round(p, 6) for p in f.probs]])


def write_timeline(result: VideoVerdict, out: Path) -> None:
    """Class probabilities over time, with the verdict in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.2), dpi=110)
    seconds = [f.seconds for f in result.frames]
    for k, name in enumerate(result.classes):
        ax.plot(seconds, [f.probs[k] for f in result.frames], marker=".", label=name)
    ax.set_ylim(0, 1)
    ax.set_xlabel("seconds")
    ax.set_ylabel("probability")
    if result.damaged_at is not None:
        ax.axvline(result.damaged_at, color="grey", linestyle=":", label="damaged from here")
    shares = result.shares
    verdict = result.verdict or "-"
    ax.set_title(
        f"{Path(result.path).name}: {verdict} (mean p {max(result.mean):.2f}, "
        f"{shares.get(verdict, 0) * 100:.0f} % of {len(result.frames)} frames)"
    )
    ax.legend(loc="upper right", fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
