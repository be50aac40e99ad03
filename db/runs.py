"""Runs: one row per batch job, so every change in the catalog can be traced to its cause."""

from __future__ import annotations

import os
import socket
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db.models import Run, utcnow


def start_run(session: Session, *, kind: str, params: dict[str, Any]) -> Run:
    run = Run(
        kind=kind,
        status="running",
        params=params,
        counts={},
        host=socket.gethostname(),
        pid=os.getpid(),
    )
    session.add(run)
    session.flush()
    return run


def finish_run(
    session: Session,
    *,
    run_id: int,
    status: str,
    counts: dict[str, Any],
    error: str | None = None,
) -> None:
    run = session.get(Run, run_id)
    if run is None:
        return
    run.status = status
    run.counts = counts
    run.error = error
    run.ended_at = utcnow()


def run_by_id(session: Session, *, run_id: int) -> Run | None:
    """The run with this id, if there is one."""
    return session.get(Run, run_id)


def latest_run(session: Session, *, kind: str) -> Run | None:
    """The newest run of this kind."""
    return session.scalars(
        select(Run).where(Run.kind == kind).order_by(Run.id.desc()).limit(1)
    ).first()


def runs_of_kind(session: Session, *, kind: str) -> list[Run]:
    """Every run of this kind, newest first."""
    return list(session.scalars(select(Run).where(Run.kind == kind).order_by(Run.id.desc())))


def run_counts(session: Session) -> dict[str, int]:
    """How many runs there were of each kind."""
    rows = session.execute(select(Run.kind, func.count()).group_by(Run.kind))
    return {kind: int(count) for kind, count in rows}


def running_runs(session: Session) -> list[Run]:
    """The runs marked running (on any host; some may be dead), oldest first."""
    return list(session.scalars(select(Run).where(Run.status == "running").order_by(Run.id)))


def process_alive(pid: int) -> bool:
    """Whether a process of this host with that id still runs (a zombie does not)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A killed process whose parent died too can linger unreaped (in containers whose init
    # does not reap): it still has a pid, but it will never write again.
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]
        return state not in (b"Z", b"X")
    except (OSError, IndexError):
        return True


def run_is_live(session: Session, *, run_id: int) -> bool:
    """Whether a run is still going: marked running, by a process of this host that lives."""
    run = session.get(Run, run_id)
    return (
        run is not None
        and run.status == "running"
        and run.host == socket.gethostname()
        and run.pid is not None
        and process_alive(run.pid)
    )


def mark_stale_runs(session: Session) -> int:
    """Mark runs of this host whose process is gone (killed, crashed) as interrupted."""
    host = socket.gethostname()
    stale = 0
    for run in session.scalars(select(Run).where(Run.status == "running", Run.host == host)):
        if run.pid is not None and run.pid != os.getpid() and not process_alive(run.pid):
            run.status = "interrupted"
            stale += 1
    return stale
