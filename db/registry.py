"""The model registry: rows of the ``models`` table (files live under the home)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from db.errors import CatalogError
from db.models import Model, Prediction, utcnow
from db.settings import get_setting, set_setting
from db.touched import mark_scored

DONE = "done"
#: Status of the models trained by cross-fitting (curator score --folds): registered, never
#: the default model.
CROSS_FIT = "cross-fit"
#: A cross-fit model trained, scoring its held-out fold.
SCORING = "scoring"
#: The verdict of a model no better than chance on its val split (classifier/chance.py):
#: never the default model.
AT_CHANCE = "chance"
#: What a model's training record keeps beside its recipe that is no part of it: which recipe
#: was chosen, which options were given. A resume does not compare them.
RECORD_ONLY = ("recipe", "given")


class UnknownModel(CatalogError):
    """A model id the catalog has no row for."""

    def __init__(self, ref: int) -> None:
        super().__init__(f"no model {ref} in the catalog")
        self.ref = ref


class NoModel(CatalogError):
    """The default model was asked for, and there is none: no model has finished training."""

    def __init__(self) -> None:
        super().__init__("no trained model yet")


class NoModelLearned(NoModel):
    """The default model was asked for, and every finished model is at chance on val."""

    def __init__(self, at_chance: list[int]) -> None:
        ids = ", ".join(str(i) for i in at_chance[:5])
        CatalogError.__init__(
            self,
            f"no model that learned: the finished ones ({ids}) are no better than chance on "
            "val, so none is the default",
        )
        self.at_chance = at_chance


def create_model(session: Session, **fields: object) -> Model:
    model = Model(**fields)
    session.add(model)
    session.flush()
    return model


def update_model(session: Session, *, model_id: int, **fields: object) -> Model:
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


def model_by_id(session: Session, *, model_id: int) -> Model | None:
    """The model with this id, if there is one (`get_model` raises instead)."""
    return session.get(Model, model_id)


def other_models(session: Session, *, model_id: int) -> list[Model]:
    """Every model but this one."""
    return list(session.scalars(select(Model).where(Model.id != model_id)))


def fold_models_of(session: Session, *, model_id: int) -> list[Model]:
    """The cross-fit fold models trained from this model, oldest first."""
    folds = select(Model).where(Model.status.in_((CROSS_FIT, SCORING))).order_by(Model.id)
    return [m for m in session.scalars(folds) if m.training.get("cross_fit_of") == model_id]


#: The catalog setting that holds the id of the model chosen with ``curator models
#: --default``; absent, the newest finished model is the default.
DEFAULT_SETTING = "default_model"


def chosen_default(session: Session) -> int | None:
    """The id of the model chosen as the default, if one was (it may be gone since)."""
    value = get_setting(session, key=DEFAULT_SETTING)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def choose_default(session: Session, model_id: int | None) -> None:
    """Make ``model_id`` the default until another is chosen (None: the newest finished
    model again, as each one is trained). The caller checks that the model can score."""
    set_setting(session, key=DEFAULT_SETTING, value=model_id)


def can_be_default(model: Model) -> bool:
    """A finished model of curator train that is not at chance."""
    return model.status == DONE and model.verdict != AT_CHANCE


def newest_finished(session: Session) -> Model | None:
    """The newest finished model that is not at chance."""
    return session.scalars(
        select(Model)
        .where(Model.status == DONE, or_(Model.verdict.is_(None), Model.verdict != AT_CHANCE))
        .order_by(Model.id.desc())
        .limit(1)
    ).first()


def at_chance(session: Session) -> list[int]:
    """The finished models no better than chance on val, newest first."""
    return list(
        session.scalars(
            select(Model.id)
            .where(Model.status == DONE, Model.verdict == AT_CHANCE)
            .order_by(Model.id.desc())
        )
    )


def default_model(session: Session) -> Model | None:
    """The model that scoring, the uncertain queue and Grad-CAM use unless told otherwise.

    The rule: the model chosen with ``curator models --default N``, which a model trained
    later does not replace; with none chosen (or once the chosen one is removed), the newest
    finished model, so that each new training run takes over. Only a finished model of
    ``curator train`` is ever the default: never one that failed, was interrupted or is still
    training, nor a cross-fit fold model, nor one no better than chance on val.
    """
    chosen = chosen_default(session)
    if chosen is not None:
        model = session.get(Model, chosen)
        if model is not None and can_be_default(model):
            return model
    return newest_finished(session)


def get_model(session: Session, *, ref: int | None = None) -> Model:
    """A model by id, or the default one (`default_model`); raises `UnknownModel` for an id
    without a row, `NoModel` when there is no default (`NoModelLearned` when the finished
    models are all at chance)."""
    if ref is None:
        model = default_model(session)
        if model is None:
            flagged = at_chance(session)
            raise NoModelLearned(flagged) if flagged else NoModel()
        return model
    model = session.get(Model, ref)
    if model is None:
        raise UnknownModel(ref)
    return model


def delete_model(session: Session, *, model_id: int) -> int:
    """Delete a model's row and its predictions (their only trace in the catalog: no count is
    kept of them), and un-choose it as the default; return how many predictions went."""
    scored = select(Prediction.image_id).where(Prediction.model_id == model_id)
    mark_scored(session, session.scalars(scored))  # their rankings lose its predictions
    result = session.execute(delete(Prediction).where(Prediction.model_id == model_id))
    gone = int(getattr(result, "rowcount", 0) or 0)
    session.execute(delete(Model).where(Model.id == model_id))
    if chosen_default(session) == model_id:
        choose_default(session, None)
    return int(gone or 0)


def resumable_model(
    session: Session, *, config: dict[str, Any], training: dict[str, Any]
) -> Model | None:
    """The newest unfinished model trained with this config and recipe, if any. Where the
    run trains and how fast (devices, workers, caches) is no part of the recipe, so it may
    differ; so may settings a model of an older version stored beside its recipe, and what
    the record keeps of how the recipe was chosen (`RECORD_ONLY`)."""
    wanted = {k: v for k, v in training.items() if k not in RECORD_ONLY}

    def same(stored: dict[str, Any]) -> bool:
        return {k: stored.get(k) for k in wanted} == wanted

    for model in session.scalars(
        select(Model).where(Model.status.in_(("training", "interrupted"))).order_by(Model.id.desc())
    ):
        if model.config == config and same(model.training):
            return model
    return None
