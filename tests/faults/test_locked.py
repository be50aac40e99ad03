"""The catalog held by another writer for longer than the busy timeout, on SQLite and on
PostgreSQL: every writer says so in one line, writes nothing half-way, and a rerun once the
lock is gone ends as if nothing had happened."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from db.catalog import WRITE_LOCK_KEY, open_catalog
from tests.faults.consistency import assert_consistent, assert_no_run_left_running
from tests.helpers import imagefiles as f
from tests.helpers.review_server import review_client
from tests.helpers.sql import rows

pytestmark = pytest.mark.backends

#: Pictures in the import that meets the lock: enough that it is still running when it does.
N = 400


@contextmanager
def held(url: str) -> Iterator[None]:
    """Another program holding the catalog's write lock, as a long write transaction does."""
    if url.startswith("sqlite"):
        db = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None, timeout=30)
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            db.execute("ROLLBACK")
            db.close()
        return
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(text(f"SELECT pg_advisory_lock({WRITE_LOCK_KEY})"))
            try:
                yield
            finally:
                conn.execute(text(f"SELECT pg_advisory_unlock({WRITE_LOCK_KEY})"))
    finally:
        engine.dispose()


def pictures(folder: Path, n: int, offset: int = 0) -> Path:
    for i in range(n):
        f.jpeg(folder / f"{i:03d}.jpg", f.texture(offset + i, (480, 360)), quality=92)
    return folder


def test_an_import_that_meets_the_lock_stops_cleanly_and_its_rerun_completes(
    cli, home, db_url, tmp_path, monkeypatch, spawn
):
    assert cli("stats").exit_code == 0  # the catalog exists
    folder = pictures(tmp_path / "in", N)
    monkeypatch.setenv("CURATOR_DB_TIMEOUT", "1")
    command = [sys.executable, "-m", "curator", "import", str(folder), "--label", "happy"]
    proc = spawn(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if rows("SELECT count(*) FROM images", db_url)[0][0] >= 10:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the import ended before the lock was taken; use more files"
    with held(db_url):
        _out, err = proc.communicate(timeout=120)
        recorded = rows("SELECT count(*) FROM images", db_url)[0][0]
    assert proc.returncode == 1, err
    assert err.strip().splitlines()[-1] == (
        "error: the catalog is locked by another writer for more than 1 s; nothing was "
        "written, try again"
    )
    assert "Traceback" not in err
    assert 10 <= recorded < N
    # Every recorded image is whole; its label went in with it.
    assert rows("SELECT count(DISTINCT image_id) FROM label_events", db_url) == [(recorded,)]
    monkeypatch.delenv("CURATOR_DB_TIMEOUT")
    result = cli("import", folder, "--label", "happy", "--json")
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout)
    assert counts["added"] + counts["unchanged"] == N and counts["unchanged"] == recorded
    assert rows("SELECT count(*), count(DISTINCT sha256) FROM images", db_url) == [(N, N)]
    assert rows("SELECT count(*) FROM label_events", db_url) == [(N,)]
    assert_consistent(home)
    assert_no_run_left_running(db_url)


def test_commands_and_the_review_page_refuse_while_locked_and_work_after(
    cli, home, db_url, tmp_path, monkeypatch
):
    pictures(tmp_path / "in", 4)
    assert cli("import", tmp_path / "in").exit_code == 0
    before = rows("SELECT count(*) FROM label_events", db_url)
    monkeypatch.setenv("CURATOR_DB_TIMEOUT", "0.5")
    catalog = open_catalog(db_url)
    try:
        client = review_client(catalog, home, author="ann")
        with held(db_url):
            for args in (("label", "1", "--as", "happy"), ("classes", "cat", "dog")):
                result = cli(*args)
                assert result.exit_code == 1, args
                assert result.stderr.count("\n") == 1 and "locked by another writer" in (
                    result.stderr
                )
            answer = client.post("/api/label", json={"ids": [1, 2], "label": "happy"})
            assert answer.status_code == 503
            assert "locked by another writer for more than 0.5 s" in answer.json()["error"]
            # Reading goes on while the lock is held.
            assert client.get("/api/queue/all").status_code == 200
            assert json.loads(cli("stats", "--json").stdout)["images"]["total"] == 4
        assert rows("SELECT count(*) FROM label_events", db_url) == before
        answer = client.post("/api/label", json={"ids": [1, 2], "label": "happy"})
        assert answer.status_code == 200
        assert cli("label", "3", "--as", "unhappy").exit_code == 0
    finally:
        catalog.dispose()
    assert rows(
        "SELECT image_id, label FROM label_events WHERE origin = 'human' ORDER BY id", db_url
    ) == [(1, "happy"), (2, "happy"), (3, "unhappy")]
    assert_consistent(home)
