"""Each near-duplicate group's current label, kept on its representative's row.

The label history (db/labels.py) stays the truth; ``images.label``, ``label_origin`` and
``label_event`` hold what it folds to for a group (its own and its members' events: the
strongest origin, then the latest), and ``human_conflict`` whether its members' human labels
disagree, so that queues and statistics read a column instead of folding a million events
per request. The functions that write label events or change which
group an image belongs to `touch` the images concerned (db/touched.py); `Catalog.writing`
brings their groups up to date before it commits, in the same transaction
(`db.rankings.refresh_kept`, which then brings the ranked queues up to date too).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Row, select, update
from sqlalchemy.orm import Session

from db.labels import CurrentLabel, best_label, current_labels
from db.models import Image

_CHUNK = 5000


def _chunks(ids: list[int]) -> Iterable[list[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


def human_conflict(ids: Iterable[int], labels: dict[int, CurrentLabel]) -> bool:
    """Whether people gave the members of a group different labels."""
    humans = {labels[i].label for i in ids if i in labels and labels[i].origin == "human"}
    return len(humans) > 1


#: A group as its label sees it: id, representative, label, origin, event, conflict.
LabelRow = Row[int, int | None, str | None, str | None, int | None, bool]


def refresh(session: Session, image_ids: Iterable[int]) -> int:
    """Recompute the label of every group these images belong to (or belonged to: pass the
    old representative too) and write the ones that changed."""
    session.flush()
    columns = (
        Image.id,
        Image.duplicate_of,
        Image.label,
        Image.label_origin,
        Image.label_event,
        Image.human_conflict,
    )

    def read(ids: Iterable[int]) -> dict[int, LabelRow]:
        out: dict[int, LabelRow] = {}
        for chunk in _chunks(sorted(ids)):
            out.update(
                (r.id, r) for r in session.execute(select(*columns).where(Image.id.in_(chunk)))
            )
        return out

    rows = read(set(image_ids))
    reps = sorted({row.duplicate_of or row.id for row in rows.values()})
    # Representatives usually are the touched images themselves: read only the others.
    stored = {rep: rows[rep] for rep in reps if rep in rows}
    stored.update(read(set(reps) - stored.keys()))
    groups: dict[int, list[int]] = {rep: [rep] for rep in reps}
    for chunk in _chunks(reps):
        for member, rep in session.execute(
            select(Image.id, Image.duplicate_of).where(Image.duplicate_of.in_(chunk))
        ):
            if rep is not None:
                groups[rep].append(member)
    labels = current_labels(session, image_ids=[i for g in groups.values() for i in g])
    changes: list[dict] = []
    for rep, group in groups.items():
        row = stored.get(rep)
        if row is None:
            continue
        alone = row.duplicate_of is None
        best = best_label(group, labels) if alone else None
        want = (
            *((best.label, best.origin, best.event_id) if best else (None, None, None)),
            alone and human_conflict(group, labels),
        )
        if want != (row.label, row.label_origin, row.label_event, row.human_conflict):
            changes.append(_row(rep, *want))
    # A touched image that is a member now holds no group label of its own.
    for image_id, row in rows.items():
        member = row.duplicate_of is not None and image_id not in groups
        if member and (row.label, row.label_origin, row.human_conflict) != (None, None, False):
            changes.append(_row(image_id, None, None, None, False))
    if changes:
        session.execute(update(Image), changes)  # by primary key, in one round trip
    return len(changes)


def _row(
    image_id: int, label: str | None, origin: str | None, event: int | None, conflict: bool
) -> dict:
    return {
        "id": image_id,
        "label": label,
        "label_origin": origin,
        "label_event": event,
        "human_conflict": conflict,
    }


def _groups(session: Session, labels: dict[int, CurrentLabel]) -> dict[int, list[int]]:
    """The labeled images of each group, by representative."""
    representative_of = dict(
        session.execute(
            select(Image.id, Image.duplicate_of).where(Image.duplicate_of.is_not(None))
        ).all()
    )
    groups: dict[int, list[int]] = {}
    for image_id in labels:
        groups.setdefault(representative_of.get(image_id) or image_id, []).append(image_id)
    return groups


def recount(session: Session) -> dict[int, CurrentLabel]:
    """Every group's label folded from the whole history again (the slow way the stored
    columns replace): for checking them."""
    labels = current_labels(session)
    out = {}
    for rep, members in _groups(session, labels).items():
        best = best_label(members, labels)
        if best is not None:
            out[rep] = best
    return out


def recount_conflicts(session: Session) -> set[int]:
    """The representatives whose members' human labels disagree, from the whole history."""
    labels = current_labels(session)
    return {
        rep for rep, members in _groups(session, labels).items() if human_conflict(members, labels)
    }


@dataclass(frozen=True)
class KeptLabel:
    """What a row holds of its group's label: the label and its origin (None on a member or
    an unlabeled group), and whether people gave the group's members different labels."""

    label: str | None
    origin: str | None
    conflict: bool


def kept_labels(session: Session, *, image_ids: Iterable[int]) -> dict[int, KeptLabel]:
    """The group label columns of these images (of those in the catalog), by id."""
    out: dict[int, KeptLabel] = {}
    for chunk in _chunks(sorted(set(image_ids))):
        rows = session.execute(
            select(Image.id, Image.label, Image.label_origin, Image.human_conflict).where(
                Image.id.in_(chunk)
            )
        )
        out.update(
            (image_id, KeptLabel(label, origin, bool(conflict)))
            for image_id, label, origin, conflict in rows
        )
    return out


def conflicted_groups(session: Session) -> set[int]:
    """The representatives marked as holding disagreeing human labels (the kept column)."""
    return set(session.scalars(select(Image.id).where(Image.human_conflict.is_(True))))


def rebuild(session: Session) -> int:
    """Write every group's label again from the whole history (for a catalog whose rows were
    written by other means than curator's functions); returns the rows changed."""
    want = recount(session)
    conflicts = recount_conflicts(session)
    changes = []
    for image_id, label, origin, event, conflict in session.execute(
        select(Image.id, Image.label, Image.label_origin, Image.label_event, Image.human_conflict)
    ):
        best = want.get(image_id)
        target = (
            *((best.label, best.origin, best.event_id) if best else (None, None, None)),
            image_id in conflicts,
        )
        if target != (label, origin, event, conflict):
            changes.append(_row(image_id, *target))
    for start in range(0, len(changes), _CHUNK):
        session.execute(update(Image), changes[start : start + _CHUNK])
    return len(changes)
