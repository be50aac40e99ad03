"""``curator train``: from a labeled catalog to a registered model with a report.

The model's folder ``$CURATOR_HOME/models/<id>/`` holds ``model.pt`` (weights, settings,
classes, the image ids of each split, metrics per epoch, versions), ``report.html`` with its
plots, and while training ``last.pt``, from which an interrupted run continues: running the
same command again resumes the unfinished model trained with the same settings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from classifier.chance import describe_verdict
from classifier.checkpoint import (
    apply_weights,
    find_checkpoint,
    is_model_file,
    starting_weights,
    usable_checkpoint,
)
from classifier.config import (
    FitResult,
    Machine,
    Progress,
    Recipe,
    TrainConfig,
    format_lr,
    resolve_recipe,
)
from classifier.data import Examples, check_examples
from classifier.device import pick_device
from classifier.distributed import SINGLE, Group, device_of, share
from classifier.lrfind import check_sweep
from classifier.model import DeepConnection, ModelConfig
from classifier.report import mistakes_of, write_report
from classifier.train import fit
from curator import __version__
from curator.config import Layout
from curator.learn.examples import catalog_examples, pixel_cached
from curator.runs import tracked_run
from db.catalog import Catalog
from db.registry import DONE, create_model, resumable_model, update_model
from db.runs import run_is_live
from db.settings import get_classes

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


def choose_recipe(weights: str, *, lr_auto: bool = False, **options: Any) -> Recipe:
    """The recipe of a run starting from ``weights`` (`classifier.config.resolve_recipe`):
    an earlier curator model's file is fine-tuned, any other file of weights is taken for
    pretrained ones. Options given as None take the recipe's value."""
    earlier = weights not in ("imagenet", "none") and is_model_file(Path(weights))
    return resolve_recipe(weights, earlier_model=earlier, lr_auto=lr_auto, **options)


@dataclass
class Started:
    """A run about to train its first epoch: which model, resumed after which epoch, the
    images of each split, and its recipe at the rate it trains at (with --lr auto, the one
    the range test found)."""

    model_id: int
    resumed_after: int | None
    counts: dict[str, dict[str, int]]
    recipe: Recipe


@dataclass
class TrainOutcome:
    model_id: int
    folder: Path
    report: Path
    result: FitResult
    counts: dict[str, dict[str, int]]
    missing_files: int
    #: Groups left out because people labeled their members differently.
    conflicts: int = 0
    recipe: Recipe | None = None


def train_model(
    catalog: Catalog,
    home: Path,
    *,
    model_cfg: ModelConfig,
    recipe: Recipe,
    machine: Machine | None = None,
    on_progress: Callable[[Progress], None] = lambda _p: None,
    on_start: Callable[[Started], None] = lambda _s: None,
    on_note: Callable[[str], None] = lambda _n: None,
    restart: bool = False,
    group: Group = SINGLE,
    examples: Examples | None = None,
    recorded: dict[str, Any] | None = None,
    status: str = DONE,
    report: bool = True,
    checkpoints: bool = True,
) -> TrainOutcome:
    """Train on the catalog's labels; register the model and write its report. With several
    processes (``group``, under torchrun), every rank trains and rank 0 alone writes the
    catalog, the model's files and the report.

    Cross-fitting trains its fold models through here too: with ``examples`` of its own (the
    folds), ``recorded`` settings stored beside the recipe (which fold of which model), the
    ``status`` the finished model takes, no report, and no checkpoints (it is never resumed).
    """
    machine = pixel_cached(machine or Machine(), home)
    cfg = recipe.cfg
    if examples is None:
        with catalog.reading() as session:
            classes = get_classes(session)
            examples = catalog_examples(
                session, home=home, classes=classes, include_weak=cfg.include_weak
            )
    check_examples(examples, cfg.include_weak)  # before anything is registered
    if cfg.lr_auto:  # likewise: a range test on too few pictures
        check_sweep(len(examples.splits["train"]), cfg.batch_size)
    pick_device(device_of(group, machine.device))  # likewise: a device this machine lacks
    model_cfg = ModelConfig.from_dict({**model_cfg.as_dict(), "classes": examples.classes})
    training = {**cfg.as_dict(), **recipe.record(), **(recorded or {})}
    if not group.main:
        return _train_beside(model_cfg, cfg, machine, examples, restart, group)
    model_id, folder, resumed_after, start = _register(
        catalog, home, model_cfg, cfg, training, restart, on_note
    )
    share(group, (model_id, str(folder)))  # the other ranks wait for this
    counts = examples.counts()

    def progress(p: Progress) -> None:
        if p.kind == "ready":  # after the range test, if any: the rate is known
            ready = replace(recipe, cfg=replace(cfg, lr=p.lr))
            on_start(Started(model_id, resumed_after, counts, ready))
        _progress(catalog, model_id, p, on_progress)

    params = {"model": model_id, "config": model_cfg.as_dict(), "training": training}
    with tracked_run(catalog, kind="train", params=params) as run:
        with catalog.writing() as session:
            update_model(session, model_id=model_id, run_id=run.id)
        try:
            result = fit(
                model_cfg=model_cfg,
                cfg=cfg,
                machine=machine,
                examples=examples,
                folder=folder,
                on_progress=progress,
                resume=not restart,
                versions={"curator": __version__},
                start=start,
                group=group,
                checkpoints=checkpoints,
                record={**recipe.record(), **(recorded or {})},
            )
        except BaseException as exc:
            mark_unfinished(catalog, model_id, exc)
            raise
        trained = {**training, **(result.cfg.as_dict() if result.cfg else {})}
        summary = record_result(catalog, model_id, result, status=status, training=trained)
        run.counts = {
            "model": model_id,
            "best_epoch": result.best_epoch,
            "test_accuracy": summary["test"].get("accuracy"),
            "verdict": result.verdict.get("verdict"),
        }
    written = folder / "report.html"
    trained_recipe = replace(recipe, cfg=result.cfg or cfg)
    if report:
        written = _write_report(folder, model_id, model_cfg, trained_recipe, result, examples)
    return TrainOutcome(
        model_id=model_id,
        folder=folder,
        report=written,
        result=result,
        counts=examples.counts(),
        missing_files=len(examples.missing_files),
        conflicts=len(examples.conflicts),
        recipe=trained_recipe,
    )


