"""A batch job's life in the catalog: a run row opened first, closed with its counts."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from db.catalog import Catalog
from db.runs import finish_run, mark_stale_runs, start_run


@dataclass
class RunScope:
    id: int
    counts: dict[str, Any] = field(default_factory=dict)
    status: str = "done"


@contextmanager
def tracked_run(catalog: Catalog, *, kind: str, params: dict[str, Any]) -> Iterator[RunScope]:
    """Open a run row (committed at once, so a crash leaves a trace) and close it at the end:
    ``done``, ``interrupted`` on Ctrl-C, or ``failed`` with the error's message."""
    with catalog.writing() as session:
        mark_stale_runs(session)
        run = start_run(session, kind=kind, params=params)
    scope = RunScope(id=run.id)
    status, error = scope.status, None
    try:
        yield scope
        status = scope.status
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    except BaseException as exc:
        status, error = "failed", f"{type(exc).__name__}: {exc}"
        raise
    finally:
        try:
            with catalog.writing() as session:
                finish_run(
                    session, run_id=scope.id, status=status, counts=scope.counts, error=error
                )
        except Exception:
            if status == "done":
                raise
            # The run is failing already: keep that error, not this one. The run row stays
            # "running" until a later run of this host marks it interrupted.
