"""curator crawl --retry-failed: the URLs of earlier runs of the same search whose last attempt
failed for a passing reason are fetched again, and nothing else. Two real runs each."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from curator.crawl.runner import CrawlOptions
from curator.ingest.imaging import Limits
from tests.helpers.crawl_server import Behaviour, EngineServer, good_jpeg
from tests.helpers.crawling import FAST, crawl_home, route_to


@pytest.fixture
def server():
    srv = EngineServer().start()
    yield srv
    srv.stop()


def first_run(server: EngineServer) -> None:
    """Four good images and four failures: two that may pass, two that will not."""
    server.results["q"] = [
        (server.add_image(f"ok{i}.jpg", Behaviour(good_jpeg(1100 + i))), None) for i in range(4)
    ] + [
        (server.add_image(name, behaviour), f"https://pages.example/{name}")
        for name, behaviour in [
            ("busy.jpg", Behaviour(b"down", status=503, content_type="text/plain")),
            ("drip.jpg", Behaviour(good_jpeg(1110), drip=0.05)),
            ("gone.jpg", Behaviour(b"gone", status=404, content_type="text/plain")),
            ("page.jpg", Behaviour(b"<html>not an image</html>")),
        ]
    ]


def mend(server: EngineServer) -> None:
    """Every server now answers well, and the engine lists one more image."""
    for seed, name in enumerate(("busy.jpg", "drip.jpg", "gone.jpg", "page.jpg")):
        server.images[name] = Behaviour(good_jpeg(1120 + seed))
    server.results["q"].append((server.add_image("new.jpg", Behaviour(good_jpeg(1130))), None))


def latest(home: Path) -> dict[str, tuple[str, str | None, str | None]]:
    with sqlite3.connect(home / "catalog.db") as db:
        rows = db.execute(
            "SELECT locator, outcome, reason, page_url FROM sources ORDER BY id"
        ).fetchall()
    return {Path(loc).name: (outcome, reason, page) for loc, outcome, reason, page in rows}


def test_retry_failed_fetches_again_only_the_passing_failures(tmp_path, monkeypatch, cli, server):
    first_run(server)
    route_to(monkeypatch, server.routes)
    home = tmp_path / "home"
    base = ("--home", home, "crawl", "q", "--deadline", "2", "--retries", "0", "--json")
    first = json.loads(cli(*base).stdout)["queries"]["q"]
    assert first["failed_by_reason"] == {
        "http-5xx": 1,
        "http-404": 1,
        "not-an-image": 1,
        "too-slow": 1,
    }
    mend(server)
    before = len(server.requests)
    result = cli(*base, "--retry-failed")
    assert result.exit_code == 0, result.stderr
    again = json.loads(result.stdout)["queries"]["q"]
    # No result page, nothing failed for good, nothing new: the two passing failures only.
    fetched = sorted(r.path for r in server.requests[before:])
    assert fetched == ["/img/busy.jpg", "/img/drip.jpg"]
    assert (again["to_retry"], again["added"], again["already"]) == (2, 2, 4)
    rows = latest(home)
    assert rows["busy.jpg"] == ("added", None, "https://pages.example/busy.jpg")
    assert rows["drip.jpg"][:2] == ("added", None)
    assert rows["gone.jpg"][:2] == ("failed", "http-404") and "new.jpg" not in rows
    # Nothing left to retry: a third run fetches nothing at all.
    before = len(server.requests)
    third = json.loads(cli(*base, "--retry-failed").stdout)["queries"]["q"]
    assert (third["to_retry"], third["added"]) == (0, 0) and len(server.requests) == before
    text = cli("--home", home, "crawl", "q", "--retry-failed")
    assert "  to retry               0   (URLs of earlier runs that failed" in text.stdout


def run(home: Path, server: EngineServer, queries: list[str], **kw) -> dict:
    base = dict(routes=server.routes, policy=FAST, threads=4, limits=Limits(max_bytes=2_000_000))
    return crawl_home(home, queries, CrawlOptions(**{**base, **kw}))


def test_retry_failed_keeps_to_max_and_to_its_own_search(tmp_path, server):
    first_run(server)
    server.results["other"] = [
        (
            server.add_image("other.jpg", Behaviour(b"x", status=502, content_type="text/plain")),
            None,
        )
    ]
    home = tmp_path / "home"
    run(home, server, ["q", "other"])
    mend(server)
    server.images["other.jpg"] = Behaviour(good_jpeg(1140))
    before = len(server.requests)
    # Four images already, a --max of five: one of the two is fetched, the first that failed.
    again = run(home, server, ["q"], retry_failed=True, max_images=5)["q"]
    assert (again["to_retry"], again["added"]) == (2, 1)
    assert [r.path for r in server.requests[before:]] == ["/img/busy.jpg"]
    # "other" is another search: its failure waits for a retry of "other".
    other = run(home, server, ["other"], retry_failed=True)["other"]
    assert (other["to_retry"], other["added"]) == (1, 1)


@pytest.mark.backends
def test_failed_urls_are_those_whose_latest_attempt_failed_for_a_passing_reason(catalog):
    from db.images import add_sources, failed_urls, source_row
    from db.runs import start_run

    with catalog.writing() as session:
        run = start_run(session, kind="crawl", params={}).id
        search = {"kind": "url", "run_id": run, "engine": "bing", "query": "q"}
        add_sources(
            session,
            [
                source_row(locator="http://a/1", outcome="failed", reason="timeout", **search),
                source_row(locator="http://a/2", outcome="failed", reason="http-404", **search),
                source_row(locator="http://a/3", outcome="failed", reason="http-5xx", **search),
                source_row(locator="http://a/4", outcome="failed", reason="too-slow", **search),
                # Fetched since, by another search: settled.
                source_row(
                    locator="http://a/3",
                    outcome="failed",
                    reason="http-404",
                    **{**search, "query": "other"},
                ),
                # Another search's passing failure is not this search's.
                source_row(
                    locator="http://a/5",
                    outcome="failed",
                    reason="timeout",
                    **{**search, "query": "other"},
                ),
                source_row(
                    locator="http://a/6",
                    outcome="failed",
                    reason="timeout",
                    page_url="http://p",
                    **{**search, "engine": "google"},
                ),
            ],
        )
    reasons = frozenset({"timeout", "too-slow", "http-5xx"})
    with catalog.reading() as session:
        assert failed_urls(session, engines=["bing"], query="q", reasons=reasons) == [
            ("http://a/1", None, "bing"),
            ("http://a/4", None, "bing"),
        ]
        both = failed_urls(session, engines=["bing", "google"], query="q", reasons=reasons)
        assert both[-1] == ("http://a/6", "http://p", "google") and len(both) == 3
