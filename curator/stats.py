"""What is in a catalog (``curator stats``) and everything about one image (``curator show``)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.images import changes_of_image, find_image, sources_of, to_unsigned64
from db.labels import current_labels, group_labels, label_history
from db.models import Image, Run, Source
from db.settings import get_classes


def _pairs(result: Any) -> dict[Any, int]:
    return {key: int(value) for key, value in result}


def catalog_stats(session: Session) -> dict[str, Any]:
    """Counts of images by status, split and current label; sources by outcome and reason."""
    by_status = _pairs(session.execute(select(Image.status, func.count()).group_by(Image.status)))
    by_split = _pairs(
        session.execute(
            select(Image.split, func.count()).where(Image.status == "active").group_by(Image.split)
        )
    )
    active = set(session.scalars(select(Image.id).where(Image.status == "active")))
    labels = group_labels(session)
    by_label: Counter[str] = Counter()
    by_origin: Counter[str] = Counter()
    for image_id, current in labels.items():
        if image_id in active:
            by_label[current.label] += 1
            by_origin[current.origin] += 1
    outcomes = _pairs(
        session.execute(select(Source.outcome, func.count()).group_by(Source.outcome))
    )
    reasons = _pairs(
        session.execute(
            select(Source.reason, func.count())
            .where(Source.outcome == "failed")
            .group_by(Source.reason)
        )
    )
    total_bytes = session.scalar(select(func.coalesce(func.sum(Image.bytes), 0)))
    runs = _pairs(session.execute(select(Run.kind, func.count()).group_by(Run.kind)))
    return {
        "classes": get_classes(session),
        "images": {
            "total": sum(by_status.values()),
            "active": by_status.get("active", 0),
            "duplicate": by_status.get("duplicate", 0),
            "bytes": int(total_bytes or 0),
        },
        "splits": {s: by_split.get(s, 0) for s in ("train", "val", "test")},
        "labels": {
            "by_class": dict(sorted(by_label.items())),
            "by_origin": dict(sorted(by_origin.items())),
            "unlabeled": len(active) - sum(by_label.values()),
        },
        "sources": {
            "total": sum(outcomes.values()),
            "by_outcome": dict(sorted(outcomes.items())),
            "failed_by_reason": dict(sorted((k or "unknown", v) for k, v in reasons.items())),
        },
        "runs": dict(sorted(runs.items())),
    }


def _time(value: Any) -> str | None:
    """UTC, the same from every database (SQLite hands back naive times, PostgreSQL aware)."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="seconds")


def image_details(session: Session, *, ref: str, home: str) -> dict[str, Any]:
    """One image: its row, file, sources, label history and status changes."""
    image = find_image(session, ref=ref)
    current = current_labels(session, image_ids=[image.id]).get(image.id)
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
        "label": current.label if current else None,
        "label_origin": current.origin if current else None,
        "sources": [
            {
                "locator": s.locator,
                "outcome": s.outcome,
                "page_url": s.page_url,
                "engine": s.engine,
                "query": s.query,
                "run": s.run_id,
                "time": _time(s.created_at),
            }
            for s in sources_of(session, image_id=image.id)
        ],
        "labels": [
            {
                "label": e.label,
                "origin": e.origin,
                "author": e.author,
                "run": e.run_id,
                "time": _time(e.created_at),
            }
            for e in label_history(session, image_id=image.id)
        ],
        "changes": [
            {
                "run": c.run_id,
                "status": [c.status_before, c.status_after],
                "duplicate_of": [c.duplicate_of_before, c.duplicate_of_after],
                "split": [c.split_before, c.split_after],
                "time": _time(c.created_at),
            }
            for c in changes_of_image(session, image_id=image.id)
        ],
    }
