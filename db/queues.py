"""Review queues: which images a person should look at next, in which order.

The queues are queries, so the review page, ``curator queue`` and the tests all share them:

* ``new``: active images whose group has no human label yet, oldest first;
* ``weak``: of those, the ones with a weak label (from a search query, a folder, a model);
* ``all``: every active image, oldest first;
* ``duplicates``: near-duplicate groups, to confirm or split, largest first;
* ``conflicts``: groups whose members people gave different labels, left out of training
  until a decision about the group settles them;
* ``uncertain``: groups without a human label, closest to the default model's decision
  boundary first (smallest margin between its two likeliest classes);
* ``disagree``: groups with a weak label (query, import, model), the label a model finds least
  likely first (self-confidence, as in confident learning); only predictions of models that
  did not train on the image count, so a model's memory of a wrong label cannot hide it;
* ``weak-disagree``: the same for labels that came from a search query, the first thing to
  look at after a crawl;
* ``outlier`` and ``clusters``: by the pictures' vectors (db/vectors.py), the groups without
  a human label farthest from their neighbours first, and one cluster a page;
* ``off-query`` (CLIP vectors): the groups without a human label that a search found,
  farthest from the words of its query first;
* ``issues`` and ``issue:<type>`` (``issue:blurry``...): groups without a human label whose
  measured properties an issue type flags (db/properties.py), the worst first.

Every item is a group's representative (an active image) with its duplicates listed, so a
decision about it is a decision about the whole group (see `db.labels.group_labels`). A
group's label is read from its representative's row (db/grouplabels.py keeps it), and a ranked
queue's order and every queue's count from rows the writes keep (db/rankings.py, the
tallies), so a page and the counts cost the same on a catalog of a thousand images or a
million. The issue queues and the vector queues are kept the same way (db/rankings.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Row, exists, func, or_, select
from sqlalchemy.orm import Session, aliased

from db.errors import CatalogError
from db.images import ACTIVE
from db.labels import WEAK_ORIGINS, CurrentLabel, current_labels
from db.models import Image
from db.predictions import latest_predictions
from db.properties import ISSUE_QUEUES
from db.rankings import KEPT, ranked_page
from db.registry import at_chance, default_model
from db.tallies import tallies
from db.vectors import VECTOR_QUEUES, NoVectors, cluster_count, cluster_page, newest_embedding

ID_QUEUES = ("new", "weak", "all", "duplicates", "conflicts")
#: The ranked queues of predictions: kept in the rankings table (add one to db/rankings.py KEPT).
RANKED_QUEUES = tuple(
    name
    for name, kept in KEPT.items()
    if kept.ranked and name not in ISSUE_QUEUES and name not in VECTOR_QUEUES
)
#: issues, issue:blurry, ...: db/properties.py ranks them, worst first.
QUEUES = (*ID_QUEUES, *RANKED_QUEUES, *VECTOR_QUEUES, *ISSUE_QUEUES)


class UnknownQueue(CatalogError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no queue {name!r}; one of {', '.join(QUEUES)}")


class QueueUnavailable(CatalogError):
    """A queue that needs something the catalog does not have yet (predictions)."""


class NoWordVectors(QueueUnavailable):
    """The off-query queue, and the newest vectors are not of an embedder that reads words."""

    def __init__(self, embedder: str) -> None:
        super().__init__(
            f"the 'off-query' queue needs CLIP vectors, and the newest are of the {embedder} "
            "embedder"
        )


def _vectors_for(session: Session, name: str) -> None:
    """Raise what a vector queue lacks: vectors, or (off-query) CLIP's."""
    newest = newest_embedding(session)
    if newest is None:
        raise NoVectors(f"the {name!r} queue")
    if name == "off-query" and newest.embedder != "clip":
        raise NoWordVectors(newest.embedder)


class NoPredictions(QueueUnavailable):
    """A ranked queue, and no model has scored any image yet."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"the {name!r} queue ranks images by a model's predictions, and there are none yet"
        )


class NoModelLearnedYet(QueueUnavailable):
    """The uncertain queue, and every finished model is at chance, so none is the default."""

    def __init__(self, name: str, at_chance: list[int]) -> None:
        ids = ", ".join(str(i) for i in at_chance[:5])
        super().__init__(
            f"the {name!r} queue ranks images by the default model's predictions, and no "
            f"model learned: the finished ones ({ids}) are no better than chance on val"
        )
        self.at_chance = at_chance


class NoIndependentPredictions(QueueUnavailable):
    """A disagree queue, and every prediction comes from a model that trained on its image."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"the {name!r} queue needs predictions of models that did not train on the "
            "images, and every prediction so far comes from one that did"
        )


