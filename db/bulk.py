"""Many rows written in few statements.

A list of rows given to ``session.execute(insert(...), rows)`` goes to the driver as one
statement per row (psycopg's executemany). On PostgreSQL every statement then fires the
tally triggers (alembic 0012) once, and counters upserted again and again within one
transaction slow down with the square of the rows. Multi-row INSERTs fire them once per
statement: a million ranking rows made again in one write cost 1,000 upserts, not a million.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

#: Rows per INSERT: 1,000 rows of eight columns stay far under SQLite's 32,766 parameters
#: and PostgreSQL's 65,535.
ROWS_PER_STATEMENT = 1000


def insert_rows(session: Session, entity: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` into ``entity``'s table, ``ROWS_PER_STATEMENT`` a statement."""
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        session.execute(insert(entity).values(list(rows[start : start + ROWS_PER_STATEMENT])))
