from __future__ import annotations

import contextlib
import faulthandler
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest
from typer.testing import CliRunner

from curator.cli import app
from db.catalog import Catalog, open_catalog
from tests.helpers import pg
from tests.helpers.training import blob_picture

BACKENDS = ("sqlite", "postgresql")


_CRASH_LOG: list[IO[str]] = []


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("PYTHONHASHSEED", "0")
    # `make pytest` names a file for the frames of a crash (a signal that kills this process):
    # written there whole, the Makefile shows where it was last, not cut off above a list of
    # the loaded extension modules.
    crash_log = os.environ.get("CURATOR_TEST_CRASH_LOG")
    if crash_log:
        _CRASH_LOG.append(open(crash_log, "w"))  # noqa: SIM115 (open until the process ends)
        faulthandler.enable(file=_CRASH_LOG[0], all_threads=True)


@pytest.fixture(autouse=True)
def _same_working_folder() -> Iterator[None]:
    # A test that moves into its own folder, which goes when it passes, would leave the rest
    # of the run, and every process it starts, in a folder that no longer exists.
    before = os.getcwd()
    yield
    if os.getcwd() != before:
        os.chdir(before)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # A module or test marked `backends` runs once on each catalog engine.
    if "backend" in metafunc.fixturenames and metafunc.definition.get_closest_marker("backends"):
        metafunc.parametrize("backend", BACKENDS, indirect=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[pg.Server | str]:
    """A throwaway PostgreSQL server for the whole run, or the reason there is none."""
    base = Path(tempfile.mkdtemp(prefix="curator-pg-"))
    try:
        server = pg.start_server(base)
    except pg.Unavailable as exc:
        shutil.rmtree(base, ignore_errors=True)
        yield str(exc)
        return
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    return getattr(request, "param", "sqlite")


@pytest.fixture
def db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """The test's catalog URL: a SQLite file under its home, or a new PostgreSQL database."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'home' / 'catalog.db'}"
        return
    server = request.getfixturevalue("pg_server")
    if isinstance(server, str):
        pytest.skip(f"PostgreSQL is not available: {server}")
    url = server.create_database()
    try:
        yield url
    finally:
        server.drop_database(url)


@pytest.fixture
def new_db_url(backend: str, request: pytest.FixtureRequest) -> Iterator[Callable[[Path], str]]:
    """Another empty catalog on the test's backend: new_db_url(home) -> URL."""
    made: list[str] = []
    server = request.getfixturevalue("pg_server") if backend == "postgresql" else None

    def make(home: Path) -> str:
        if server is None:
            return f"sqlite:///{home / 'catalog.db'}"
        made.append(server.create_database())
        return made[-1]

    yield make
    for url in made:
        server.drop_database(url)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db_url: str) -> Path:
    """A fresh CURATOR_HOME for one test, its catalog on the test's backend."""
    path = tmp_path / "home"
    monkeypatch.setenv("CURATOR_HOME", str(path))
    if db_url.startswith("sqlite"):
        monkeypatch.delenv("CURATOR_DB_URL", raising=False)
    else:
        monkeypatch.setenv("CURATOR_DB_URL", db_url)
    return path


@pytest.fixture
def cli(home: Path) -> Callable[..., object]:
    """Run the real CLI in-process: cli("import", path, ...) -> result with exit_code, stdout."""
    runner = CliRunner()

    def invoke(*args: object, input: str | None = None):
        return runner.invoke(app, [str(a) for a in args], input=input)

    return invoke


@pytest.fixture
def catalog(home: Path, db_url: str) -> Iterator[Catalog]:
    cat = open_catalog(db_url)
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


@pytest.fixture
def toy(cli, home, tmp_path) -> Path:
    """A catalog of 90 warm and 90 cold pictures, labeled by a person: imported with folder
    labels, which a reviewer then confirms through a CSV."""
    for label, warm, base in (("happy", True, 0), ("unhappy", False, 1000)):
        (tmp_path / label).mkdir()
        for i in range(90):
            blob_picture(base + i, warm).save(tmp_path / label / f"{i}.jpg")
        assert cli("import", tmp_path / label, "--label", label).exit_code == 0
    table = tmp_path / "catalog.csv"
    assert cli("export", table, "--format", "csv").exit_code == 0
    confirmed = tmp_path / "confirmed.csv"
    rows = table.read_text().splitlines()[1:]
    confirmed.write_text(
        "sha256,label\n"
        + "".join(f"{r.split(',')[1]},{r.split(',')[6]}\n" for r in rows if r.split(",")[6])
    )
    assert cli("label", "--from-csv", confirmed).exit_code == 0
    return home
