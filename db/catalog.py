"""Opening a catalog: engine, per-engine settings, migrations on open, and sessions.

`open_catalog(url)` is the only way the rest of curator reaches the database. It applies every
pending Alembic migration before returning, so a catalog from an older curator is upgraded in
place, and two processes opening a new catalog at once do not race to create it. With
``create=False`` it opens only a catalog that is already there: an empty file, a file that is
not SQLite, or a database without curator's tables is refused with `NotACatalog`, untouched.

A SQLite catalog this user cannot write (its file, or the folder SQLite keeps its journal in)
is opened read-only, without migrating or switching its journal: commands that only read work
on it, and a write transaction raises `CatalogReadOnly` before it starts.

Two engines are supported, with the same semantics: SQLite (a file, the default) and
PostgreSQL (``postgresql+psycopg://...``). On both, write transactions run one at a time and
readers never wait: SQLite's ``BEGIN IMMEDIATE`` takes its database lock, and on PostgreSQL a
transaction-scoped advisory lock plays the same part, so code that reads, decides and writes
inside `Catalog.writing` is never raced by another writer on either engine. A writer that
waits longer than the busy timeout (``CURATOR_DB_TIMEOUT`` seconds, 30 by default) gets
`CatalogBusy` and has written nothing.
"""

from __future__ import annotations

import functools
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, InvalidRequestError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from db.errors import CatalogBusy, CatalogError, CatalogReadOnly, NotACatalog
from db.rankings import refresh_kept

if TYPE_CHECKING:
    import psycopg
    from alembic.config import Config
    from psycopg.rows import TupleRow

#: How long a writer waits for another writer's lock before giving up (milliseconds), unless
#: CURATOR_DB_TIMEOUT (seconds) says otherwise.
BUSY_TIMEOUT_MS = 30_000
TIMEOUT_ENV = "CURATOR_DB_TIMEOUT"
#: The advisory lock a PostgreSQL write transaction holds (advisory locks are per database).
WRITE_LOCK_KEY = 0x6375726174  # "curat"
#: The newest migration. A catalog already there is opened without loading Alembic at all;
#: tests/test_catalog.py checks that this is the head of alembic/versions.
SCHEMA_HEAD = "0014"


def migrations_dir() -> Path:
    """Where the Alembic scripts live: inside the package when installed, else the repo."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_alembic", here.parent / "alembic"):
        if (candidate / "env.py").is_file():
            return candidate
    raise CatalogError("curator's database migrations are missing from this installation")


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def display_url(url: str) -> str:
    """A catalog URL fit to print: its password, if any, masked."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def _is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def busy_timeout_ms() -> int:
    raw = os.environ.get(TIMEOUT_ENV)
    if not raw:
        return BUSY_TIMEOUT_MS
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 < seconds <= 86_400:
        raise CatalogError(f"{TIMEOUT_ENV} must be a number of seconds up to a day, not {raw!r}")
    return max(1, round(seconds * 1000))


