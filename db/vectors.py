"""Embeddings in the catalog: which embedder and version made a set of vectors, each image's
row in the set's file, and the outlier scores and clusters computed from them.

The vectors themselves are in a file beside the catalog (curator/learn/vectors.py); the
catalog says which rows of it are whole (``Embedding.count``), so a set is extended batch by
batch and an interrupted run loses nothing it recorded. Sets of two embedders, or of two
versions of one (two models' trunks), are two rows here and two files: never mixed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, delete, func, or_, select, text, update
from sqlalchemy.orm import InstrumentedAttribute, Session

from db.errors import CatalogError
from db.images import ACTIVE
from db.models import Embedded, Embedding, Image, Ranked, Setting, Source, utcnow
from db.settings import get_setting, set_setting
from db.touched import mark_vectored

#: The queues ranked by the vectors, kept in the rankings table (db/rankings.py).
VECTOR_QUEUES = ("outlier", "clusters", "off-query")
#: The setting naming the set, and how many of its rows were scored, that those rankings
#: were made from; None when new scores are to be ranked.
VECTOR_BASIS = "kept_vector_basis"
#: The setting (per set: the key ends with its id) holding the last source whose search
#: words the set's pictures were measured against (`unqueried_rows`).
QUERIED_THROUGH = "queried_through:"


class NoVectors(CatalogError):
    """A queue or a search that needs vectors, and the catalog has none yet."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} needs the pictures' vectors, and none are made yet")


class NotEmbedded(CatalogError):
    """An image the vectors do not hold (it is not active, or came after them)."""

    def __init__(self, image_id: int) -> None:
        super().__init__(f"image {image_id} has no vector (it is not an active image)")
        self.image_id = image_id


#: When a set made but never chosen was last chosen: before any other.
NEVER_CHOSEN = datetime(1970, 1, 1, tzinfo=UTC)


def embedding_for(
    session: Session, *, embedder: str, version: str, dim: int, dtype: str, folder: str
) -> Embedding:
    """The set of ``embedder`` at ``version``, made (empty) if there is none yet. A set made
    here is not the one the queues go by until `choose_embedding` (the queues keep the set
    they had while the first run of a new one embeds)."""
    found = session.scalar(
        select(Embedding).where(Embedding.embedder == embedder, Embedding.version == version)
    )
    if found is not None:
        if found.dim != dim:
            raise CatalogError(
                f"the {embedder} vectors of {version} have {found.dim} values, not {dim}"
            )
        return found
    made = Embedding(
        embedder=embedder, version=version, dim=dim, dtype=dtype, folder=folder, count=0
    )
    made.updated_at = NEVER_CHOSEN
    made.scored = made.clusters = 0
    session.add(made)
    session.flush()
    return made


def choose_embedding(session: Session, *, embedding_id: int) -> None:
    """Make the set the one the queues go by (`newest_embedding`): the rankings of the
    vector queues are made again from it before this transaction commits."""
    session.execute(
        update(Embedding).where(Embedding.id == embedding_id).values(updated_at=utcnow())
    )


def embeddings(session: Session) -> list[Embedding]:
    """Every set of vectors, newest first."""
    return list(session.scalars(select(Embedding).order_by(Embedding.updated_at.desc())))


def newest_embedding(session: Session, *, embedder: str | None = None) -> Embedding | None:
    """The set the queues go by: the one `curator embed` ran on last (of ``embedder``, if
    given); an on-demand embed of the images added since does not make a set the newest."""
    query = select(Embedding).order_by(Embedding.updated_at.desc(), Embedding.id.desc())
    if embedder is not None:
        query = query.where(Embedding.embedder == embedder)
    return session.scalars(query.limit(1)).first()


def embedding_by_id(session: Session, *, embedding_id: int) -> Embedding | None:
    """The set of vectors of that id, or None."""
    return session.get(Embedding, embedding_id)


def embedded_ids(session: Session, *, embedding_id: int) -> set[int]:
    """The images the set holds a row for."""
    query = select(Embedded.image_id).where(Embedded.embedding_id == embedding_id)
    return set(session.scalars(query))


def record_rows(session: Session, *, embedding_id: int, image_ids: Sequence[int]) -> int:
    """Record that the set's file now holds ``image_ids`` after its whole rows, in that
    order; returns the new count of whole rows."""
    found = session.get(Embedding, embedding_id)
    if found is None:
        raise CatalogError(f"no embedding {embedding_id}")
    first = found.count
    session.add_all(
        Embedded(embedding_id=embedding_id, image_id=image_id, row=first + offset)
        for offset, image_id in enumerate(image_ids)
    )
    found.count = first + len(image_ids)
    session.flush()
    return found.count


