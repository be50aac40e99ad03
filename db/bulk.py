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
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

#: Rows per INSERT, at most: fewer where the rows are wide, so that a statement stays under
#: SQLite's 32,766 parameters (and PostgreSQL's 65,535).
ROWS_PER_STATEMENT = 1000
_MOST_PARAMETERS = 32_766
#: The driver placeholders the statement text can be written with.
_PLACEHOLDERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}


@functools.lru_cache(maxsize=256)
def _statement(dialect: Dialect, table: Table, columns: tuple[str, ...], rows: int) -> str:
    preparer = dialect.identifier_preparer
    mark = _PLACEHOLDERS[dialect.paramstyle]
    one = "(" + ", ".join([mark] * len(columns)) + ")"
    names = ", ".join(preparer.quote(table.c[c].name) for c in columns)
    into = preparer.format_table(table)
    return f"INSERT INTO {into} ({names}) VALUES " + ", ".join([one] * rows)


@functools.lru_cache(maxsize=256)
def _processors(
    dialect: Dialect, table: Table, columns: tuple[str, ...]
) -> tuple[Callable[[Any], Any] | None, ...]:
    # The dialect's own type (PostgreSQL's JSON is not the generic one) and its processor.
    return tuple(table.c[c].type.dialect_impl(dialect).bind_processor(dialect) for c in columns)


def _direct(dialect: Dialect, table: Table, rows: Sequence[dict[str, Any]]) -> bool:
    """Whether these rows can go to the driver as they are: the dialect's placeholders are
    known, every row names the same columns, and no column left out has a default that
    SQLAlchemy would fill in (the database fills in its own)."""
    columns = set(rows[0])
    if dialect.paramstyle not in _PLACEHOLDERS:
        return False
    if not columns <= set(table.c.keys()) or any(set(r) != columns for r in rows):
        return False
    return all(c.name in columns or c.default is None for c in table.c)


def insert_rows(session: Session, entity: Any, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` into ``entity``'s table, up to ``ROWS_PER_STATEMENT`` a statement.
    The values are plain Python values (no SQL expressions), as the callers write them."""
    if not rows:
        return
    table: Table = entity.__table__
    session.flush()  # what the ORM holds first: these rows may refer to it
    connection = session.connection(bind_arguments={"mapper": sa_inspect(entity)})
    dialect = connection.dialect
    per = max(1, min(ROWS_PER_STATEMENT, _MOST_PARAMETERS // max(1, len(rows[0]))))
    if not _direct(dialect, table, rows):
        for start in range(0, len(rows), per):
            session.execute(insert(entity).values(list(rows[start : start + per])))
        return
    columns = tuple(rows[0])
    processors = _processors(dialect, table, columns)
    for start in range(0, len(rows), per):
        chunk = rows[start : start + per]
        # Every converter takes None too (JSON's makes it 'null', as SQLAlchemy would).
        values = [
            value if process is None else process(value)
            for row in chunk
            for value, process in zip(map(row.__getitem__, columns), processors, strict=True)
        ]
        connection.exec_driver_sql(_statement(dialect, table, columns, len(chunk)), tuple(values))
