"""Many rows written in few statements.

A list of rows given to ``session.execute(insert(...), rows)`` goes to the driver as one
statement per row (psycopg's executemany). On PostgreSQL every statement then fires the
tally triggers (alembic 0012) once, and counters upserted again and again within one
transaction slow down with the square of the rows. Multi-row INSERTs fire them once per
statement: a million ranking rows made again in one write cost 1,000 upserts, not a million.

The statement's text is made once for each table, column list and row count, and the values
go to the driver as they are (through each column type's own bind processor, where it has
one): SQLAlchemy compiles a multi-row ``insert().values(rows)`` anew on every call, some
20 us a row, which was most of what keeping the rankings cost an import.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

#: Rows per INSERT: 1,000 rows of eight columns stay far under SQLite's 32,766 parameters
#: and PostgreSQL's 65,535.
ROWS_PER_STATEMENT = 1000
#: The driver placeholders the statement text can be written with.
_PLACEHOLDERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}


@functools.lru_cache(maxsize=256)
def _statement(dialect: Dialect, table: Table, columns: tuple[str, ...], rows: int) -> str:
    quote = dialect.identifier_preparer.quote
    mark = _PLACEHOLDERS[dialect.paramstyle]
    one = "(" + ", ".join([mark] * len(columns)) + ")"
    names = ", ".join(quote(c) for c in columns)
    return f"INSERT INTO {quote(table.name)} ({names}) VALUES " + ", ".join([one] * rows)


@functools.lru_cache(maxsize=256)
def _processors(
    dialect: Dialect, table: Table, columns: tuple[str, ...]
) -> tuple[Callable[[Any], Any] | None, ...]:
    # The dialect's own type (PostgreSQL's JSON is not the generic one) and its processor.
    return tuple(table.c[c].type.dialect_impl(dialect).bind_processor(dialect) for c in columns)


def _direct(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> bool:
    """Whether these rows can go to the driver as they are: the dialect's placeholders are
    known, every row names the same columns, and no column left out has a default that
    SQLAlchemy would fill in (the database fills in its own)."""
    columns = set(rows[0])
    if session.get_bind().dialect.paramstyle not in _PLACEHOLDERS:
        return False
    if not columns <= set(table.c.keys()) or any(set(r) != columns for r in rows):
        return False
    return all(c.name in columns or c.default is None for c in table.c)


def insert_rows(session: Session, entity: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` into ``entity``'s table, ``ROWS_PER_STATEMENT`` a statement."""
    if not rows:
        return
    table: Table = entity.__table__
    if not _direct(session, table, rows):
        for start in range(0, len(rows), ROWS_PER_STATEMENT):
            session.execute(insert(entity).values(list(rows[start : start + ROWS_PER_STATEMENT])))
        return
    session.flush()
    connection = session.connection()
    dialect = connection.dialect
    columns = tuple(rows[0])
    processors = _processors(dialect, table, columns)
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        chunk = rows[start : start + ROWS_PER_STATEMENT]
        values = [
            value if process is None or value is None else process(value)
            for row in chunk
            for value, process in zip(map(row.__getitem__, columns), processors, strict=True)
        ]
        connection.exec_driver_sql(_statement(dialect, table, columns, len(chunk)), tuple(values))
