"""Cross-fitting (``curator score --folds K``): K models, each trained on all labeled groups but
one fold, score the fold they did not see. Every labeled image then has an out-of-sample
prediction, which is what the ``disagree`` queues rank (a model's opinion of an image it
trained on mostly repeats its label)."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch

from classifier.checkpoint import FORMAT
from classifier.config import Machine, Progress, TrainConfig
from classifier.data import Example, Examples, check_examples
from classifier.device import pick_device
from classifier.errors import TrainingError
from classifier.model import ModelConfig
from curator.defaults import SCORE
from curator.errors import CuratorError
from curator.learn.examples import catalog_examples
from curator.learn.models import LoadedModel, load_registered
from curator.learn.scoring import ScoreProgress, score_catalog
from curator.learn.training import train_model
from db.catalog import Catalog
from db.registry import CROSS_FIT, SCORING, fold_models_of, get_model, update_model


@dataclass
class FoldProgress:
    fold: int
    folds: int
    training: Progress | None = None
    scoring: ScoreProgress | None = None


@dataclass
class CrossFitOutcome:
    base: int
    folds: list[dict[str, Any]] = field(default_factory=list)
    scored: int = 0


def fold_of(image_id: int, folds: int, seed: int) -> int:
    """A labeled group's fold: a stable hash, so a rerun puts it in the same fold."""
    digest = hashlib.sha256(f"{seed}:{image_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % folds


def root_training(training: dict[str, Any]) -> dict[str, Any]:
    """The settings a model's line started with: a model fine-tuned from an earlier one
    (``--weights .../model.pt``) is followed back to the first, so that fold models never
    start from weights that saw their held-out fold, and train for the full schedule."""
    seen: set[str] = set()
    while isinstance(training.get("weights"), str) and training["weights"] not in seen:
        path = Path(training["weights"]).expanduser()
        seen.add(training["weights"])
        if path.suffix != ".pt" or not path.is_file():
            break
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:
            break
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            break
        training = dict(state.get("training") or {})
    return training


def cross_fit(
    catalog: Catalog,
    home: Path,
    *,
    base_ref: int | None,
    folds: int,
    device: str = "auto",
    batch_size: int = SCORE["batch_size"],
    workers: int = SCORE["workers"],
    on_progress: Callable[[FoldProgress], None] = lambda _p: None,
) -> CrossFitOutcome:
    """Out-of-sample predictions for every labeled group (human and weak labels), by K
    models trained with the settings of the base model, each on all folds but one."""
    if folds < 2:
        raise CuratorError("--folds needs at least 2 folds")
    pick_device(device)  # before any fold model is registered
    with catalog.reading() as session:
        base = get_model(session, ref=base_ref)
        if base.status != "done":
            raise CuratorError(f"model {base.id} is {base.status}: cross-fit from a trained model")
        base_id, classes = base.id, list(base.classes)
        config, training = dict(base.config), dict(base.training)
        examples = catalog_examples(session, home=home, classes=classes, include_weak=True)
        finished = {
            int(m.training.get("fold", -1)): m.id
            for m in fold_models_of(session, model_id=base_id)
            if m.training.get("folds") == folds
        }
    labeled = [e for split in examples.splits.values() for e in split]
    if len(labeled) < folds * 4:
        raise CuratorError(
            f"{len(labeled)} labeled images are too few for {folds} folds; label more or use "
            "fewer folds"
        )
    training = root_training(training)
    seed = int(training.get("seed", 0))
    outcome = CrossFitOutcome(base=base_id)
    model_cfg = ModelConfig.from_dict({**config, "classes": classes}, fit=training.get("fit"))
    plans = _plan_folds(labeled, classes, folds, seed, skip=set(finished))
    for k in range(folds):
        model_id, loaded, held = _fold_model(
            catalog, home, k, folds, seed, labeled, finished.get(k), plans.get(k),
            model_cfg=model_cfg,
            training={**training, "cross_fit_of": base_id},
            device=device,
            on_progress=on_progress,
        )  # fmt: skip
        scored = score_catalog(
            catalog,
            home,
            loaded,
            image_ids=[e.image_id for e in held],
            rescore=k not in finished,
            batch_size=batch_size,
            workers=workers,
            on_progress=partial(_fold_scoring, on_progress, k, folds),
        )
        with catalog.writing() as session:
            update_model(session, model_id=model_id, status=CROSS_FIT)
        outcome.scored += int(scored["scored"])
        outcome.folds.append(
            {
                "fold": k,
                "model": model_id,
                "held_out": len(held),
                "scored": int(scored["scored"]) + int(scored["already_scored"]),
                "kept": k in finished,
            }
        )
    return outcome


def _fold_scoring(
    on_progress: Callable[[FoldProgress], None], fold: int, folds: int, p: ScoreProgress
) -> None:
    on_progress(FoldProgress(fold, folds, scoring=p))


def _fold_model(
    catalog: Catalog,
    home: Path,
    k: int,
    folds: int,
    seed: int,
    labeled: list[Example],
    kept: int | None,
    plan: Examples | None,
    *,
    model_cfg: ModelConfig,
    training: dict[str, Any],
    device: str,
    on_progress: Callable[[FoldProgress], None],
) -> tuple[int, LoadedModel, list[Example]]:
    """Fold k's model and the images it is to score: the model kept from an earlier run
    (and the images labeled since that fall in its fold and that it did not train on), or a
    new one trained on the fold's plan (and its held-out fold)."""
    if kept is not None:
        loaded = load_registered(catalog, home, kept, device=device)
        seen_by_model = loaded.train_ids | loaded.val_ids
        held = [
            e
            for e in labeled
            if fold_of(e.image_id, folds, seed) == k and e.image_id not in seen_by_model
        ]
        return kept, loaded, held
    assert plan is not None
    fold_training = {
        **training,
        # No early stop: a fold's val set is small and noisy, and a model trained from
        # scratch can sit on a plateau for epochs before it learns; the best epoch is kept.
        "patience": max(int(training.get("patience", 3)), int(training.get("epochs", 1))),
        "include_weak": True,
        "fold": k,
        "folds": folds,
    }
    model_id = _train_fold(
        catalog, home, model_cfg, fold_training, plan, k, folds, Machine(device=device),
        on_progress,
    )  # fmt: skip
    return model_id, load_registered(catalog, home, model_id, device=device), plan.splits["test"]


def _plan_folds(
    labeled: list[Example], classes: list[str], folds: int, seed: int, *, skip: set[int]
) -> dict[int, Examples]:
    """Each fold still to train: its held-out fold as test, a tenth of the rest as val.
    Every fold is checked before any is trained, so a fold that cannot be is said first."""
    plans: dict[int, Examples] = {}
    for k in range(folds):
        if k in skip:
            continue
        held = [e for e in labeled if fold_of(e.image_id, folds, seed) == k]
        rest = [e for e in labeled if fold_of(e.image_id, folds, seed) != k]
        rng = random.Random(seed * 7919 + k)
        rng.shuffle(rest)
        n_val = max(1, len(rest) // 10)
        plans[k] = Examples(
            classes=classes, splits={"train": rest[n_val:], "val": rest[:n_val], "test": held}
        )
        try:
            check_examples(plans[k], include_weak=True)
        except TrainingError as exc:
            raise CuratorError(
                f"fold {k + 1} of {folds} cannot be trained ({exc}); use fewer folds"
            ) from None
    return plans


#: What a fold model's record says of it besides its recipe: whose fold of how many.
FOLD_KEYS = ("cross_fit_of", "fold", "folds")


def _train_fold(
    catalog: Catalog,
    home: Path,
    model_cfg: ModelConfig,
    training: dict[str, Any],
    examples: Examples,
    k: int,
    folds: int,
    machine: Machine,
    on_progress: Callable[[FoldProgress], None],
) -> int:
    """Fold k's model, through the same steps as `curator train` (register, fit, record,
    mark an interrupted one): its recipe, the fold's examples, which fold it is on record."""
    outcome = train_model(
        catalog,
        home,
        model_cfg=model_cfg,
        cfg=TrainConfig.from_dict(training),
        machine=machine,
        examples=examples,
        recorded={key: training[key] for key in FOLD_KEYS},
        status=SCORING,
        report=False,
        restart=True,
        on_progress=lambda p: on_progress(FoldProgress(k, folds, training=p)),
    )
    return outcome.model_id
