"""Copying a whole catalog to another database (SQLite to PostgreSQL and back), verified.

Every table is copied in the order its foreign keys need, primary keys kept, in one write
transaction on the destination: a copy that fails or is interrupted leaves the destination as
empty as it was, and running it again starts over. The source is read in one snapshot, so a
catalog in use is copied as it stood at one moment. Before committing, both sides are counted
and digested table by table (every column of every row, in key order); any difference rolls the
copy back. The tallies are not copied: the destination's triggers count the rows as they
go in, and the copy checks that they come to the source's. Nor are the embeddings, nor the
outlier and clusters rankings made from them: the copy has none until ``curator embed``
makes its own. The copy is given an identity of its own
(`db.settings.IDENTITY`), so that files kept beside the source are rebuilt for it.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Select,
    Table,
    bindparam,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from db.catalog import Catalog, translate
from db.errors import CatalogError
from db.models import Base
from db.settings import IDENTITY
from db.tallies import recount, tallies
from db.vectors import VECTOR_BASIS, VECTOR_QUEUES

#: Rows per INSERT batch.
BATCH = 2000

#: on_progress(table, rows copied so far, rows in the table)
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class TableCopy:
    name: str
    rows: int
    digest: str


#: Kept by the destination's own triggers as the rows go in, not copied.
DERIVED = frozenset({"tallies"})

#: Not copied: their rows name vector files in the source's home, and two catalogs writing
#: to one file would mix their images; the copy embeds afresh (``curator embed``).
LEFT_BEHIND = frozenset({"embeddings", "embedded"})


def tables() -> list[Table]:
    """The catalog's tables to copy, each after the tables it refers to."""
    return [t for t in Base.metadata.sorted_tables if t.name not in DERIVED | LEFT_BEHIND]


def _utc(value: datetime) -> datetime:
    # SQLite hands back the UTC wall clock without a zone; PostgreSQL an aware time.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _portable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: _utc(v) if isinstance(v, datetime) else v for k, v in row.items()}


def _canonical(value: object) -> str:
    if isinstance(value, datetime):
        return _utc(value).isoformat()
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, bytes | memoryview):  # BLOB on SQLite, BYTEA on PostgreSQL
        return bytes(value).hex()
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _ordered(table: Table) -> Select[*tuple[Any, ...]]:
    return select(table).order_by(*table.primary_key.columns)


def _count(conn: Connection, table: Table) -> int:
    return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def _batches(conn: Connection, table: Table, size: int) -> Iterator[list[dict[str, Any]]]:
    # Options of this statement only: set on the connection, they would stay on it and
    # make every later statement of the copy's transaction a cursor.
    options = {"stream_results": True, "yield_per": size}
    result = conn.execute(_ordered(table), execution_options=options)
    for part in result.mappings().partitions(size):
        yield [dict(row) for row in part]


def digest(conn: Connection, table: Table) -> tuple[int, str]:
    """The number of rows of a table and a sha256 of every column of every row, in key order,
    the same on SQLite and PostgreSQL for the same content."""
    h = hashlib.sha256()
    rows = 0
    names = [c.name for c in table.columns]
    for batch in _batches(conn, table, BATCH):
        for row in batch:
            rows += 1
            h.update("\x1f".join(_canonical(row[n]) for n in names).encode())
            h.update(b"\x1e")
    return rows, h.hexdigest()


def _self_references(table: Table) -> list[Column[Any]]:
    return [fk.parent for fk in table.foreign_keys if fk.column.table is table]


def _copy_table(
    src: Connection, dst: Connection, table: Table, on_progress: Progress | None
) -> None:
    total = _count(src, table)
    if on_progress:
        on_progress(table.name, 0, total)
    # A row may point at a later row of its own table (an image's duplicate_of): those links
    # are written once every row is in.
    selfrefs = _self_references(table)
    key: Column[Any] | None = next(iter(table.primary_key.columns)) if selfrefs else None
    links: list[dict[str, Any]] = []
    done = 0
    for batch in _batches(src, table, BATCH):
        rows = [_portable(row) for row in batch]
        for row in rows:
            for column in selfrefs:
                if key is not None and row[column.name] is not None:
                    links.append({"_key": row[key.name], "_column": column.name,
                                  "_value": row[column.name]})  # fmt: skip
                    row[column.name] = None
        dst.execute(insert(table), rows)
        done += len(rows)
        if on_progress:
            on_progress(table.name, done, total)
    for column in selfrefs:
        pairs = [link for link in links if link["_column"] == column.name]
        if pairs and key is not None:
            statement = (
                update(table)
                .where(key == bindparam("_key"))
                .values({column.name: bindparam("_value")})
            )
            dst.execute(statement, [{"_key": p["_key"], "_value": p["_value"]} for p in pairs])


