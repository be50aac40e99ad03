"""One budget per URL (--deadline): every hop, attempt and back-off wait of a URL comes out of it,
a body cut off as too-slow is not fetched again at once, and a host that timed out or dripped
gets one request at a time. Each hostile server on loopback, with budgets of a few seconds."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from curator.crawl.http import FetchPolicy
from curator.crawl.runner import CrawlOptions
from curator.ingest.imaging import Limits
from tests.helpers.crawl_server import Behaviour, EngineServer, good_jpeg
from tests.helpers.crawling import crawl_home

#: A budget of 2 s for each URL, a silent server waited for 3 s: the budget decides.
BUDGET = FetchPolicy(
    read_timeout=3,
    deadline=2,
    retries=2,
    backoff=0.05,
    max_retry_after=30,
    max_bytes=2_000_000,
    per_host=8,
)


@pytest.fixture
def server():
    srv = EngineServer().start()
    yield srv
    srv.stop()


def run(home: Path, server: EngineServer, queries: list[str], **kw) -> dict:
    base = dict(routes=server.routes, policy=BUDGET, threads=8, limits=Limits(max_bytes=2_000_000))
    return crawl_home(home, queries, CrawlOptions(**{**base, **kw}))


def outcomes(home: Path) -> dict[str, tuple[str, str | None, str | None]]:
    with sqlite3.connect(home / "catalog.db") as db:
        rows = db.execute("SELECT locator, outcome, reason, detail FROM sources").fetchall()
    return {Path(loc).name: (outcome, reason, detail) for loc, outcome, reason, detail in rows}


def hostile(server: EngineServer) -> dict[str, tuple[str, str]]:
    """Servers that never finish within the budget, by name -> (outcome, reason)."""
    cases = {
        # Accepts the connection, reads the request, never answers.
        "hang.jpg": (Behaviour(hang=True), "timeout"),
        # Headers, then nothing.
        "stall.jpg": (Behaviour(good_jpeg(1), stall=True), "too-slow"),
        # A valid JPEG, one byte every 0.1 s.
        "drip.jpg": (Behaviour(good_jpeg(2), drip=0.1), "too-slow"),
        # 200 and a body that never ends, as fast as it is read: cut at --max-bytes.
        "endless.jpg": (Behaviour(endless=0, chunk=65536), "too-large"),
        # 200 and a body that never ends, slowly: cut at the budget.
        "endless-slow.jpg": (Behaviour(endless=0.05), "too-slow"),
        # A 503 asking for 10 s: waiting would outlast the budget.
        "later.jpg": (
            Behaviour(
                b"busy", status=503, content_type="text/plain", headers={"Retry-After": "10"}
            ),
            "http-5xx",
        ),
    }
    # A redirect chain that grows slower at each hop: each hop answers within --timeout, but
    # the hops together pass the budget.
    for hop in range(4):
        location = f"/img/chain-{hop + 1}.jpg" if hop < 3 else "/img/chain-end.jpg"
        behaviour = Behaviour(status=302, headers={"Location": location}, delay=0.6 * hop)
        server.add_image(f"chain-{hop}.jpg", behaviour)
    server.add_image("chain-end.jpg", Behaviour(good_jpeg(3), delay=1.2))
    cases["chain-0.jpg"] = (server.images["chain-0.jpg"], "timeout")
    for name, (behaviour, _reason) in cases.items():
        server.images[name] = behaviour
    return {name: ("failed", reason) for name, (_b, reason) in cases.items()}


def test_each_hostile_server_ends_within_the_url_budget_with_its_reason(tmp_path, server):
    expected = hostile(server)
    good = [server.add_image(f"good-{i}.jpg", Behaviour(good_jpeg(10 + i))) for i in range(6)]
    server.results["q"] = [(server.image_url(n), None) for n in expected] + [
        (url, None) for url in good
    ]
    home = tmp_path / "home"
    summary = run(home, server, ["q"])["q"]
    got = outcomes(home)
    assert {n: got[n][:2] for n in expected} == expected, {n: got[n] for n in expected}
    assert summary["added"] == 6
    assert all(got[f"good-{i}.jpg"][0] == "added" for i in range(6))
    # Within the budget, not once per attempt: nothing dripped or stalled was fetched again,
    # and the 503 was not waited for.
    for name in ("hang.jpg", "stall.jpg", "drip.jpg", "endless-slow.jpg", "later.jpg"):
        assert len(server.image_requests(name)) == 1, name
    # The chain was cut where the budget ran out, before its end, saying after which hop.
    assert server.image_requests("chain-end.jpg") == []
    assert "redirect" in (got["chain-0.jpg"][2] or "")
    assert "budget of 2 s" in (got["hang.jpg"][2] or "")


def test_timeouts_are_retried_only_within_the_budget(tmp_path, server):
    # Each attempt waits 0.5 s for a silent server; ten retries would be eleven attempts,
    # but a budget of 1.6 s holds at most four (every attempt but the last takes 0.5 s).
    url = server.add_image("hang.jpg", Behaviour(hang=True))
    server.results["q"] = [(url, None)]
    policy = FetchPolicy(read_timeout=0.5, deadline=1.6, retries=10, backoff=0.05)
    summary = run(tmp_path / "home", server, ["q"], policy=policy)["q"]
    assert summary["failed_by_reason"] == {"timeout": 1}
    assert 1 <= len(server.image_requests("hang.jpg")) <= 4


def test_a_host_that_dripped_gets_one_request_at_a_time_for_the_rest_of_the_crawl(tmp_path, server):
    # The second query's images are on the host that dripped in the first: they are fetched
    # one at a time, where per_host would allow four.
    server.results["first"] = [
        (server.add_image("drip.jpg", Behaviour(good_jpeg(1), drip=0.1)), None)
    ]
    server.results["second"] = [
        (server.add_image(f"s{i}.jpg", Behaviour(good_jpeg(20 + i), delay=0.1)), None)
        for i in range(12)
    ]
    policy = FetchPolicy(read_timeout=3, deadline=1, retries=0, per_host=4)
    result = run(tmp_path / "home", server, ["first", "second"], policy=policy, threads=8)
    assert result["first"]["failed_by_reason"] == {"too-slow": 1}
    assert result["second"]["added"] == 12
    # Counted where it happened: the first query slowed the host, the second found it so.
    assert (result["first"]["hosts_slowed"], result["second"]["hosts_slowed"]) == (1, 0)
    host = server.image_requests("s0.jpg")[0].host
    assert server.max_active[host] == 1


def test_a_host_that_did_not_misbehave_keeps_its_connections(tmp_path, server):
    # The control of the test above: the same images without the drip go four at a time.
    server.results["second"] = [
        (server.add_image(f"s{i}.jpg", Behaviour(good_jpeg(20 + i), delay=0.1)), None)
        for i in range(12)
    ]
    policy = FetchPolicy(read_timeout=3, deadline=1, retries=0, per_host=4)
    run(tmp_path / "home", server, ["second"], policy=policy, threads=8)
    host = server.image_requests("s0.jpg")[0].host
    assert server.max_active[host] > 1


def test_a_straggler_does_not_take_a_download_thread(tmp_path):
    # Two threads, a drip on one host and twelve slow good images on another: once the drip
    # counts as a straggler a spare thread takes its place, and two good images are fetched
    # at once (one, where the drip kept its thread).
    server = EngineServer().start(ports=2)
    try:
        server.images["drip.jpg"] = Behaviour(good_jpeg(1), drip=0.1)
        server.results["q"] = [(server.image_url("drip.jpg", port_index=1), None)] + [
            (server.add_image(f"g{i}.jpg", Behaviour(good_jpeg(30 + i), delay=0.3)), None)
            for i in range(12)
        ]
        # The second port is another host of 127.0.0.1: private addresses allowed.
        policy = FetchPolicy(read_timeout=5, deadline=5, retries=0, per_host=4, allow_private=True)
        summary = run(tmp_path / "home", server, ["q"], policy=policy, threads=2)["q"]
        host = server.image_requests("g0.jpg")[0].host
        assert summary["added"] == 12 and summary["failed_by_reason"] == {"too-slow": 1}
        assert server.max_active[host] == 2
    finally:
        server.stop()
