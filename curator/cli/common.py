"""What every command shares: settings from the context, error handling, output helpers."""

from __future__ import annotations

import functools
import getpass
import json
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, ParamSpec, Protocol, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from classifier.errors import TrainingError
from curator.config import Layout, Settings, load_settings
from curator.defaults import SCORE
from curator.display import escape_controls
from curator.errors import BadRows, CuratorError
from curator.hints import with_hint
from db.catalog import Catalog, open_catalog
from db.errors import CatalogError

P = ParamSpec("P")
R = TypeVar("R")

# User data (file names, classes, authors) goes through these: never read it as markup or
# emoji codes (":smile:" in a file name is those seven characters). Control characters in
# it are escaped before it gets here (curator.display).
stderr = Console(stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False)
stdout = Console(highlight=False, soft_wrap=True, markup=False, emoji=False)


#: The largest near-duplicate threshold accepted: beyond it the search degrades to comparing
#: every pair, and distinct photos start to match (bench/hash_threshold.py).
MAX_THRESHOLD = 16


# The option factories are typed as the value the parameter receives, as typer.Option is
# used: ``threshold: int = threshold_option(10)``.
def threshold_option(default: int) -> int:
    return typer.Option(
        default,
        "--threshold",
        min=0,
        max=MAX_THRESHOLD,
        help=f"Near-duplicate distance in bits of 64 (0-{MAX_THRESHOLD}).",
    )


def device_option(default: str = "auto") -> str:
    return typer.Option(default, help="auto, cpu, cuda, cuda:N or mps.")


def forward_batch_option() -> int:
    """--batch-size of the commands that run a model over pictures (score, embed)."""
    return typer.Option(SCORE["batch_size"], min=1, help="Pictures per forward pass.")


def decoding_workers_option() -> int:
    """--workers of the commands that run a model over pictures (score, embed)."""
    return typer.Option(SCORE["workers"], min=0, help="Processes decoding pictures.")


def settings_of(ctx: typer.Context) -> Settings:
    root = ctx.find_root()
    if not isinstance(root.obj, Settings):
        root.obj = load_settings()
    return root.obj


#: The catalogs opened by the command running in this process, closed when it ends.
_opened: list[Catalog] = []


def open_settings_catalog(settings: Settings) -> Catalog:
    """The catalog the settings name, closed when the command that opened it ends.

    Closed, not left to the garbage collector: a connection kept open by a command that has
    returned (as in a program or test that runs several in one process) holds the catalog's
    shared-memory file mapped, and another process that finds the file unused may truncate it
    under that mapping."""
    catalog = open_catalog(settings.db_url)
    _opened.append(catalog)
    return catalog


def close_opened_catalogs() -> None:
    """Close what `open_settings_catalog` opened (the root command's context calls it)."""
    while _opened:
        _opened.pop().dispose()


def default_author() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def fail(message: str, code: int = 1) -> NoReturn:
    """One line on stderr and exit. Messages embed file names, URLs and labels: a newline or
    an ESC in one is shown escaped, so the message stays one line and the terminal as it was."""
    stderr.print(Text("error: ", style="red") + Text(escape_controls(message)))
    raise typer.Exit(code)


#: Problems listed one a line under an error, before a count of the rest.
SHOWN_PROBLEMS = 20


def fail_listing(message: str, problems: list[str], code: int = 1) -> NoReturn:
    """An error line, then the first `SHOWN_PROBLEMS` problems one a line (each escaped, so
    one line each) and how many more there are; then exit."""
    stderr.print(Text("error: ", style="red") + Text(escape_controls(message)))
    for problem in problems[:SHOWN_PROBLEMS]:
        stderr.print(Text(f"  {escape_controls(problem)}"))
    if len(problems) > SHOWN_PROBLEMS:
        stderr.print(Text(f"  and {len(problems) - SHOWN_PROBLEMS} more"))
    raise typer.Exit(code)