def set_scores(
    session: Session,
    *,
    embedding_id: int,
    outliers: Iterable[tuple[int, float]],
    clusters: Iterable[tuple[int, int, float]],
    cluster_count: int,
    over: int,
    partial: bool = False,
    query_distances: Iterable[tuple[int, float]] = (),
    queried_through: int | None = None,
) -> None:
    """Store each image's outlier score, (cluster, distance to its centre) and distance to
    its query's words, computed over the set's first ``over`` rows. ``partial``: the images
    given are the only ones whose scores, clusters or distances moved since the set's last
    scores (the others' stand), so the kept rankings made from those are brought up to date
    for these images alone."""
    values: dict[int, dict[str, Any]] = {}
    for image_id, score in outliers:
        values.setdefault(image_id, {})["outlier"] = score
    for image_id, distance in query_distances:
        values.setdefault(image_id, {})["query_distance"] = distance
    for image_id, cluster, distance in clusters:
        values.setdefault(image_id, {}).update(cluster=cluster, centre_distance=distance)
    rows = [{"embedding_id": embedding_id, "image_id": i, **v} for i, v in values.items()]
    for start in range(0, len(rows), 2000):
        session.execute(update(Embedded), rows[start : start + 2000])
    if queried_through is not None:
        set_setting(session, key=f"{QUERIED_THROUGH}{embedding_id}", value=queried_through)
    before = session.scalar(select(Embedding.scored).where(Embedding.id == embedding_id))
    session.execute(
        update(Embedding)
        .where(Embedding.id == embedding_id)
        .values(scored=over, clusters=cluster_count)
    )
    if partial and get_setting(session, key=VECTOR_BASIS) == [embedding_id, before]:
        # The kept outlier and clusters rankings were made from this set's last scores:
        # those of the images given are scored again before this transaction commits.
        set_setting(session, key=VECTOR_BASIS, value=[embedding_id, over])
        mark_vectored(session, values)
        return
    newest = newest_embedding(session)
    if newest is not None and newest.id == embedding_id:
        # Every score may have moved: the kept outlier and clusters rankings are made again
        # from them before this transaction commits (db/rankings.py). (Those of another,
        # newer set than this one stand.)
        set_setting(session, key=VECTOR_BASIS, value=None)


def forget_embedding(session: Session, *, embedding_id: int) -> None:
    """Remove a set's rows (its file is the caller's to remove)."""
    session.execute(delete(Embedded).where(Embedded.embedding_id == embedding_id))
    session.execute(delete(Embedding).where(Embedding.id == embedding_id))
    session.execute(delete(Setting).where(Setting.key == f"{QUERIED_THROUGH}{embedding_id}"))


def _unreviewed() -> ColumnElement[bool]:
    return or_(Image.label_origin.is_(None), Image.label_origin != "human")


def _unreviewed_with(
    embedding_id: int, *selected: InstrumentedAttribute[Any], having: InstrumentedAttribute[Any]
) -> Select[*tuple[Any, ...]]:
    """The columns ``selected`` of the set's active images that no person labeled, those whose
    ``having`` (their outlier score, their cluster) is set."""
    return (
        select(*selected)
        .join(Image, Image.id == Embedded.image_id)
        .where(
            Embedded.embedding_id == embedding_id,
            having.is_not(None),
            Image.status == ACTIVE,
            _unreviewed(),
        )
    )


def outlier_ranking(session: Session) -> list[tuple[int, float]]:
    """(image id, minus its outlier score) of the newest set's active images that no person
    labeled, farthest from their neighbours first (the order of a ranked queue's cursor)."""
    found = newest_embedding(session)
    if found is None:
        raise NoVectors("the 'outlier' queue")
    query = _unreviewed_with(
        found.id, Embedded.image_id, Embedded.outlier, having=Embedded.outlier
    ).order_by(Embedded.outlier.desc(), Embedded.image_id)
    return [(image_id, -float(score or 0.0)) for image_id, score in session.execute(query)]


def off_query_ranking(session: Session) -> list[tuple[int, float]]:
    """(image id, minus its distance to its query's words) of the newest set's active images
    that no person labeled and a query found, farthest first, the slow way: for checking."""
    found = newest_embedding(session)
    if found is None:
        return []
    query = _unreviewed_with(
        found.id, Embedded.image_id, Embedded.query_distance, having=Embedded.query_distance
    )
    out = [(image_id, -float(d)) for image_id, d in session.execute(query)]
    return sorted(out, key=lambda pair: (pair[1], pair[0]))


def queried_through(session: Session, *, embedding_id: int) -> int:
    """The last source the set's distances to search words were measured after (0: none)."""
    return int(get_setting(session, key=f"{QUERIED_THROUGH}{embedding_id}") or 0)


