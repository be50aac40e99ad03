"""Cross-fitting (``curator score --folds K``): K models, each trained on all labeled groups but
one fold, score the fold they did not see. Every labeled image then has an out-of-sample
prediction, which is what the ``disagree`` queues rank (a model's opinion of an image it
trained on mostly repeats its label)."""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import torch

from classifier.checkpoint import FORMAT
from classifier.config import RECIPE_OPTIONS, RECIPES, Machine, Progress, Recipe
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
    #: How many folds, and why that many when none was asked for.
    count: int = 0
    rule: str = ""


#: A fold model trains for at least this many optimizer steps: a model from scratch on a few
#: hundred pictures needs them to leave the plateau it starts on. The demo's folds of about
#: 280 pictures trained 10 epochs (170 steps) and put 38-50 % of the wrong labels in the
#: first tenth of the disagree queue; at 400 steps, see the README's demo table.
FOLD_STEPS = 400
#: ... but never more epochs than this: on a tiny catalog 400 steps would be hundreds of
#: passes over the same few pictures.
FOLD_MAX_EPOCHS = 30
#: ... and at least the recipe's epochs up to this many: steps, not the whole run's length
#: (the from-scratch recipe's 30), are what a fold needs.
FOLD_MIN_EPOCHS = 15
#: Folds when none are asked for: 5, or one per this many labeled groups when there are
#: fewer than 5 times as many (at least 2), so that each held-out fold has some of each class.
GROUPS_PER_FOLD = 20


