"""An interrupted crawl (kill -9, Ctrl-C) run again ends as an uninterrupted one would."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.crawl_server import Behaviour, EngineServer, good_jpeg, near_copy

ROOT = Path(__file__).resolve().parents[2]
N = 80


@pytest.fixture
def server():
    srv = EngineServer(image_delay=0.05).start()
    results = []
    for i in range(N):
        if i in (30, 70):  # near copies, same size as their originals, arriving later
            body = near_copy(1000 + i - 25)
        elif i == 50:
            body = b"<html>moved</html>"
        else:
            body = good_jpeg(1000 + i)
        results.append((srv.add_image(f"{i:03d}.jpg", Behaviour(body)), None))
    srv.results["happy couple"] = results
    yield srv
    srv.stop()


def start(spawn, home: Path, server: EngineServer, *args: str) -> subprocess.Popen:
    return spawn(
        [
            sys.executable,
            "-m",
            "tests.helpers.crawl_cli",
            json.dumps(server.routes),
            "crawl",
            "happy couple",
            "--label",
            "happy",
            "--max",
            "60",
            "--threads",
            "4",
            *args,
        ],
        cwd=ROOT,
        env={**os.environ, "CURATOR_HOME": str(home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def count(home: Path) -> int:
    try:
        with sqlite3.connect(f"file:{home / 'catalog.db'}?mode=ro", uri=True) as db:
            return db.execute("SELECT count(*) FROM images").fetchone()[0]
    except sqlite3.Error:
        return 0


def state(home: Path) -> tuple[set, set, int]:
    with sqlite3.connect(home / "catalog.db") as db:
        images = set(db.execute("SELECT sha256, status, split, path FROM images"))
        sources = set(db.execute("SELECT locator, outcome, reason, query, engine FROM sources"))
        labels = db.execute("SELECT count(*) FROM label_events").fetchone()[0]
    for _sha, _status, _split, path in images:
        assert (home / path).is_file()
    return images, sources, labels


def interrupt(spawn, home: Path, server: EngineServer, sig: int) -> subprocess.Popen:
    proc = start(spawn, home, server)
    deadline = time.monotonic() + 120
    while count(home) < 10 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
    os.killpg(proc.pid, sig)
    proc.wait(timeout=60)
    return proc


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_interrupted_crawl_continues_to_the_same_catalog(tmp_path, server, sig, spawn):
    interrupted, clean = tmp_path / "interrupted", tmp_path / "clean"
    proc = interrupt(spawn, interrupted, server, sig)
    if sig == signal.SIGINT:
        assert proc.returncode == 130
        assert b"interrupted" in proc.stderr.read()
    partial = count(interrupted)
    assert 0 < partial < 60
    rerun = start(spawn, interrupted, server, "--json")
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err.decode()
    summary = json.loads(out)["queries"]["happy couple"]
    assert summary["already"] >= 1 and summary["already"] + summary["added"] == 60, summary
    full = start(spawn, clean, server)
    assert full.wait(timeout=300) == 0
    (a_images, a_sources, a_labels), (b_images, b_sources, b_labels) = (
        state(interrupted),
        state(clean),
    )
    assert a_images ^ b_images == set(), (partial, summary)
    assert a_sources ^ b_sources == set(), (partial, summary)
    assert a_labels == b_labels
