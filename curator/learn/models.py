"""A registered model, loaded to score, explain or fine-tune from: what the commands that use a
trained model share (scoring, cross-fitting, Grad-CAM, video, the review page)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from classifier.checkpoint import load_model
from classifier.device import pick_device
from classifier.errors import TrainingError
from classifier.model import DeepConnection
from classifier.score import Predictor
from curator.errors import CuratorError
from curator.learn.registry import classes_differ
from db.catalog import Catalog
from db.groups import representatives_of_duplicates
from db.registry import CROSS_FIT, SCORING, get_model
from db.settings import get_classes


@dataclass
class LoadedModel:
    id: int
    classes: list[str]
    size: int
    fit: str
    train_ids: frozenset[int]
    predictor: Predictor
    network: DeepConnection
    folder: Path
    val_ids: frozenset[int] = frozenset()  # chose its best epoch: seen, if not learned from


def load_registered(
    catalog: Catalog, home: Path, ref: int | None, *, device: str = "auto", amp: bool = True
) -> LoadedModel:
    """The registered model ``ref`` (default: the newest finished one), ready to score."""
    with catalog.reading() as session:
        row = get_model(session, ref=ref)
        if row.status not in ("done", CROSS_FIT, SCORING):
            raise CuratorError(f"model {row.id} is {row.status}, not trained; see curator models")
        model_id, relpath = row.id, row.path
    path = home / relpath / "model.pt"
    if not path.exists():
        raise CuratorError(f"model {model_id}'s file is missing: {path}")
    target = pick_device(device)
    try:
        network, state = load_model(path, device=str(target))
    except TrainingError:
        raise
    except Exception as exc:
        raise CuratorError(f"cannot load model {model_id} from {path}: {exc}") from None
    return LoadedModel(
        id=model_id,
        classes=list(state["classes"]),
        size=int(state["config"]["image_size"]),
        fit=network.config.fit,
        train_ids=frozenset(int(i) for i in state.get("splits", {}).get("train", [])),
        val_ids=frozenset(int(i) for i in state.get("splits", {}).get("val", [])),
        predictor=Predictor(network, target, amp=amp),
        network=network,
        folder=path.parent,
    )


def class_mismatch(catalog: Catalog, model: LoadedModel) -> dict[str, list[str]] | None:
    """The model's classes and the catalog's, when they are not the same names (the catalog's
    were changed after it trained); None when they are.

    Its predictions are still written, and the queues still use them: the uncertain queue
    ranks by the margin between the model's own two likeliest classes, which still marks the
    pictures it hesitates on, and the disagree queues count a prediction only where the
    image's label is one of the model's classes (db/queues.py). Leaving them out would empty
    the queues while the new classes are being labeled, before a model of them can be
    trained; the caller warns instead."""
    with catalog.reading() as session:
        classes = get_classes(session)
    if not classes_differ(model.classes, classes):
        return None
    return {"model": list(model.classes), "catalog": classes}


def trained_groups(session: Session, train_ids: frozenset[int]) -> set[int]:
    """The images whose near-duplicate group a model trained on: its training images and
    their groups' representatives (the representative may have changed since)."""
    return set(train_ids) | representatives_of_duplicates(session, image_ids=train_ids)
