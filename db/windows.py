"""The window hashes of ``image_windows``: what crop matching looks a cropped copy's photo up
by (curator/ingest/windows.py measures them, when crop matching first needs them)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, exists, func, insert, select
from sqlalchemy.orm import Session

from db.models import Image, ImageWindows


def window_rows(session: Session, *, version: str) -> list[tuple[int, bytes]]:
    """(image id, window records) of every image whose windows are of this version."""
    query = (
        select(ImageWindows.image_id, ImageWindows.windows)
        .where(ImageWindows.version == version)
        .order_by(ImageWindows.image_id)
    )
    return [(int(i), bytes(w)) for i, w in session.execute(query)]


def _without(version: str, hash_version: str) -> Sequence:
    # An anti-join: PostgreSQL runs NOT IN (subquery) as a scan per row once the subquery
    # outgrows its memory.
    has = select(ImageWindows.image_id).where(
        ImageWindows.image_id == Image.id, ImageWindows.version == version
    )
    return (Image.hash_version == hash_version, ~exists(has))


def missing_windows(
    session: Session, *, version: str, hash_version: str, after: int = 0, limit: int = 500
) -> list[tuple[int, str, str]]:
    """(id, sha256, path) of the hashed images without windows of this version, by id after
    ``after``."""
    query = (
        select(Image.id, Image.sha256, Image.path)
        .where(Image.id > after, *_without(version, hash_version))
        .order_by(Image.id)
        .limit(limit)
    )
    return [(int(i), str(s), str(p)) for i, s, p in session.execute(query)]


def count_hashed(session: Session, *, hash_version: str) -> int:
    """How many images are hashed with this version (what crop matching would read)."""
    query = select(func.count()).select_from(Image).where(Image.hash_version == hash_version)
    return int(session.scalar(query) or 0)


def count_missing_windows(session: Session, *, version: str, hash_version: str) -> int:
    query = select(func.count()).select_from(Image).where(*_without(version, hash_version))
    return int(session.scalar(query) or 0)


def add_windows(session: Session, rows: Sequence[tuple[int, bytes]], *, version: str) -> None:
    """Store these images' windows (replacing those of another version)."""
    ids = [image_id for image_id, _ in rows]
    if ids:
        session.execute(delete(ImageWindows).where(ImageWindows.image_id.in_(ids)))
        session.execute(
            insert(ImageWindows),
            [{"image_id": i, "version": version, "windows": w} for i, w in rows],
        )
