"""What ``curator models`` changes: which model is the default. These are the registry's
rules that need the home's files as well as the catalog's rows (db/registry.py holds the
rows' own).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.orm import Session

from curator.errors import UnusableModel
from db.catalog import Catalog
from db.models import Model
from db.registry import CROSS_FIT, DONE, SCORING, UnknownModel, choose_default, default_model
from db.runs import run_is_live
from db.settings import get_classes

#: The file a finished model is loaded from, in its folder.
MODEL_FILE = "model.pt"


def classes_differ(model_classes: Sequence[str], catalog_classes: Sequence[str]) -> bool:
    """Whether a model was trained for other classes than the catalog's. The same names in
    another order are the same classes: a prediction is stored with its model's names."""
    return sorted(model_classes) != sorted(catalog_classes)


def default_refusal(session: Session, home: Path, model: Model) -> str | None:
    """Why ``model`` cannot be the default, in a sentence; None when it can."""
    if model.status in (CROSS_FIT, SCORING):
        of = model.training.get("cross_fit_of")
        return (
            f"model {model.id} is a cross-fit fold model"
            + (f" of model {of}" if of is not None else "")
            + ", trained without one fold of the labels; choose a model of curator train"
        )
    if model.status != DONE:
        return f"model {model.id} {_unfinished(session, model)}, so it has no trained weights"
    file = home / model.path / MODEL_FILE
    if not file.is_file():
        return f"model {model.id}'s file is missing: {file}"
    classes = get_classes(session)
    if classes_differ(model.classes, classes):
        return (
            f"model {model.id} was trained for {', '.join(model.classes)}, and the catalog's "
            f"classes are now {', '.join(classes)}"
        )
    return None


def _unfinished(session: Session, model: Model) -> str:
    if model.status == "training":
        live = model.run_id is not None and run_is_live(session, run_id=model.run_id)
        return "is still training" if live else "stopped while training (killed)"
    if model.status == "interrupted":
        return "was interrupted (curator train with its settings finishes it)"
    return "failed" if model.status == "failed" else f"is {model.status}"


def set_default(catalog: Catalog, home: Path, model_id: int) -> None:
    """Choose ``model_id`` as the default, until another is chosen; a model trained later
    does not replace it (see db.registry.default_model)."""
    with catalog.writing() as session:
        model = session.get(Model, model_id)
        if model is None:
            raise UnknownModel(model_id)
        refusal = default_refusal(session, home, model)
        if refusal is not None:
            raise UnusableModel(f"{refusal}; the default is unchanged")
        choose_default(session, model_id)


def follow_newest(catalog: Catalog) -> int | None:
    """Let the newest finished model be the default again, as each is trained; return it."""
    with catalog.writing() as session:
        choose_default(session, None)
        newest = default_model(session)
        return newest.id if newest is not None else None
