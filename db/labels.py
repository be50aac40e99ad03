"""Label events: an append-only history from which the current label is derived.

A decision is never overwritten: a relabel or an undo is a new event. The current label of an
image is the latest non-empty label of its strongest origin, where a person outranks an explicit
import label, which outranks a search query's weak label, which outranks a model's guess.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from db.errors import CatalogError, UnknownClass, UnknownImage
from db.models import Image, LabelConflict, LabelEvent, utcnow
from db.settings import REJECT, check_class_names, get_classes, set_classes
from db.touched import touch

#: Origins from strongest to weakest.
ORIGINS: tuple[str, ...] = ("human", "import", "query", "model")
RANK = {origin: len(ORIGINS) - i for i, origin in enumerate(ORIGINS)}
#: Origins that only suggest a label; review confirms or corrects them.
WEAK_ORIGINS: tuple[str, ...] = ("import", "query", "model")

_CHUNK = 5000


@dataclass(frozen=True)
class CurrentLabel:
    label: str
    origin: str
    event_id: int


MAX_AUTHOR = 128


def check_author(author: str) -> str:
    author = author.strip()
    if not author or len(author) > MAX_AUTHOR:
        raise CatalogError(f"an author name needs 1 to {MAX_AUTHOR} characters")
    return author


def check_label(session: Session, *, label: str) -> str:
    """Return the label if it is one of the catalog's classes or ``reject``; raise otherwise."""
    classes = get_classes(session)
    if label not in classes and label != REJECT:
        raise UnknownClass(label, classes)
    return label


def latest_event(session: Session, *, image_id: int, origin: str) -> LabelEvent | None:
    return session.scalars(
        select(LabelEvent)
        .where(LabelEvent.image_id == image_id, LabelEvent.origin == origin)
        .order_by(LabelEvent.id.desc())
        .limit(1)
    ).first()


def label_recorded(session: Session, *, image_id: int, label: str | None, origin: str) -> bool:
    """Whether this exact decision (image, label, origin) was ever recorded."""
    return (
        session.scalar(
            select(LabelEvent.id)
            .where(
                LabelEvent.image_id == image_id,
                LabelEvent.origin == origin,
                LabelEvent.label == label,
            )
            .limit(1)
        )
        is not None
    )


def record_label(
    session: Session,
    *,
    image_id: int,
    label: str | None,
    origin: str,
    author: str,
    run_id: int | None = None,
    only_if_changed: bool = False,
) -> LabelEvent | None:
    """Append a label event. ``label=None`` withdraws that origin's earlier decision.

    With ``only_if_changed``, nothing is written when the latest event of the same origin
    already says the same thing (so re-running an import adds no events).
    """
    if origin not in RANK:
        raise ValueError(f"unknown label origin {origin!r}")
    author = check_author(author)
    if label is not None:
        check_label(session, label=label)
    if only_if_changed:
        last = latest_event(session, image_id=image_id, origin=origin)
        if last is not None and last.label == label:
            return None
    event = LabelEvent(image_id=image_id, label=label, origin=origin, author=author, run_id=run_id)
    session.add(event)
    session.flush()
    touch(session, [image_id])
    return event


def add_label_events(
    session: Session,
    *,
    image_ids: list[int],
    label: str,
    origin: str,
    author: str,
    run_id: int | None = None,
) -> None:
    """Append the same decision for many images in one statement (label checked once)."""
    if not image_ids:
        return
    if origin not in RANK:
        raise ValueError(f"unknown label origin {origin!r}")
    author = check_author(author)
    check_label(session, label=label)
    now = utcnow()
    session.execute(
        insert(LabelEvent),
        [
            {
                "image_id": i,
                "label": label,
                "origin": origin,
                "author": author,
                "run_id": run_id,
                "created_at": now,
            }
            for i in image_ids
        ],
    )
    touch(session, image_ids)


def label_images(
    session: Session,
    *,
    image_ids: list[int],
    label: str | None,
    author: str,
    run_id: int | None = None,
) -> list[LabelEvent]:
    """A person's decision for these images (``label=None`` withdraws their decision).

    A decision about a group's representative is a decision about the group: its members
    get the same event (so members labeled differently before agree again). A member named
    by itself gets a decision of its own. Raises `UnknownImage` if an id is not in the
    catalog, `UnknownClass` for a label that is neither a class nor ``reject``.
    """
    author = check_author(author)
    if label is not None:
        check_label(session, label=label)
    ids = list(dict.fromkeys(image_ids))
    found: set[int] = set()
    for chunk in _chunks(ids):
        found.update(session.scalars(select(Image.id).where(Image.id.in_(chunk))))
    for image_id in ids:
        if image_id not in found:
            raise UnknownImage(str(image_id))
    ids += [m for m in _members_of(session, ids) if m not in found]
    events = [
        LabelEvent(image_id=i, label=label, origin="human", author=author, run_id=run_id)
        for i in ids
    ]
    session.add_all(events)
    session.flush()
    touch(session, ids)
    return events