def folds_for(labeled: int) -> tuple[int, str]:
    """The number of folds a catalog of ``labeled`` labeled groups supports, and the rule."""
    count = max(2, min(5, labeled // GROUPS_PER_FOLD))
    rule = (
        f"5 folds with {5 * GROUPS_PER_FOLD} labeled groups or more"
        if count == 5
        else f"{count} folds: one per {GROUPS_PER_FOLD} of the {labeled} labeled groups "
        "(at least 2; 5 from 100)"
    )
    return count, rule


def fold_epochs(train_images: int, batch_size: int, recipe_epochs: int) -> int:
    """Epochs enough for `FOLD_STEPS` steps on a fold's training pictures, at least the
    recipe's (up to `FOLD_MIN_EPOCHS`) and at most `FOLD_MAX_EPOCHS`."""
    steps = max(1, train_images // batch_size)  # full batches: the last partial one is dropped
    floor = min(recipe_epochs, FOLD_MIN_EPOCHS)
    return min(FOLD_MAX_EPOCHS, max(floor, math.ceil(FOLD_STEPS / steps)))


def fold_recipe(root: dict[str, Any], train_images: int) -> Recipe:
    """A fold model's recipe: the one that learns on small sets from the line's starting
    point (from scratch for a line that started from random weights, the fine-tuning one for
    ImageNet or other pretrained weights), with the options given to the line's first model
    in place (its epochs and patience aside), and steps enough for the fold's size. Without
    early stopping: a fold's val set is small and noisy; the best epoch is kept."""
    weights = str(root.get("weights", "none"))
    name = "scratch" if weights == "none" else "finetune"
    given = [k for k in root.get("given") or [] if k in RECIPE_OPTIONS and k in root]
    options = {k: root[k] for k in given if k not in ("epochs", "patience")}
    base = replace(
        RECIPES[name],
        **options,  # with --lr auto, "lr" is given: the rate its range test found
        weights=weights,
        seed=int(root.get("seed", 0)),
        amp=bool(root.get("amp", True)),
        include_weak=True,
        lr_auto=False,
    )
    epochs = fold_epochs(train_images, base.batch_size, base.epochs)
    return Recipe(name, replace(base, epochs=epochs, patience=epochs), tuple(options))


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
    folds: int | None = None,
    device: str = "auto",
    batch_size: int = SCORE["batch_size"],
    workers: int = SCORE["workers"],
    on_progress: Callable[[FoldProgress], None] = lambda _p: None,
) -> CrossFitOutcome:
    """Out-of-sample predictions for every labeled group (human and weak labels), by K
    models trained from the base model's starting point (`fold_recipe`), each on all folds
    but one; K, when not given, is what the catalog's size supports (`folds_for`)."""
    if folds is not None and folds < 2:
        raise CuratorError("--folds needs at least 2 folds")
    pick_device(device)  # before any fold model is registered
    with catalog.reading() as session:
        base = get_model(session, ref=base_ref)
        if base.status != "done":
            raise CuratorError(f"model {base.id} is {base.status}: cross-fit from a trained model")
        base_id, classes = base.id, list(base.classes)
        config, training = dict(base.config), dict(base.training)
        examples = catalog_examples(session, home=home, classes=classes, include_weak=True)
        labeled = [e for split in examples.splits.values() for e in split]
        rule = "as asked"
        if folds is None:
            folds, rule = folds_for(len(labeled))
        finished = {
            int(m.training.get("fold", -1)): m.id
            for m in fold_models_of(session, model_id=base_id)
            if m.training.get("folds") == folds
        }
    if len(labeled) < folds * 4:
        raise CuratorError(
            f"{len(labeled)} labeled images are too few for {folds} folds; label more or use "
            "fewer folds"
        )
    training = root_training(training)
    seed = int(training.get("seed", 0))
    outcome = CrossFitOutcome(base=base_id, count=folds, rule=rule)
    model_cfg = ModelConfig.from_dict({**config, "classes": classes}, fit=training.get("fit"))
    plans = _plan_folds(labeled, classes, folds, seed, skip=set(finished))
    for k in range(folds):
        model_id, loaded, held = _fold_model(
            catalog, home, k, folds, seed, labeled, finished.get(k), plans.get(k),
            model_cfg=model_cfg,
            training={**training, "cross_fit_of": base_id},
            machine=Machine(device=device, workers=workers),
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
                **_fold_figures(catalog, model_id),
            }
        )
    return outcome


def _fold_figures(catalog: Catalog, model_id: int) -> dict[str, Any]:
    """A fold model's val accuracy, how many val images it rests on, its verdict and epochs."""
    with catalog.reading() as session:
        model = get_model(session, ref=model_id)
        val = (model.metrics or {}).get("val") or {}
        return {
            "val_accuracy": val.get("accuracy"),
            "val_images": val.get("n"),
            "verdict": model.verdict,
            "epochs": model.epochs,
        }


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
    machine: Machine,
    on_progress: Callable[[FoldProgress], None],
) -> tuple[int, LoadedModel, list[Example]]:
    """Fold k's model and the images it is to score: the model kept from an earlier run
    (and the images labeled since that fall in its fold and that it did not train on), or a
    new one trained on the fold's plan (and its held-out fold)."""
    if kept is not None:
        loaded = load_registered(catalog, home, kept, device=machine.device)
        seen_by_model = loaded.train_ids | loaded.val_ids
        held = [
            e
            for e in labeled
            if fold_of(e.image_id, folds, seed) == k and e.image_id not in seen_by_model
        ]
        return kept, loaded, held
    assert plan is not None
    recipe = fold_recipe(training, len(plan.splits["train"]))
    fold = {"cross_fit_of": training["cross_fit_of"], "fold": k, "folds": folds}
    model_id = _train_fold(catalog, home, model_cfg, recipe, fold, plan, machine, on_progress)
    return (
        model_id,
        load_registered(catalog, home, model_id, device=machine.device),
        plan.splits["test"],
    )


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


def _train_fold(
    catalog: Catalog,
    home: Path,
    model_cfg: ModelConfig,
    recipe: Recipe,
    fold: dict[str, Any],
    examples: Examples,
    machine: Machine,
    on_progress: Callable[[FoldProgress], None],
) -> int:
    """Fold k's model, through the same steps as `curator train` (register, fit, record,
    mark an interrupted one): its recipe, the fold's examples, which fold it is on record
    (``fold``: whose fold of how many), no checkpoints (a fold is trained again, not
    resumed)."""
    k, folds = fold["fold"], fold["folds"]
    outcome = train_model(
        catalog,
        home,
        model_cfg=model_cfg,
        recipe=recipe,
        machine=machine,
        examples=examples,
        recorded=fold,
        status=SCORING,
        report=False,
        restart=True,
        checkpoints=False,
        on_progress=lambda p: on_progress(FoldProgress(k, folds, training=p)),
    )
    return outcome.model_id
