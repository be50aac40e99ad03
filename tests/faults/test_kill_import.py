"""kill -9 in the middle of an import, then the same import again: nothing lost, nothing extra."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.faults.consistency import assert_consistent
from tests.helpers import imagefiles as f

N_FILES = 500


def count_images(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as con:
            return con.execute("SELECT count(*) FROM images").fetchone()[0]
    except sqlite3.Error:
        return 0


def wait_for_images(proc: subprocess.Popen, home: Path, n: int = 60) -> None:
    """Until the import has recorded `n` images (or has ended, or two minutes have passed)."""
    deadline = time.monotonic() + 120
    while count_images(home / "catalog.db") < n and time.monotonic() < deadline:
        if proc.poll() is not None:
            return
        time.sleep(0.05)


def curator(spawn, home: Path, *args: str) -> subprocess.Popen:
    """The command in its own process group (so that killing it kills its workers too)."""
    env = {**os.environ, "CURATOR_HOME": str(home)}
    return spawn(
        [sys.executable, "-m", "curator", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def catalog_state(home: Path) -> tuple[set, list]:
    with sqlite3.connect(home / "catalog.db") as con:
        images = set(con.execute("SELECT sha256, path, status, split FROM images"))
        sources = sorted(con.execute("SELECT locator, outcome FROM sources"))
    return images, sources


@pytest.mark.slow
def test_kill_9_during_import_then_rerun(tmp_path, spawn):
    folder = tmp_path / "in"
    for i in range(N_FILES):
        f.jpeg(folder / f"{i:04d}.jpg", f.texture(i, (640, 480)), quality=92)
    # Near copies of the same size as their originals, early and late: which one is the
    # group's representative (then the oldest) must not depend on the crash.
    for copy, original in ((20, 3), (450, 40), (480, 400)):
        f.jpeg(folder / f"{copy:04d}.jpg", f.texture(original, (640, 480)), quality=60)
    crashed, clean = tmp_path / "crashed", tmp_path / "clean"

    proc = curator(spawn, crashed, "import", str(folder), "--label", "happy")
    wait_for_images(proc, crashed)
    assert proc.poll() is None, "the import ended before it could be killed; use more files"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    partial = count_images(crashed / "catalog.db")
    assert 0 < partial < N_FILES
    with sqlite3.connect(crashed / "catalog.db") as con:  # no row points at a missing file
        for (path,) in con.execute("SELECT path FROM images"):
            assert (crashed / path).is_file()

    rerun = curator(spawn, crashed, "import", str(folder), "--label", "happy", "--json")
    _out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err.decode()
    full = curator(spawn, clean, "import", str(folder), "--label", "happy")
    assert full.wait(timeout=300) == 0

    assert_consistent(crashed)
    crashed_images, crashed_sources = catalog_state(crashed)
    clean_images, clean_sources = catalog_state(clean)
    assert crashed_images ^ clean_images == set()
    assert crashed_sources == clean_sources
    assert sum(status == "duplicate" for _sha, _path, status, _split in clean_images) >= 3
    with sqlite3.connect(crashed / "catalog.db") as con:
        assert con.execute("SELECT count(*) FROM label_events").fetchone()[0] == N_FILES
        statuses = [s for (s,) in con.execute("SELECT status FROM runs ORDER BY id")]
    assert statuses == ["interrupted", "done"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "stop",
    [
        lambda proc: os.killpg(proc.pid, signal.SIGINT),  # a terminal's Ctrl-C: the group
        lambda proc: os.kill(proc.pid, signal.SIGTERM),  # `kill PID`, docker stop: the parent
        lambda proc: os.killpg(proc.pid, signal.SIGTERM),  # systemd: every process of it
    ],
    ids=["ctrl-c", "kill", "systemd-stop"],
)
def test_ctrl_c_keeps_what_was_done_and_says_how_to_continue(tmp_path, spawn, stop):
    folder = tmp_path / "in"
    for i in range(N_FILES):
        f.jpeg(folder / f"{i:04d}.jpg", f.texture(i, (640, 480)), quality=92)
    home = tmp_path / "home"
    proc = curator(spawn, home, "import", str(folder))
    wait_for_images(proc, home)
    assert proc.poll() is None, "the import ended before Ctrl-C; use more files"
    stop(proc)
    _out, err = proc.communicate(timeout=60)
    # Shown when it fails: what the command printed, and how far it had got.
    seen = f"stderr: {err.decode()[-1500:]!r}; images: {count_images(home / 'catalog.db')}"
    assert proc.returncode == 130, seen
    assert "interrupted: what was done is saved" in err.decode()
    assert "Traceback" not in err.decode()
    with sqlite3.connect(home / "catalog.db") as con:
        assert con.execute("SELECT status FROM runs").fetchall() == [("interrupted",)]
        done = con.execute("SELECT count(*) FROM images").fetchone()[0]
    assert 0 < done < N_FILES
    with sqlite3.connect(home / "catalog.db") as con:  # every row has its file
        assert all((home / p).is_file() for (p,) in con.execute("SELECT path FROM images"))
    # Files stored for images not yet recorded are completed by running the same command.
    rerun = curator(spawn, home, "import", str(folder))
    assert rerun.wait(timeout=300) == 0
    assert count_images(home / "catalog.db") == N_FILES
    assert_consistent(home)
