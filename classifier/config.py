"""The settings of a model and of a training run, and what a run reports: plain frozen
dataclasses, without torch, so that the command line reads its defaults from here.

* `ModelConfig`: the network (backbone, head, its sizes) and its input contract (image size
  and fit), stored in every model file;
* `TrainConfig`: the recipe, what decides what a model learns, stored with it; `RECIPES`, one
  per starting point, and `resolve_recipe`, which fills in what a run was not given;
* `Machine`: where a run trains and how fast, never stored as part of the model;
* `Progress`, `EpochStats`, `FitResult`: what a run reports as it goes and at its end.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
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
    (`ModelConfig`). Its defaults are the ImageNet recipe's (`RECIPES`); a run from the command
    line takes the recipe of its starting weights (`resolve_recipe`)."""

    epochs: int = 15
    batch_size: int = 48
    lr: float = 3e-4
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.02
    patience: int = 5
    seed: int = 0
    augment: str = "reference"  # "reference" (the paper's), "light" or "none"
    include_weak: bool = False
    weights: str = "imagenet"  # "imagenet", "none", or a path to a state dict
    amp: bool = True
    #: Find the rate with a range test before training (`classifier.lrfind`); ``lr`` is then
    #: the rate it found, once it has run.
    lr_auto: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """The recipe from a stored one; settings it does not know (another version's, or the
        machine's, which older models stored with it) are left out."""
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


# -- the recipes -----------------------------------------------------------------------------

#: The options a recipe decides; the others (seed, weights, include_weak, amp) are the run's.
RECIPE_OPTIONS = ("epochs", "batch_size", "lr", "weight_decay", "warmup_epochs", "patience",
                  "augment")  # fmt: skip

#: One recipe per starting point, chosen by ``--weights`` (`recipe_name`). Their patience is
#: `patience_for` their epochs unless given.
RECIPES: dict[str, TrainConfig] = {
    # The paper's fine-tuning of ImageNet weights (with AdamW and a cosine schedule, see
    # classifier.train): features that already see, moved gently, with its strong augmentation.
    "imagenet": TrainConfig(
        epochs=15, batch_size=48, lr=3e-4, augment="reference", weights="imagenet"
    ),
    # From random initialisation, what learns on a few hundred pictures: steps matter most
    # (batch 16), a higher rate, light augmentation (the reference's warps stop a model from
    # learning at all), and 30 epochs (at 15 the drawn sets of bench/recipes.py ended 1 to 4
    # points under 30's). Measured by bench/active_learning.py and bench/recipes.py.
    "scratch": TrainConfig(epochs=30, batch_size=16, lr=2e-3, augment="light", weights="none"),
    # An earlier model of curator's (fine-tuning it after a review round): it already fits
    # the task, so fewer epochs at half the from-scratch rate (the demo's round 2, 98-100 %).
    "finetune": TrainConfig(
        epochs=6, batch_size=16, lr=1e-3, warmup_epochs=0.5, augment="light", weights=""
    ),
}
#: How the run's first line and --help name each recipe.
RECIPE_TITLES = {
    "imagenet": "ImageNet fine-tuning",
    "scratch": "from scratch",
    "finetune": "fine-tuning an earlier model",
}


