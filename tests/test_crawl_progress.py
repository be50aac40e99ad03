"""The crawl's progress stays readable: plain lines in a log file, a line fitted to a narrow
terminal. The real command in a subprocess, its stderr a file or a pseudo-terminal."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path
from types import SimpleNamespace

import pytest

from curator.cli.crawl import fitted_status
from tests.helpers.crawl_server import Behaviour, EngineServer, good_jpeg

ROOT = Path(__file__).resolve().parents[1]
PLAIN = re.compile(
    r"crawling 'happy couple' \(bing\): added \d+/100, failed \d+(, [a-z ]+ \d+)*, \d+:\d\d"
)


@pytest.fixture
def server():
    srv = EngineServer().start()
    # Three images at once and a drip that holds the crawl for its budget.
    srv.results["happy couple"] = [
        (srv.add_image(f"p{i}.jpg", Behaviour(good_jpeg(960 + i))), None) for i in range(3)
    ] + [(srv.add_image("drip.jpg", Behaviour(good_jpeg(970), drip=0.05)), None)]
    yield srv
    srv.stop()


def command(server: EngineServer, deadline: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "tests.helpers.crawl_cli",
        json.dumps(server.routes),
        "crawl",
        "happy couple",
        "--deadline",
        str(deadline),
        "--retries",
        "0",
    ]


def test_progress_in_a_log_file_is_plain_lines(tmp_path, server, spawn):
    log = tmp_path / "crawl.log"
    env = {**os.environ, "CURATOR_HOME": str(tmp_path / "home")}
    with open(log, "wb") as err:
        # The drip lasts its 6 s budget: past one PLAIN_EVERY (5 s) from the first update.
        proc = spawn(command(server, 6), cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err)
        out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0
    text = log.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert len(lines) >= 2, text  # at least one on the way, and the last state
    assert all(PLAIN.fullmatch(line) for line in lines), text
    assert lines[-1].startswith("crawling 'happy couple' (bing): added 3/100, failed 1")
    assert not set(text) & set("…━╸\r\x1b"), text
    assert b"added 3 (target 100)" in out


def read_all(fd: int, proc: subprocess.Popen) -> bytes:
    """What the command writes to its terminal, until it exits and the terminal is drained."""
    data = b""
    for _ in range(1200):  # 60 s at most
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the other end closed
                break
            if not chunk:
                break
            data += chunk
        elif proc.poll() is not None:
            break
    return data


def test_progress_in_a_narrow_terminal_is_never_cut_into_ellipses(tmp_path, server, spawn):
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 40, 0, 0))
    env = {
        **os.environ,
        "CURATOR_HOME": str(tmp_path / "home"),
        "COLUMNS": "40",
        "TERM": "xterm-256color",
    }
    env.pop("NO_COLOR", None)
    try:
        proc = spawn(
            command(server, 2),
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=terminal,
        )
        os.close(terminal)
        terminal = -1
        shown = read_all(controller, proc)
        proc.wait(timeout=60)
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)
    assert proc.returncode == 0
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07", "", shown.decode("utf-8"))
    lines = [line for line in re.split(r"[\r\n]+", text) if line.strip()]
    assert lines, shown
    assert all(len(line) <= 40 for line in lines), lines
    assert "…" not in text
    assert any(line.startswith("crawling 'happy couple' added 3/100 ") for line in lines), lines


@pytest.mark.parametrize("width", [30, 40, 80, 140])
def test_the_fitted_line_keeps_the_count_whole_at_any_width(width):
    p = SimpleNamespace(
        query="a rather long query about happy couples",
        target=1000,
        added=216,
        counts={"failed": 31, "exact_duplicate": 12, "near_duplicate": 4, "known": 7},
        engine="bing",
    )
    line = fitted_status(p, 754.0, width).plain
    assert len(line) <= width and "added 216/1000" in line and "12:34" in line, line
    if width >= 80:
        assert line.startswith("crawling 'a rather long query about happy couples' ")
    if width >= 140:
        assert "━ added 216/1000 · failed 31 · dup 12 · near 4 · known 7 12:34" in line
