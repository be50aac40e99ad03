"""The ranked review queues, kept: each image's place in them, brought up to date by the
writes that change it, in their own transaction.

A ranked queue (``uncertain``, ``disagree``, ``weak-disagree``) orders groups by a score
read from predictions and group labels. Ranking them per request reads every prediction: 5 s
a page at a million images. Instead, the ``rankings`` table holds (queue, image, score) for
the images each queue holds, and a page walks its index on (queue, score, image): the same
cost at a thousand images or a million. Its count per queue is a tally kept by a trigger.

What changes a ranking, and how it is kept:

* a label event or a group change: the write functions `touch` the images (db/touched.py),
  as they do for the group labels;
* a prediction written or deleted: `db.predictions.replace_predictions` and
  `db.registry.delete_model` mark the images scored (`db.touched.mark_scored`);
* another default model (one trained, chosen or removed): the ``uncertain`` ranking is made
  again from that model's predictions (`BASIS` names the one it was made with);
* the issue queues (``issues``, ``issue:blurry``...; db/properties.py): properties written
  (at ingest, by a backfill) mark their images measured, and only these queues score them
  again; other thresholds make them again from every image's properties (`ISSUE_BASIS`);
* the vector queues (``outlier``, ``clusters``, ``off-query``; db/vectors.py): a newer set
  of vectors, or new scores of every image, make them again (`VECTOR_BASIS`); scores brought
  up to date for the images a refresh moved mark those images vectored, and only these
  queues score them again.

`Catalog.writing` calls `refresh_kept` before it commits: the group labels first (which the
rankings read), then each touched or scored image's group is scored again and its rows
written where they changed. `db.rankcheck.recount` ranks the slow way, from every
prediction, to check.

A new ranked queue is one entry of `KEPT`: its name and a function that scores a batch of
group representatives (returning the ones the queue holds). The ``duplicates`` queue (groups
with members) is kept the same way for its count, which a query pays 50 ms for at a million.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Row, Select, delete, false, func, or_, select
from sqlalchemy.orm import Session

from db.bulk import insert_rows
from db.grouplabels import refresh as refresh_group_labels
from db.images import ACTIVE
from db.labels import WEAK_ORIGINS
from db.models import Embedded, Embedding, Image, ImageProperty, Model, Prediction, Ranked
from db.properties import ISSUE_QUEUES, ISSUES, issue_severities, thresholds
from db.registry import default_model
from db.settings import get_setting, set_setting
from db.touched import take_measured, take_scored, take_touched, take_vectored
from db.vectors import (
    VECTOR_BASIS,
    VECTOR_QUEUES,
    cluster_score,
    newest_embedding,
)

_CHUNK = 5000
#: The setting naming the model the kept ``uncertain`` ranking was made with (and the
#: disagree rankings, which average in its opinion).
BASIS = "kept_uncertain_model"
#: The queues made again when the default model changes.
BASIS_QUEUES = ("uncertain", "disagree", "weak-disagree")
#: The setting holding the issue thresholds the kept issue rankings were made with.
ISSUE_BASIS = "kept_issue_thresholds"


@dataclass
class Context:
    """What scoring a batch reads once per transaction: the model classes, the default."""

    session: Session
    _classes: dict[int, list[str]] | None = None
    basis: int | None = None
    #: The set of vectors the outlier and clusters rankings go by (the newest).
    vectors: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def classes(self) -> dict[int, list[str]]:
        if self._classes is None:
            self._classes = {m.id: list(m.classes) for m in self.session.scalars(select(Model))}
        return self._classes

    @property
    def limits(self) -> dict[str, float]:
        """The catalog's issue thresholds."""
        if "limits" not in self.extra:
            self.extra["limits"] = thresholds(self.session)
        return dict(self.extra["limits"])

    def severities(self, ids: list[int]) -> dict[int, dict[str, float]]:
        """What the issue types flag among these images (`db.properties.issue_severities`),
        worked out once for the issue queues of one batch."""
        key = tuple(ids)
        if self.extra.get("severities_of") != key:
            self.extra["severities"] = issue_severities(self.session, ids, self.limits)
            self.extra["severities_of"] = key
        return dict(self.extra["severities"])

    def scores(
        self, ids: list[int]
    ) -> dict[int, Row[int, float | None, int | None, float | None, float | None]]:
        """The vector set's (outlier, cluster, centre distance, query distance) of these
        images, read once for the vector queues of one batch."""
        key = tuple(ids)
        if self.extra.get("scores_of") != key:
            query = select(
                Embedded.image_id,
                Embedded.outlier,
                Embedded.cluster,
                Embedded.centre_distance,
                Embedded.query_distance,
            ).where(Embedded.embedding_id == self.vectors, Embedded.image_id.in_(ids))
            self.extra["scores"] = {row.image_id: row for row in self.session.execute(query)}
            self.extra["scores_of"] = key
        return dict(self.extra["scores"])


