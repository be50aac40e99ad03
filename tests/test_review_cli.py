"""curator review as users start it: the command in its own process."""

from __future__ import annotations

import json
import re
import socket

import pytest

from tests.helpers import imagefiles as f
from tests.helpers.review_server import get, review

pytestmark = pytest.mark.backends


def test_review_serves_the_page_and_takes_a_taken_port(home, cli, tmp_path):
    f.jpeg(tmp_path / "a.jpg", f.texture(1))
    cli("import", tmp_path / "a.jpg")
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    taken = blocker.getsockname()[1]
    try:
        with review(home, "--port", str(taken)) as (url, lines):
            assert f"port {taken} is taken" in "".join(lines)
            assert url.startswith("http://127.0.0.1:") and f":{taken}/" not in url
            base = url.split("/?")[0]
            status, body = get(url)
            assert status == 200 and b"curator review" in body
            state = json.loads(get(f"{base}/api/state")[1])
            assert state["author"] == "cli-test" and state["queues"]["all"] == 1
    finally:
        blocker.close()


def test_off_loopback_the_url_carries_a_token_and_nothing_works_without_it(home, cli):
    cli("stats")  # creates the catalog
    with review(home, "--host", "0.0.0.0", "--port", "0") as (url, _lines):
        token = re.search(r"token=([\w-]+)", url).group(1)
        base = url.split("/?")[0]
        assert get(f"{base}/api/state")[0] == 403
        assert get(f"{base}/api/state", **{"X-Curator-Token": token})[0] == 200


def test_an_unknown_queue_is_refused_before_starting(home, cli):
    result = cli("review", "--queue", "fancy", "--no-browser")
    assert result.exit_code == 1 and "no queue 'fancy'" in result.stderr


@pytest.mark.parametrize("port", ["99999", "-1"])
def test_a_port_out_of_range_is_one_line_and_starts_nothing(home, cli, port):
    result = cli("review", "--port", port, "--no-browser")
    assert result.exit_code == 2 and "Traceback" not in result.output
    said = [line for line in result.stderr.splitlines() if "--port" in line]
    assert len(said) == 1 and "Invalid value for '--port'" in said[0], result.stderr
    assert ("65535" if port == "99999" else "0") in said[0]
    assert not home.exists()  # refused before the catalog was opened
