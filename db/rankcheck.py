"""The kept rankings (db/rankings.py) read whole, and made the slow way from every
prediction, group label, property and vector at once: what the kept rows replace, for
checking that they equal it."""

from __future__ import annotations

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from db.images import ACTIVE
from db.labels import WEAK_ORIGINS
from db.models import Image, Model, Prediction, Ranked
from db.properties import ISSUE_QUEUES, issue_ranking
from db.rankings import KEPT, blend
from db.registry import default_model
from db.vectors import cluster_ranking, newest_embedding, off_query_ranking, outlier_ranking


def kept(session: Session) -> dict[str, list[tuple[int, float]]]:
    """Every kept ranking in full, first first (for checking against `recount`)."""
    out: dict[str, list[tuple[int, float]]] = {name: [] for name in KEPT}
    query = select(Ranked.queue, Ranked.image_id, Ranked.score).order_by(
        Ranked.queue, Ranked.score, Ranked.image_id
    )
    for queue, image_id, score in session.execute(query):
        out.setdefault(queue, []).append((image_id, float(score)))
    return out


def recount(session: Session) -> dict[str, list[tuple[int, float]]]:
    """Every ranking made the slow way, from every prediction and group label at once (what
    the kept rows replace): for checking them."""
    model = default_model(session)
    out: dict[str, list[tuple[int, float]]] = {name: [] for name in KEPT}
    if model is not None:
        no_human = or_(Image.label_origin.is_(None), Image.label_origin != "human")
        margins = (
            select(Prediction.image_id, Prediction.margin)
            .join(Image, Image.id == Prediction.image_id)
            .where(Prediction.model_id == model.id, Image.status == ACTIVE, no_human)
        )
        out["uncertain"] = sorted(((i, float(m)) for i, m in session.execute(margins)), key=_rank)
    classes = {m.id: list(m.classes) for m in session.scalars(select(Model))}
    newest = (
        select(func.max(Prediction.id))
        .where(Prediction.in_sample.is_(False))
        .group_by(Prediction.image_id)
        .scalar_subquery()
    )
    rows = (
        select(Prediction.image_id, Prediction.model_id, Prediction.probs, Image.label_origin,
               Image.label)
        .join(Image, Image.id == Prediction.image_id)
        .where(Prediction.id.in_(newest), Image.status == ACTIVE)
    )  # fmt: skip
    default, basis = {}, classes.get(model.id, []) if model is not None else []
    if model is not None:
        opinions = select(Prediction.image_id, Prediction.probs).where(
            Prediction.model_id == model.id
        )
        default = {i: probs for i, probs in session.execute(opinions)}
    for image_id, model_id, probs, origin, label in session.execute(rows):
        names = classes.get(model_id, [])
        if label not in names:
            continue
        theirs = default.get(image_id)
        score = blend(
            float(probs[names.index(label)]),
            float(theirs[basis.index(label)]) if theirs is not None and label in basis else None,
        )
        for name, origins in (("disagree", WEAK_ORIGINS), ("weak-disagree", ("query",))):
            if origin in origins:
                out[name].append((image_id, score))
    with_members = select(Image.duplicate_of).where(Image.duplicate_of.is_not(None))
    groups = select(Image.id).where(Image.status == ACTIVE, Image.id.in_(with_members))
    out["duplicates"] = [(i, 0.0) for i in session.scalars(groups)]
    for name in ISSUE_QUEUES:
        out[name] = issue_ranking(session, name=name)
    if newest_embedding(session) is not None:
        out["outlier"] = outlier_ranking(session)
        out["clusters"] = cluster_ranking(session)
        out["off-query"] = off_query_ranking(session)
    return {name: sorted(ranked, key=_rank) for name, ranked in out.items()}


def _rank(pair: tuple[int, float]) -> tuple[float, int]:
    return pair[1], pair[0]