def patience_for(epochs: int) -> int:
    """Early stopping's patience when none is given: a third of the epochs, at least 3. It
    counts only once val accuracy has left chance (classifier.chance), so a long run is never
    cut short on the plateau a model from scratch can sit on before it learns."""
    return max(3, epochs // 3)


def recipe_name(weights: str, *, earlier_model: bool = False) -> str:
    """The recipe of a starting point: ``none`` trains from scratch, an earlier curator model
    (``earlier_model``: its model.pt) is fine-tuned, and ImageNet weights, or any other
    pretrained state dict (a local copy of them), take the paper's fine-tuning."""
    if weights == "none":
        return "scratch"
    return "finetune" if earlier_model else "imagenet"


@dataclass(frozen=True)
class Recipe:
    """A run's recipe, resolved: which one (`RECIPES`), its values with those given in their
    place (``cfg``), and which options were given."""

    name: str
    cfg: TrainConfig
    given: tuple[str, ...] = ()

    @property
    def title(self) -> str:
        return RECIPE_TITLES.get(self.name, self.name)

    def record(self) -> dict[str, Any]:
        """What a model's record keeps beside the values: which recipe, what was given."""
        return {"recipe": self.name, "given": list(self.given)}

    def line(self, weights_shown: str | None = None) -> str:
        """The run's first line: the recipe, its values, and which were given."""
        cfg = self.cfg

        def mark(option: str, text: str) -> str:
            return f"{text} (given)" if option in self.given else text

        lr = f"lr {format_lr(cfg.lr)}"
        values = [
            mark("epochs", f"epochs {cfg.epochs}"),
            mark("batch_size", f"batch {cfg.batch_size}"),
            f"{lr} (--lr auto: its range test)" if cfg.lr_auto else mark("lr", lr),
            mark("weight_decay", f"weight decay {cfg.weight_decay:g}"),
            mark("warmup_epochs", f"warm-up {cfg.warmup_epochs:g} epoch"),
            mark("augment", f"augment {cfg.augment}"),
            mark("patience", f"patience {cfg.patience}"),
        ]
        shown = weights_shown if weights_shown is not None else cfg.weights
        return f"recipe: {self.title} (--weights {shown}): " + ", ".join(values)


def resolve_recipe(
    weights: str, *, earlier_model: bool = False, lr_auto: bool = False, **options: Any
) -> Recipe:
    """The recipe of ``weights``, each option given (not None) in place of its value: the
    one rule of curator train, the library and the demo. ``lr_auto``: the rate comes from a
    range test (the recipe's ``lr`` stands until it has run). Patience not given is
    `patience_for` the epochs, given or not."""
    known = set(TrainConfig.__dataclass_fields__) - {"weights", "lr_auto"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"unknown training setting {unknown[0]!r}")
    name = recipe_name(weights, earlier_model=earlier_model)
    given = {k: v for k, v in options.items() if v is not None}
    if lr_auto:
        given.pop("lr", None)
    cfg = replace(RECIPES[name], weights=weights, lr_auto=lr_auto, **given)
    if "patience" not in given:
        cfg = replace(cfg, patience=patience_for(cfg.epochs))
    marked = tuple(k for k in RECIPE_OPTIONS if k in given or (k == "lr" and lr_auto))
    return Recipe(name, cfg, marked)


def format_lr(lr: float) -> str:
    """A rate as people write it, to two digits: 0.002 -> 2e-3, 0.00032 -> 3.2e-4,
    0.0187 -> 0.019, 0 -> 0."""
    if lr == 0 or 1e-2 <= abs(lr) < 100:
        return f"{lr:.2g}"
    mantissa, _, power = f"{lr:.1e}".partition("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(power)}"


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
    """What the caller shows: pictures decoded, a step of the range test or of an epoch, the
    run ready to train (its rate known), an epoch done, or a note to show as a warning."""

    kind: str  # "decode", "sweep", "ready", "step", "epoch" or "note"
    epoch: int
    epochs: int
    step: int = 0
    steps: int = 0
    loss: float = 0.0
    stats: EpochStats | None = None
    lr: float = 0.0  # "ready": the peak rate the run trains at
    note: str = ""


@dataclass
class FitResult:
    best_epoch: int
    history: list[EpochStats]
    metrics: dict[str, Any]
    stopped_early: bool
    resumed_from: int | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    #: Learned, or no better than chance on val, and what that rests on (classifier.chance).
    verdict: dict[str, Any] = field(default_factory=dict)
    #: The recipe as it trained: with --lr auto, the rate its range test found.
    cfg: TrainConfig | None = None
