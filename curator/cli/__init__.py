"""The ``curator`` command: one typer app, each group of commands in its own module."""

from __future__ import annotations

import signal
from pathlib import Path

import typer

from curator import __version__
from curator.cli import catalog as catalog_commands
from curator.cli import check as check_commands
from curator.cli import crawl as crawl_commands
from curator.cli import db as db_commands
from curator.cli import demo as demo_commands
from curator.cli import embed as embed_commands
from curator.cli import explain as explain_commands
from curator.cli import models as models_commands
from curator.cli import review as review_commands
from curator.cli import score as score_commands
from curator.cli import train as train_commands
from curator.cli.common import close_opened_catalogs
from curator.cli.helptext import render_helps
from curator.config import load_settings

#: The app's own help, as written (typer is given it as Markdown, see curator.cli.helptext).
HELP = (
    "Build image classification data sets, and the models trained on them.\n\n"
    "Data lives in CURATOR_HOME (default: a per-user data folder); CURATOR_DB_URL "
    "points the catalog at another database.\n\n"
    "Example:\n\n"
    "    curator demo\n"
    "    curator import ~/photos/couples --label happy\n"
    "    curator stats"
)

app = typer.Typer(
    name="curator",
    help=HELP,
    rich_markup_mode="markdown",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(asked: bool) -> None:
    if asked:
        typer.echo(f"curator {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    home: Path | None = typer.Option(
        None, "--home", help="Where images and the catalog live [env: CURATOR_HOME]."
    ),
    db_url: str | None = typer.Option(
        None, "--db-url", help="SQLAlchemy URL of the catalog [env: CURATOR_DB_URL]."
    ),
    _version: bool = typer.Option(
        False,
        "--version",
        callback=_print_version,
        is_eager=True,
        help="Print curator's version and exit.",
    ),
) -> None:
    ctx.obj = load_settings(home=home, db_url=db_url)
    ctx.call_on_close(close_opened_catalogs)


catalog_commands.register(app)
check_commands.register(app)
crawl_commands.register(app)
review_commands.register(app)
train_commands.register(app)
models_commands.register(app)
score_commands.register(app)
explain_commands.register(app)
embed_commands.register(app)
demo_commands.register(app)
db_commands.register(app)
# Written as plain text, rendered as Markdown: placeholders and example lines kept as written.
render_helps(app)


def _terminated(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    # `kill`, `docker stop` and systemd end a command the way Ctrl-C does: what was done is
    # saved and its run closed as interrupted, instead of a run left open.
    signal.signal(signal.SIGTERM, _terminated)
    app()
