"""Two review servers and a crawl writing into one catalog at the same time, for a minute,
on SQLite and on PostgreSQL: every decision a server acknowledged is on record, the crawl's
own counts match its rows, and the catalog is consistent."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.faults.consistency import assert_consistent, assert_no_run_left_running
from tests.helpers import imagefiles as f
from tests.helpers.crawl_server import Behaviour, EngineServer, good_jpeg
from tests.helpers.sql import rows

pytestmark = [pytest.mark.backends, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
SECONDS = 60
IMAGES = 40
CRAWLED = 240


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def call(url: str, body: dict | None = None) -> tuple[int, str]:
    """(status, body) of a GET, or of a POST of `body` as JSON."""
    data = json.dumps(body).encode() if body is not None else None
    origin = "/".join(url.split("/")[:3])  # the page's own, as its requests carry
    headers = {"Content-Type": "application/json", "Origin": origin}
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_healthy(base: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            if call(f"{base}/api/health")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{base} never answered")


class Reviewer(threading.Thread):
    """Labels its own images one request at a time until told to stop, keeping what the
    server acknowledged."""

    def __init__(self, base: str, ids: list[int], seed: int, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.base, self.ids, self.stop = base, ids, stop
        self.rng = random.Random(seed)
        self.acknowledged: list[tuple[int, int, str | None]] = []  # event, image, label
        self.failures: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            image = self.rng.choice(self.ids)
            label = self.rng.choice(["happy", "unhappy", "reject", None])
            status, text = call(f"{self.base}/api/label", {"ids": [image], "label": label})
            if status == 200:
                (event,) = json.loads(text)["events"]
                self.acknowledged.append((event, image, label))
            else:
                self.failures.append(f"{status} {text[:200]}")
            status, text = call(f"{self.base}/api/queue/all?limit=20")
            if status != 200:
                self.failures.append(f"queue {status} {text[:200]}")


def test_two_review_servers_and_a_crawl_for_a_minute(cli, home, db_url, tmp_path, spawn):
    for i in range(IMAGES):
        f.jpeg(tmp_path / "in" / f"{i:02d}.jpg", f.texture(i, (320, 240)))
    assert cli("import", tmp_path / "in").exit_code == 0
    engine = EngineServer(image_delay=SECONDS * 2 / CRAWLED).start()  # about a minute
    try:
        engine.results["happy couple"] = [
            (engine.add_image(f"{i:03d}.jpg", Behaviour(good_jpeg(5000 + i))), None)
            for i in range(CRAWLED)
        ]
        servers, reviewers, stop = [], [], threading.Event()
        for n in range(2):
            port = free_port()
            command = [sys.executable, "-m", "curator", "review", "--port", str(port),
                       "--no-browser", "--author", f"reviewer{n}"]  # fmt: skip
            servers.append(spawn(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
            wait_healthy(f"http://127.0.0.1:{port}", servers[-1])
            mine = [i for i in range(1, IMAGES + 1) if i % 2 == n]
            reviewers.append(Reviewer(f"http://127.0.0.1:{port}", mine, n, stop))
        crawl = spawn(
            [sys.executable, "-m", "tests.helpers.crawl_cli", json.dumps(engine.routes), "crawl",
             "happy couple", "--label", "happy", "--max", str(CRAWLED), "--threads", "2",
             "--json"],
            cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        for reviewer in reviewers:
            reviewer.start()
        time.sleep(SECONDS)
        stop.set()
        for reviewer in reviewers:
            reviewer.join(timeout=120)
        out, err = crawl.communicate(timeout=300)
    finally:
        engine.stop()
    assert crawl.returncode == 0, err
    for reviewer in reviewers:
        assert reviewer.failures == []
        assert len(reviewer.acknowledged) >= 50  # they did write, all minute long
    # Every acknowledged decision is on record, in order, under its reviewer's name.
    for n, reviewer in enumerate(reviewers):
        recorded = rows(
            "SELECT id, image_id, label FROM label_events WHERE origin = 'human' AND author = "
            ":author ORDER BY id",
            author=f"reviewer{n}",
        )
        assert recorded == reviewer.acknowledged
    # The crawl's counts are its rows.
    summary = json.loads(out)["queries"]["happy couple"]
    assert summary["added"] == CRAWLED, summary
    crawled = rows("SELECT count(*) FROM sources WHERE engine = 'bing' AND outcome = 'added'")
    assert crawled == [(CRAWLED,)]
    assert rows("SELECT count(*) FROM images") == [(IMAGES + CRAWLED,)]
    for server in servers:  # stopped as a service manager stops them: their runs closed
        server.terminate()
        assert server.wait(timeout=30) == 130
    assert rows("SELECT status FROM runs WHERE kind = 'review'") == [("interrupted",)] * 2
    assert_consistent(home, db_url)
    assert_no_run_left_running(db_url)
