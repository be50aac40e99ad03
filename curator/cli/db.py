"""Database commands: curator db copy."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from curator.cli.common import handle_errors, print_json, progress_bar, stdout
from curator.display import escape_controls
from db.catalog import display_url, open_catalog
from db.copy import copy_catalog, tables
from db.errors import CatalogError

#: The group's help, as written (typer is given it as Markdown, see curator.cli.helptext).
HELP = (
    "Move the catalog between databases.\n\nExample:\n\n"
    "    curator db copy catalog.db postgresql+psycopg://me@dbhost/curator"
)

db_app = typer.Typer(
    name="db",
    help=HELP,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def as_url(value: str) -> str:
    """A database URL as given, or a path to a SQLite catalog file."""
    if "://" in value:
        return value
    return f"sqlite:///{Path(value).expanduser().absolute()}"


def copy_command(
    src: str = typer.Argument(..., help="The catalog to copy: a database URL or a SQLite file."),
    dst: str = typer.Argument(..., help="Where to copy it: an empty database or a new file."),
    as_json: bool = typer.Option(False, "--json", help="Print the tables copied as JSON."),
) -> None:
    """Copy a whole catalog to another database, SQLite to PostgreSQL or back, and verify it.

    Every row of every table is copied with its id, in one transaction: if anything fails the
    destination is left empty, and the command can simply be run again. Before it commits,
    both sides are counted and digested table by table (the label histories included); any
    difference rolls the copy back. The source is read as of one moment; nothing in it
    changes (a catalog of an older curator is first upgraded, as every command does), and a
    source that is not a catalog (missing, empty, not SQLite, or without curator's tables) is
    refused as it is. Image files stay where they are, under CURATOR_HOME; point
    CURATOR_DB_URL at the copy.

    Example:

        curator db copy catalog.db postgresql+psycopg://me@dbhost/curator
        curator db copy postgresql+psycopg://me@dbhost/curator ./catalog-backup.db
    """
    src_url, dst_url = as_url(src), as_url(dst)
    if src_url == dst_url:
        raise CatalogError("the source and the destination are the same catalog")
    started = time.monotonic()
    # Only a catalog already there: an empty or foreign file is refused as it is, and the
    # destination is not opened (nor made) before the source is known good.
    source = open_catalog(src_url, create=False)
    try:
        target = open_catalog(dst_url)
    except BaseException:
        source.dispose()
        raise
    try:
        with progress_bar("copying", None) as update:
            copied = copy_catalog(
                source,
                target,
                on_progress=lambda table, done, total: update(done, table, total=total),
            )
    finally:
        source.dispose()
        target.dispose()
    seconds = time.monotonic() - started
    if as_json:
        print_json(
            {
                "source": display_url(src_url),
                "destination": display_url(dst_url),
                "seconds": round(seconds, 2),
                "tables": {t.name: {"rows": t.rows, "sha256": t.digest} for t in copied},
            }
        )
        return
    total = sum(t.rows for t in copied)
    stdout.print(
        f"copied {total} rows from {escape_controls(display_url(src_url))} to "
        f"{escape_controls(display_url(dst_url))} in {seconds:.1f} s"
    )
    for t in copied:
        stdout.print(f"  {t.name:<15}{t.rows:>9}   sha256 {t.digest[:16]}")
    stdout.print(
        f"verified: the {len(tables())} tables (label histories included) hold the same rows "
        "on both sides"
    )


def register(app: typer.Typer) -> None:
    db_app.command("copy")(handle_errors(copy_command))
    app.add_typer(db_app, name="db")