#: A group as a ranking sees it: (id, status, label, label origin, representative).
GroupRow = Row[int, str, str | None, str | None, int | None]
#: Scores a batch of group representatives: {image id: score} for those the queue holds.
Scorer = Callable[[Context, list[GroupRow]], dict[int, float]]


def _uncertain(ctx: Context, rows: list[GroupRow]) -> dict[int, float]:
    """Groups without a human label, by the default model's margin (smallest first)."""
    wanted = [r.id for r in rows if r.status == ACTIVE and r.label_origin != "human"]
    if ctx.basis is None or not wanted:
        return {}
    query = select(Prediction.image_id, Prediction.margin).where(
        Prediction.model_id == ctx.basis, Prediction.image_id.in_(wanted)
    )
    return {image_id: float(margin) for image_id, margin in ctx.session.execute(query)}


def _self_confidence(origins: tuple[str, ...]) -> Scorer:
    """Groups whose label came from one of ``origins``, by how likely the models find that
    label (least first): the probability the newest prediction of a model that did not train
    on the image gives it (a model trained for other classes has no opinion of it, and
    leaves the group out), averaged with the default model's where that model has scored the
    image (see `blend`)."""

    def score(ctx: Context, rows: list[GroupRow]) -> dict[int, float]:
        labels = {r.id: r.label for r in rows if r.status == ACTIVE and r.label_origin in origins}
        if not labels:
            return {}
        newest = (
            select(func.max(Prediction.id))
            .where(Prediction.in_sample.is_(False), Prediction.image_id.in_(labels))
            .group_by(Prediction.image_id)
        )
        query = select(Prediction.image_id, Prediction.model_id, Prediction.probs).where(
            Prediction.id.in_(newest.scalar_subquery())
        )
        out = {}
        for image_id, model_id, probs in ctx.session.execute(query):
            names = ctx.classes.get(model_id, [])
            if labels[image_id] in names:
                out[image_id] = float(probs[names.index(labels[image_id])])
        if ctx.basis is None or not out:
            return out
        opinions = select(Prediction.image_id, Prediction.probs).where(
            Prediction.model_id == ctx.basis, Prediction.image_id.in_(out)
        )
        names = ctx.classes.get(ctx.basis, [])
        default = {
            i: float(probs[names.index(labels[i])])
            for i, probs in ctx.session.execute(opinions)
            if labels[i] in names
        }
        return {i: blend(p, default.get(i)) for i, p in out.items()}

    return score


def blend(independent: float, default: float | None) -> float:
    """A disagree score: the probability of the label by a model that did not train on the
    image, averaged with the default model's (in sample or not) where it has one. A model
    stopped early learns the clean majority of a noisy set before the noise, so its opinion
    of the pictures it trained on still tells the wrong labels apart; one that memorised
    them gives every label about 1, and the average then keeps the independent order. In
    the demo (seeds 0, 1, 2), the first 10 % of the queue held 61.2, 61.7 and 65.9 % of the
    wrong labels this way, against 57.6, 55.6 and 51.1 % by the folds alone in the same
    runs (docs/performance.md)."""
    return independent if default is None else (independent + default) / 2


