"""Each near-duplicate group's current label, kept on its representative's row.

The label history (db/labels.py) stays the truth; ``images.label``, ``label_origin`` and
``label_event`` hold what it folds to for a group (its own and its members' events: the
strongest origin, then the latest), so that queues and statistics read a column instead of
folding a million events per request. The functions that write label events or change which
group an image belongs to `touch` the images concerned (db/touched.py); `Catalog.writing`
brings their groups up to date before it commits, in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.labels import RANK, CurrentLabel, current_labels
from db.models import Image
from db.touched import take_touched

_CHUNK = 5000


def refresh_touched(session: Session) -> int:
    """Bring the touched images' groups up to date; returns how many rows changed."""
    touched = take_touched(session)
    return refresh(session, touched) if touched else 0


def _chunks(ids: list[int]) -> Iterable[list[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


def best_label(ids: Iterable[int], labels: dict[int, CurrentLabel]) -> CurrentLabel | None:
    """The label of a group of images: the strongest origin, then the latest event."""
    best: CurrentLabel | None = None
    for image_id in ids:
        current = labels.get(image_id)
        if current is not None and (
            best is None
            or (RANK[current.origin], current.event_id) > (RANK[best.origin], best.event_id)
        ):
            best = current
    return best


def refresh(session: Session, image_ids: Iterable[int]) -> int:
    """Recompute the label of every group these images belong to (or belonged to: pass the
    old representative too) and write the ones that changed."""
    session.flush()
    columns = (Image.id, Image.duplicate_of, Image.label, Image.label_origin, Image.label_event)

    def read(ids: Iterable[int]) -> dict[int, Any]:
        out = {}
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
            groups[rep].append(member)
    labels = current_labels(session, image_ids=[i for g in groups.values() for i in g])
    changes: list[dict] = []
    for rep, group in groups.items():
        row = stored.get(rep)
        if row is None:
            continue
        best = None if row.duplicate_of is not None else best_label(group, labels)
        want = (best.label, best.origin, best.event_id) if best else (None, None, None)
        if want != (row.label, row.label_origin, row.label_event):
            changes.append(_row(rep, *want))
    # A touched image that is a member now holds no group label of its own.
    for image_id, row in rows.items():
        member = row.duplicate_of is not None and image_id not in groups
        if member and (row.label, row.label_origin) != (None, None):
            changes.append(_row(image_id, None, None, None))
    if changes:
        session.execute(update(Image), changes)  # by primary key, in one round trip
    return len(changes)


def _row(image_id: int, label: str | None, origin: str | None, event: int | None) -> dict:
    return {"id": image_id, "label": label, "label_origin": origin, "label_event": event}


def recount(session: Session) -> dict[int, CurrentLabel]:
    """Every group's label folded from the whole history again (the slow way the stored
    columns replace): for checking them."""
    labels = current_labels(session)
    representative_of = dict(
        session.execute(
            select(Image.id, Image.duplicate_of).where(Image.duplicate_of.is_not(None))
        ).all()
    )
    groups: dict[int, list[int]] = {}
    for image_id in labels:
        groups.setdefault(representative_of.get(image_id, image_id), []).append(image_id)
    out = {}
    for rep, members in groups.items():
        best = best_label(members, labels)
        if best is not None:
            out[rep] = best
    return out


def rebuild(session: Session) -> int:
    """Write every group's label again from the whole history (for a catalog whose rows were
    written by other means than curator's functions); returns the rows changed."""
    want = recount(session)
    changes = []
    for image_id, label, origin, event in session.execute(
        select(Image.id, Image.label, Image.label_origin, Image.label_event)
    ):
        best = want.get(image_id)
        target = (best.label, best.origin, best.event_id) if best else (None, None, None)
        if target != (label, origin, event):
            changes.append(_row(image_id, *target))
    for start in range(0, len(changes), _CHUNK):
        session.execute(update(Image), changes[start : start + _CHUNK])
    return len(changes)