def _home_of(*given: object) -> Path | None:
    """The home of the command running (its ``--home``), from its context among ``given``
    (the command's arguments, positional or not)."""
    for ctx in given:
        # By what it does: typer hands its own copy of click's Context, not typer.Context.
        root = getattr(ctx, "find_root", None)
        if callable(root) and isinstance(getattr(root(), "obj", None), Settings):
            return root().obj.home
    return None


def _log_unexpected(exc: BaseException, home: Path | None) -> Path | None:
    try:
        log = Layout(home or load_settings().home).logs / "errors.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(f"--- {datetime.now(UTC).isoformat()} curator {' '.join(sys.argv[1:])}\n")
            fh.write("".join(traceback.format_exception(exc)))
        return log
    except OSError:
        return None


def handle_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn known errors into one line on stderr (with what to do next, where curator.hints
    has it) and exit code 1; Ctrl-C into exit 130."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except BadRows as exc:
            if len(exc.problems) == 1:
                fail(f"{exc.problems[0]}; {exc.outcome}")
            fail_listing(str(exc), exc.problems)
        except (CuratorError, CatalogError, TrainingError) as exc:
            fail(with_hint(exc))
        except KeyboardInterrupt:
            stderr.print(
                "interrupted: what was done is saved; run the same command again to continue"
            )
            raise typer.Exit(130) from None
        except Exception as exc:
            log = _log_unexpected(exc, _home_of(*args, *kwargs.values()))
            where = f" (the traceback is in {log})" if log else ""
            fail(f"unexpected {type(exc).__name__}: {exc}{where}")

    return wrapper


def pct(value: float | None) -> str:
    """A share as a percentage with one decimal, "-" when unknown."""
    return "-" if value is None else f"{value * 100:.1f} %"


def print_json(data: Any) -> None:
    # ASCII on purpose: JSON then escapes every control character, C1 and bidi controls
    # included, as \uXXXX, and the output goes through any terminal and any encoding intact.
    sys.stdout.write(json.dumps(data, indent=2, default=str, ensure_ascii=True) + "\n")


@contextmanager
def progress_bar(description: str, total: int | None) -> Iterator[Callable[..., None]]:
    """A progress bar on stderr, shown from the first update (so that an error found before
    any work starts is not preceded by an empty bar); yields ``update(completed, status)``."""
    columns = [
        TextColumn("{task.description}", markup=False),  # it may name a video or a file
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}", markup=False),
    ]
    bar = Progress(*columns, console=stderr, transient=False)
    task: list[TaskID] = []

    def update(completed: int, status: str = "", total: int | None = None) -> None:
        if not task:
            bar.start()
            task.append(bar.add_task(escape_controls(description), total=total, status=""))
        if total is not None:
            bar.update(task[0], total=total)
        bar.update(task[0], completed=completed, status=escape_controls(status))

    try:
        yield update
    finally:
        if task:
            bar.stop()


class PictureProgress(Protocol):
    """How far a pass over pictures is (scoring's or embedding's progress)."""

    @property
    def done(self) -> int: ...
    @property
    def total(self) -> int: ...
    @property
    def failed(self) -> int: ...


def counting_unreadable(update: Callable[..., None]) -> Callable[[PictureProgress], None]:
    """A pass's progress shown on a `progress_bar`, with the pictures that would not decode."""

    def progress(p: PictureProgress) -> None:
        update(p.done, f"{p.failed} unreadable" if p.failed else "", total=p.total)

    return progress


def conflict_note(counts: dict[str, Any]) -> str:
    """What happened to the labels that differed from the ones their groups held."""
    by = counts.get("label_conflicts_by_outcome", {})
    parts = []
    if by.get("kept"):
        parts.append(f"{by['kept']} kept their label; --relabel replaces them")
    if by.get("kept-human"):
        parts.append(f"{by['kept-human']} kept a person's label; curator label changes those")
    if by.get("replaced"):
        parts.append(f"{by['replaced']} relabeled")
    examples = counts.get("label_conflict_examples") or []
    if examples:
        parts.append(f"see curator show {examples[0]}")
    return "; ".join(parts)