def _register(
    catalog: Catalog,
    home: Path,
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    training: dict[str, Any],
    restart: bool,
    on_note: Callable[[str], None],
) -> tuple[int, Path, int | None, tuple[dict[str, torch.Tensor] | None, str] | None]:
    """The model to train: the unfinished one trained with the same settings (unless
    ``restart``), or a new one. Returns its id and folder, the epoch a resumed run goes on
    after, and the starting weights of a new run (checked before it is registered)."""
    config = model_cfg.as_dict()
    with catalog.reading() as session:
        earlier = None if restart else resumable_model(session, config=config, training=training)
        if earlier is not None and earlier.run_id and run_is_live(session, run_id=earlier.run_id):
            earlier = None  # being trained right now by another process: leave it be
    # The epoch the run resumes after; a damaged checkpoint is set aside before anything
    # trusts it.
    resumed_after = None
    if earlier is not None:
        resumed_after, notes = usable_checkpoint(home / earlier.path)
        for note in notes:
            on_note(note)
    start = None
    if resumed_after is None:
        # a missing or unfitting weights file fails here, before anything is registered
        start = starting_weights(model_cfg.backbone, cfg.weights, model_cfg.classes)
        apply_weights(DeepConnection(model_cfg), *start)
    with catalog.writing() as session:
        if earlier is not None:
            update_model(session, model_id=earlier.id, status="training")
            return earlier.id, home / earlier.path, resumed_after, start
        model_id, folder = register_model(
            session, home, config=config, training=training, classes=list(model_cfg.classes)
        )
    return model_id, folder, resumed_after, start


def _write_report(
    folder: Path,
    model_id: int,
    model_cfg: ModelConfig,
    recipe: Recipe,
    result: FitResult,
    examples: Examples,
) -> Path:
    """The model's report.html: its verdict, curves, metrics, facts, images and mistakes."""
    classes = list(examples.classes)
    cfg = recipe.cfg
    lr_range = result.extras.get("lr_range")
    return write_report(
        folder,
        title=f"curator model {model_id}: {model_cfg.backbone} / {model_cfg.head}",
        classes=classes,
        history=[h.as_dict() for h in result.history],
        metrics=result.metrics,
        curves=result.extras["curves"],
        facts={
            "verdict": describe_verdict(result.verdict),
            "recipe": recipe.line(weights_shown=_shown_weights(cfg.weights)).removeprefix(
                "recipe: "
            ),
            **({"learning-rate range test": _range_fact(lr_range)} if lr_range else {}),
            "backbone": model_cfg.backbone,
            "head": f"{model_cfg.head} (levels {list(model_cfg.spp_levels)})",
            "image size": f"{model_cfg.image_size} px, fit by {model_cfg.fit}",
            "starting weights": result.extras["weights"],
            **(
                {"resumed": f"after epoch {result.resumed_from - 1}, where a run was interrupted"}
                if result.resumed_from
                else {}
            ),
            "device / precision": f"{result.extras['device']} / {result.extras['precision']}",
            "labels used": "human and weak (query, import)" if cfg.include_weak else "human",
            "left out (people disagree)": len(examples.conflicts),
            "best epoch": f"{result.best_epoch} of {len(result.history)}"
            + (" (stopped early)" if result.stopped_early else ""),
            "optimizer": f"AdamW lr {format_lr(cfg.lr)}, weight decay {cfg.weight_decay}, "
            f"warm-up {cfg.warmup_epochs} epoch, cosine to {cfg.min_lr_ratio} of it",
            "batch size": cfg.batch_size,
            "seed": cfg.seed,
        },
        counts=examples.counts(),
        left_out=len(examples.missing_files),
        mistakes=mistakes_of(
            examples.splits["test"], result.extras["curves"]["test"]["probs"], classes
        ),
        verdict=result.verdict,
        lr_range=lr_range,
    )


