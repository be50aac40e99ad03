"""The model registry: rows of the ``models`` table (files live under the home)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.errors import CatalogError
from db.models import Model, utcnow

DONE = "done"


class UnknownModel(CatalogError):
    def __init__(self, ref: str | int | None) -> None:
        super().__init__(
            f"no model {ref} in the catalog; see curator models"
            if ref is not None
            else "no trained model yet: run curator train first"
        )


def create_model(session: Session, **fields: Any) -> Model:
    model = Model(**fields)
    session.add(model)
    session.flush()
    return model


def update_model(session: Session, *, model_id: int, **fields: Any) -> Model:
    model = session.get(Model, model_id)
    if model is None:
        raise UnknownModel(model_id)
    for key, value in fields.items():
        setattr(model, key, value)
    if fields.get("status") in (DONE, "failed", "interrupted"):
        model.finished_at = utcnow()
    return model


def list_models(session: Session) -> list[Model]:
    return list(session.scalars(select(Model).order_by(Model.id.desc())))


def default_model(session: Session) -> Model | None:
    """The newest finished model, which later commands use unless told otherwise."""
    return session.scalars(
        select(Model).where(Model.status == DONE).order_by(Model.id.desc()).limit(1)
    ).first()


def get_model(session: Session, *, ref: int | None = None) -> Model:
    """A model by id, or the newest finished one."""
    if ref is None:
        model = session.scalars(
            select(Model).where(Model.status == DONE).order_by(Model.id.desc()).limit(1)
        ).first()
    else:
        model = session.get(Model, ref)
    if model is None:
        raise UnknownModel(ref)
    return model


#: Training settings that change how fast a model trains, never what it learns.
SPEED_ONLY = frozenset({"workers", "cache_mb"})


def resumable_model(
    session: Session, *, config: dict[str, Any], training: dict[str, Any]
) -> Model | None:
    """The newest unfinished model trained with these settings, if any; settings that change
    only the speed (`SPEED_ONLY`) may differ."""

    def same(stored: dict[str, Any]) -> bool:
        return {k: v for k, v in stored.items() if k not in SPEED_ONLY} == {
            k: v for k, v in training.items() if k not in SPEED_ONLY
        }

    for model in session.scalars(
        select(Model).where(Model.status.in_(("training", "interrupted"))).order_by(Model.id.desc())
    ):
        if model.config == config and same(model.training):
            return model
    return None
