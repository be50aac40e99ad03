"""The review app served for real (uvicorn, curator's limits) on a free loopback port, in a
thread of the test: for tests that need a browser or raw sockets against it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from curator.review import serving
from curator.review.server import create_app
from db.catalog import Catalog
from db.runs import start_run


@contextmanager
def review_server(
    catalog: Catalog,
    home: Path,
    *,
    author: str = "tester",
    limits: serving.Limits | None = None,
    **options: Any,
) -> Iterator[str]:
    """Serve the catalog's review page; yields its base URL (``http://127.0.0.1:PORT``)."""
    with catalog.writing() as session:
        run = start_run(session, kind="review", params={})
    sock = serving.bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    app = create_app(catalog=catalog, home=home, author=author, run_id=run.id, port=port, **options)
    server = serving.make_server(app, limits=limits)
    thread = threading.Thread(target=serving.run, args=(server, [sock]), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


#: Where test clients say they are: the page's own origin, as a browser's requests would.
BASE = "http://127.0.0.1:8765"


def review_client(
    catalog: Catalog, home: Path, *, author: str = "ann", run_id: int | None = None, **options: Any
) -> Any:
    """Starlette's test client for the review app, speaking as the review page does: to the
    server's own host, with its own Origin on every request."""
    from starlette.testclient import TestClient

    if run_id is None:
        with catalog.writing() as session:
            run_id = start_run(session, kind="review", params={}).id
    app = create_app(catalog=catalog, home=home, author=author, run_id=run_id, **options)
    return TestClient(app, base_url=BASE, headers={"Origin": BASE})


@contextmanager
def review_process(
    home: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[str], str, list[str]]]:
    """`curator review` in its own process; yields it, the URL it printed, and its output."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "curator",
            "--home",
            str(home),
            "review",
            "--no-browser",
            "--author",
            "cli-test",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            match = re.search(r"open (http://\S+)", line)
            if match:
                yield proc, match.group(1), lines
                break
        else:
            raise AssertionError(proc.stderr.read() if proc.stderr else "no URL printed")
    finally:
        proc.terminate()
        proc.wait(10)


@contextmanager
def review(home: Path, *args: str) -> Iterator[tuple[str, list[str]]]:
    """`curator review` in its own process; yields the URL it printed and its output."""
    with review_process(home, *args) as (_proc, url, lines):
        yield url, lines


def get(url: str, **headers: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