def _members_of(session: Session, ids: list[int]) -> list[int]:
    """The duplicates whose representative is one of these images."""
    members: list[int] = []
    for chunk in _chunks(ids):
        members += session.scalars(
            select(Image.id).where(Image.duplicate_of.in_(chunk)).order_by(Image.id)
        )
    return members


def undo_events(
    session: Session, *, event_ids: list[int], author: str, run_id: int
) -> tuple[list[LabelEvent], list[int]]:
    """Undo human decisions of the review run ``run_id`` by appending events that restore
    what each image had before.

    Only this run's own decisions are undone (another reviewer's, or one made from the
    command line, is not this page's to withdraw), and each only while it is still its
    image's latest human decision (nobody decided again since). The events are read before
    anything is written, so an undo made by this call is never undone by it. Returns (new
    events, skipped ids).
    """
    author = check_author(author)
    wanted = list(dict.fromkeys(event_ids))
    found: dict[int, LabelEvent] = {}
    for chunk in _chunks(wanted):
        found.update(
            (e.id, e) for e in session.scalars(select(LabelEvent).where(LabelEvent.id.in_(chunk)))
        )
    mine = [
        found[i]
        for i in wanted
        if i in found and found[i].origin == "human" and found[i].run_id == run_id
    ]
    latest = _latest_human(session, [e.image_id for e in mine])
    undoable = [e for e in mine if latest.get(e.image_id) == e.id]
    before = _human_before(session, undoable)
    restored = [
        LabelEvent(
            image_id=e.image_id,
            label=before.get(e.image_id),
            origin="human",
            author=author,
            run_id=run_id,
        )
        for e in undoable
    ]
    session.add_all(restored)
    session.flush()
    touch(session, [e.image_id for e in restored])
    done = {e.id for e in undoable}
    return restored, [i for i in event_ids if i not in done]


def _latest_human(session: Session, image_ids: list[int]) -> dict[int, int]:
    """Each image's latest human event id."""
    latest: dict[int, int] = {}
    for chunk in _chunks(sorted(set(image_ids))):
        rows = session.execute(
            select(LabelEvent.image_id, func.max(LabelEvent.id))
            .where(LabelEvent.image_id.in_(chunk), LabelEvent.origin == "human")
            .group_by(LabelEvent.image_id)
        )
        latest.update({image_id: event_id for image_id, event_id in rows})
    return latest


def _human_before(session: Session, events: list[LabelEvent]) -> dict[int, str | None]:
    """The human label each event's image had before it (each event being its image's
    latest human one, "before" is every other human event of the image)."""
    before: dict[int, str | None] = {}
    for start in range(0, len(events), _CHUNK):
        part = events[start : start + _CHUNK]
        previous = (
            select(func.max(LabelEvent.id))
            .where(
                LabelEvent.image_id.in_([e.image_id for e in part]),
                LabelEvent.origin == "human",
                LabelEvent.id.not_in([e.id for e in part]),
            )
            .group_by(LabelEvent.image_id)
        )
        rows = session.execute(
            select(LabelEvent.image_id, LabelEvent.label).where(
                LabelEvent.id.in_(previous.scalar_subquery())
            )
        )
        before.update({image_id: label for image_id, label in rows})
    return before


def held_label(session: Session, *, image_id: int) -> CurrentLabel | None:
    """The label this image's near-duplicate group holds (its members' events folded: the
    strongest origin, then the latest), from the events on record."""
    image = session.get(Image, image_id)
    if image is None:
        raise UnknownImage(str(image_id))
    rep = image.duplicate_of or image.id
    members = [rep, *session.scalars(select(Image.id).where(Image.duplicate_of == rep))]
    return best_label(members, current_labels(session, image_ids=members))


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