def _shown_weights(weights: str) -> str:
    return weights if weights in ("imagenet", "none") else Path(weights).name


def _range_fact(lr_range: dict[str, Any]) -> str:
    rule = (
        "where the loss falls fastest"
        if lr_range["rule"] == "steep"
        else "a tenth of the rate at the lowest loss"
    )
    return (
        f"{format_lr(lr_range['chosen'])}, {rule}, over {len(lr_range['lrs'])} steps "
        f"(steepest descent at {format_lr(lr_range['steep'])}, a tenth of the lowest at "
        f"{format_lr(lr_range['minimum'])}): lr-range.png"
    )


def _train_beside(
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    machine: Machine,
    examples: Examples,
    restart: bool,
    group: Group,
) -> TrainOutcome:
    """A rank other than 0: the model rank 0 registered, trained on this rank's share of the
    batches; nothing written."""
    shared: tuple[int, str] = share(group, None)
    model_id, folder = shared[0], Path(shared[1])
    result = fit(
        model_cfg=model_cfg,
        cfg=cfg,
        machine=machine,
        examples=examples,
        folder=folder,
        resume=not restart,
        start=starting_weights(model_cfg.backbone, cfg.weights, model_cfg.classes)
        if find_checkpoint(folder) is None or restart
        else None,
        group=group,
    )
    return TrainOutcome(
        model_id=model_id,
        folder=folder,
        report=folder / "report.html",
        result=result,
        counts=examples.counts(),
        missing_files=len(examples.missing_files),
    )


def _progress(
    catalog: Catalog, model_id: int, p: Progress, forward: Callable[[Progress], None]
) -> None:
    if p.kind == "epoch":
        with catalog.writing() as session:
            update_model(session, model_id=model_id, epochs=p.epoch)
    forward(p)


def register_model(
    session: Session,
    home: Path,
    *,
    config: dict[str, Any],
    training: dict[str, Any],
    classes: list[str],
    status: str = "training",
) -> tuple[int, Path]:
    """A new row in the model registry, and the folder its files go to."""
    row = create_model(
        session,
        status=status,
        config=config,
        training=training,
        classes=classes,
        path="models/pending",
        torch_version=str(torch.__version__),
        curator_version=__version__,
    )
    row.path = Layout.model_relpath(row.id)
    return row.id, home / row.path


def record_result(
    catalog: Catalog,
    model_id: int,
    result: FitResult,
    *,
    status: str,
    training: dict[str, Any] | None = None,
) -> dict:
    """Store a finished fit's epochs, metrics (without the per-class detail) and verdict,
    and the recipe as it trained (``training``: with --lr auto, the rate found); return the
    metrics."""
    summary = {
        split: {k: v for k, v in m.items() if k != "per_class"}
        for split, m in result.metrics.items()
    }
    fields: dict[str, Any] = {"training": training} if training is not None else {}
    with catalog.writing() as session:
        update_model(
            session,
            model_id=model_id,
            status=status,
            best_epoch=result.best_epoch,
            epochs=len(result.history),
            metrics=summary,
            verdict=result.verdict.get("verdict"),
            **fields,
        )
    return summary


def mark_unfinished(catalog: Catalog, model_id: int, exc: BaseException) -> None:
    """A fit that did not finish: ``interrupted`` on Ctrl-C, ``failed`` otherwise."""
    status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
    try:
        with catalog.writing() as session:
            update_model(session, model_id=model_id, status=status)
    except Exception:  # the first error is the one to report
        pass
