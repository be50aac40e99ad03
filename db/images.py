"""Images, their sources, and changes to their status: the catalog's query functions."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from types import EllipsisType
from typing import Any, NamedTuple

from sqlalchemy import Row, func, insert, select
from sqlalchemy.orm import Session, aliased

from db.errors import AmbiguousImage, UnknownImage
from db.models import Image, ImageChange, Source, Tally, utcnow
from db.touched import touch

ACTIVE = "active"
DUPLICATE = "duplicate"
SPLITS: tuple[str, ...] = ("train", "val", "test")

#: Outcomes of a source row.
ADDED = "added"
EXACT_DUPLICATE = "exact_duplicate"
NEAR_DUPLICATE = "near_duplicate"
FAILED = "failed"
OUTCOMES: tuple[str, ...] = (ADDED, EXACT_DUPLICATE, NEAR_DUPLICATE, FAILED)


def split_for(key: str) -> str:
    """The split of a near-duplicate group, from a stable hash of its key: 80/10/10."""
    bucket = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % 100
    if bucket < 80:
        return "train"
    return "val" if bucket < 90 else "test"


def to_signed64(value: int) -> int:
    """A 64-bit unsigned hash as the signed integer a BIGINT column holds."""
    return value - (1 << 64) if value >= 1 << 63 else value


def to_unsigned64(value: int) -> int:
    return value + (1 << 64) if value < 0 else value


def locator_key(locator: str) -> str:
    return hashlib.sha256(locator.encode("utf-8", "surrogatepass")).hexdigest()


def members_of(session: Session, *, image_id: int) -> list[Image]:
    """The duplicates whose representative is this image, oldest first."""
    return list(
        session.scalars(select(Image).where(Image.duplicate_of == image_id).order_by(Image.id))
    )


def find_image(session: Session, *, ref: str) -> Image:
    """An image by numeric id or by (a prefix of at least 6 characters of) its sha256."""
    ref = ref.strip()
    if ref.isascii() and ref.isdigit() and int(ref) < 2**31:
        image = session.get(Image, int(ref))
        if image is not None:
            return image
    lowered = ref.lower()
    if len(lowered) >= 6 and all(c in "0123456789abcdef" for c in lowered):
        matches = list(
            session.scalars(select(Image).where(Image.sha256.startswith(lowered)).limit(2))
        )
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            count = session.scalar(select(func.count()).where(Image.sha256.startswith(lowered)))
            raise AmbiguousImage(ref, int(count or 0))
    raise UnknownImage(ref)


def max_image_id(session: Session) -> int:
    return int(session.scalar(select(func.max(Image.id))) or 0)


def images_through(session: Session, *, image_id: int) -> int:
    """How many image rows have an id up to ``image_id``: the kept count less the few rows
    after it, in one statement (one snapshot), whatever the catalog's size."""
    total = select(Tally.count).where(Tally.name == "images").scalar_subquery()
    after = select(func.count()).where(Image.id > image_id).scalar_subquery()
    return int(session.scalar(select(func.coalesce(total, 0) - after)) or 0)


def hashed_through(session: Session, *, image_id: int, hash_version: str) -> int:
    """How many images up to ``image_id`` are hashed with this version (a counting scan)."""
    query = select(func.count()).where(Image.id <= image_id, Image.hash_version == hash_version)
    return int(session.scalar(query) or 0)


def image_by_sha(session: Session, *, sha256: str) -> Image | None:
    return session.scalars(select(Image).where(Image.sha256 == sha256)).first()


def image_by_id(session: Session, *, image_id: int) -> Image | None:
    """The image with this id, if there is one."""
    return session.get(Image, image_id)


def images_by_id(session: Session, *, image_ids: Iterable[int]) -> dict[int, Image]:
    """The rows of these images (those in the catalog), by id, read in one query."""
    ids = list(image_ids)
    return {image.id: image for image in session.scalars(select(Image).where(Image.id.in_(ids)))}


def ids_by_sha(session: Session, *, sha256s: Iterable[str]) -> dict[str, int]:
    """sha256 -> image id, for those of these contents the catalog holds (one query)."""
    rows = session.execute(select(Image.sha256, Image.id).where(Image.sha256.in_(list(sha256s))))
    return {sha256: image_id for sha256, image_id in rows}