class DefaultModelUnscored(QueueUnavailable):
    """The uncertain queue, and the default model has scored no image yet."""

    def __init__(self, name: str, model_id: int) -> None:
        super().__init__(
            f"the {name!r} queue ranks images by the predictions of model {model_id}, "
            "which has scored none yet"
        )
        self.model_id = model_id


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
    #: The duplicates, each with its own label: {id, sha256, width, height, label, origin}.
    members: list[dict[str, Any]] = field(default_factory=list)
    #: Whether people gave the group's members different labels.
    conflict: bool = False

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
            "members": self.members,
            "conflict": self.conflict,
            "prediction": self.prediction,
        }


@dataclass
class QueuePage:
    items: list[QueueItem]
    #: Pass as ``after`` to get the next page (an image id; for ranked queues, "score:id" of
    #: the last item, so that images labeled meanwhile leaving the ranking skip nothing);
    #: None at the end.
    next: int | str | None


#: What a queue item shows of its image, the group's label included.
_COLUMNS = (
    Image.id,
    Image.sha256,
    Image.width,
    Image.height,
    Image.split,
    Image.label,
    Image.label_origin,
    Image.label_event,
    Image.human_conflict,
)
#: A row of `_COLUMNS`.
ItemRow = Row[int, str, int, int, str, str | None, str | None, int | None, bool]


def _no_human_label() -> ColumnElement[bool]:
    return or_(Image.label_origin.is_(None), Image.label_origin != "human")


def _candidates(session: Session, name: str, after: int, limit: int) -> list[ItemRow]:
    query = select(*_COLUMNS).where(Image.status == ACTIVE, Image.id > after)
    if name == "new":
        query = query.where(_no_human_label())
    if name == "weak":
        query = query.where(Image.label_origin.in_(WEAK_ORIGINS))
    if name == "duplicates":
        member = aliased(Image)
        query = query.where(exists().where(member.duplicate_of == Image.id))
    if name == "conflicts":
        query = query.where(Image.human_conflict.is_(True))
    return list(session.execute(query.order_by(Image.id).limit(limit)))