def record_conflict(
    session: Session,
    *,
    image_id: int,
    label: str,
    origin: str,
    author: str,
    held: CurrentLabel,
    outcome: str,
    run_id: int | None = None,
) -> bool:
    """Put a weak label that met a different held one on record, once: the same conflict
    met again (a rerun of the import) adds no row. Returns whether a row was added."""
    same = session.scalar(
        select(LabelConflict.id)
        .where(
            LabelConflict.image_id == image_id,
            LabelConflict.label == label,
            LabelConflict.origin == origin,
            LabelConflict.held == held.label,
            LabelConflict.outcome == outcome,
        )
        .limit(1)
    )
    if same is not None:
        return False
    session.add(
        LabelConflict(
            image_id=image_id,
            run_id=run_id,
            label=label,
            origin=origin,
            author=author,
            held=held.label,
            held_origin=held.origin,
            outcome=outcome,
        )
    )
    return True


def conflicts_of(session: Session, *, image_ids: list[int]) -> list[LabelConflict]:
    """The recorded label conflicts of these images, oldest first."""
    out: list[LabelConflict] = []
    for chunk in _chunks(sorted(set(image_ids))):
        out += session.scalars(select(LabelConflict).where(LabelConflict.image_id.in_(chunk)))
    return sorted(out, key=lambda c: c.id)


def count_events(session: Session, *, run_id: int) -> int:
    return int(session.scalar(select(func.count()).where(LabelEvent.run_id == run_id)) or 0)


def _chunks(ids: list[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]


def latest_labels(session: Session, *, image_ids: Iterable[int], origin: str) -> dict[int, str]:
    """The label of each image's latest event of ``origin`` ("" where it withdrew one), for
    the images that have one: a query per chunk of images, not one per image."""
    out: dict[int, str] = {}
    for chunk in _chunks(sorted(set(image_ids))):
        found = session.execute(
            select(LabelEvent.image_id, LabelEvent.label)
            .where(LabelEvent.image_id.in_(chunk), LabelEvent.origin == origin)
            .order_by(LabelEvent.id)
        )
        out.update((image_id, label or "") for image_id, label in found)
    return out


def current_labels(
    session: Session, *, image_ids: Iterable[int] | None = None
) -> dict[int, CurrentLabel]:
    """The current label of each image that has one, keyed by image id."""
    if image_ids is None:
        return _current_labels(session, None)
    result: dict[int, CurrentLabel] = {}
    for chunk in _chunks(sorted(set(image_ids))):
        result.update(_current_labels(session, chunk))
    return result


def _current_labels(session: Session, ids: list[int] | None) -> dict[int, CurrentLabel]:
    latest = select(func.max(LabelEvent.id).label("id")).group_by(
        LabelEvent.image_id, LabelEvent.origin
    )
    if ids is not None:
        latest = latest.where(LabelEvent.image_id.in_(ids))
    rows = session.execute(
        select(LabelEvent.image_id, LabelEvent.label, LabelEvent.origin, LabelEvent.id).where(
            LabelEvent.id.in_(latest.scalar_subquery())
        )
    )
    best: dict[int, CurrentLabel] = {}
    for image_id, label, origin, event_id in rows:
        if label is None:
            continue
        held = best.get(image_id)
        if held is None or RANK[origin] > RANK[held.origin]:
            best[image_id] = CurrentLabel(label=label, origin=origin, event_id=event_id)
    return best


def group_labels(session: Session) -> dict[int, CurrentLabel]:
    """The label of each near-duplicate group, keyed by its representative (active) image.

    A decision about any member counts for the whole group: the strongest origin wins, then
    the latest. An unlabeled larger copy that became the representative thus inherits the
    label its smaller original was given. Read from the columns db/grouplabels.py keeps.
    """
    rows = session.execute(
        select(Image.id, Image.label, Image.label_origin, Image.label_event).where(
            Image.label.is_not(None)
        )
    )
    return {
        # The three columns are kept together: a labeled group has its origin and event.
        image_id: CurrentLabel(label=label or "", origin=origin or "", event_id=event or 0)
        for image_id, label, origin, event in rows
    }


def label_history(session: Session, *, image_id: int) -> list[LabelEvent]:
    return list(
        session.scalars(
            select(LabelEvent).where(LabelEvent.image_id == image_id).order_by(LabelEvent.id)
        )
    )


def replace_classes(session: Session, *, classes: list[str]) -> list[str]:
    """Replace the class names (`curator classes A B ...`), checked as stored (a name given
    decomposed is the same name); a class that images are labeled with cannot be removed.
    Returns the names as stored."""
    wanted = check_class_names(classes)
    removed = set(get_classes(session)) - set(wanted)
    in_use = {c.label for c in current_labels(session).values() if c.label in removed}
    if in_use:
        raise CatalogError(
            f"images are labeled {', '.join(sorted(in_use))}; relabel them before removing "
            "that class"
        )
    set_classes(session, classes=wanted)
    return wanted
