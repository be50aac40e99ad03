"""``curator train``: from a labeled catalog to a registered model with a report.

The model's folder ``$CURATOR_HOME/models/<id>/`` holds ``model.pt`` (weights, settings,
classes, the image ids of each split, metrics per epoch, versions), ``report.html`` with its
plots, and while training ``last.pt``, from which an interrupted run continues: running the
same command again resumes the unfinished model trained with the same settings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from classifier.checkpoint import (
    apply_weights,
    find_checkpoint,
    starting_weights,
    usable_checkpoint,
)
from classifier.config import FitResult, Machine, Progress, TrainConfig
from classifier.data import Examples, check_examples
from classifier.device import pick_device
from classifier.distributed import SINGLE, Group, device_of, share
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


def train_model(
    catalog: Catalog,
    home: Path,
    *,
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    machine: Machine | None = None,
    on_progress: Callable[[Progress], None] = lambda _p: None,
    on_start: Callable[[int, int | None, dict[str, Any]], None] = lambda *_a: None,
    on_note: Callable[[str], None] = lambda _n: None,
    restart: bool = False,
    group: Group = SINGLE,
    examples: Examples | None = None,
    recorded: dict[str, Any] | None = None,
    status: str = DONE,
    report: bool = True,
) -> TrainOutcome:
    """Train on the catalog's labels; register the model and write its report. With several
    processes (``group``, under torchrun), every rank trains and rank 0 alone writes the
    catalog, the model's files and the report.

    Cross-fitting trains its fold models through here too: with ``examples`` of its own (the
    folds), ``recorded`` settings stored beside the recipe (which fold of which model), the
    ``status`` the finished model takes, and no report."""
    machine = pixel_cached(machine or Machine(), home)
    if examples is None:
        with catalog.reading() as session:
            classes = get_classes(session)
            examples = catalog_examples(
                session, home=home, classes=classes, include_weak=cfg.include_weak
            )
    check_examples(examples, cfg.include_weak)  # before anything is registered
    pick_device(device_of(group, machine.device))  # likewise: a device this machine lacks
    model_cfg = ModelConfig.from_dict({**model_cfg.as_dict(), "classes": examples.classes})
    training = {**cfg.as_dict(), **(recorded or {})}
    if not group.main:
        return _train_beside(model_cfg, cfg, machine, examples, restart, group)
    model_id, folder, resumed_after, start = _register(
        catalog, home, model_cfg, cfg, training, restart, on_note
    )
    share(group, (model_id, str(folder)))  # the other ranks wait for this
    on_start(model_id, resumed_after, examples.counts())
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
                on_progress=lambda p: _progress(catalog, model_id, p, on_progress),
                resume=not restart,
                versions={"curator": __version__},
                start=start,
                group=group,
            )
        except BaseException as exc:
            mark_unfinished(catalog, model_id, exc)
            raise
        summary = record_result(catalog, model_id, result, status=status)
        run.counts = {
            "model": model_id,
            "best_epoch": result.best_epoch,
            "test_accuracy": summary["test"].get("accuracy"),
        }
    written = folder / "report.html"
    if report:
        written = _write_report(folder, model_id, model_cfg, cfg, result, examples)
    return TrainOutcome(
        model_id=model_id,
        folder=folder,
        report=written,
        result=result,
        counts=examples.counts(),
        missing_files=len(examples.missing_files),
        conflicts=len(examples.conflicts),
    )


def _register(
    catalog: Catalog,
    home: Path,
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    training: dict[str, Any],
    restart: bool,
    on_note: Callable[[str], None],
) -> tuple[int, Path, int | None, Any]:
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
    cfg: TrainConfig,
    result: FitResult,
    examples: Examples,
) -> Path:
    """The model's report.html: its curves, metrics, facts, images and mistakes."""
    classes = list(examples.classes)
    return write_report(
        folder,
        title=f"curator model {model_id}: {model_cfg.backbone} / {model_cfg.head}",
        classes=classes,
        history=[h.as_dict() for h in result.history],
        metrics=result.metrics,
        curves=result.extras["curves"],
        facts={
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
            "optimizer": f"AdamW lr {cfg.lr}, weight decay {cfg.weight_decay}, warm-up "
            f"{cfg.warmup_epochs} epoch, cosine to {cfg.min_lr_ratio} of it",
            "batch size": cfg.batch_size,
            "seed": cfg.seed,
        },
        counts=examples.counts(),
        left_out=len(examples.missing_files),
        mistakes=mistakes_of(
            examples.splits["test"], result.extras["curves"]["test"]["probs"], classes
        ),
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
    model_id, folder = share(group, None)
    folder = Path(folder)
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
    session: Any,
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


def record_result(catalog: Catalog, model_id: int, result: FitResult, *, status: str) -> dict:
    """Store a finished fit's epochs and metrics (without the per-class detail); return them."""
    summary = {
        split: {k: v for k, v in m.items() if k != "per_class"}
        for split, m in result.metrics.items()
    }
    with catalog.writing() as session:
        update_model(
            session,
            model_id=model_id,
            status=status,
            best_epoch=result.best_epoch,
            epochs=len(result.history),
            metrics=summary,
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
