"""``curator score --folds``: cross-fitting, out-of-sample predictions for every labeled
group, with its progress and its summary."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from curator.cli.common import pct, print_json, progress_bar, stderr, stdout

if TYPE_CHECKING:
    from db.catalog import Catalog


def run_cross_fit(
    catalog: Catalog,
    home: Path,
    model_ref: int | None,
    folds: int | None,
    device: str,
    batch_size: int,
    workers: int,
    as_json: bool,
) -> None:
    """`curator score --folds`: train the folds' models and score each one's held-out
    images, with a bar, warnings for folds at chance and the summary."""
    from curator.learn.crossfit import FoldProgress, cross_fit

    with progress_bar("cross-fitting", None) as update:

        def progress(p: FoldProgress) -> None:
            if p.training is not None and p.training.kind == "step":
                t = p.training
                update(
                    t.step,
                    f"fold {p.fold + 1}/{p.folds} · epoch {t.epoch}/{t.epochs} · loss {t.loss:.3f}",
                    total=t.steps,
                )
            elif p.scoring is not None:
                update(
                    p.scoring.done, f"fold {p.fold + 1}/{p.folds} · scoring", total=p.scoring.total
                )

        outcome = cross_fit(
            catalog,
            home,
            base_ref=model_ref,
            folds=folds,
            device=device,
            batch_size=batch_size,
            workers=workers,
            on_progress=progress,
        )
    at_chance = [f for f in outcome.folds if f.get("verdict") == "chance"]
    for fold in at_chance:
        stderr.print(
            f"warning: fold {fold['fold'] + 1}'s model {fold['model']} is no better than chance "
            f"on val ({pct(fold['val_accuracy'])} of {fold['val_images']}): its held-out images "
            "are ranked by a model that learned nothing; label more, or cross-fit a model "
            "trained with other settings"
        )
    if as_json:
        print_json(
            {
                "base": outcome.base,
                "folds": outcome.folds,
                "scored": outcome.scored,
                "count": outcome.count,
                "rule": outcome.rule,
            }
        )
        return
    covered = sum(f["scored"] for f in outcome.folds)
    kept = sum(1 for f in outcome.folds if f.get("kept"))
    why = "" if folds is not None else f" ({outcome.rule})"
    stdout.print(
        f"cross-fitted {outcome.count} folds{why} from model {outcome.base}'s starting point: "
        f"{covered} labeled images have a prediction from a model that never saw them"
        + (f" ({kept} folds kept from an earlier run; {outcome.scored} images new)" if kept else "")
    )
    for fold in outcome.folds:
        verdict = {"chance": ", at chance", "learned": ""}.get(fold.get("verdict") or "", "")
        stdout.print(
            f"  fold {fold['fold'] + 1}: model {fold['model']}, {fold['scored']} scored, val "
            f"accuracy {pct(fold['val_accuracy'])} of {fold['val_images']} images after "
            f"{fold['epochs']} epochs{verdict}"
        )
    stdout.print("next: curator review --queue disagree")
