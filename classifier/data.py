"""From examples to tensors: how the pictures of a split are shown to a model.

An example is an image file, its class index and an id; the examples of each split come from
whoever has them (curator's catalog: `curator.learn.examples`). Nothing here knows a catalog.

Augmentation follows the reference's imgaug pipeline, in torchvision.transforms.v2, applied in
a random order: flips, crops of up to 10 %, Gaussian blur (sigma up to 0.5, half the time),
Gaussian noise (up to 0.05 of the range), brightness 0.8-1.2, affine (scale 0.8-1.2, shift
20 %, rotation 25 deg, shear 8 deg), hue and saturation, contrast 0.75-1.5.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.transforms import v2

from classifier import images
from classifier.config import Machine, Progress, TrainConfig
from classifier.distributed import SINGLE, Group
from classifier.errors import TrainingError
from classifier.model import ModelConfig
from classifier.pixelcache import PixelCache

#: The label origins a model learns from: people's only, or weak labels too.
HUMAN_ONLY = frozenset({"human"})
WITH_WEAK = frozenset({"human", "import", "query"})
#: The splits an example can be in.
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Example:
    image_id: int
    path: str
    label: int


@dataclass
class Examples:
    """The examples of each split, and what was left out and why."""

    classes: list[str]
    splits: dict[str, list[Example]]
    missing_files: list[int] = field(default_factory=list)
    #: Groups left out because people labeled their members differently.
    conflicts: list[int] = field(default_factory=list)

    def counts(self) -> dict[str, dict[str, int]]:
        out = {}
        for split, examples in self.splits.items():
            tally = Counter(self.classes[e.label] for e in examples)
            out[split] = {name: tally.get(name, 0) for name in self.classes}
        return out

    def ids(self) -> dict[str, list[int]]:
        return {split: [e.image_id for e in ex] for split, ex in self.splits.items()}


def normalize() -> v2.Transform:
    return v2.Compose(
        [
            v2.ToDtype(torch.float32, scale=False),
            v2.Normalize(mean=list(images.MEAN), std=list(images.STD)),
        ]
    )


def reference_augmentation() -> v2.Transform:
    """The reference's imgaug pipeline, on uint8 image tensors, in a random order."""
    return v2.RandomOrder(
        [
            v2.RandomHorizontalFlip(0.5),
            _CropUpTo(0.10),
            v2.RandomApply([v2.GaussianBlur(kernel_size=3, sigma=(0.01, 0.5))], p=0.5),
            _NoiseUpTo(0.05),
            v2.ColorJitter(brightness=(0.8, 1.2)),
            v2.RandomAffine(degrees=25, translate=(0.2, 0.2), scale=(0.8, 1.2), shear=8),
            v2.ColorJitter(hue=10 / 180, saturation=(1 - 10 / 255 * 4, 1 + 10 / 255 * 4)),
            v2.ColorJitter(contrast=(0.75, 1.5)),
        ]
    )


def light_augmentation() -> v2.Transform:
    """Flips, crops of up to 10 % and mild colour changes: for training from scratch on a
    small set, where the reference's strong affine warps keep a model from learning at all."""
    return v2.Compose(
        [
            v2.RandomHorizontalFlip(0.5),
            _CropUpTo(0.10),
            v2.ColorJitter(brightness=(0.85, 1.15), contrast=(0.85, 1.2)),
        ]
    )


AUGMENTATIONS = ("reference", "light", "none")


def augmentation(name: str) -> v2.Transform | None:
    if name == "reference":
        return reference_augmentation()
    if name == "light":
        return light_augmentation()
    if name == "none":
        return None
    raise ValueError(f"augmentation must be one of {', '.join(AUGMENTATIONS)}")


class _CropUpTo(torch.nn.Module):
    """Cut up to ``share`` of each side's length (as imgaug's Crop(percent=(0, 0.1))), and
    bring the picture back to its size."""

    def __init__(self, share: float) -> None:
        super().__init__()
        self.share = share

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        h, w = img.shape[-2:]
        cuts = (torch.rand(4) * self.share * torch.tensor([h, w, h, w])).long().tolist()
        top, left, bottom, right = cuts
        cropped = img[..., top : h - bottom, left : w - right]
        return v2.functional.resize(cropped, [h, w], antialias=True)


