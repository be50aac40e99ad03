"""What ``curator models`` changes: which model is the default, and removing a model with its
files and predictions. These are the registry's rules that need the home's files as well as
the catalog's rows (db/registry.py holds the rows' own).

Removing is done so that a crash at any point loses nothing that is kept: the model's folder
is first renamed aside (``models/.removed-<id>-<pid>``, with a note of which model it was),
then the rows are deleted in one transaction, and only then is the folder deleted. A removal
killed before its commit leaves the rows and a folder aside, which the next removal puts
back; one killed after it leaves only the folder aside, which the next removal deletes.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.orm import Session

from curator.config import Layout
from curator.errors import ModelInUse, UnsafeModelFolder, UnusableModel
from db.catalog import Catalog
from db.models import Model, Run
from db.registry import (
    AT_CHANCE,
    CROSS_FIT,
    DONE,
    SCORING,
    choose_default,
    default_model,
    delete_model,
    fold_models_of,
    get_model,
    model_by_id,
    other_models,
)
from db.runs import process_alive, run_by_id, running_runs
from db.settings import get_classes

#: The file a finished model is loaded from, in its folder.
MODEL_FILE = "model.pt"
#: Where the review page caches each model's Grad-CAM figures, under the home.
#: The name a folder being removed takes first, followed by ``<id>-<pid>``.
ASIDE = ".removed-"
#: The note inside a folder set aside: which model's folder it was.
NOTE = ".removed.json"


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
    if model.verdict == AT_CHANCE:
        accuracy = (model.metrics.get("val") or {}).get("accuracy")
        shown = f" ({accuracy:.1%})" if isinstance(accuracy, float) else ""
        return (
            f"model {model.id} is no better than chance on val{shown}: it learned nothing that "
            "shows there; train one that does (curator train warned what to try)"
        )
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
        run = run_by_id(session, run_id=model.run_id) if model.run_id is not None else None
        live = run is not None and run.status == "running" and _may_be_running(run)
        return "is still training" if live else "stopped while training (killed)"
    if model.status == "interrupted":
        return "was interrupted (curator train with its settings finishes it)"
    return "failed" if model.status == "failed" else f"is {model.status}"


def set_default(catalog: Catalog, home: Path, model_id: int) -> None:
    """Choose ``model_id`` as the default, until another is chosen; a model trained later
    does not replace it (see db.registry.default_model)."""
    with catalog.writing() as session:
        model = get_model(session, ref=model_id)
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


# -- removing ------------------------------------------------------------------------------


@dataclass
class Removal:
    model: int
    predictions: int
    #: The folder whose files were removed (None: the model had none).
    folder: Path | None
    #: The default model now.
    default: int | None
    #: Cross-fit fold models trained from it: kept (their predictions are still out of
    #: sample), and each removable by itself.
    folds: list[int] = field(default_factory=list)
    #: What could not be deleted, once the rows were gone (a file without permission).
    left: list[str] = field(default_factory=list)


def remove_model(catalog: Catalog, home: Path, model_id: int) -> Removal:
    """Delete a model's row, its predictions and its own folder of files (and its cached
    Grad-CAM figures). Refused, with nothing changed, while a running command uses the model
    or when its folder is not certainly its own."""
    recover_removals(catalog, home)
    moved: list[tuple[Path, Path]] = []
    try:
        with catalog.writing() as session:  # the write lock: no run starts with it meanwhile
            model = get_model(session, ref=model_id)
            folder = own_folder(session, home, model)
            _refuse_if_used(session, home, model)
            folds = [m.id for m in fold_models_of(session, model_id=model_id)]
            note = {"model": model_id, "created": model.created_at.isoformat()}
            predictions = delete_model(session, model_id=model_id)
            for path in (folder, Layout(home).explain_cache / str(model_id)):
                if path is not None and os.path.lexists(path):
                    moved.append((path, _set_aside(path, note)))
            default = default_model(session)
            default_id = default.id if default is not None else None
    except BaseException:
        for path, aside in reversed(moved):  # the rows are still there: so are their files
            os.replace(aside, path)
            if not path.is_symlink():
                (path / NOTE).unlink(missing_ok=True)
        raise
    left = [str(aside) for _path, aside in moved if not _delete(aside)]
    return Removal(model_id, predictions, folder, default_id, folds, left)


def own_folder(session: Session, home: Path, model: Model) -> Path | None:
    """The model's folder, once it is certain that deleting it deletes this model's files and
    nothing else: ``models/<id>`` under the home, not a symbolic link, and no other model's
    row naming it or a folder in or around it. None when it has no folder."""
    models = Layout(home).models
    folder = models / str(model.id)
    where = f"model {model.id}'s folder"
    if model.path != Layout.model_relpath(model.id):
        raise UnsafeModelFolder(
            f"{where} is recorded as {model.path!r}, not models/{model.id} under the home; "
            "nothing was removed"
        )
    if folder.is_symlink():
        raise UnsafeModelFolder(
            f"{where}, {folder}, is a symbolic link; removing it could delete files outside "
            "it, so nothing was removed"
        )
    if not folder.exists():
        return None
    real = folder.resolve()
    if not folder.is_dir() or real.parent != models.resolve():
        raise UnsafeModelFolder(f"{where}, {folder}, is not a folder of its own; nothing removed")
    for other in other_models(session, model_id=model.id):
        theirs = (home / other.path).resolve()
        if theirs == real or real in theirs.parents or theirs in real.parents:
            raise UnsafeModelFolder(
                f"model {other.id}'s row names {other.path}, which is or holds {where}; "
                "nothing was removed"
            )
    return folder


def _refuse_if_used(session: Session, home: Path, model: Model) -> None:
    folder = (home / model.path).resolve()
    for run in running_runs(session):
        params = run.params or {}
        weights = (params.get("training") or {}).get("weights")
        # a run fine-tuning this model (curator train --weights .../model.pt, stored
        # absolute) may read its file again: on a resume, and on every process of it
        starts_from = (
            isinstance(weights, str)
            and Path(weights).is_absolute()
            and folder in Path(weights).resolve().parents
        )
        uses = run.id == model.run_id or params.get("model") == model.id or starts_from
        if uses and _may_be_running(run):
            where = "" if run.host == socket.gethostname() else f" on {run.host}"
            raise ModelInUse(
                f"model {model.id} is in use by {run.kind} run {run.id}{where} (process "
                f"{run.pid}), which is running; remove it once that has ended"
            )


def _may_be_running(run: Run) -> bool:
    """A run marked running whose process lives, or which runs on another machine (where
    this one cannot tell; a command run there marks it interrupted if it is gone)."""
    if run.host != socket.gethostname():
        return True
    return run.pid is not None and process_alive(run.pid)


def _set_aside(path: Path, note: dict[str, object]) -> Path:
    aside = path.with_name(f"{ASIDE}{path.name}-{os.getpid()}")
    os.rename(path, aside)
    if aside.is_dir() and not aside.is_symlink():
        (aside / NOTE).write_text(json.dumps(note), encoding="utf-8")
    return aside


def _delete(path: Path) -> bool:
    """Delete a folder set aside (a link: the link only; shutil.rmtree never follows one
    inside it); False when something in it could not be deleted."""
    try:
        if path.is_symlink() or not path.is_dir():
            path.unlink()
        else:
            shutil.rmtree(path)
    except OSError:
        return False
    return True


def recover_removals(catalog: Catalog, home: Path) -> None:
    """Finish what a removal killed midway left: a folder set aside whose model's row is
    still there goes back (the removal never committed); any other is deleted."""
    for base in (Layout(home).models, Layout(home).explain_cache):
        for aside in sorted(base.glob(f"{ASIDE}*")) if base.is_dir() else []:
            name, _, pid = aside.name[len(ASIDE) :].rpartition("-")
            if not pid.isdigit() or process_alive(int(pid)):
                continue  # not one of ours, or its removal is still going
            original = aside.with_name(name)
            if base.name == "models" and _row_remains(catalog, aside) and not original.exists():
                os.replace(aside, original)
                (original / NOTE).unlink(missing_ok=True)
            else:
                _delete(aside)


def _row_remains(catalog: Catalog, aside: Path) -> bool:
    """Whether the model whose folder was set aside still has its row (the same model: ids
    can be given again once the newest model is removed)."""
    try:
        note = json.loads((aside / NOTE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    with catalog.reading() as session:
        model = model_by_id(session, model_id=int(note.get("model", -1)))
        return model is not None and model.created_at.isoformat() == note.get("created")
