"""Decoding JPEGs where the model runs: on a CUDA device, in batches (nvJPEG through
``torchvision.io.decode_jpeg``), so scoring is not held to what the CPU's cores decode.

The workers only read each file's bytes (no Huffman decoding, no resizing); the batch is
decoded on the device, oriented by its EXIF tag, and fitted to the model's square there
(`fit_tensor`: the same ``pad``, ``crop`` and ``stretch`` as `classifier.images.fit`, with
torch's antialiased bilinear resize, so pixels differ from Pillow's by a grey level or two).
A file that is not a JPEG, or one the device will not decode, is decoded on the CPU as
before. The same code runs on the CPU (``device="cpu"``), which is how it is tested where no
GPU is present; `score_paths` takes this path only when CUDA is there (`decode_on_device`),
and elsewhere reads the pre-sized cache (classifier/pixelcache.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_jpeg

from classifier import images

JPEG_START = b"\xff\xd8\xff"


def decode_on_device(device: torch.device) -> bool:
    """Whether pictures for this device are decoded on it: a CUDA device that is present."""
    return device.type == "cuda" and torch.cuda.is_available()


class JpegBytes(Dataset[tuple[torch.Tensor, int, str]]):
    """(the file's bytes as a uint8 tensor, index, "") per path; ("", reason) when the file
    cannot be read. Decoding is left to the batch."""

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, str]:
        try:
            with open(self.paths[index], "rb") as f:
                data = f.read()
        except OSError as exc:
            return torch.empty(0, dtype=torch.uint8), index, f"{type(exc).__name__}: {exc}"
        return torch.frombuffer(bytearray(data), dtype=torch.uint8), index, ""


def collate_bytes(
    items: list[tuple[torch.Tensor, int, str]],
) -> tuple[list[torch.Tensor], list[int], list[str]]:
    data, indices, errors = zip(*items, strict=True)
    return list(data), list(indices), list(errors)


def fit_tensor(picture: torch.Tensor, size: int, how: str) -> torch.Tensor:
    """(3, H, W) uint8 -> (3, size, size) uint8, as `classifier.images.fit` does."""
    h, w = picture.shape[1:]
    x = picture.unsqueeze(0).float()  # (1, 3, H, W)
    if how == "stretch":
        out = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
        return out.round().clamp(0, 255).to(torch.uint8)[0]
    scale = size / max(w, h) if how == "pad" else size / min(w, h)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    x = F.interpolate(x, size=(nh, nw), mode="bilinear", antialias=True)
    x = x.round().clamp(0, 255).to(torch.uint8)[0]  # (3, nh, nw)
    if how == "crop":
        top, left = (nh - size) // 2, (nw - size) // 2
        return x[:, top : top + size, left : left + size]
    mean = torch.tensor([round(m) for m in images.MEAN], dtype=torch.uint8, device=x.device)
    canvas = mean.view(3, 1, 1).expand(3, size, size).clone()
    top, left = (size - nh) // 2, (size - nw) // 2
    canvas[:, top : top + nh, left : left + nw] = x
    return canvas


def decode_batch(
    data: list[torch.Tensor],
    paths: Sequence[str],
    *,
    size: int,
    fit: str,
    device: torch.device,
    describe: Callable[[str, BaseException], str] = lambda _p, exc: type(exc).__name__,
) -> tuple[torch.Tensor, list[str]]:
    """A batch of files' bytes -> (B, 3, S, S) uint8 on ``device`` and a reason per picture
    ("" when it decoded): JPEGs decoded together on the device, the rest on the CPU."""
    out = torch.zeros((len(data), 3, size, size), dtype=torch.uint8, device=device)
    errors = [""] * len(data)
    jpegs = [i for i, d in enumerate(data) if bytes(d[:3].tolist()) == JPEG_START]
    decoded: dict[int, torch.Tensor] = {}
    if jpegs:
        try:
            batch = decode_jpeg(
                [data[i] for i in jpegs], mode=ImageReadMode.RGB, device=device,
                apply_exif_orientation=True,
            )  # fmt: skip
            decoded = dict(zip(jpegs, batch, strict=True))
        except RuntimeError:  # one bad file fails the batch: each on the CPU instead
            decoded = {}
    for i, path in enumerate(paths):
        try:
            if i in decoded:
                out[i] = fit_tensor(decoded[i], size, fit)
            else:
                picture = images.load(path, size, fit)
                chw = torch.frombuffer(bytearray(picture.tobytes()), dtype=torch.uint8)
                out[i] = chw.view(size, size, 3).permute(2, 0, 1).to(device)
        except Exception as exc:  # a bad file is the file's fault: say why, go on
            errors[i] = describe(path, exc) or type(exc).__name__
    return out, errors
