"""A catalog made by an older curator (every earlier migration in turn), filled with rows in
every table it had, then opened by this one: upgraded in place, every row intact, and usable.

The rows are made from the tables as that migration left them (reflected), so a migration
added later is covered without touching this test."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
    create_engine,
    insert,
    select,
)

from db.catalog import SCHEMA_HEAD, alembic_config, open_catalog
from db.images import add_image
from db.labels import record_label
from tests.helpers.sql import rows

pytestmark = pytest.mark.backends

ROWS = 25


def older_revisions() -> list[str]:
    script = ScriptDirectory.from_config(alembic_config())
    return [r.revision for r in script.walk_revisions() if r.revision != SCHEMA_HEAD][::-1]


def value(column: Any, n: int, table: str) -> Any:
    """A value of the column's type for row n (1-based), unique where a key may need it."""
    for fk in column.foreign_keys:
        if fk.column.table.name == table:  # a row pointing at another of its table
            return None if n == 1 else n - 1
        return (n - 1) % ROWS + 1
    if (table, column.name) == ("image_properties", "version"):
        return "props-v3"  # the version whose windows 0013 moves to image_windows
    kind = column.type
    if isinstance(kind, Boolean):
        return n % 2 == 0
    if isinstance(kind, BigInteger):
        return (-1) ** n * (2**62 + n * 7919)  # both signs, beyond 32 bits
    if isinstance(kind, Integer):
        return n
    if isinstance(kind, Float):
        return n / 3
    if isinstance(kind, DateTime):
        return datetime(2026, 1, 1, 12, 0, n % 60, n * 1000, tzinfo=UTC)
    if isinstance(kind, JSON):
        return {"n": n, "list": [n, n / 2, None], "text": f"é{n}"}
    if isinstance(kind, LargeBinary):
        return f"{column.name}-{n}".encode() + bytes([0, 255, n % 256])
    if isinstance(kind, String):
        text = f"{column.name}-{n:04d}"
        return text[: kind.length] if kind.length else text
    return f"{column.name}-{n}"


def fill(url: str) -> tuple[dict[str, list[str]], dict[str, list[tuple]]]:
    """Rows in every table of the catalog at url; returns each table's columns and rows."""
    engine = create_engine(url)
    meta = MetaData()
    try:
        with engine.begin() as conn:
            meta.reflect(conn)
            for table in meta.sorted_tables:
                if table.name == "alembic_version":
                    continue
                # Ids are left to the database, as curator leaves them (rows 1..ROWS).
                keys = list(table.primary_key.columns)
                # (a key that points at another table's row, as image_properties' does, is not)
                generated = {keys[0].name} if len(keys) == 1 and isinstance(
                    keys[0].type, Integer) and not keys[0].foreign_keys else set()  # fmt: skip
                data = [
                    {c.name: value(c, n, table.name) for c in table.columns
                     if c.name not in generated}
                    for n in range(1, ROWS + 1)
                ]  # fmt: skip
                if table.name == "settings":
                    conn.execute(table.delete())
                    data = [{"key": "classes", "value": ["happy", "unhappy"]}] + [
                        {"key": f"setting-{n}", "value": {"n": n}} for n in range(2, ROWS + 1)
                    ]
                conn.execute(insert(table), data)
        shape = {
            t.name: [c.name for c in t.columns]
            for t in meta.sorted_tables
            if t.name != "alembic_version"
        }
        return shape, snapshot(url, shape)
    finally:
        engine.dispose()


def snapshot(url: str, shape: dict[str, list[str]]) -> dict[str, list[tuple]]:
    """The rows of each table, in key order, of the columns `shape` names for it (those it
    had before an upgrade: later migrations may add more)."""
    engine = create_engine(url)
    meta = MetaData()
    try:
        with engine.connect() as conn:
            meta.reflect(conn, only=list(shape))
            out = {}
            for name, columns in shape.items():
                table = meta.tables[name]
                query = select(*(table.c[c] for c in columns)).order_by(*table.primary_key.columns)
                out[name] = [tuple(r) for r in conn.execute(query)]
            return out
    finally:
        engine.dispose()


def moved_windows(shape: dict[str, list[str]], before: dict[str, list[tuple]]) -> list[tuple]:
    """Take image_properties' windows out of the shape and rows (an upgrade moves them):
    the (image id, windows) it held, in id order."""
    columns = shape.get("image_properties", [])
    if "windows" not in columns:
        return []
    key, at = columns.index("image_id"), columns.index("windows")
    rows_before = before["image_properties"]
    before["image_properties"] = [r[:at] + r[at + 1 :] for r in rows_before]
    shape["image_properties"] = columns[:at] + columns[at + 1 :]
    return sorted((r[key], bytes(r[at])) for r in rows_before)


@pytest.mark.parametrize("revision", older_revisions())
def test_an_older_catalog_is_upgraded_with_every_row_intact(revision, new_db_url, tmp_path):
    (tmp_path / revision).mkdir()
    url = new_db_url(tmp_path / revision)
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), revision)
    finally:
        engine.dispose()
    shape, before = fill(url)
    # Every table got its rows (the tallies more: triggers count the images and sources).
    assert before and all(len(v) == ROWS for t, v in before.items() if t != "tallies")
    assert len(before.get("tallies", [None] * ROWS)) >= ROWS
    # 0013 moves the windows of image_properties (0008 to 0012) to a table of their own.
    windows = moved_windows(shape, before)
    catalog = open_catalog(url)  # what every command does first
    try:
        assert rows("SELECT version_num FROM alembic_version", url) == [(SCHEMA_HEAD,)]
        after = snapshot(url, shape)
        # Later migrations add counts and settings of their own (0010: the predictions'
        # tallies, the catalog's identity); every row there before is there unchanged.
        for name in ("tallies", "settings"):
            kept = after.pop(name, [])
            assert all(row in kept for row in before.pop(name, [])), name
        assert after == before
        if windows:
            kept = rows("SELECT image_id, version, windows FROM image_windows", url)
            assert sorted((i, bytes(w)) for i, v, w in kept) == windows
            assert {v for _, v, _ in kept} == {"windows-v1"}
        # And it is a working catalog: a new image and a label go in after the old rows.
        with catalog.writing() as session:
            image = add_image(
                session, sha256="f" * 64, phash=-5, phash_mirror=5, hash_version="v",
                width=1, height=1, format="JPEG", bytes=1, path="images/ff/new.jpg",
                split="train",
            )  # fmt: skip
            record_label(session, image_id=image.id, label="happy", origin="human", author="a")
        assert image.id == ROWS + 1
    finally:
        catalog.dispose()


def test_every_older_revision_is_tested():
    assert older_revisions()[0] == "0001" and SCHEMA_HEAD not in older_revisions()
