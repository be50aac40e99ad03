"""Review queues: which images a person should look at next, in which order.

The queues are queries, so the review page, ``curator queue`` and the tests all share them:

* ``new``: active images whose group has no human label yet, oldest first;
* ``weak``: of those, the ones with a weak label (from a search query, a folder, a model);
* ``all``: every active image, oldest first;
* ``duplicates``: near-duplicate groups, to confirm or split, largest first;
* ``uncertain``: groups without a human label, closest to the default model's decision
  boundary first (smallest margin between its two likeliest classes);
* ``disagree``: groups with a weak label (query, import, model), the label a model finds least
  likely first (self-confidence, as in confident learning); only predictions of models that
  did not train on the image count, so a model's memory of a wrong label cannot hide it;
* ``weak-disagree``: the same for labels that came from a search query, the first thing to
  look at after a crawl.

Every item is a group's representative (an active image) with its duplicates listed, so a
decision about it is a decision about the whole group (see `db.labels.group_labels`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, exists, func, select
from sqlalchemy.orm import Session, aliased

from db.errors import CatalogError
from db.images import ACTIVE
from db.labels import RANK, WEAK_ORIGINS, CurrentLabel, current_labels, group_labels
from db.models import Image, LabelEvent
from db.predictions import has_predictions, latest_predictions
from db.registry import default_model

ID_QUEUES = ("new", "weak", "all", "duplicates")
RANKED_QUEUES = ("uncertain", "disagree", "weak-disagree")
QUEUES = (*ID_QUEUES, *RANKED_QUEUES)


class UnknownQueue(CatalogError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no queue {name!r}; one of {', '.join(QUEUES)}")


class QueueUnavailable(CatalogError):
    """A queue that needs something the catalog does not have yet (predictions)."""


@dataclass
class QueueItem:
    id: int
    sha256: str
    width: int
    height: int
    split: str
    label: str | None = None
    origin: str | None = None
    duplicates: list[int] = field(default_factory=list)
    prediction: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "sha256": self.sha256,
            "width": self.width,
            "height": self.height,
            "split": self.split,
            "label": self.label,
            "origin": self.origin,
            "duplicates": self.duplicates,
            "prediction": self.prediction,
        }


@dataclass
class QueuePage:
    items: list[QueueItem]
    #: Pass as ``after`` to get the next page (an image id; for ranked queues, "score:id" of
    #: the last item, so that images labeled meanwhile leaving the ranking skip nothing);
    #: None at the end.
    next: int | str | None


def _human_label_of(image: Any) -> Any:
    """The label of an image's latest human event (NULL if none or withdrawn), per row."""
    inner = aliased(LabelEvent)
    latest = (
        select(func.max(inner.id))
        .where(inner.image_id == image.id, inner.origin == "human")
        .correlate(image)  # two levels down: say which images row it belongs to
        .scalar_subquery()
    )
    return select(LabelEvent.label).where(LabelEvent.id == latest).scalar_subquery()


def _has_weak_label(image: Any) -> Any:
    return exists().where(
        LabelEvent.image_id == image.id,
        LabelEvent.origin.in_(WEAK_ORIGINS),
        LabelEvent.label.is_not(None),
    )


def _candidates(session: Session, name: str, after: int, limit: int) -> list[Any]:
    query = select(Image.id, Image.sha256, Image.width, Image.height, Image.split).where(
        Image.status == ACTIVE, Image.id > after
    )
    if name in ("new", "weak"):
        query = query.where(_human_label_of(Image).is_(None))
    if name == "weak":
        query = query.where(_has_weak_label(Image))
    if name == "duplicates":
        member = aliased(Image)
        query = query.where(exists().where(member.duplicate_of == Image.id))
    return list(session.execute(query.order_by(Image.id).limit(limit)))


