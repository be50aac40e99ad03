"""Near-duplicate groups as rows: who represents whom, a group's members, and the pairs people
said are not near duplicates.

A group is a representative (an active image) and the duplicates whose ``duplicate_of``
points at it. Which image represents a group, and which images belong together, is decided
in curator.ingest.dedup; these are the reads and writes it decides from and with.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, aliased

from db.images import ACTIVE, HASH_COLUMNS, HashRow
from db.models import Image, Separation

_CHUNK = 5000
#: Ids per IN list where a caller may pass a whole training set.
_SMALL_CHUNK = 900


def _chunks(ids: list[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


def root_of(session: Session, *, image_id: int) -> int:
    """The image at the end of this image's ``duplicate_of`` chain (guarding against a loop);
    the id itself when there is no such image."""
    seen: set[int] = set()
    image = session.get(Image, image_id)
    while image is not None and image.duplicate_of is not None and image.id not in seen:
        seen.add(image.id)
        image = session.get(Image, image.duplicate_of)
    return image.id if image is not None else image_id


def member_ids(session: Session, *, image_id: int) -> list[int]:
    """The ids of the duplicates whose representative is this image, oldest first."""
    return list(
        session.scalars(select(Image.id).where(Image.duplicate_of == image_id).order_by(Image.id))
    )


def representatives_of(session: Session, *, image_ids: Iterable[int]) -> dict[int, int]:
    """Each of these images (those in the catalog) -> the representative of its group: its
    ``duplicate_of``, or itself when it is one."""
    out: dict[int, int] = {}
    for chunk in _chunks(list(image_ids)):
        rows = session.execute(select(Image.id, Image.duplicate_of).where(Image.id.in_(chunk)))
        out.update((image_id, dup if dup is not None else image_id) for image_id, dup in rows)
    return out


def representatives_of_duplicates(session: Session, *, image_ids: Iterable[int]) -> set[int]:
    """The representatives of those of these images that are duplicates."""
    ids = list(image_ids)
    reps: set[int] = set()
    for start in range(0, len(ids), _SMALL_CHUNK):
        reps.update(
            session.scalars(
                select(Image.duplicate_of).where(
                    Image.id.in_(ids[start : start + _SMALL_CHUNK]),
                    Image.duplicate_of.is_not(None),
                )
            )
        )
    return reps


def group_hash_rows(
    session: Session, *, representatives: Iterable[int], image_ids: Iterable[int]
) -> list[HashRow]:
    """The hash rows of these groups (their representatives and members) and of these
    images: what regrouping them needs."""
    roots, ids = list(representatives), list(image_ids)
    rows = session.execute(
        select(*HASH_COLUMNS).where(
            or_(Image.id.in_(roots), Image.duplicate_of.in_(roots), Image.id.in_(ids))
        )
    )
    return [HashRow(*row) for row in rows]


def misplaced_duplicates(session: Session) -> list[int]:
    """Duplicates whose group no longer holds together: their representative is not active,
    or sits in another split than they do."""
    representative = aliased(Image)
    return list(
        session.scalars(
            select(Image.id)
            .join(representative, Image.duplicate_of == representative.id)
            .where(or_(representative.status != ACTIVE, representative.split != Image.split))
        ).all()
    )


def separated_pairs(
    session: Session, *, image_ids: list[int] | None = None
) -> set[tuple[int, int]]:
    """Pairs (smaller id, larger id) a person said are not near duplicates: every pair, or
    those that involve one of these images."""
    query = select(Separation.image_id, Separation.other_id)
    if image_ids is not None:
        query = query.where(
            or_(Separation.image_id.in_(image_ids), Separation.other_id.in_(image_ids))
        )
    return {(min(a, b), max(a, b)) for a, b in session.execute(query)}


def record_separations(session: Session, *, pairs: list[tuple[int, int]], author: str) -> None:
    """Put on record that each pair of images is not near duplicates, whatever their hashes
    say; a pair already on record (either way round) is not added again."""
    if not pairs:
        return
    known = separated_pairs(session, image_ids=sorted({i for pair in pairs for i in pair}))
    for a, b in pairs:
        pair = (min(a, b), max(a, b))
        if pair not in known:
            session.add(Separation(image_id=pair[0], other_id=pair[1], author=author))
            known.add(pair)
