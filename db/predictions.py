"""Predictions: a model's class probabilities for images, written back by ``curator score``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from db.bulk import insert_rows
from db.models import Model, Prediction, utcnow
from db.touched import mark_scored


@dataclass(frozen=True)
class Scored:
    image_id: int
    model_id: int
    probs: dict[str, float]  # class name -> probability
    predicted: str
    confidence: float
    margin: float
    in_sample: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model_id,
            "label": self.predicted,
            "confidence": self.confidence,
            "margin": self.margin,
            "probs": self.probs,
            "in_sample": self.in_sample,
        }


def prediction_row(
    *, model_id: int, image_id: int, probs: list[float], classes: list[str], in_sample: bool
) -> dict[str, Any]:
    ranked = sorted(probs, reverse=True)
    best = max(range(len(probs)), key=probs.__getitem__)
    return {
        "model_id": model_id,
        "image_id": image_id,
        "probs": [round(float(p), 6) for p in probs],
        "predicted": classes[best],
        "confidence": float(ranked[0]),
        "margin": float(ranked[0] - (ranked[1] if len(ranked) > 1 else 0.0)),
        "in_sample": in_sample,
        "created_at": utcnow(),
    }


def replace_predictions(session: Session, *, model_id: int, rows: list[dict[str, Any]]) -> None:
    """Write predictions of one model, replacing its earlier ones for the same images."""
    if not rows:
        return
    ids = [r["image_id"] for r in rows]
    mark_scored(session, ids)  # their rankings, brought up to date before the commit
    session.execute(
        delete(Prediction).where(Prediction.model_id == model_id, Prediction.image_id.in_(ids))
    )
    insert_rows(session, Prediction, rows)


def _scored(row: Prediction, classes: list[str]) -> Scored:
    return Scored(
        image_id=row.image_id,
        model_id=row.model_id,
        probs={c: float(p) for c, p in zip(classes, row.probs, strict=False)},
        predicted=row.predicted,
        confidence=row.confidence,
        margin=row.margin,
        in_sample=row.in_sample,
    )


def latest_predictions(
    session: Session,
    *,
    image_ids: list[int] | None = None,
    model_id: int | None = None,
    out_of_sample: bool = False,
) -> dict[int, Scored]:
    """Per image, the newest prediction (of one model, or of any; with ``out_of_sample``, only
    of models that did not train on that image)."""
    newest = select(func.max(Prediction.id)).group_by(Prediction.image_id)
    if model_id is not None:
        newest = newest.where(Prediction.model_id == model_id)
    if out_of_sample:
        newest = newest.where(Prediction.in_sample.is_(False))
    if image_ids is not None:  # inside the grouping too: else it groups every prediction
        newest = newest.where(Prediction.image_id.in_(image_ids))
    query = select(Prediction).where(Prediction.id.in_(newest.scalar_subquery()))
    if image_ids is not None:
        query = query.where(Prediction.image_id.in_(image_ids))
    classes = {m.id: list(m.classes) for m in session.scalars(select(Model))}
    return {
        row.image_id: _scored(row, classes.get(row.model_id, [])) for row in session.scalars(query)
    }


def scored_image_ids(session: Session, *, model_id: int) -> set[int]:
    """The images this model has a prediction for."""
    return set(session.scalars(select(Prediction.image_id).where(Prediction.model_id == model_id)))


def has_predictions(session: Session) -> bool:
    return session.scalar(select(Prediction.id).limit(1)) is not None