def _issues(names: tuple[str, ...]) -> Scorer:
    """Groups without a human label whose properties one of these issue types flags, by
    minus the worst severity (worst first), as db.properties.issue_ranking ranks them."""

    def score(ctx: Context, rows: list[GroupRow]) -> dict[int, float]:
        wanted = [r.id for r in rows if r.status == ACTIVE and r.label_origin != "human"]
        if not wanted:
            return {}
        out = {}
        for image_id, found in ctx.severities(wanted).items():
            worst = [found[name] for name in names if name in found]
            if worst:
                out[image_id] = -max(worst)
        return out

    return score


def _by_vectors(ctx: Context, rows: list[GroupRow], what: str) -> dict[int, float]:
    wanted = [r.id for r in rows if r.status == ACTIVE and r.label_origin != "human"]
    if ctx.vectors is None or not wanted:
        return {}
    out = {}
    for image_id, row in ctx.scores(wanted).items():
        if what == "outlier" and row.outlier is not None:
            out[image_id] = -float(row.outlier)
        elif what == "clusters" and row.cluster is not None:
            out[image_id] = cluster_score(row.cluster, row.centre_distance)
        elif what == "off-query" and row.query_distance is not None:
            out[image_id] = -float(row.query_distance)
    return out


def _outliers(ctx: Context, rows: list[GroupRow]) -> dict[int, float]:
    """Groups without a human label, by minus their outlier score (farthest first)."""
    return _by_vectors(ctx, rows, "outlier")


def _clusters(ctx: Context, rows: list[GroupRow]) -> dict[int, float]:
    """Groups without a human label in a cluster, by `db.vectors.cluster_score`."""
    return _by_vectors(ctx, rows, "clusters")


def _off_query(ctx: Context, rows: list[GroupRow]) -> dict[int, float]:
    """Groups without a human label that a search found, by minus the distance of their
    CLIP vector to the words of its query (farthest first)."""
    return _by_vectors(ctx, rows, "off-query")


def _embedded(ctx: Context) -> Select[int]:
    if ctx.vectors is None:
        return select(Embedded.image_id).where(false())
    return select(Embedded.image_id).where(Embedded.embedding_id == ctx.vectors)


def _with_properties(ctx: Context) -> Select[int]:
    return select(ImageProperty.image_id)


def _with_members(ctx: Context, rows: list[GroupRow]) -> dict[int, float]:
    """Active groups with at least one member (kept for their count; the page walks ids)."""
    active = [r.id for r in rows if r.status == ACTIVE and r.duplicate_of is None]
    if not active:
        return {}
    query = select(Image.duplicate_of).where(Image.duplicate_of.in_(active)).distinct()
    return dict.fromkeys(ctx.session.scalars(query), 0.0)


def _scored_images(ctx: Context) -> Select[int]:
    return select(Prediction.image_id).distinct()


@dataclass(frozen=True)
class KeptQueue:
    name: str
    scores: Scorer
    #: The images a rebuild scores (a select of ids).
    candidates: Callable[[Context], Select[int] | Select[int | None]] = _scored_images
    #: Whether the queue is ordered by its score (else its rows are kept for the count).
    ranked: bool = True


#: The queues kept in the ``rankings`` table.
KEPT: dict[str, KeptQueue] = {
    q.name: q
    for q in (
        KeptQueue("uncertain", _uncertain),
        KeptQueue("disagree", _self_confidence(WEAK_ORIGINS)),
        KeptQueue("weak-disagree", _self_confidence(("query",))),
        KeptQueue(
            "duplicates",
            _with_members,
            candidates=lambda _ctx: select(Image.duplicate_of).distinct(),
            ranked=False,
        ),
        KeptQueue("outlier", _outliers, candidates=_embedded),
        KeptQueue("clusters", _clusters, candidates=_embedded),
        KeptQueue("off-query", _off_query, candidates=_embedded),
        KeptQueue("issues", _issues(tuple(ISSUES)), candidates=_with_properties),
        *(
            KeptQueue(f"issue:{name}", _issues((name,)), candidates=_with_properties)
            for name in ISSUES
        ),
    )
}