def unqueried_rows(
    session: Session, *, embedding_id: int, engines: Sequence[str]
) -> tuple[int | None, dict[int, tuple[int, list[str]]]]:
    """(the newest source's id, None where the set was last measured through it; {image id:
    (row, every query that found it)}) for the set's images to measure against their search
    words: those that a query of one of ``engines`` found (search words; a site's or a URL
    list's engine has addresses for a query), itself or a near copy of it in its group, and
    that have no distance yet or that a search found again since the set was last
    measured."""
    through = queried_through(session, embedding_id=embedding_id)
    words = (Source.engine.in_(engines), Source.query.is_not(None), Source.query != "")
    # The groups a search found since: a picture's own source, or a near copy's.
    again = (
        select(func.coalesce(Image.duplicate_of, Image.id))
        .join(Source, Source.image_id == Image.id)
        .where(Source.id > through, *words)
    )
    todo = (
        Embedded.embedding_id == embedding_id,
        or_(Embedded.query_distance.is_(None), Embedded.image_id.in_(again)),
        *words,
    )
    own = (
        select(Embedded.image_id, Embedded.row, Source.query)
        .join(Source, Source.image_id == Embedded.image_id)
        .where(*todo)
    )
    copies = (
        select(Embedded.image_id, Embedded.row, Source.query)
        .join(Image, Image.duplicate_of == Embedded.image_id)
        .join(Source, Source.image_id == Image.id)
        .where(*todo)
    )
    query = own.union(copies)  # each (picture, query) once
    newest = int(session.scalar(select(func.max(Source.id))) or 0)
    out: dict[int, tuple[int, list[str]]] = {}
    for image_id, row, words_ in session.execute(query):
        out.setdefault(image_id, (row, []))[1].append(str(words_))
    return (newest if newest != through else None), out


def cluster_score(cluster: int, distance: float | None) -> float:
    """An image's place in the kept ``clusters`` ranking: its cluster's number, plus a fraction
    that grows with its distance to the centre, so one walk of the index reads a cluster's
    members nearest first and the next cluster starts at the next whole number."""
    d = max(0.0, float(distance or 0.0))
    return cluster + min(d / (1.0 + d), 0.999999)


def cluster_ranking(session: Session) -> list[tuple[int, float]]:
    """(image id, `cluster_score`) of the newest set's active images that no person labeled
    and that are in a cluster, the slow way (what db/rankings.py keeps): for checking."""
    found = newest_embedding(session)
    if found is None:
        return []
    query = _unreviewed_with(
        found.id, Embedded.image_id, Embedded.cluster, Embedded.centre_distance,
        having=Embedded.cluster,
    )  # fmt: skip
    out = [(i, cluster_score(c, d)) for i, c, d in session.execute(query)]
    return sorted(out, key=lambda pair: (pair[1], pair[0]))


def unreviewed_rows(session: Session, *, embedding_id: int) -> list[tuple[int, int]]:
    """(image id, row) of the set's active images that no person labeled."""
    query = (
        select(Embedded.image_id, Embedded.row)
        .join(Image, Image.id == Embedded.image_id)
        .where(Embedded.embedding_id == embedding_id, Image.status == ACTIVE, _unreviewed())
        .order_by(Embedded.row)
    )
    return [(image_id, row) for image_id, row in session.execute(query)]


def cluster_page(session: Session, *, after: int, limit: int) -> tuple[int | None, list[int], bool]:
    """The next cluster after number ``after`` (clusters count from 1) in the kept
    ``clusters`` ranking: (its number, up to ``limit`` members nearest its centre first,
    whether another follows); (None, [], False) past the last. Three seeks of its index."""

    def first_from(bound: float) -> float | None:
        query = (
            select(Ranked.score)
            .where(Ranked.queue == "clusters", Ranked.score >= bound)
            .order_by(Ranked.score)
            .limit(1)
        )
        return session.scalar(query)

    found = first_from(after + 1)
    if found is None:
        return None, [], False
    number = int(found)  # scores are the cluster's number plus a fraction under 1
    members = (
        select(Ranked.image_id)
        .where(Ranked.queue == "clusters", Ranked.score >= number, Ranked.score < number + 1)
        .order_by(Ranked.score, Ranked.image_id)
        .limit(limit)
    )
    chosen = list(session.scalars(members))
    return number, chosen, first_from(number + 1) is not None


def cluster_count(session: Session) -> int:
    """How many clusters the kept ``clusters`` ranking holds: a walk that seeks from one
    cluster's first row to the next's (as many index seeks as clusters, not rows)."""
    whole = "CAST(walk.score AS INTEGER)"  # toward zero: the floor of a positive score
    if session.get_bind().dialect.name == "postgresql":
        whole = "floor(walk.score)"
    query = text(
        "WITH RECURSIVE walk(score) AS ("
        " SELECT (SELECT score FROM rankings WHERE queue = 'clusters'"
        " ORDER BY score LIMIT 1)"
        " UNION ALL"
        " SELECT (SELECT r.score FROM rankings r WHERE r.queue = 'clusters'"
        f" AND r.score >= {whole} + 1 ORDER BY r.score LIMIT 1)"
        " FROM walk WHERE walk.score IS NOT NULL"
        ") SELECT count(score) FROM walk"
    )
    return int(session.scalar(query) or 0)