def _duplicates_of(session: Session, ids: list[int]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {i: [] for i in ids}
    if ids:
        rows = session.execute(
            select(Image.id, Image.duplicate_of)
            .where(Image.duplicate_of.in_(ids))
            .order_by(Image.id)
        )
        for image_id, rep in rows:
            out[rep].append(image_id)
    return out


def _group_label(ids: list[int], labels: dict[int, CurrentLabel]) -> CurrentLabel | None:
    best: CurrentLabel | None = None
    for image_id in ids:
        current = labels.get(image_id)
        if current is not None and (
            best is None
            or (RANK[current.origin], current.event_id) > (RANK[best.origin], best.event_id)
        ):
            best = current
    return best


def review_queue(
    session: Session, *, name: str, limit: int = 200, after: int | str = 0
) -> QueuePage:
    """One page of a queue: up to ``limit`` groups after ``after`` (an image id; for the
    ranked queues, the ``next`` of the page before)."""
    if name not in QUEUES:
        raise UnknownQueue(name)
    if name in RANKED_QUEUES:
        page = _ranked_page(session, name, limit, _cursor(after))
    else:
        page = _id_page(session, name, limit, int(after))
    # Show the prediction the queue ranked by: the default model's for uncertain, an
    # independent one (where there is one) for the rest.
    _attach_predictions(session, page.items, independent_first=name != "uncertain")
    return page


def _id_page(session: Session, name: str, limit: int, after: int) -> QueuePage:
    items: list[QueueItem] = []
    cursor = after
    while len(items) < limit:
        rows = _candidates(session, name, cursor, limit)
        if not rows:
            return QueuePage(items, None)
        cursor = rows[-1].id
        groups = _duplicates_of(session, [r.id for r in rows])
        labels = current_labels(session, image_ids=[i for r in rows for i in (r.id, *groups[r.id])])
        for row in rows:
            group = [row.id, *groups[row.id]]
            label = _group_label(group, labels)
            # A member's human label labels the group: not "new" after all.
            if name in ("new", "weak") and label is not None and label.origin == "human":
                continue
            items.append(_item(row, label, groups[row.id]))
            if len(items) == limit:
                return QueuePage(items, row.id)
    return QueuePage(items, cursor)


def _item(row: Any, label: CurrentLabel | None, duplicates: list[int]) -> QueueItem:
    return QueueItem(
        id=row.id,
        sha256=row.sha256,
        width=row.width,
        height=row.height,
        split=row.split,
        label=label.label if label else None,
        origin=label.origin if label else None,
        duplicates=duplicates,
    )


def ranking(
    session: Session,
    name: str,
    *,
    labels: dict[int, CurrentLabel] | None = None,
    active: set[int] | None = None,
) -> list[tuple[int, float]]:
    """(image id, score) of a ranked queue, first to review first. ``labels`` (the group
    labels) and ``active`` (the active ids) may be passed when several queues are ranked."""
    labels = group_labels(session) if labels is None else labels
    if active is None:
        active = set(session.scalars(select(Image.id).where(Image.status == ACTIVE)))
    scored: list[tuple[int, float]] = []
    if name == "uncertain":
        model = default_model(session)
        if model is None:
            raise QueueUnavailable(_NO_PREDICTIONS.format(name=name))
        predictions = latest_predictions(session, model_id=model.id)
        if not predictions:
            raise QueueUnavailable(
                f"the 'uncertain' queue ranks images by the predictions of model {model.id}, "
                "which has scored none yet: run curator score"
            )
        for image_id, p in predictions.items():
            label = labels.get(image_id)
            if image_id in active and (label is None or label.origin != "human"):
                scored.append((image_id, p.margin))
    else:
        predictions = latest_predictions(session, out_of_sample=True)
        if not predictions:
            if not has_predictions(session):
                raise QueueUnavailable(_NO_PREDICTIONS.format(name=name))
            raise QueueUnavailable(
                f"the {name!r} queue needs predictions of models that did not train on the "
                "images, and every prediction so far comes from one that did: run "
                "curator score --folds 5"
            )
        origins = ("query",) if name == "weak-disagree" else WEAK_ORIGINS
        for image_id, p in predictions.items():
            label = labels.get(image_id)
            if (
                image_id in active
                and label is not None
                and label.origin in origins
                and label.label in p.probs
            ):
                scored.append((image_id, p.probs[label.label]))  # self-confidence
    scored.sort(key=lambda pair: (pair[1], pair[0]))
    return scored


_NO_PREDICTIONS = (
    "the {name!r} queue ranks images by a model's predictions, and there are none "
    "yet: train a model and run curator score"
)


def _cursor(after: int | str) -> tuple[float, int] | None:
    """ "score:id" -> (score, id); 0 or "" -> the start."""
    if after in (0, "0", "", None):
        return None
    try:
        score, image_id = str(after).rsplit(":", 1)
        return float(score), int(image_id)
    except ValueError:
        raise ValueError(
            f"after={after!r}: a ranked queue pages by the next value it gave"
        ) from None


def _ranked_page(
    session: Session, name: str, limit: int, cursor: tuple[float, int] | None
) -> QueuePage:
    ranked = ranking(session, name)
    if cursor is not None:
        ranked = [(i, score) for i, score in ranked if (score, i) > cursor]
    chosen = [image_id for image_id, _score in ranked[:limit]]
    rows = {
        r.id: r
        for r in session.execute(
            select(Image.id, Image.sha256, Image.width, Image.height, Image.split).where(
                Image.id.in_(chosen)
            )
        )
    }
    groups = _duplicates_of(session, chosen)
    labels = current_labels(session, image_ids=[i for c in chosen for i in (c, *groups[c])])
    items = [_item(rows[c], _group_label([c, *groups[c]], labels), groups[c]) for c in chosen]
    if len(ranked) <= limit:
        return QueuePage(items, None)
    last, score = ranked[limit - 1]
    return QueuePage(items, f"{score!r}:{last}")


def _attach_predictions(
    session: Session, items: list[QueueItem], *, independent_first: bool = True
) -> None:
    model = default_model(session)
    if model is None or not items:
        return
    ids = [item.id for item in items]
    own = latest_predictions(session, image_ids=ids, model_id=model.id)
    independent = (
        latest_predictions(session, image_ids=ids, out_of_sample=True) if independent_first else {}
    )
    for item in items:
        chosen = independent.get(item.id) or own.get(item.id)
        if chosen is not None:
            item.prediction = chosen.as_dict()


def queue_counts(session: Session) -> dict[str, int | None]:
    """How many groups each queue holds (None: not available yet)."""
    counts: dict[str, int | None] = {}
    for name in ID_QUEUES:
        query = select(func.count()).select_from(Image).where(Image.status == ACTIVE)
        if name in ("new", "weak"):
            query = query.where(_human_label_of(Image).is_(None))
        if name == "weak":
            query = query.where(_has_weak_label(Image))
        if name == "duplicates":
            member = aliased(Image)
            query = query.where(exists().where(and_(member.duplicate_of == Image.id)))
        counts[name] = int(session.scalar(query) or 0)
    if not has_predictions(session):
        return {**counts, **dict.fromkeys(RANKED_QUEUES)}
    labels = group_labels(session)  # read once for the three rankings
    active = set(session.scalars(select(Image.id).where(Image.status == ACTIVE)))
    for name in RANKED_QUEUES:
        try:
            counts[name] = len(ranking(session, name, labels=labels, active=active))
        except QueueUnavailable:
            counts[name] = None
    return counts
