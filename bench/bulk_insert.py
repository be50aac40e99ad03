"""Ranking and prediction rows written by db/bulk.py's ``insert_rows`` against the statement
it replaced (SQLAlchemy's multi-row ``insert().values(rows)``, compiled on every call), and
against SQLAlchemy's executemany (``session.execute(insert(...), rows)``), same run.

    python bench/bulk_insert.py [--rows 100000] [--db-url postgresql+psycopg://USER@HOST/DB]

A fresh catalog (SQLite in a temporary folder unless ``--db-url`` names an empty database),
``--rows`` images, then for each way: that many ``rankings`` rows (three columns) and as many
``predictions`` rows (eight, a JSON list and a time among them) written in one transaction,
rolled back, the median of ``--repeat`` rounds. Prints rows per second and each way against
``insert_rows``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import insert  # noqa: E402
from sqlalchemy.orm import Session  # noqa: E402

from db.bulk import ROWS_PER_STATEMENT, insert_rows  # noqa: E402
from db.catalog import open_catalog  # noqa: E402
from db.models import Image, Prediction, Ranked, utcnow  # noqa: E402
from db.registry import DONE, create_model  # noqa: E402
from db.runs import start_run  # noqa: E402


def compiled_each_time(session: Session, entity: Any, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        session.execute(insert(entity).values(rows[start : start + ROWS_PER_STATEMENT]))


def executemany(session: Session, entity: Any, rows: list[dict[str, Any]]) -> None:
    session.execute(insert(entity), rows)


WAYS: dict[str, Callable[[Session, Any, list[dict[str, Any]]], None]] = {
    "insert_rows": insert_rows,
    "insert().values(rows)": compiled_each_time,
    "executemany": executemany,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--db-url", default=None)
    args = parser.parse_args()
    folder = tempfile.TemporaryDirectory()
    url = args.db_url or f"sqlite:///{folder.name}/catalog.db"
    catalog = open_catalog(url)
    with catalog.writing() as session:
        run = start_run(session, kind="bench", params={}).id
        session.execute(
            insert(Image),
            [
                {"sha256": f"{i:064x}", "phash": i, "phash_mirror": i,
                 "hash_version": "phash64-v1", "width": 8, "height": 8, "format": "JPEG",
                 "bytes": 1, "path": f"images/{i}", "split": "train", "status": "active",
                 "run_id": run}
                for i in range(1, args.rows + 1)
            ],
        )  # fmt: skip
        model = create_model(
            session, status=DONE, config={}, training={}, classes=["happy", "unhappy"],
            path="models/x", torch_version="x", curator_version="x",
        ).id  # fmt: skip
    ranked = [
        {"queue": "uncertain", "image_id": i, "score": -i / 7} for i in range(1, args.rows + 1)
    ]
    when = utcnow()
    predictions = [
        {"model_id": model, "image_id": i, "probs": [0.3, 0.7], "predicted": "unhappy",
         "confidence": 0.7, "margin": 0.4, "in_sample": i % 2 == 0, "created_at": when}
        for i in range(1, args.rows + 1)
    ]  # fmt: skip
    seconds: dict[str, dict[str, list[float]]] = {
        w: {"rankings": [], "predictions": []} for w in WAYS
    }
    for _ in range(args.repeat):
        for way, write in WAYS.items():
            for table, entity, rows in (
                ("rankings", Ranked, ranked),
                ("predictions", Prediction, predictions),
            ):
                session = Session(catalog.engine)
                start = time.perf_counter()
                write(session, entity, rows)
                session.flush()
                seconds[way][table].append(time.perf_counter() - start)
                session.rollback()
                session.close()
    engine = catalog.engine.dialect.name
    print(f"{args.rows:,} rows in one transaction, {engine}, median of {args.repeat} rounds:")
    for table in ("rankings", "predictions"):
        ours = statistics.median(seconds["insert_rows"][table])
        print(f"  {table}:")
        for way in WAYS:
            took = statistics.median(seconds[way][table])
            print(
                f"    {way:24s} {args.rows / took:10,.0f} rows/s"
                f"  {took / ours:5.2f}x insert_rows's time"
            )
    catalog.dispose()


if __name__ == "__main__":
    main()
