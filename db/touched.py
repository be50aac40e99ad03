"""Images whose group label a write transaction may have changed (see db/grouplabels.py)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.orm import Session

_KEY = "curator_touched_images"


def touch(session: Session, image_ids: Iterable[int | None]) -> None:
    """Mark images whose group label may have changed: label events written for them, or
    the group they belong to changed (pass the old representative too)."""
    session.info.setdefault(_KEY, set()).update(i for i in image_ids if i is not None)


def take_touched(session: Session) -> set[int]:
    """The images marked so far in this session, forgetting them."""
    return session.info.pop(_KEY, None) or set()


_SCORED = "curator_scored_images"


def mark_scored(session: Session, image_ids: Iterable[int]) -> None:
    """Mark images whose predictions were written or deleted in this transaction (their
    places in the ranked queues may have changed; see db/rankings.py)."""
    session.info.setdefault(_SCORED, set()).update(image_ids)


def take_scored(session: Session) -> set[int]:
    """The images marked scored so far in this session, forgetting them."""
    return session.info.pop(_SCORED, None) or set()


_MEASURED = "curator_measured_images"


def mark_measured(session: Session, image_ids: Iterable[int]) -> None:
    """Mark images whose properties were written in this transaction: their places in the
    issue queues alone may have changed (an import measures every image it adds, and the
    other queues need not be looked at for that)."""
    session.info.setdefault(_MEASURED, set()).update(image_ids)


def take_measured(session: Session) -> set[int]:
    """The images marked measured so far in this session, forgetting them."""
    return session.info.pop(_MEASURED, None) or set()


_VECTORED = "curator_vectored_images"


def mark_vectored(session: Session, image_ids: Iterable[int]) -> None:
    """Mark images whose outlier score or cluster moved in this transaction, in the set the
    vector rankings go by: their places in the ``outlier`` and ``clusters`` queues alone may
    have changed."""
    session.info.setdefault(_VECTORED, set()).update(image_ids)


def take_vectored(session: Session) -> set[int]:
    """The images marked vectored so far in this session, forgetting them."""
    return session.info.pop(_VECTORED, None) or set()
