from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from curator.cli import app
from db.catalog import Catalog, open_catalog


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh CURATOR_HOME for one test."""
    path = tmp_path / "home"
    monkeypatch.setenv("CURATOR_HOME", str(path))
    monkeypatch.delenv("CURATOR_DB_URL", raising=False)
    return path


@pytest.fixture
def cli(home: Path) -> Callable[..., object]:
    """Run the real CLI in-process: cli("import", path, ...) -> result with exit_code, stdout."""
    runner = CliRunner()

    def invoke(*args: object, input: str | None = None):
        return runner.invoke(app, [str(a) for a in args], input=input)

    return invoke


@pytest.fixture
def catalog(home: Path) -> Iterator[Catalog]:
    cat = open_catalog(f"sqlite:///{home / 'catalog.db'}")
    yield cat
    cat.dispose()


def _sigint_as_default() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen]]:
    """Start a command in its own process group; whatever the test asserts, the command and
    its children are killed when the test ends."""
    started: list[subprocess.Popen] = []

    def start(args: list[str], **kwargs: object) -> subprocess.Popen:
        # Ctrl-C reaches the command as a terminal would deliver it, even where the tests
        # themselves run in the background of a shell, which starts them with SIGINT ignored
        # (and an ignored SIGINT is inherited, and Python then installs no handler for it).
        kwargs.setdefault("preexec_fn", _sigint_as_default)
        proc = subprocess.Popen(args, start_new_session=True, **kwargs)  # type: ignore[call-overload]
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def pytest_configure(config: pytest.Config) -> None:
    # Imports run worker processes; keep them to the cores the machine has.
    os.environ.setdefault("PYTHONHASHSEED", "0")
