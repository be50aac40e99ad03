"""Batched inference: pictures decoded in worker processes, the model in inference mode.

Workers hand back 8-bit tensors (a quarter of the bytes of floats across the process
boundary); normalisation, channels-last and the cast happen on the batch, where the model runs.
A picture that cannot be decoded becomes a `Scored` with a reason, never an exception.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from classifier import images
from classifier.data import normalize_batch
from classifier.device import autocast_dtype
from classifier.gpudecode import JpegBytes, collate_bytes, decode_batch, decode_on_device
from classifier.model import DeepConnection
from classifier.pixelcache import PixelCache

#: Turns a decoding exception into a few words for the user.
Describe = Callable[[str, BaseException], str]


def plain_reason(_path: str, exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class Scored:
    index: int  # position in the input sequence
    probs: np.ndarray | None  # class probabilities; None when the picture failed
    error: str | None = None


class PictureDataset(Dataset[tuple[torch.Tensor, int, str]]):
    """(uint8 CHW tensor, index, error) per path; a failed picture is zeros and a reason."""

    def __init__(
        self,
        paths: Sequence[str],
        *,
        size: int,
        fit: str,
        describe: Describe,
        cache: str | None = None,
    ) -> None:
        self.paths = paths
        self.size = size
        self.fit = fit
        self.describe = describe
        self.cache = PixelCache(cache, size=size, fit=fit) if cache else None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, str]:
        path = self.paths[index]
        try:
            if self.cache is not None:  # read once, kept at this size
                return torch.from_numpy(self.cache.load(path).copy()), index, ""
            picture = images.load(path, self.size, self.fit)
            return v2.functional.pil_to_tensor(picture), index, ""
        except Exception as exc:  # a bad file is the file's fault: say why, go on
            reason = self.describe(path, exc) or type(exc).__name__
            return torch.zeros((3, self.size, self.size), dtype=torch.uint8), index, reason


class Predictor:
    """A model ready for inference on one device, with its input normalisation."""

    def __init__(self, model: DeepConnection, device: torch.device, amp: bool = True) -> None:
        self.model = model.eval().to(device)
        self.device = device
        self.dtype = autocast_dtype(device, amp)
        self.channels_last = device.type in ("cpu", "cuda")
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)

    def prepare(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, S, S) to normalised floats, in the layout the model runs fastest in."""
        return normalize_batch(batch, self.device, self.channels_last)

    @torch.inference_mode()
    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax over classes of prepared inputs, as float32 on the CPU."""
        with torch.autocast(
            self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None
        ):
            logits = self.model(x)
        return torch.softmax(logits.float(), dim=1).cpu()


def score_paths(
    predictor: Predictor,
    paths: Sequence[str],
    *,
    size: int,
    fit: str,
    batch_size: int = 32,
    workers: int = 2,
    describe: Describe = plain_reason,
    cache: str | None = None,
) -> Iterator[list[Scored]]:
    """Yield the results batch by batch, in input order (pictures kept in the ``cache``
    folder at this size when one is named: see classifier/pixelcache.py), or, on a CUDA
    device, with JPEGs decoded there in batches (classifier/gpudecode.py)."""
    if decode_on_device(predictor.device):  # nvJPEG outruns reading the cache's files
        yield from _score_on_device(predictor, paths, size, fit, batch_size, workers, describe)
        return
    dataset = PictureDataset(paths, size=size, fit=fit, describe=describe, cache=cache)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=max(0, workers),
        pin_memory=predictor.device.type == "cuda",
        prefetch_factor=4 if workers > 0 else None,
        persistent_workers=False,
    )
    for batch, indices, errors in loader:
        ok = [i for i, e in enumerate(errors) if not e]
        probs = predictor.probabilities(predictor.prepare(batch[ok])) if ok else None
        results: dict[int, Scored] = {}
        for row, position in enumerate(ok):
            results[position] = Scored(int(indices[position]), probs[row].numpy())  # type: ignore[index]
        for position, error in enumerate(errors):
            if error:
                results[position] = Scored(int(indices[position]), None, error)
        yield [results[p] for p in range(len(errors))]


def _score_on_device(
    predictor: Predictor,
    paths: Sequence[str],
    size: int,
    fit: str,
    batch_size: int,
    workers: int,
    describe: Describe,
) -> Iterator[list[Scored]]:
    """`score_paths` with the workers reading bytes and the device decoding them."""
    loader = DataLoader(
        JpegBytes(paths),
        batch_size=batch_size,
        shuffle=False,
        num_workers=max(0, workers),
        collate_fn=collate_bytes,
        prefetch_factor=4 if workers > 0 else None,
    )
    for data, indices, read_errors in loader:
        batch, errors = decode_batch(
            data, [paths[i] for i in indices], size=size, fit=fit, device=predictor.device,
            describe=describe,
        )  # fmt: skip
        errors = [r or e for r, e in zip(read_errors, errors, strict=True)]
        ok = [i for i, e in enumerate(errors) if not e]
        probs = predictor.probabilities(predictor.prepare(batch[ok])) if ok else None
        row = {position: r for r, position in enumerate(ok)}
        yield [
            Scored(indices[p], None, e) if e else Scored(indices[p], probs[row[p]].numpy())  # type: ignore[index]
            for p, e in enumerate(errors)
        ]