def path_and_format(session: Session, *, sha256: str) -> tuple[str, str] | None:
    """The stored file (relative to the home) and format of the image with this content."""
    row = session.execute(select(Image.path, Image.format).where(Image.sha256 == sha256)).first()
    return None if row is None else (row.path, row.format)


def active_images(session: Session) -> Iterator[Image]:
    """Every active image (each group's representative), in id order."""
    return iter(session.scalars(select(Image).where(Image.status == ACTIVE).order_by(Image.id)))


def all_images(session: Session) -> Iterator[Image]:
    """Every image, duplicates included, in id order."""
    return iter(session.scalars(select(Image).order_by(Image.id)))


def active_paths(
    session: Session, *, image_ids: Iterable[int] | None = None
) -> list[tuple[int, str]]:
    """(id, stored path) of the active images (of these only, if given), in id order."""
    query = select(Image.id, Image.path).where(Image.status == ACTIVE).order_by(Image.id)
    if image_ids is not None:
        query = query.where(Image.id.in_(list(image_ids)))
    return [(image_id, path) for image_id, path in session.execute(query)]


def active_splits(session: Session) -> dict[int, str]:
    """Each active image's split."""
    query = select(Image.id, Image.split).where(Image.status == ACTIVE)
    return {image_id: split for image_id, split in session.execute(query)}


class ActiveRow(NamedTuple):
    id: int
    path: str
    split: str
    #: Whether people gave the group's members different labels.
    human_conflict: bool


def active_rows(session: Session) -> Iterator[ActiveRow]:
    """Every active image's path, split and whether its group's human labels disagree, in
    id order: what choosing training examples reads of each."""
    rows = session.execute(
        select(Image.id, Image.path, Image.split, Image.human_conflict)
        .where(Image.status == ACTIVE)
        .order_by(Image.id)
    )
    return (ActiveRow(*row) for row in rows)


def add_image(session: Session, **fields: object) -> Image:
    """Insert an image row; ``fields`` are the columns of `db.models.Image`."""
    image = Image(**fields)
    session.add(image)
    session.flush()
    touch(session, [image.id, image.duplicate_of])
    return image


def add_images(session: Session, rows: list[dict[str, Any]]) -> list[int]:
    """Insert many image rows in one statement; return their ids in the same order."""
    if not rows:
        return []
    result = session.execute(insert(Image).returning(Image.id, sort_by_parameter_order=True), rows)
    ids = list(result.scalars())
    # A member joins a group, whose label may now come from it.
    touch(session, [r.get("duplicate_of") for r in rows])
    return ids


