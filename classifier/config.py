"""The settings of a model and of a training run, and what a run reports: plain frozen
dataclasses, without torch, so that the command line reads its defaults from here.

* `ModelConfig`: the network (backbone, head, its sizes) and its input contract (image size
  and fit), stored in every model file;
* `TrainConfig`: the recipe, what decides what a model learns, stored with it;
* `Machine`: where a run trains and how fast, never stored as part of the model;
* `Progress`, `EpochStats`, `FitResult`: what a run reports as it goes and at its end.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

#: The trunks and heads (the paper's ablation) a model can have.
BACKBONES = ("resnet18", "resnet34", "resnet50")
HEADS = ("gap", "spp", "spp-pmt")
#: How a picture becomes the model's square: padded (no one is cut off), cropped, stretched.
FITS = ("pad", "crop", "stretch")


@dataclass(frozen=True)
class ModelConfig:
    """The network and its input contract, stored in every model file and validated here."""

    backbone: str = "resnet34"
    head: str = "spp-pmt"
    spp_levels: tuple[int, ...] = (8, 4, 2, 1)
    hidden: int = 100
    dropout: float = 0.5
    dropout_samples: int = 8
    classes: tuple[str, ...] = ("happy", "unhappy")
    #: The input contract: pictures at this size, fit to the square by padding, cropping or
    #: stretching (classifier.images.fit), in training and in every use of the model alike.
    image_size: int = 512
    fit: str = "pad"

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {', '.join(BACKBONES)}")
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {', '.join(HEADS)}")
        if self.fit not in FITS:
            raise ValueError(f"fit must be one of {', '.join(FITS)}")
        if len(self.classes) < 2:
            raise ValueError("a classifier needs at least two classes")

    def as_dict(self) -> dict[str, Any]:
        """Plain values only, so a checkpoint loads with ``weights_only=True``."""
        data = asdict(self)
        data["spp_levels"] = list(self.spp_levels)
        data["classes"] = list(self.classes)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, fit: str | None = None) -> ModelConfig:
        """From a stored config; ``fit`` for one stored before the fit joined the model's
        config (it was a training setting then)."""
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in data.items() if k in known}
        if "fit" not in values and fit is not None:
            values["fit"] = fit
        values["spp_levels"] = tuple(values.get("spp_levels", (8, 4, 2, 1)))
        values["classes"] = tuple(values.get("classes", ()))
        return cls(**values)


@dataclass(frozen=True)
class TrainConfig:
    """The recipe: what decides what a model learns, stored with it and compared on resume.
    Where it runs and how fast is `Machine`'s; the input (image size, fit) is the model's own
    (`ModelConfig`)."""

    epochs: int = 15
    batch_size: int = 48
    lr: float = 3e-4
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.02
    patience: int = 3
    seed: int = 0
    augment: str = "reference"  # "reference" (the paper's), "light" or "none"
    include_weak: bool = False
    weights: str = "imagenet"  # "imagenet", "none", or a path to a state dict
    amp: bool = True

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """The recipe from a stored one; settings it does not know (another version's, or the
        machine's, which older models stored with it) are left out."""
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Machine:
    """Where a run trains and how fast: never part of what a model is, so a run interrupted
    here resumes anywhere, on other devices or with other workers."""

    device: str = "auto"
    workers: int = 2
    channels_last: bool = True
    #: Decode every picture once and keep it in memory when all of them fit in this many
    #: MiB (0: decode from the files on every epoch).
    cache_mb: int = 2048
    #: A folder where pictures decoded at the model's size are kept across runs
    #: (classifier/pixelcache.py); None: decode from the originals each run.
    pixel_cache: str | None = None


@dataclass
class EpochStats:
    epoch: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    lr: float
    seconds: float
    images_per_s: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Progress:
    """What the caller shows: a step of an epoch, or an epoch done."""

    kind: str  # "decode" (pictures decoded once), "step" or "epoch"
    epoch: int
    epochs: int
    step: int = 0
    steps: int = 0
    loss: float = 0.0
    stats: EpochStats | None = None


@dataclass
class FitResult:
    best_epoch: int
    history: list[EpochStats]
    metrics: dict[str, Any]
    stopped_early: bool
    resumed_from: int | None = None
    extras: dict[str, Any] = field(default_factory=dict)
