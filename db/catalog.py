"""Opening a catalog: engine, SQLite pragmas, migrations on open, and sessions.

`open_catalog(url)` is the only way the rest of curator reaches the database. It applies every
pending Alembic migration before returning, so a catalog file from an older curator is upgraded
in place, and two processes opening a new catalog at once do not race to create it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from db.errors import CatalogBusy, CatalogError

#: How long a writer waits for another writer's lock before giving up (milliseconds).
BUSY_TIMEOUT_MS = 30_000
#: The newest migration. A catalog already there is opened without loading Alembic at all;
#: tests/test_catalog.py checks that this is the head of alembic/versions.
SCHEMA_HEAD = "0004"


def migrations_dir() -> Path:
    """Where the Alembic scripts live: inside the package when installed, else the repo."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_alembic", here.parent / "alembic"):
        if (candidate / "env.py").is_file():
            return candidate
    raise CatalogError("curator's database migrations are missing from this installation")


def alembic_config(connection: Connection | None = None) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def _configure_sqlite(engine: Engine) -> None:
    """WAL, foreign keys and a busy timeout on every connection; explicit BEGINs.

    pysqlite's own transaction handling starts transactions lazily and never around DDL; we
    take over so that a write session can say BEGIN IMMEDIATE and wait for the write lock up
    front, instead of failing with SQLITE_BUSY when it upgrades from reading to writing.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys = ON")
        mode = cursor.execute("PRAGMA journal_mode").fetchone()[0]
        if mode != "wal" and mode != "memory":
            cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("curator_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@dataclass
class Catalog:
    """An open catalog: an engine with its migrations applied, and session factories."""

    engine: Engine
    url: str

    def __post_init__(self) -> None:
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(
            self.engine.execution_options(curator_write=True), expire_on_commit=False
        )

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A session for queries; nothing in it is committed. Objects loaded in it stay
        readable after it closes."""
        with self._read() as session:
            yield session

    @contextmanager
    def writing(self) -> Iterator[Session]:
        """A short write transaction, committed on success and rolled back on error.

        On SQLite it takes the write lock at its start (waiting up to the busy timeout), so
        keep the work inside small: prepare everything first, then write.
        """
        with self._write() as session:
            try:
                yield session
                session.commit()
            except OperationalError as exc:
                session.rollback()
                if "full" in str(exc.orig):
                    raise CatalogError(
                        "the disk holding the catalog is full; nothing was lost: "
                        "free space and run the command again"
                    ) from exc
                if "locked" in str(exc.orig) or "busy" in str(exc.orig):
                    raise CatalogBusy(
                        f"the catalog is locked by another writer for more than "
                        f"{BUSY_TIMEOUT_MS // 1000} s; nothing was written, try again"
                    ) from exc
                raise
            except BaseException:
                session.rollback()
                raise

    def dispose(self) -> None:
        self.engine.dispose()


def _schema_version(conn: Connection) -> str | None:
    if not inspect(conn).has_table("alembic_version"):  # a new catalog
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def _upgrade(engine: Engine) -> None:
    with engine.connect() as conn:
        if _schema_version(conn) == SCHEMA_HEAD:
            return
    from alembic import command

    # The write option makes SQLite take its lock first: a second process opening a new
    # catalog at the same moment waits, then finds it already migrated.
    with engine.execution_options(curator_write=True).begin() as conn:
        if _schema_version(conn) == SCHEMA_HEAD:
            return
        command.upgrade(alembic_config(conn), "head")


def open_catalog(url: str) -> Catalog:
    """Open (creating if needed) the catalog at a SQLAlchemy URL and bring it up to date."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database).expanduser()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CatalogError(f"cannot create the catalog's folder {path.parent}: {exc}") from exc
        if path.exists() and not path.is_file():
            raise CatalogError(f"the catalog path {path} is not a file")
    engine = create_engine(url)
    if _is_sqlite(engine):
        _configure_sqlite(engine)
    try:
        _upgrade(engine)
    except DBAPIError as exc:
        engine.dispose()
        raise CatalogError(f"cannot open the catalog at {parsed!r}: {exc.orig}") from exc
    return Catalog(engine=engine, url=url)