def _advance_sequences(dst: Connection) -> None:
    """PostgreSQL's id sequences do not move when ids are written explicitly: move them past
    the copied rows, so the next image gets a new id."""
    if dst.dialect.name != "postgresql":
        return
    for table in tables():
        keys = list(table.primary_key.columns)
        if len(keys) != 1 or not keys[0].autoincrement or keys[0].type.python_type is not int:
            continue
        name = keys[0].name
        dst.execute(
            text(
                f"SELECT setval(pg_get_serial_sequence(:table, :column), "
                f"COALESCE(MAX({name}), 1), MAX({name}) IS NOT NULL) FROM {table.name}"
            ),
            {"table": table.name, "column": name},
        )


#: The tables whose triggers keep the tallies (alembic 0005).
COUNTED = ("images", "sources", "predictions", "rankings")


def _pause_counting(target: Connection) -> list[str]:
    """On PostgreSQL, switch the tally triggers off for this transaction (ALTER TABLE is
    transactional): a trigger upserting the same few counters once per row piles up row
    versions within one transaction, and a copy of a million rows would take hours. The
    counts are then made from the rows, once. SQLite updates in place: its triggers stay."""
    if target.dialect.name != "postgresql":
        return []
    for name in COUNTED:
        target.execute(text(f"ALTER TABLE {name} DISABLE TRIGGER USER"))
    return list(COUNTED)


def _resume_counting(target: Connection, tables_: list[str]) -> None:
    for name in tables_:
        target.execute(text(f"ALTER TABLE {name} ENABLE TRIGGER USER"))
    table = Base.metadata.tables["tallies"]
    target.execute(table.delete())
    counts = _tallies(target, recount)
    if counts:
        target.execute(insert(table), [{"name": k, "count": v} for k, v in counts.items()])


def _leave_vector_rankings(target: Connection) -> None:
    """The outlier and clusters rankings come from the vectors, which stay behind: the copy
    holds none of them until it embeds (its tallies follow, by the triggers)."""
    rankings, settings = Base.metadata.tables["rankings"], Base.metadata.tables["settings"]
    target.execute(rankings.delete().where(rankings.c.queue.in_(VECTOR_QUEUES)))
    target.execute(settings.delete().where(settings.c.key == VECTOR_BASIS))
    target.execute(insert(settings), [{"key": VECTOR_BASIS, "value": None}])


def _renew_identity(target: Connection) -> None:
    """The copy is another catalog: files kept beside the source (its near-duplicate index)
    must not be taken for the copy's."""
    table = Base.metadata.tables["settings"]
    target.execute(table.delete().where(table.c.key == IDENTITY))
    target.execute(insert(table), [{"key": IDENTITY, "value": uuid.uuid4().hex}])


def _tallies(conn: Connection, read: Callable[[Session], dict[str, int]] = tallies) -> dict:
    """The tallies a connection's catalog keeps (or, with `recount`, counts from its rows)."""
    with Session(bind=conn) as session:
        return read(session)


def _snapshot(catalog: Catalog) -> Connection:
    """A connection that reads the whole catalog as of one moment."""
    conn = catalog.engine.connect()
    if conn.dialect.name == "postgresql":
        conn = conn.execution_options(isolation_level="REPEATABLE READ")
    conn.begin()
    return conn


def copy_catalog(
    src: Catalog, dst: Catalog, *, on_progress: Progress | None = None
) -> list[TableCopy]:
    """Copy every row of `src` into `dst`, which must hold no rows; returns each table's row
    count and digest, checked equal on both sides before the copy is committed."""
    with dst.engine.connect() as conn:
        held = {t.name: n for t in tables() if (n := _count(conn, t))}
    held.pop("settings", None)  # a new catalog holds its default classes
    if held:
        what = ", ".join(f"{n} {name}" for name, n in held.items())
        raise CatalogError(
            f"the destination already holds a catalog ({what}); copy into an empty one"
        )
    source = _snapshot(src)
    try:
        with dst.engine.execution_options(curator_write=True).begin() as target:
            counting = _pause_counting(target)
            for table in tables():
                target.execute(table.delete())  # the new catalog's default settings
                _copy_table(source, target, table, on_progress)
            _advance_sequences(target)
            if counting:
                _resume_counting(target, counting)
            theirs, ours = _tallies(source), _tallies(target)
            if theirs != ours:
                differing = sorted(
                    k for k in theirs.keys() | ours.keys() if theirs.get(k) != ours.get(k)
                )
                raise CatalogError(
                    f"the copy's counts differ from its source's ({', '.join(differing[:5])}); "
                    "nothing was committed"
                )
            copied = []
            for table in tables():
                rows, sums = digest(source, table)
                rows_after, sums_after = digest(target, table)
                if (rows, sums) != (rows_after, sums_after):
                    raise CatalogError(
                        f"the copy of {table.name} differs from its source ({rows} rows, "
                        f"{rows_after} copied); nothing was committed"
                    )
                copied.append(TableCopy(table.name, rows, sums))
            _leave_vector_rankings(target)
            _renew_identity(target)
    except DBAPIError as exc:
        error = translate(exc, dst.timeout_ms)
        if error is exc:
            raise
        raise error from exc
    finally:
        source.close()
    return copied
