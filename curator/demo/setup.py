"""What a demo run is given and what it gives back, and the home it runs in."""

from __future__ import annotations

import shlex
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from curator.demo.synthetic import CLASSES
from curator.errors import CuratorError

MARKER = ".curator-demo"
QUERIES = {"happy": "happy couple", "unhappy": "unhappy couple"}


@dataclass(frozen=True)
class DemoConfig:
    per_class: int = 300
    seed: int = 0
    backbone: str = "resnet18"
    image_size: int = 80
    #: Round 1's epochs (fewer than the from-scratch recipe's 30, for time); the options
    #: left None take the recipe of the round's starting point (classifier.config.RECIPES).
    epochs: int | None = 10
    batch_size: int | None = None
    lr: float | None = None
    #: Round 2 fine-tunes round 1's model on the corrected labels, as a user would: the
    #: fine-tuning recipe's values unless set.
    finetune_epochs: int | None = None
    finetune_lr: float | None = None
    weights: str = "none"
    folds: int = 2
    #: Share of the catalog's groups the simulated reviewer looks at.
    budget: float = 0.2
    #: Of the budget, the share spent on the top of `disagree`, then on the top of `outlier`
    #: (the rest: `uncertain`).
    disagree_share: float = 0.6
    outlier_share: float = 0.1
    new_photos: int = 50  # per class, scored in bulk at the end
    explain: int = 4
    workers: int = 2
    device: str = "auto"

    @classmethod
    def full(cls, **overrides: Any) -> DemoConfig:
        """The paper's configuration: ResNet-34 at 512 px from ImageNet weights (for a GPU)."""
        values = {
            "backbone": "resnet34",
            "image_size": 512,
            "weights": "imagenet",
            "epochs": None,  # the ImageNet recipe's
            "batch_size": 16,  # 512 px pictures: 16 fit a GPU's memory
            "per_class": 400,
            **overrides,
        }
        return cls(**values)


#: step(message), progress(description, done, total, status)
Step = Callable[[str], None]
ProgressFn = Callable[[str, int, int | None, str], None]


@dataclass
class DemoResult:
    home: Path
    config: dict[str, Any]
    report: Path | None = None
    crawl: dict[str, dict[str, Any]] = field(default_factory=dict)
    planted: dict[str, int] = field(default_factory=dict)
    dedup: dict[str, Any] = field(default_factory=dict)
    #: The catalog's health after the crawl (curator check): counts per issue, leaks.
    health: dict[str, Any] = field(default_factory=dict)
    noise: dict[str, Any] = field(default_factory=dict)
    #: The outlier queue's catch of the web's off-topic pictures (curator.demo.outliers).
    outliers: dict[str, Any] = field(default_factory=dict)
    review: dict[str, Any] = field(default_factory=dict)
    rounds: dict[str, dict[str, Any]] = field(default_factory=dict)
    new_photos: dict[str, Any] = field(default_factory=dict)
    explained: list[str] = field(default_factory=list)
    machine: str = ""
    seconds: dict[str, float] = field(default_factory=dict)
    #: Each training's recipe, as curator train's first line says it.
    recipes: dict[str, str] = field(default_factory=dict)

    @property
    def browse(self) -> str:
        """The command that opens the demo catalog's disagree queue, quoted for a shell: a
        home with spaces in it works when pasted."""
        return shlex.join(["curator", "--home", str(self.home), "review", "--queue", "disagree"])

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["home"], data["report"] = str(self.home), str(self.report) if self.report else None
        data["browse"] = self.browse
        return data


def prepare_home(home: Path) -> None:
    """Start from an empty demo home; refuse to wipe a folder that is not one."""
    if home.exists() and not home.is_dir():
        raise CuratorError(f"{home} is a file, not a folder; choose another --home")
    if home.exists() and any(home.iterdir()):
        if not (home / MARKER).exists():
            raise CuratorError(f"{home} is not empty and is not a demo home; choose another --home")
        shutil.rmtree(home)
    home.mkdir(parents=True, exist_ok=True)
    (home / MARKER).write_text("created by curator demo; safe to delete\n")


def machine_of(device: str) -> str:
    """The machine the demo ran on, in words, for the report."""
    import os

    import torch

    from classifier.device import pick_device

    chosen = pick_device(device)
    if chosen.type == "cuda":
        return f"{torch.cuda.get_device_name(chosen)} (CUDA), {os.cpu_count()} CPU cores"
    return f"{os.cpu_count()} CPU cores, no GPU used"


def check_config(config: DemoConfig) -> None:
    """The device and the starting weights, checked before anything is generated."""
    from classifier.checkpoint import apply_weights, starting_weights
    from classifier.device import pick_device
    from classifier.model import DeepConnection, ModelConfig

    pick_device(config.device)  # each raises a TrainingError that says what to do
    model_cfg = ModelConfig(backbone=config.backbone, image_size=config.image_size, classes=CLASSES)
    apply_weights(
        DeepConnection(model_cfg), *starting_weights(config.backbone, config.weights, CLASSES)
    )