def _configure_postgresql(engine: Engine, timeout_ms: int) -> None:
    """A lock timeout on every connection; write transactions take the catalog's write lock."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: psycopg.Connection[TupleRow], _record: object) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute(f"SET lock_timeout = {int(timeout_ms)}")
        dbapi_connection.commit()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get("curator_write", False):
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({WRITE_LOCK_KEY})")


def _configure_sqlite(engine: Engine, timeout_ms: int, *, read_only: bool = False) -> None:
    """WAL, foreign keys and a busy timeout on every connection; explicit BEGINs.

    pysqlite's own transaction handling starts transactions lazily and never around DDL; we
    take over so that a write session can say BEGIN IMMEDIATE and wait for the write lock up
    front, instead of failing with SQLITE_BUSY when it upgrades from reading to writing. A
    read-only catalog keeps the journal it has (switching it is a write).
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys = ON")
        mode = cursor.execute("PRAGMA journal_mode").fetchone()[0]
        if mode != "wal" and mode != "memory" and not read_only:
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
    timeout_ms: int = BUSY_TIMEOUT_MS
    #: Opened read-only (a SQLite catalog this user cannot write): `writing` refuses.
    read_only: bool = False

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

        It takes the catalog's write lock at its start (waiting up to the busy timeout), so
        keep the work inside small: prepare everything first, then write.
        """
        if self.read_only:
            raise read_only_error(display_url(self.url))
        with self._write() as session:
            try:
                yield session
                refresh_kept(session)  # group labels and rankings, in the same transaction
                session.commit()
            except DBAPIError as exc:
                _rollback(session)
                error = translate(exc, self.timeout_ms)
                if error is exc:
                    raise
                raise error from exc
            except BaseException:
                _rollback(session)
                raise

    def dispose(self) -> None:
        self.engine.dispose()


def _rollback(session: Session) -> None:
    """Roll back what the session holds, unless its transaction has ended: a signal (Ctrl-C,
    a service manager's stop) that lands as the commit ends raises after the commit has
    happened, and what it committed stays committed; the interrupt is what to report."""
    with suppress(InvalidRequestError):
        session.rollback()


def read_only_error(where: str | None = None) -> CatalogReadOnly:
    catalog = f"the catalog {where}" if where else "the catalog"
    return CatalogReadOnly(
        f"{catalog} is read-only for this user (its file or folder cannot be written) and "
        "this command writes to it; nothing was changed"
    )


def translate(exc: DBAPIError, timeout_ms: int = BUSY_TIMEOUT_MS) -> Exception:
    """The error to raise for a driver error: a full disk, a lock held past the timeout or a
    database that cannot be written become one-line `CatalogError`s; anything else is
    returned unchanged."""
    message = str(exc.orig).lower()
    state = getattr(exc.orig, "sqlstate", None) or ""
    if state == "25006" or "readonly database" in message:
        return read_only_error()
    if state == "42501":  # insufficient privilege: a PostgreSQL role that may only read
        return CatalogReadOnly(
            "the catalog is read-only for this user (its role may not write to its tables) "
            "and this command writes to it; nothing was changed"
        )
    if state == "53100" or "database or disk is full" in message or "no space left" in message:
        return CatalogError(
            "the disk holding the catalog is full; nothing was lost: "
            "free space and run the command again"
        )
    if state == "55P03" or (
        isinstance(exc, OperationalError) and ("locked" in message or "busy" in message)
    ):
        return CatalogBusy(
            f"the catalog is locked by another writer for more than "
            f"{timeout_ms / 1000:g} s; nothing was written, try again"
        )
    if state.startswith("08") or state in ("57P01", "57P02", "57P03") or exc.connection_invalidated:
        return CatalogError(
            "lost the connection to the catalog's database server; nothing of the last "
            "transaction was written: run the command again"
        )
    return exc


def _schema_version(conn: Connection) -> str | None:
    found = inspect(conn)
    if not (found.has_table("alembic_version") and found.has_table("images")):  # a new catalog
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def _upgrade(engine: Engine, *, create: bool, read_only: bool, where: str) -> None:
    with engine.connect() as conn:
        version = _schema_version(conn)
    if version == SCHEMA_HEAD:
        return
    if version is None and not create:
        raise NotACatalog(f"{where} holds no curator catalog (it has none of curator's tables)")
    if read_only:
        raise CatalogReadOnly(
            f"the catalog {where} is read-only for this user, and "
            + (
                "there is none yet"
                if version is None
                else f"was made by an older curator (schema {version}); a writable copy of it "
                "is upgraded when opened"
            )
        )
    from alembic import command

    # The write option makes SQLite take its lock first: a second process opening a new
    # catalog at the same moment waits, then finds it already migrated.
    with engine.execution_options(curator_write=True).begin() as conn:
        if _schema_version(conn) == SCHEMA_HEAD:
            return
        command.upgrade(alembic_config(conn), "head")


def connect_read_only(path: Path) -> sqlite3.Connection:
    """A connection that reads a SQLite file and never writes it, nor anything beside it."""
    uri = "file:" + quote(os.fsencode(path))
    conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, check_same_thread=False)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError:
        conn.close()
    # A WAL database whose folder this user cannot write: SQLite cannot make the
    # shared-memory file it reads through, unless told that the file will not change.
    return sqlite3.connect(f"{uri}?immutable=1", uri=True, check_same_thread=False)


def _check_existing(path: Path) -> None:
    """Raise `NotACatalog` unless ``path`` is a SQLite file holding curator's tables; read
    without writing a byte (opening it as a catalog would switch its journal to WAL)."""
    if not path.is_file():
        raise NotACatalog(f"no catalog file at {path}")
    if not os.access(path, os.R_OK):
        raise CatalogError(f"cannot read {path}: permission denied")
    # Read by SQLite, never by an open() of ours: closing any descriptor of a file drops
    # every POSIX lock this process holds on it, those of its open connections included.
    if path.stat().st_size == 0:
        raise NotACatalog(f"{path} is an empty file, not a catalog")
    try:
        conn = connect_read_only(path)
        try:
            names = {n for (n,) in conn.execute("SELECT name FROM sqlite_master")}
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        if "not a database" in str(exc):
            raise NotACatalog(f"{path} is not a SQLite database, so not a catalog") from None
        raise NotACatalog(f"{path} cannot be read as a SQLite database ({exc})") from None
    if not {"alembic_version", "images"} <= names:
        raise NotACatalog(f"{path} is a SQLite database without curator's tables, not a catalog")


def _sqlite_read_only(path: Path, *, create: bool) -> bool:
    """Check the file of a SQLite catalog (made ready when it may be created); True when
    this user can read it but not write it or its folder."""
    if path.exists() and not path.is_file():
        raise CatalogError(f"the catalog path {path} is not a file")
    if not create:
        _check_existing(path)
    elif not path.exists():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CatalogError(f"cannot create the catalog's folder {path.parent}: {exc}") from exc
        if not os.access(path.parent, os.W_OK):
            raise CatalogReadOnly(
                f"there is no catalog at {path}, and its folder cannot be written by this user"
            )
        return False
    # SQLite writes its journal beside the file: both must be writable to write.
    return not (os.access(path, os.W_OK) and os.access(path.parent, os.W_OK))


def open_catalog(url: str, *, create: bool = True) -> Catalog:
    """Open the catalog at a SQLAlchemy URL and bring it up to date; where there is none, make
    one, or with ``create=False`` raise `NotACatalog` (see the module's notes)."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise CatalogError(
            f"{url!r} is not a database URL (sqlite:///path/catalog.db or "
            "postgresql+psycopg://user@host/database)"
        ) from exc
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise CatalogError(
            f"curator keeps catalogs in SQLite or PostgreSQL, not {parsed.get_backend_name()} "
            "(sqlite:///path/catalog.db or postgresql+psycopg://user@host/database)"
        )
    read_only = False
    options: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database).expanduser()
        read_only = _sqlite_read_only(path, create=create)
        if read_only:
            options["creator"] = functools.partial(connect_read_only, path)
    timeout_ms = busy_timeout_ms()
    try:
        engine = create_engine(url, **options)
    except ImportError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CatalogError(
            f"the driver for {parsed.drivername} is not installed ({reason}); for PostgreSQL, "
            "pip install 'curator[postgresql]' and use postgresql+psycopg://"
        ) from exc
    except ArgumentError as exc:
        raise CatalogError(f"cannot open the catalog at {parsed!r}: {exc}") from exc
    if _is_sqlite(engine):
        _configure_sqlite(engine, timeout_ms, read_only=read_only)
    else:
        _configure_postgresql(engine, timeout_ms)
    try:
        _upgrade(engine, create=create, read_only=read_only, where=display_url(url))
    except CatalogError:
        engine.dispose()
        raise
    except DBAPIError as exc:
        engine.dispose()
        error = translate(exc, timeout_ms)
        if error is exc:
            reason = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else str(exc)
            error = CatalogError(f"cannot open the catalog at {parsed!r}: {reason}")
        raise error from exc
    return Catalog(engine=engine, url=url, timeout_ms=timeout_ms, read_only=read_only)