def _chunks(ids: list[int]) -> Iterable[list[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


def _group_rows(session: Session, ids: list[int]) -> list[GroupRow]:
    query = select(Image.id, Image.status, Image.label, Image.label_origin, Image.duplicate_of)
    return list(session.execute(query.where(Image.id.in_(ids))))


def refresh_kept(session: Session) -> None:
    """Bring the group labels and the rankings up to date with this transaction's writes."""
    touched = take_touched(session)
    if touched:
        refresh_group_labels(session, touched)
    scored = take_scored(session)
    ctx = _context(session)
    renewed = _renew_basis(ctx)
    issues_renewed = _renew_issues(ctx)
    vectors_renewed = _renew_vectors(ctx)
    skip = {
        *(BASIS_QUEUES if renewed else ()),
        *(ISSUE_QUEUES if issues_renewed else ()),
        *(VECTOR_QUEUES if vectors_renewed else ()),
    }
    names = [n for n in KEPT if n not in skip]
    ids = sorted(touched | scored)
    measured = sorted(take_measured(session) - set(ids))  # in the issue queues alone
    vectored = sorted(take_vectored(session) - set(ids))  # in the vector queues alone
    for todo, queues in (
        (ids, names),
        (measured, [n for n in names if n in ISSUE_QUEUES]),
        (vectored, [n for n in names if n in VECTOR_QUEUES]),
    ):
        for chunk in _chunks(todo):
            rows = _group_rows(session, chunk)
            # A member's label event changes its representative's group.
            reps = {r.duplicate_of for r in rows if r.duplicate_of is not None} - set(chunk)
            rows += _group_rows(session, sorted(reps)) if reps else []
            _write(session, ctx, rows, queues)


def _basis(session: Session) -> int | None:
    model = default_model(session)
    return model.id if model is not None else None


def _context(session: Session) -> Context:
    found = newest_embedding(session)
    return Context(session, basis=_basis(session), vectors=found.id if found else None)


def _vector_basis(ctx: Context) -> list[int] | None:
    """The set the vector rankings go by and how many of its rows are scored."""
    found = ctx.session.get(Embedding, ctx.vectors) if ctx.vectors is not None else None
    return None if found is None else [found.id, found.scored]


def _renew_vectors(ctx: Context) -> bool:
    """With another newest set of vectors, or new scores (`db.vectors.set_scores` clears the
    basis), make the outlier and clusters rankings again; returns whether it did."""
    session, basis = ctx.session, _vector_basis(ctx)
    if get_setting(session, key=VECTOR_BASIS) == basis:
        return False
    session.execute(delete(Ranked).where(Ranked.queue.in_(VECTOR_QUEUES)))
    set_setting(session, key=VECTOR_BASIS, value=basis)
    ids = sorted(session.scalars(_embedded(ctx)))
    for chunk in _chunks(ids):
        _write(session, ctx, _group_rows(session, chunk), list(VECTOR_QUEUES))
    return True


def _renew_basis(ctx: Context) -> bool:
    """With another default model than the ``uncertain`` ranking was made with, make it
    again from the new model's predictions, and the disagree rankings with its opinion
    averaged in; returns whether it did."""
    session = ctx.session
    if get_setting(session, key=BASIS) == ctx.basis:
        return False
    session.execute(delete(Ranked).where(Ranked.queue == "uncertain"))
    set_setting(session, key=BASIS, value=ctx.basis)
    if ctx.basis is not None:
        ids = list(
            session.scalars(select(Prediction.image_id).where(Prediction.model_id == ctx.basis))
        )
        for chunk in _chunks(sorted(ids)):
            _write(session, ctx, _group_rows(session, chunk), ["uncertain"])
    independent = select(Prediction.image_id).where(Prediction.in_sample.is_(False)).distinct()
    # Images with no independent prediction left (a model deleted in this transaction took
    # theirs) leave the disagree rankings: the scored images are not scored again for these
    # queues after a renewal.
    still = select(Prediction.id).where(
        Prediction.image_id == Ranked.image_id, Prediction.in_sample.is_(False)
    )
    session.execute(
        delete(Ranked).where(Ranked.queue.in_(("disagree", "weak-disagree")), ~still.exists())
    )
    for chunk in _chunks(sorted(session.scalars(independent))):
        _write(session, ctx, _group_rows(session, chunk), ["disagree", "weak-disagree"])
    return True


def _renew_issues(ctx: Context) -> bool:
    """With other issue thresholds than the issue rankings were made with (set by a person,
    or another default of the code's), make them again; returns whether it did."""
    session = ctx.session
    if get_setting(session, key=ISSUE_BASIS) == ctx.limits:
        return False
    session.execute(delete(Ranked).where(Ranked.queue.in_(ISSUE_QUEUES)))
    set_setting(session, key=ISSUE_BASIS, value=ctx.limits)
    ids = sorted(session.scalars(_with_properties(ctx)))
    for chunk in _chunks(ids):
        _write(session, ctx, _group_rows(session, chunk), list(ISSUE_QUEUES))
    return True


def _write(session: Session, ctx: Context, rows: list[GroupRow], names: list[str]) -> None:
    """Score these groups for these queues and write the rows that changed."""
    ids = [r.id for r in rows]
    if not ids or not names:
        return
    held = {
        (q, i): s
        for q, i, s in session.execute(
            select(Ranked.queue, Ranked.image_id, Ranked.score).where(
                Ranked.image_id.in_(ids), Ranked.queue.in_(names)
            )
        )
    }
    want = {(name, i): s for name in names for i, s in KEPT[name].scores(ctx, rows).items()}
    gone = [key for key, s in held.items() if want.get(key) != s]
    for name in names:
        drop = [i for q, i in gone if q == name]
        if drop:
            session.execute(delete(Ranked).where(Ranked.queue == name, Ranked.image_id.in_(drop)))
    new = [
        {"queue": q, "image_id": i, "score": s}
        for (q, i), s in want.items()
        if held.get((q, i)) != s
    ]
    if new:
        insert_rows(session, Ranked, new)


def rebuild(session: Session) -> None:
    """Make every ranking again from the whole catalog (for rows written by other means
    than curator's functions)."""
    session.execute(delete(Ranked))
    ctx = _context(session)
    set_setting(session, key=BASIS, value=ctx.basis)
    set_setting(session, key=ISSUE_BASIS, value=ctx.limits)
    set_setting(session, key=VECTOR_BASIS, value=_vector_basis(ctx))
    for name, queue in KEPT.items():
        ids = {i for i in session.scalars(queue.candidates(ctx)) if i is not None}
        for chunk in _chunks(sorted(ids)):
            _write(session, ctx, _group_rows(session, chunk), [name])


def ranked_page(
    session: Session, *, name: str, limit: int | None, cursor: tuple[float, int] | None
) -> list[tuple[int, float]]:
    """Up to ``limit`` (None: all) (image id, score) of a kept ranking after ``cursor``,
    first first."""
    query = select(Ranked.image_id, Ranked.score).where(Ranked.queue == name)
    if cursor is not None:
        score, image_id = cursor
        # The >= bound lets the index seek; the OR then skips the ties already shown.
        query = query.where(
            Ranked.score >= score, or_(Ranked.score > score, Ranked.image_id > image_id)
        )
    query = query.order_by(Ranked.score, Ranked.image_id)
    if limit is not None:
        query = query.limit(limit)
    return [(i, float(s)) for i, s in session.execute(query)]
