"""What is in a catalog (``curator stats``) and everything about one image (``curator show``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from db.grouplabels import recount_conflicts
from db.images import (
    changes_of_image,
    find_image,
    image_by_id,
    members_of,
    sources_of,
    to_unsigned64,
)
from db.labels import conflicts_of, current_labels, label_history
from db.queues import count_conflicts
from db.runs import run_counts
from db.settings import get_classes
from db.tallies import recount, tallies

if TYPE_CHECKING:
    from db.labels import CurrentLabel
    from db.models import Image, ImageChange, LabelConflict, LabelEvent, Source


def catalog_stats(session: Session) -> dict[str, Any]:
    """Counts of images by status, split and current label; sources by outcome and reason.

    Read from the tallies the database keeps (db/tallies.py): the same answer as counting
    the rows, in one small read at any catalog size.
    """
    return _stats(session, tallies(session), count_conflicts(session))


def counted_stats(session: Session) -> dict[str, Any]:
    """`catalog_stats` counted from the rows themselves, for checking the tallies."""
    return _stats(session, recount(session), len(recount_conflicts(session)))


def _with(prefix: str, tally: dict[str, int]) -> dict[str, int]:
    return dict(sorted((k[len(prefix) :], v) for k, v in tally.items() if k.startswith(prefix)))


def _stats(session: Session, tally: dict[str, int], conflicts: int) -> dict[str, Any]:
    by_status, by_split = _with("status:", tally), _with("split:", tally)
    by_label, outcomes = _with("label:", tally), _with("outcome:", tally)
    runs = run_counts(session)
    return {
        "classes": get_classes(session),
        "images": {
            "total": tally.get("images", 0),
            "active": by_status.get("active", 0),
            "duplicate": by_status.get("duplicate", 0),
            "bytes": tally.get("bytes", 0),
        },
        "splits": {s: by_split.get(s, 0) for s in ("train", "val", "test")},
        "labels": {
            "by_class": by_label,
            "by_origin": _with("origin:", tally),
            "unlabeled": by_status.get("active", 0) - sum(by_label.values()),
            # Groups whose members people labeled differently: out of training until settled.
            "conflicts": conflicts,
        },
        "sources": {
            "total": sum(outcomes.values()),
            "by_outcome": outcomes,
            "failed_by_reason": _with("reason:", tally),
        },
        "runs": dict(sorted(runs.items())),
    }


def _time(value: datetime | None) -> str | None:
    """UTC, the same from every database (SQLite hands back naive times, PostgreSQL aware)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="seconds")


def image_details(session: Session, *, ref: str, home: str) -> dict[str, Any]:
    """One image: its row, file, sources, label history, its group (members side by side,
    each with its own label), the label conflicts met, and status changes. ``label`` is the
    group's label, the one every command goes by; ``own_label`` the image's own."""
    image = find_image(session, ref=ref)
    rep = image_by_id(session, image_id=image.duplicate_of) if image.duplicate_of else image
    assert rep is not None
    members = [rep, *members_of(session, image_id=rep.id)]
    own = current_labels(session, image_ids=[m.id for m in members])
    mine = own.get(image.id)
    return {
        **_image_row(image, home),
        "label": rep.label,
        "label_origin": rep.label_origin,
        "own_label": mine.label if mine else None,
        "own_label_origin": mine.origin if mine else None,
        "group": _group(rep, members, own) if len(members) > 1 else None,
        "label_conflicts": [
            _conflict(c) for c in conflicts_of(session, image_ids=[m.id for m in members])
        ],
        "sources": [_source(s) for s in sources_of(session, image_id=image.id)],
        "labels": [_event(e) for e in label_history(session, image_id=image.id)],
        "changes": [_change(c) for c in changes_of_image(session, image_id=image.id)],
    }


def _image_row(image: Image, home: str) -> dict[str, Any]:
    return {
        "id": image.id,
        "sha256": image.sha256,
        "path": f"{home}/{image.path}",
        "format": image.format,
        "width": image.width,
        "height": image.height,
        "bytes": image.bytes,
        "phash": f"{to_unsigned64(image.phash):016x}",
        "phash_mirror": f"{to_unsigned64(image.phash_mirror):016x}",
        "hash_version": image.hash_version,
        "status": image.status,
        "duplicate_of": image.duplicate_of,
        "split": image.split,
        "added": _time(image.created_at),
    }


def _group(rep: Image, members: list[Image], own: dict[int, CurrentLabel]) -> dict[str, Any]:
    return {
        "representative": rep.id,
        "human_conflict": bool(rep.human_conflict),
        "members": [
            {
                "id": m.id,
                "sha256": m.sha256,
                "width": m.width,
                "height": m.height,
                "split": m.split,
                "status": m.status,
                "label": own[m.id].label if m.id in own else None,
                "origin": own[m.id].origin if m.id in own else None,
            }
            for m in members
        ],
    }


def _conflict(c: LabelConflict) -> dict[str, Any]:
    return {
        "image": c.image_id,
        "label": c.label,
        "origin": c.origin,
        "held": c.held,
        "held_origin": c.held_origin,
        "outcome": c.outcome,
        "run": c.run_id,
        "author": c.author,
        "time": _time(c.created_at),
    }


def _source(s: Source) -> dict[str, Any]:
    return {
        "locator": s.locator,
        "outcome": s.outcome,
        "page_url": s.page_url,
        "engine": s.engine,
        "query": s.query,
        "run": s.run_id,
        "time": _time(s.created_at),
    }


def _event(e: LabelEvent) -> dict[str, Any]:
    return {
        "label": e.label,
        "origin": e.origin,
        "author": e.author,
        "run": e.run_id,
        "time": _time(e.created_at),
    }


def _change(c: ImageChange) -> dict[str, Any]:
    return {
        "run": c.run_id,
        "status": [c.status_before, c.status_after],
        "duplicate_of": [c.duplicate_of_before, c.duplicate_of_after],
        "split": [c.split_before, c.split_after],
        "time": _time(c.created_at),
    }
