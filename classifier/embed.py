"""Pictures (and, for CLIP, words) as unit vectors: the networks behind curator's embedders.

    image (B, 3, S, S), uint8, fitted as scoring fits it (classifier/images.py)
      -> normalised by the network's own mean and std
      -> network: a trunk and global average pooling           (B, D)
      -> divided by its length                                  (B, D), |v| = 1

Three networks, one `Embedder`: a DeepConnection's trunk (what a curator model learned),
torchvision's ResNet-50 with ImageNet weights, and an open_clip model, which also embeds text
into the same space. Unit vectors make the inner product the cosine similarity, which every
index ranks by. Torch only: which model, and where its weights are, is the caller's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from classifier.errors import TrainingError
from classifier.images import MEAN, STD
from classifier.model import DeepConnection
from classifier.score import Describe, PictureDataset, plain_reason

#: CLIP's own input statistics (open_clip's OPENAI_DATASET_MEAN/STD), in 0-255.
CLIP_MEAN = (0.48145466 * 255, 0.4578275 * 255, 0.40821073 * 255)
CLIP_STD = (0.26862954 * 255, 0.26130258 * 255, 0.27577711 * 255)


@dataclass
class Embedder:
    """A network that turns fitted pictures into unit vectors of ``dim`` values."""

    name: str  # model, imagenet, clip
    version: str  # which weights exactly: vectors of two versions are never compared
    dim: int
    size: int  # the square the pictures are fitted to
    fit: str  # pad, crop or stretch
    network: nn.Module  # (B, 3, S, S) normalised floats -> (B, D)
    mean: tuple[float, ...] = MEAN
    std: tuple[float, ...] = STD
    #: Words to vectors in the pictures' space (CLIP only).
    text: Callable[[list[str]], torch.Tensor] | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    def prepare(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, S, S) to the network's normalised floats."""
        mean = torch.tensor(self.mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=self.device).view(1, 3, 1, 1)
        return (batch.to(self.device).float() - mean) / std

    @torch.inference_mode()
    def vectors(self, batch: torch.Tensor) -> np.ndarray:
        """Unit vectors (B, D), float32, of a uint8 batch."""
        out = self.network(self.prepare(batch)).float()  # (B, D)
        return nn.functional.normalize(out, dim=1).cpu().numpy()

    @torch.inference_mode()
    def words(self, texts: list[str]) -> np.ndarray:
        """Unit vectors (T, D) of texts; only an embedder with a text tower has them."""
        if self.text is None:
            raise TrainingError(f"the {self.name} embedder sees pictures only, not words")
        out = self.text(texts).float()
        return nn.functional.normalize(out, dim=1).cpu().numpy()