def source_row(
    *,
    run_id: int,
    kind: str,
    locator: str,
    outcome: str,
    reason: str | None = None,
    detail: str | None = None,
    image_id: int | None = None,
    page_url: str | None = None,
    engine: str | None = None,
    query: str | None = None,
    info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The columns of one source row, for `add_sources`."""
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown source outcome {outcome!r}")
    return {
        "run_id": run_id,
        "kind": kind,
        "locator": locator,
        "locator_key": locator_key(locator),
        "outcome": outcome,
        "reason": reason,
        "detail": detail,
        "image_id": image_id,
        "page_url": page_url,
        "engine": engine,
        "query": query,
        "info": info or {},
        "created_at": utcnow(),
    }


def add_sources(session: Session, rows: list[dict[str, Any]]) -> None:
    """Insert many source rows (made by `source_row`) in one statement."""
    if rows:
        session.execute(insert(Source), rows)


def add_source(session: Session, **fields: Any) -> None:
    """Insert one source row; ``fields`` as for `source_row`."""
    add_sources(session, [source_row(**fields)])


def sources_at(session: Session, *, locator: str) -> list[Source]:
    """Every earlier attempt at this path or URL, oldest first."""
    return list(
        session.scalars(
            select(Source).where(Source.locator_key == locator_key(locator)).order_by(Source.id)
        )
    )


def count_added(session: Session, *, engine: str, query: str) -> int:
    """Images a search (engine and query) has added to the catalog, over all its runs."""
    return int(
        session.scalar(
            select(func.count()).where(
                Source.engine == engine, Source.query == query, Source.outcome == ADDED
            )
        )
        or 0
    )


def settled_url_keys(session: Session, *, transient: frozenset[str]) -> set[str]:
    """Locator keys of URLs that need not be fetched again: every URL source except those
    that failed for a reason that may pass (a timeout, a 503...)."""
    rows = session.execute(
        select(Source.locator_key, Source.outcome, Source.reason).where(Source.kind == "url")
    )
    return {key for key, outcome, reason in rows if outcome != FAILED or reason not in transient}


def failed_urls(
    session: Session, *, engines: Sequence[str], query: str, reasons: frozenset[str]
) -> list[tuple[str, str | None, str | None]]:
    """URLs a search (``query`` on one of ``engines``) tried whose latest attempt, by whatever
    search, failed for one of ``reasons``: (URL, page it was found on, engine), in the order of
    those failures."""
    mine = (Source.kind == "url", Source.engine.in_(list(engines)), Source.query == query)
    keys = select(Source.locator_key).where(*mine)
    latest = (
        select(func.max(Source.id)).where(Source.locator_key.in_(keys)).group_by(Source.locator_key)
    )
    failed = session.execute(
        select(Source.locator_key, Source.locator)
        .where(
            Source.id.in_(latest),
            Source.outcome == FAILED,
            Source.reason.in_(sorted(reasons)),
        )
        .order_by(Source.id)
    ).all()
    found = {  # the page and engine of this search's latest row for each URL
        key: (page, engine)
        for key, page, engine in session.execute(
            select(Source.locator_key, Source.page_url, Source.engine)
            .where(*mine)
            .order_by(Source.id)
        )
    }
    return [(url, *found[key]) for key, url in failed]


#: Locator keys per query of `recorded_files`.
_KEYS_PER_QUERY = 500


def recorded_files(
    session: Session, *, locator_keys: list[str]
) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """(locator key, image id, info) of every file source at these keys that holds an image
    (not a failure), read a few hundred keys at a time."""
    for start in range(0, len(locator_keys), _KEYS_PER_QUERY):
        rows = session.execute(
            select(Source.locator_key, Source.image_id, Source.info).where(
                Source.locator_key.in_(locator_keys[start : start + _KEYS_PER_QUERY]),
                Source.kind == "file",
                Source.outcome != FAILED,
                Source.image_id.is_not(None),
            )
        )
        yield from ((key, image_id, info) for key, image_id, info in rows)


def image_locators(session: Session) -> Iterator[tuple[int, str]]:
    """(image id, locator) of every source that holds an image, in the order they came."""
    rows = session.execute(
        select(Source.image_id, Source.locator)
        .where(Source.image_id.is_not(None))
        .order_by(Source.id)
    )
    return ((image_id, locator) for image_id, locator in rows if image_id is not None)


def image_provenance(session: Session) -> Iterator[tuple[int, str, str | None, str | None]]:
    """(image id, locator, engine, query) of every source that holds an image, in order."""
    rows = session.execute(
        select(Source.image_id, Source.locator, Source.engine, Source.query)
        .where(Source.image_id.is_not(None))
        .order_by(Source.id)
    )
    return ((i, loc, engine, query) for i, loc, engine, query in rows if i is not None)


def sources_of(session: Session, *, image_id: int) -> list[Source]:
    return list(
        session.scalars(select(Source).where(Source.image_id == image_id).order_by(Source.id))
    )


@dataclass(frozen=True)
class HashRow:
    id: int
    phash: int
    phash_mirror: int
    pixels: int
    status: str
    duplicate_of: int | None
    split: str


#: The columns of a `HashRow`, in its order.
HASH_COLUMNS = (
    Image.id,
    Image.phash,
    Image.phash_mirror,
    Image.width * Image.height,
    Image.status,
    Image.duplicate_of,
    Image.split,
)


def hash_rows(session: Session, *, hash_version: str) -> list[HashRow]:
    """Every image hashed with this version, in id order: what the near-duplicate index needs."""
    rows = session.execute(
        select(*HASH_COLUMNS).where(Image.hash_version == hash_version).order_by(Image.id)
    )
    return [HashRow(*row) for row in rows]


def id_phash_pairs(session: Session, *, hash_version: str) -> Sequence[tuple[int, int]]:
    """(id, signed phash) of every image hashed with this version, as the driver's own
    tuples: read through its cursor, since row objects cost ten times more at a million
    images, and ready to hand to NumPy in one piece."""
    mark = "?" if session.get_bind().dialect.paramstyle == "qmark" else "%s"
    result = session.connection().exec_driver_sql(
        f"SELECT id, phash FROM images WHERE hash_version = {mark}", (hash_version,)
    )
    return result.cursor.fetchall() if result.cursor else []


def phashes_after(session: Session, *, image_id: int, hash_version: str) -> list[tuple[int, int]]:
    """(id, signed phash) of the images after ``image_id`` hashed with this version, in id
    order: what other writers committed since an index was read."""
    return [
        (i, phash)
        for i, phash in session.execute(
            select(Image.id, Image.phash)
            .where(Image.id > image_id, Image.hash_version == hash_version)
            .order_by(Image.id)
        )
    ]


def change_image(
    session: Session,
    *,
    image: Image,
    run_id: int,
    status: str | None = None,
    duplicate_of: int | EllipsisType | None = ...,
    split: str | None = None,
) -> ImageChange | None:
    """Set an image's status, duplicate_of and split, keeping the old values for an undo."""
    new_status = image.status if status is None else status
    new_dup = image.duplicate_of if isinstance(duplicate_of, EllipsisType) else duplicate_of
    new_split = image.split if split is None else split
    if (new_status, new_dup, new_split) == (image.status, image.duplicate_of, image.split):
        return None
    change = ImageChange(
        image_id=image.id,
        run_id=run_id,
        status_before=image.status,
        status_after=new_status,
        duplicate_of_before=image.duplicate_of,
        duplicate_of_after=new_dup,
        split_before=image.split,
        split_after=new_split,
    )
    touch(session, [image.id, image.duplicate_of, new_dup])  # the old group and the new
    image.status, image.duplicate_of, image.split = new_status, new_dup, new_split
    session.add(change)
    return change


def changes_of_run(session: Session, *, run_id: int) -> list[ImageChange]:
    return list(
        session.scalars(
            select(ImageChange).where(ImageChange.run_id == run_id).order_by(ImageChange.id)
        )
    )


def changes_of_image(session: Session, *, image_id: int) -> list[ImageChange]:
    return list(
        session.scalars(
            select(ImageChange).where(ImageChange.image_id == image_id).order_by(ImageChange.id)
        )
    )


def undo_changes(session: Session, *, run_id: int, undo_run_id: int) -> tuple[int, int]:
    """Put back what run ``run_id`` changed, as new changes of ``undo_run_id``.

    An image changed again since then is left as it is and counted as a conflict.
    Returns (reverted, conflicts).
    """
    reverted = conflicts = 0
    for change in reversed(changes_of_run(session, run_id=run_id)):
        image = session.get(Image, change.image_id)
        assert image is not None
        now = (image.status, image.duplicate_of, image.split)
        if now != (change.status_after, change.duplicate_of_after, change.split_after):
            conflicts += 1
            continue
        change_image(
            session,
            image=image,
            run_id=undo_run_id,
            status=change.status_before,
            duplicate_of=change.duplicate_of_before,
            split=change.split_before,
        )
        reverted += 1
    return reverted, conflicts


#: What `image_rows` reads: id, sha256, path, split, status, duplicate_of, width, height,
#: the group's label and its origin.
ImageRow = Row[int, str, str, str, str, int | None, int, int, str | None, str | None]


def image_rows(
    session: Session,
    *,
    split: str | None = None,
    label: str | None = None,
    status: str | None = ACTIVE,
) -> list[ImageRow]:
    """Images in id order with their group's label (a member carries its representative's),
    filtered by split, group label and status (None: any)."""
    rep = aliased(Image)
    group_label = func.coalesce(rep.label, Image.label)
    group_origin = func.coalesce(rep.label_origin, Image.label_origin)
    query = (
        select(
            Image.id,
            Image.sha256,
            Image.path,
            Image.split,
            Image.status,
            Image.duplicate_of,
            Image.width,
            Image.height,
            group_label.label("label"),
            group_origin.label("label_origin"),
        )
        .outerjoin(rep, rep.id == Image.duplicate_of)
        .order_by(Image.id)
    )
    if split is not None:
        query = query.where(Image.split == split)
    if status is not None:
        query = query.where(Image.status == status)
    if label is not None:
        query = query.where(group_label == label)
    return list(session.execute(query))
