"""Many rows in few statements (db/bulk.py): what goes to the driver directly comes back as
it went in, on SQLite and PostgreSQL, with real catalogs."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from db import bulk
from db.bulk import insert_rows
from db.catalog import open_catalog
from db.images import add_image
from db.models import Prediction, Ranked
from db.registry import DONE, create_model
from db.runs import start_run

pytestmark = pytest.mark.backends


def _images(session, count: int) -> list[int]:
    run_id = start_run(session, kind="test", params={}).id
    return [
        add_image(
            session, sha256=f"{i:064x}", phash=i, phash_mirror=i, hash_version="phash64-v1",
            width=8, height=8, format="JPEG", bytes=100, path=f"images/{i}.jpg",
            split="train", run_id=run_id,
        ).id
        for i in range(1, count + 1)
    ]  # fmt: skip


def test_rows_sent_directly_come_back_as_they_went(db_url, monkeypatch) -> None:
    monkeypatch.setattr(bulk, "ROWS_PER_STATEMENT", 3)  # several statements, a short last one
    catalog = open_catalog(db_url)
    try:
        with catalog.writing() as session:
            ids = _images(session, 8)
            model = create_model(
                session, status=DONE, config={}, training={}, classes=["a", "b"],
                path="models/x", torch_version="x", curator_version="x",
            ).id  # fmt: skip
            when = datetime(2026, 12, 3, 16, 30, 1, 123456, tzinfo=UTC)
            hostile = "O'Brien\"); DROP TABLE images; -- é 🙂 %s ?"
            rows = []
            for n, image_id in enumerate(ids):
                row = {
                    "model_id": model, "image_id": image_id, "probs": [0.25, 0.75],
                    "predicted": hostile if n == 2 else "b", "confidence": 0.75,
                    "margin": 0.5, "in_sample": n % 2 == 0, "created_at": when,
                }  # fmt: skip
                # The same columns in another order: each value still goes to its column.
                rows.append(dict(reversed(row.items())) if n % 3 == 0 else row)
            insert_rows(session, Prediction, rows)
            insert_rows(session, Ranked, [{"queue": "bulk-test", "image_id": i, "score": -i / 3}
                                          for i in ids])  # fmt: skip
            insert_rows(session, Ranked, [])
        with catalog.reading() as session:
            got = session.scalars(select(Prediction).order_by(Prediction.image_id)).all()
            assert [p.image_id for p in got] == ids
            assert [p.in_sample for p in got] == [n % 2 == 0 for n in range(8)]
            assert all(p.probs == [0.25, 0.75] and p.margin == 0.5 for p in got)
            assert got[2].predicted == hostile and got[3].predicted == "b"
            # SQLite keeps no zone (the catalog writes UTC); PostgreSQL gives it back.
            zoned = [p.created_at.replace(tzinfo=p.created_at.tzinfo or UTC) for p in got]
            assert zoned == [when] * len(got)
            # (a queue of no kept ranking's name: the commit brings those up to date itself)
            ranked = session.execute(
                select(Ranked.image_id, Ranked.score).where(Ranked.queue == "bulk-test")
            ).all()
            assert sorted(ranked) == [(i, pytest.approx(-i / 3)) for i in ids]
    finally:
        catalog.dispose()


def test_rows_leaving_out_a_column_with_a_default_get_it(db_url) -> None:
    """``created_at`` left out: SQLAlchemy's statement fills in its default."""
    catalog = open_catalog(db_url)
    try:
        with catalog.writing() as session:
            [image_id] = _images(session, 1)
            model = create_model(
                session, status=DONE, config={}, training={}, classes=["a"], path="m",
                torch_version="x", curator_version="x",
            ).id  # fmt: skip
            row = {"model_id": model, "image_id": image_id, "probs": [1.0], "predicted": "a",
                   "confidence": 1.0, "margin": 1.0, "in_sample": False}  # fmt: skip
            assert not bulk._direct(session.get_bind().dialect, Prediction.__table__, [row])
            # Nor do rows that name different columns, or one the table lacks.
            ranked = [{"queue": "q", "image_id": image_id, "score": 1.0}]
            assert bulk._direct(session.get_bind().dialect, Ranked.__table__, ranked)
            assert not bulk._direct(
                session.get_bind().dialect, Ranked.__table__, [*ranked, {"queue": "q"}]
            )
            assert not bulk._direct(
                session.get_bind().dialect, Ranked.__table__, [{**ranked[0], "x": 1}]
            )
            insert_rows(session, Prediction, [row])
        with catalog.reading() as session:
            [got] = session.scalars(select(Prediction)).all()
            assert got.created_at is not None and got.predicted == "a"
    finally:
        catalog.dispose()