class StagePooledTrunk(nn.Module):
    """A ResNet trunk read at the end of each of its stages: each stage's global average as a
    unit vector, side by side, (B, 3, S, S) -> (B, C1 + C2 + C3 + C4), scaled to unit length.

    A curator model's last stage knows what told its classes apart, from a few hundred weak
    labels, often little past chance; the earlier stages still see colour, texture and shape,
    which is what sets a landscape or a clip-art apart from photos of people. One unit vector
    a stage gives each stage the same weight in the cosine (bench/outliers.py, and
    docs/embeddings.md: the last stage alone put 10 % of a generated web's off-topic
    pictures first in the outlier queue, the four 35 to 50 %)."""

    def __init__(self, trunk: nn.Module) -> None:
        super().__init__()
        self.trunk = trunk
        # torchvision's ResNet stages (layer1 to layer4) are Sequentials of blocks.
        self.stages = [i for i, m in enumerate(trunk.children()) if isinstance(m, nn.Sequential)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = []
        for i, module in enumerate(self.trunk.children()):
            x = module(x)
            if i in self.stages:
                parts.append(nn.functional.normalize(x.mean(dim=(2, 3)), dim=1))
        return torch.cat(parts, dim=1) / len(parts) ** 0.5


#: Written into the version of the model embedder's vectors: sets made another way (the last
#: stage alone, before) are other sets, never mixed with these.
MODEL_VECTORS = "stages 1-4"


def model_embedder(model: DeepConnection, version: str, device: torch.device) -> Embedder:
    """A trained DeepConnection's trunk, read at each of its stages (`StagePooledTrunk`):
    960 values for a ResNet-18 or 34. Its head pools the last stage at several scales for
    the classes; neighbours are found by all four."""
    trunk = StagePooledTrunk(model.trunk).eval().to(device)
    with torch.inference_mode():
        probe = trunk(torch.zeros(1, 3, 64, 64, device=device))
    channels = int(probe.shape[1])
    return Embedder(
        "model",
        f"{version} ({MODEL_VECTORS})",
        channels,
        model.config.image_size,
        model.config.fit,
        trunk,
        device=device,
    )


#: The ImageNet weights of the imagenet embedder (torchvision's better recipe).
IMAGENET_WEIGHTS = "IMAGENET1K_V2"


def imagenet_embedder(device: torch.device) -> Embedder:
    """torchvision's ResNet-50 with its ImageNet weights, through torchvision's own loader and
    cache (``$TORCH_HOME/hub/checkpoints``); without its classifier: 2048 values."""
    import torchvision

    enum = getattr(torchvision.models.ResNet50_Weights, IMAGENET_WEIGHTS)
    try:
        state = enum.get_state_dict(progress=False, check_hash=True)
    except Exception as exc:  # no network, a proxy, a full disk...
        hub = Path(torch.hub.get_dir()) / "checkpoints"
        raise TrainingError(
            f"cannot get the ImageNet weights of resnet50 ({type(exc).__name__}: "
            f"{brief(exc, 120)}); download {enum.url} into {hub}/{Path(enum.url).name}, "
            "or use --embedder model"
        ) from None
    net = torchvision.models.resnet50(weights=None)
    net.load_state_dict(state)
    net.fc = nn.Identity()
    version = f"resnet50:{Path(enum.url).name}"
    return Embedder("imagenet", version, 2048, 224, "crop", net.eval().to(device), device=device)


def brief(exc: BaseException, most: int = 160) -> str:
    """An exception's first line, cut at a word within ``most`` characters."""
    line = (str(exc).strip().splitlines() or [""])[0]
    if len(line) <= most:
        return line
    return line[:most].rsplit(" ", 1)[0] + " ..."


def clip_embedder(spec: str, device: torch.device) -> Embedder:
    """An open_clip model: ``ARCH:PRETRAINED`` (``ViT-B-32:laion2b_s34b_b79k``, downloaded
    once into open_clip's cache) or a folder holding ``open_clip_config.json`` and its weights
    (loaded as ``local-dir:``, nothing downloaded)."""
    try:
        import open_clip
    except ImportError:
        raise TrainingError(
            "the clip embedder needs open_clip: pip install 'curator[clip]'"
        ) from None
    folder = Path(spec).expanduser()
    if folder.is_dir():
        name, pretrained, version = f"local-dir:{folder}", None, _folder_version(folder)
    else:
        arch, _, pretrained = spec.partition(":")
        name, version = arch, spec
        if not pretrained:
            raise TrainingError(f"--clip-model {spec!r}: write ARCH:WEIGHTS or a folder")
    logging.disable(logging.ERROR)  # open_clip's and the hub's own lines: ours is the one
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained)
        tokenizer = open_clip.get_tokenizer(name)
    except Exception as exc:
        where = (
            ""
            if pretrained is None
            else "; with no network, download the weights into a folder beside their "
            "open_clip_config.json and give --clip-model FOLDER, or use --embedder model"
        )
        raise TrainingError(
            f"cannot load the CLIP model {spec} ({type(exc).__name__}: {brief(exc)}){where}"
        ) from None
    finally:
        logging.disable(logging.NOTSET)
    model = model.eval().to(device)
    size = _image_size(model)

    def text(texts: list[str]) -> torch.Tensor:
        return model.encode_text(tokenizer(texts).to(device))

    with torch.inference_mode():
        dim = int(model.encode_image(torch.zeros(1, 3, size, size, device=device)).shape[1])
    mean, std = _statistics(preprocess)
    return Embedder("clip", version, dim, size, "crop", _ImageTower(model), mean, std, text, device)


class ClipImages(Protocol):
    """What an open_clip model offers the image tower: its image encoder."""

    def encode_image(self, image: torch.Tensor) -> torch.Tensor: ...


class _ImageTower(nn.Module):
    def __init__(self, model: ClipImages) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(x)  # (B, 3, S, S) -> (B, D)


def _image_size(model: object) -> int:
    size = getattr(getattr(model, "visual", None), "image_size", 224)
    return int(size[0] if isinstance(size, tuple | list) else size)


def _statistics(preprocess: object) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean and std of open_clip's own preprocessing, in 0-255 (CLIP's if not found)."""
    for step in getattr(preprocess, "transforms", []):
        if hasattr(step, "mean") and hasattr(step, "std"):
            return tuple(m * 255 for m in step.mean), tuple(s * 255 for s in step.std)
    return CLIP_MEAN, CLIP_STD


def _folder_version(folder: Path) -> str:
    """A folder's model, told apart from another by its weights' names, sizes and times."""
    parts = [
        f"{p.name}:{p.stat().st_size}:{int(p.stat().st_mtime)}"
        for p in sorted(folder.iterdir())
        if p.is_file()
    ]
    return f"{folder.resolve()}|{'|'.join(parts)}"[:255]


@dataclass(frozen=True)
class Embedded:
    index: int  # position in the input sequence
    vector: np.ndarray | None  # None when the picture failed
    error: str | None = None


def embed_paths(
    embedder: Embedder,
    paths: Sequence[str],
    *,
    batch_size: int = 32,
    workers: int = 2,
    describe: Describe = plain_reason,
) -> Iterator[list[Embedded]]:
    """Yield the vectors batch by batch, in input order; pictures decoded as scoring decodes
    them (classifier/score.py), a picture that cannot be decoded a reason, not an exception."""
    dataset = PictureDataset(paths, size=embedder.size, fit=embedder.fit, describe=describe)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=max(0, workers),
        prefetch_factor=4 if workers > 0 else None,
    )
    for batch, indices, errors in loader:
        ok = [i for i, e in enumerate(errors) if not e]
        vectors = embedder.vectors(batch[ok]) if ok else np.empty((0, embedder.dim))
        results = {p: Embedded(int(indices[p]), vectors[row]) for row, p in enumerate(ok)}
        for position, error in enumerate(errors):
            if error:
                results[position] = Embedded(int(indices[position]), None, error)
        yield [results[p] for p in range(len(errors))]