def _duplicates_of(session: Session, ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Each representative's duplicates, with their own labels (what a reviewer compares)."""
    out: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
    if not ids:
        return out
    rows = list(
        session.execute(
            select(Image.id, Image.duplicate_of, Image.sha256, Image.width, Image.height)
            .where(Image.duplicate_of.in_(ids))
            .order_by(Image.id)
        )
    )
    own = current_labels(session, image_ids=[r.id for r in rows])
    for row in rows:
        label = own.get(row.id)
        out[row.duplicate_of].append(
            {
                "id": row.id,
                "sha256": row.sha256,
                "width": row.width,
                "height": row.height,
                "label": label.label if label else None,
                "origin": label.origin if label else None,
            }
        )
    return out


def _label_of(row: ItemRow) -> CurrentLabel | None:
    if row.label is None:
        return None
    return CurrentLabel(label=row.label, origin=row.label_origin, event_id=row.label_event)


def review_queue(
    session: Session, *, name: str, limit: int = 200, after: int | str = 0
) -> QueuePage:
    """One page of a queue: up to ``limit`` groups after ``after`` (an image id; for the
    ranked queues, the ``next`` of the page before)."""
    if name not in QUEUES:
        raise UnknownQueue(name)
    if name in VECTOR_QUEUES:
        page = _vector_page(session, name, limit, after)
    elif name in RANKED_QUEUES or name in ISSUE_QUEUES:
        page = _ranked_page(session, name, limit, _cursor(after))
    else:
        page = _id_page(session, name, limit, int(after))
    # Show the prediction the queue ranked by: the default model's for uncertain, an
    # independent one (where there is one) for the rest.
    _attach_predictions(session, page.items, independent_first=name != "uncertain")
    return page


def _id_page(session: Session, name: str, limit: int, after: int) -> QueuePage:
    rows = _candidates(session, name, after, limit)
    groups = _duplicates_of(session, [r.id for r in rows])
    items = [_item(row, _label_of(row), groups[row.id]) for row in rows]
    return QueuePage(items, rows[-1].id if len(rows) == limit else None)


def _item(row: ItemRow, label: CurrentLabel | None, members: list[dict[str, Any]]) -> QueueItem:
    return QueueItem(
        id=row.id,
        sha256=row.sha256,
        width=row.width,
        height=row.height,
        split=row.split,
        label=label.label if label else None,
        origin=label.origin if label else None,
        duplicates=[m["id"] for m in members],
        members=members,
        conflict=bool(row.human_conflict),
    )


def ranking(session: Session, name: str) -> list[tuple[int, float]]:
    """(image id, score) of a ranked queue (or an issue queue, ``outlier`` or ``off-query``),
    first to review first."""
    ranked_by_vectors = name in VECTOR_QUEUES and name != "clusters"
    if name not in RANKED_QUEUES and name not in ISSUE_QUEUES and not ranked_by_vectors:
        raise UnknownQueue(name)
    if ranked_by_vectors:
        _vectors_for(session, name)
    ranked = ranked_page(session, name=name, limit=None, cursor=None)
    if not ranked and name in RANKED_QUEUES:
        _why_empty(session, name)
    return ranked


def _why_empty(session: Session, name: str) -> None:
    """Raise what a ranked queue lacks, when it is empty for want of predictions."""
    tally = tallies(session)
    if name == "uncertain":
        model = default_model(session)
        if model is None:
            flagged = at_chance(session)
            raise NoModelLearnedYet(name, flagged) if flagged else NoPredictions(name)
        if not tally.get(f"predictions:model:{model.id}"):
            raise DefaultModelUnscored(name, model.id)
        return
    if not tally.get("predictions"):
        raise NoPredictions(name)
    if not tally.get("predictions:independent"):
        raise NoIndependentPredictions(name)


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
    """A page of a kept ranking (db/rankings.py): a walk of its index."""
    ranked = ranked_page(session, name=name, limit=limit + 1, cursor=cursor)
    if not ranked and cursor is None and name in RANKED_QUEUES:
        _why_empty(session, name)
    return _page_of(session, ranked, limit)


def _page_of(session: Session, ranked: list[tuple[int, float]], limit: int) -> QueuePage:
    """The first ``limit`` of a ranking as a page, its ``next`` the last one's "score:id"."""
    items = _in_order(session, [image_id for image_id, _score in ranked[:limit]])
    if len(ranked) <= limit:
        return QueuePage(items, None)
    last, score = ranked[limit - 1]
    return QueuePage(items, f"{score!r}:{last}")


def _vector_page(session: Session, name: str, limit: int, after: int | str) -> QueuePage:
    """outlier: ranked like the queues above; clusters: one cluster a page (``after``: the
    number of the cluster before), its members nearest its centre first."""
    _vectors_for(session, name)
    if name == "clusters":
        number, chosen, more = cluster_page(session, after=int(after or 0), limit=limit)
        return QueuePage(_in_order(session, chosen), number if more else None)
    return _page_of(session, ranked_page(session, name=name, limit=limit + 1,
                                         cursor=_cursor(after)), limit)  # fmt: skip


def items_of(session: Session, chosen: list[int]) -> list[QueueItem]:
    """Queue items of these active images, in this order (an inactive one is left out), with
    their predictions: the similar pictures and the text searches of the review page."""
    items = _in_order(session, chosen)
    _attach_predictions(session, items)
    return items


def _in_order(session: Session, chosen: list[int]) -> list[QueueItem]:
    rows = {
        r.id: r
        for r in session.execute(
            select(*_COLUMNS).where(Image.id.in_(chosen), Image.status == ACTIVE)
        )
    }
    chosen = [c for c in chosen if c in rows]
    groups = _duplicates_of(session, chosen)
    return [_item(rows[c], _label_of(rows[c]), groups[c]) for c in chosen]


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


def count_conflicts(session: Session) -> int:
    """Groups whose members people gave different labels (an indexed count)."""
    return int(session.scalar(select(func.count()).where(Image.human_conflict.is_(True))) or 0)


def _vector_counts(session: Session, tally: dict[str, int]) -> dict[str, int | None]:
    """The outlier queue's groups, the clusters queue's clusters and the off-query queue's
    groups (None: no vectors yet; for off-query, the newest are not CLIP's)."""
    newest = newest_embedding(session)
    if newest is None:
        return dict.fromkeys(VECTOR_QUEUES)
    return {
        "outlier": tally.get("queue:outlier", 0),
        "clusters": cluster_count(session),
        "off-query": tally.get("queue:off-query", 0) if newest.embedder == "clip" else None,
    }


def queue_counts(session: Session) -> dict[str, int | None]:
    """How many groups each queue holds (None: not available yet)."""
    tally = tallies(session)
    groups = tally.get("status:active", 0)
    counts: dict[str, int | None] = {
        "new": groups - tally.get("origin:human", 0),
        "weak": sum(tally.get(f"origin:{origin}", 0) for origin in WEAK_ORIGINS),
        "all": groups,
        "duplicates": tally.get("queue:duplicates", 0),
        "conflicts": count_conflicts(session),
        **_vector_counts(session, tally),
        **{name: tally.get(f"queue:{name}", 0) for name in ISSUE_QUEUES},
    }
    if not tally.get("predictions"):
        return {**counts, **dict.fromkeys(RANKED_QUEUES)}
    model = default_model(session)
    scored = model is not None and tally.get(f"predictions:model:{model.id}")
    independent = bool(tally.get("predictions:independent"))
    for name in RANKED_QUEUES:
        available = scored if name == "uncertain" else independent
        counts[name] = tally.get(f"queue:{name}", 0) if available else None
    return counts