class _NoiseUpTo(torch.nn.Module):
    """Additive Gaussian noise with a standard deviation drawn up to ``scale`` of 255."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        sigma = float(torch.rand(1)) * self.scale * 255
        noisy = img.float() + torch.randn(img.shape) * sigma
        return noisy.clamp(0, 255).to(img.dtype)


#: A dataset key: (epoch, index). The epoch seeds the augmentation, so that a picture is
#: augmented the same way whichever worker draws it, and again after a resume.
Key = tuple[int, int]


class CatalogDataset(Dataset[tuple[torch.Tensor, int]]):
    """Examples as (uint8 CHW tensor, class index), decoded from their files in DataLoader
    workers, or taken from ``pixels`` (see `decode_examples`) when they were decoded once.
    Normalisation happens on the batch, where the model runs (`BatchInput`)."""

    def __init__(
        self,
        examples: list[Example],
        *,
        size: int,
        fit: str = "pad",
        augment: v2.Transform | None = None,
        draft: bool = True,
        seed: int = 0,
        pixels: torch.Tensor | None = None,
        cache: str | None = None,
    ) -> None:
        self.examples = examples
        self.size = size
        self.fit = fit
        self.augment = augment
        self.draft = draft
        self.seed = seed
        self.pixels = pixels
        self.cache = PixelCache(cache, size=size, fit=fit, draft=draft) if cache else None

    def __len__(self) -> int:
        return len(self.examples)

    def picture(self, index: int) -> torch.Tensor:
        if self.pixels is not None:
            return self.pixels[index]
        example = self.examples[index]
        if self.cache is not None:  # read once, kept at this size
            return torch.from_numpy(self.cache.load(example.path).copy())  # (3, S, S) uint8
        picture = images.load(example.path, self.size, self.fit, draft=self.draft)
        return v2.functional.pil_to_tensor(picture)  # (3, S, S) uint8

    def __getitem__(self, key: int | Key) -> tuple[torch.Tensor, int]:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        tensor = self.picture(index)
        if self.augment is not None:
            seed = (self.seed * 1_000_003 + epoch) * 1_000_033 + index
            tensor = _seeded(self.augment, tensor, seed)
        return tensor, self.examples[index].label


class ModelInputs(Dataset[tuple[torch.Tensor, int]]):
    """A `CatalogDataset` for code of one's own: (float32 CHW tensor normalised as the trunk
    expects, as `normalize_batch` does for a batch, class index) per example, or the uint8
    pictures themselves with ``normalized=False``. ``classes`` names the indices and
    ``image_ids`` says which image each example is."""

    def __init__(self, pictures: CatalogDataset, classes: list[str], normalized: bool = True):
        self.pictures, self.classes, self.normalized = pictures, classes, normalized
        self.image_ids = [e.image_id for e in pictures.examples]
        self._mean = torch.tensor(images.MEAN).view(3, 1, 1)
        self._std = torch.tensor(images.STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.pictures)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        tensor, label = self.pictures[index]
        if self.normalized:
            tensor = (tensor.float() - self._mean) / self._std
        return tensor, label


def _seeded(transform: v2.Transform, tensor: torch.Tensor, seed: int) -> torch.Tensor:
    """Apply a random transform with torch's CPU generator seeded for this one call (a GPU's
    generators are left alone); in the main process, the caller's CPU random state is
    restored afterwards."""
    seed %= 2**63
    if torch.utils.data.get_worker_info() is not None:  # a worker's state is its own
        torch.default_generator.manual_seed(seed)
        return transform(tensor)
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        return transform(tensor)


class EpochSampler(Sampler[Key]):
    """Every index once per epoch, shuffled by (seed, epoch) or in order, as dataset keys.
    Set the epoch before each pass; DataLoader workers can then live across epochs.

    With ``world`` processes training together, process ``rank`` gets every world-th index of
    the epoch's order (the order padded by its own start to a multiple of ``world``), as
    DistributedSampler does: together they see one epoch, each a share of it."""

    def __init__(
        self, length: int, *, seed: int = 0, shuffle: bool = True, rank: int = 0, world: int = 1
    ) -> None:
        self.length, self.seed, self.shuffle, self.epoch = length, seed, shuffle, 0
        self.rank, self.world = rank, world

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.length // self.world)

    def __iter__(self) -> Iterator[Key]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.length, generator=generator).tolist()
        else:
            order = list(range(self.length))
        if self.world > 1:
            order += order[: len(self) * self.world - self.length]
            order = order[self.rank :: self.world]
        return ((self.epoch, i) for i in order)


def pixel_bytes(count: int, size: int) -> int:
    """Memory that `decode_examples` needs for ``count`` pictures at ``size``."""
    return count * 3 * size * size


class _Decode(Dataset[tuple[torch.Tensor, str]]):
    """(uint8 picture, "") per example, or (zeros, the reason) when its file cannot be read."""

    def __init__(self, examples: list[Example], size: int, fit: str, cache: str | None) -> None:
        self.plain = CatalogDataset(examples, size=size, fit=fit, cache=cache)

    def __len__(self) -> int:
        return len(self.plain)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        try:
            return self.plain.picture(index), ""
        except Exception as exc:  # the file changed on disk since it was imported
            size = self.plain.size
            return torch.zeros((3, size, size), dtype=torch.uint8), f"{type(exc).__name__}: {exc}"


def decode_examples(
    examples: list[Example],
    *,
    size: int,
    fit: str = "pad",
    workers: int = 2,
    on_step: Callable[[int, int], None] = lambda _d, _t: None,
    cache: str | None = None,
) -> tuple[torch.Tensor, dict[int, str]]:
    """Every example decoded and fitted once, in DataLoader workers: (N, 3, S, S) uint8, and
    the positions of those that could not be read, with the reason."""
    out = torch.empty((len(examples), 3, size, size), dtype=torch.uint8)
    failed: dict[int, str] = {}
    if not examples:
        return out, failed
    loader = DataLoader(
        _Decode(examples, size, fit, cache),
        batch_size=64,
        num_workers=max(0, workers),
        generator=torch.Generator(),  # its own: drawing from torch's would shift dropout's
    )
    done = 0
    for batch, errors in loader:
        out[done : done + len(batch)] = batch
        failed.update({done + i: error for i, error in enumerate(errors) if error})
        done += len(batch)
        on_step(done, len(examples))
    return out, failed


def normalize_batch(
    batch: torch.Tensor, device: torch.device, channels_last: bool = False
) -> torch.Tensor:
    """uint8 (B, 3, S, S) pictures to float32 inputs on ``device``, normalised as the trunk
    expects, channels-last if asked: one normalisation for training, scoring and Grad-CAM."""
    mean = torch.tensor(images.MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(images.STD, device=device).view(1, 3, 1, 1)
    x = (batch.to(device, non_blocking=True).float() - mean) / std
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def seed_worker(worker_id: int) -> None:
    """Each DataLoader worker gets its own, reproducible, random streams."""
    import random

    import numpy as np

    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def describe(examples: Examples) -> dict[str, Any]:
    return {"counts": examples.counts(), "missing_files": len(examples.missing_files)}


# -- the sets and loaders of a training run ---------------------------------------------------


def check_examples(examples: Examples, include_weak: bool) -> None:
    """Refuse data that cannot train a model, in one sentence that says what to do."""
    counts = examples.counts()
    total = sum(sum(c.values()) for c in counts.values())
    where = "labeled images" + ("" if include_weak else " (with a human label)")
    if total == 0:
        hint = "" if include_weak else ", or add --include-weak to use query and import labels"
        raise TrainingError(f"no {where} to train on: label some with curator review{hint}")
    present = [name for name in examples.classes if any(c[name] for c in counts.values())]
    if len(present) < 2:
        raise TrainingError(
            f"all {total} {where} are {present[0]!r}: a classifier needs at least two classes"
        )
    for split in ("train", "val", "test"):
        if sum(counts[split].values()) == 0:
            raise TrainingError(
                f"the {split} split has no {where} ({total} in all, split 80/10/10 by "
                "near-duplicate group): label more images"
            )
    lacking = [name for name in examples.classes if counts["train"][name] == 0]
    if lacking:
        raise TrainingError(f"the train split has no image of {', '.join(lacking)}")


def available_memory() -> int | None:
    """Bytes of memory the system can still give (Linux's MemAvailable), None if unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def cache_budget(machine: Machine) -> int:
    """Bytes the decoded pictures may take: ``machine.cache_mb``, and never more than half of
    the memory the system has free."""
    budget = machine.cache_mb * 2**20
    free = available_memory()
    return budget if free is None else min(budget, free // 2)


def training_sets(
    examples: Examples,
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    machine: Machine,
    on_progress: Callable[[Progress], None],
) -> tuple[CatalogDataset, CatalogDataset, CatalogDataset]:
    """The train, val and test sets. Train and val, read on every epoch, are decoded once
    into memory when they fit the cache budget (an epoch then costs only the augmentation);
    a picture that cannot be decoded is left out and counted with the missing files."""
    size, fit = model_cfg.image_size, model_cfg.fit
    names = ("train", "val")
    cached = [e for name in names for e in examples.splits[name]]
    pixels: dict[str, torch.Tensor] = {}
    if cached and pixel_bytes(len(cached), size) <= cache_budget(machine):
        try:
            decoded, failed = decode_examples(
                cached,
                size=size,
                fit=fit,
                workers=machine.workers,
                on_step=lambda done, total: on_progress(
                    Progress("decode", 0, cfg.epochs, done, total)
                ),
                cache=machine.pixel_cache,
            )
        except (MemoryError, RuntimeError) as exc:
            if "memory" not in str(exc).lower() and not isinstance(exc, MemoryError):
                raise
            decoded, failed = None, {}  # decode on every epoch instead
        if decoded is not None:
            if failed:
                keep = [i for i in range(len(cached)) if i not in failed]
                decoded = decoded[keep]
                examples.missing_files += [cached[i].image_id for i in failed]
                gone = {cached[i].image_id for i in failed}
                for name in names:
                    examples.splits[name] = [
                        e for e in examples.splits[name] if e.image_id not in gone
                    ]
                check_examples(examples, cfg.include_weak)
            sizes = [len(examples.splits[name]) for name in names]
            pixels = dict(zip(names, torch.split(decoded, sizes), strict=True))
    augment = augmentation(cfg.augment)
    return tuple(  # type: ignore[return-value]
        CatalogDataset(
            examples.splits[name],
            size=size,
            fit=fit,
            augment=augment if name == "train" else None,
            seed=cfg.seed,
            pixels=pixels.get(name),
            cache=machine.pixel_cache,
        )
        for name in ("train", "val", "test")
    )


def loader_for(
    dataset: CatalogDataset,
    cfg: TrainConfig,
    machine: Machine,
    shuffle: bool,
    persistent: bool = True,
    group: Group = SINGLE,
) -> DataLoader:
    """A loader that lives for the whole run: its sampler is told the epoch, so worker
    processes are started once, not once per pass. Pictures already in memory and not
    augmented need no workers at all. With several processes (``group``), each gets its
    share of the batches, of ``batch_size / world`` pictures each."""
    in_memory = dataset.pixels is not None and dataset.augment is None
    workers = 0 if in_memory else max(0, machine.workers)
    batch = cfg.batch_size // group.world
    sampler = EpochSampler(
        len(dataset), seed=cfg.seed, shuffle=shuffle, rank=group.rank, world=group.world
    )
    return DataLoader(
        dataset,
        batch_size=batch,
        sampler=sampler,
        drop_last=shuffle and len(sampler) > batch,
        num_workers=workers,
        worker_init_fn=seed_worker,
        generator=torch.Generator().manual_seed(cfg.seed),
        persistent_workers=persistent and workers > 0,
        pin_memory=False,
    )


def at_epoch(loader: DataLoader, epoch: int) -> DataLoader:
    assert isinstance(loader.sampler, EpochSampler)
    loader.sampler.set_epoch(epoch)
    return loader
