"""PostgreSQL's tallies: counted per statement against per row, in one large write.

    python bench/pg_tallies.py --db-url postgresql+psycopg://USER@HOST/DB [--rows 20000 ...]

In an empty PostgreSQL database, makes the catalog (the migrations), then for each ``--rows``
writes that many ranking rows in one transaction, as a new set of vectors scored or new issue
thresholds do (multi-row INSERTs of 1,000, as db/bulk.py writes them), three ways: with the
statement triggers of alembic 0012 (what curator runs), with the per-row triggers before it
(the database downgraded to 0011 and upgraded again), and bare (the tally triggers off).
Each write is rolled back. Prints seconds and each against bare: per-row triggers grow with
the square of the rows, per-statement ones with the rows.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from alembic import command  # noqa: E402
from sqlalchemy import Engine, create_engine, insert, text  # noqa: E402

from db.bulk import ROWS_PER_STATEMENT  # noqa: E402
from db.catalog import alembic_config, open_catalog  # noqa: E402
from db.models import Base  # noqa: E402


def _images(engine: Engine, n: int) -> None:
    table = Base.metadata.tables["images"]
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO runs (id, kind, status, params, counts, started_at) "
                "VALUES (1, 'import', 'done', '{}', '{}', now())"
            )
        )
        rows = [
            {"id": i, "sha256": f"{i:064x}", "phash": i, "phash_mirror": i,
             "hash_version": "phash64-v1", "width": 8, "height": 8, "format": "JPEG",
             "bytes": 100, "path": f"images/{i}.jpg", "status": "active", "split": "train",
             "run_id": 1}
            for i in range(1, n + 1)
        ]  # fmt: skip
        for start in range(0, n, 5000):
            conn.execute(insert(table), rows[start : start + 5000])


def _write(engine: Engine, n: int, *, bare: bool = False) -> float:
    """Seconds to write ``n`` rankings rows in one transaction (rolled back)."""
    table = Base.metadata.tables["rankings"]
    rows = [{"queue": "outlier", "image_id": i, "score": -i / n} for i in range(1, n + 1)]
    with engine.connect() as conn:
        transaction = conn.begin()
        if bare:
            conn.execute(text("ALTER TABLE rankings DISABLE TRIGGER USER"))
        began = time.perf_counter()
        for start in range(0, n, ROWS_PER_STATEMENT):  # as db/bulk.py insert_rows writes
            conn.execute(insert(table).values(rows[start : start + ROWS_PER_STATEMENT]))
        seconds = time.perf_counter() - began
        transaction.rollback()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db-url", required=True, help="an empty PostgreSQL database")
    parser.add_argument("--rows", type=int, nargs="+", default=[20_000, 40_000, 80_000])
    args = parser.parse_args()
    open_catalog(args.db_url).dispose()  # the schema, by the migrations
    engine = create_engine(args.db_url)
    _images(engine, max(args.rows))
    print(f"{'rows':>8} {'bare':>8} {'per statement':>22} {'per row':>22}")
    for n in args.rows:
        bare = _write(engine, n, bare=True)
        statement = _write(engine, n)
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0011")
        row = _write(engine, n)
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "head")
        print(
            f"{n:>8} {bare:7.2f}s {statement:9.2f}s ({statement / bare:5.1f}x) "
            f"{row:9.2f}s ({row / bare:5.1f}x)",
            flush=True,
        )
    engine.dispose()


if __name__ == "__main__":
    main()
