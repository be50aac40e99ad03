"""A private copy of a catalog a module-scoped fixture built once (trained on, say), for a test
that changes it: on either backend."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from curator.cli import app


def private_copy(
    built: Path,
    home: Path,
    backend: str,
    new_db_url: Callable[[Path], str],
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    """``built`` copied to ``home``; on PostgreSQL, its catalog copied into a new database with
    curator db copy, which CURATOR_DB_URL then names."""
    shutil.copytree(built, home)
    if backend == "postgresql":
        url = new_db_url(home)
        copied = CliRunner().invoke(
            app, ["--home", str(home), "db", "copy", str(home / "catalog.db"), url]
        )
        assert copied.exit_code == 0, copied.output
        monkeypatch.setenv("CURATOR_DB_URL", url)
    return home
