"""A broken engine is a one-line error, not an empty success; --engine bing,google goes on to
the next. The loopback engine serves changed page formats to icrawler's real parser classes."""

from __future__ import annotations

import html
import json
import sqlite3
from pathlib import Path

import pytest

from curator.crawl.pages import BrokenEngine
from curator.crawl.runner import CrawlOptions, NoEngineServed
from curator.ingest.imaging import Limits
from tests.helpers.crawl_server import Behaviour, EngineServer, good_jpeg
from tests.helpers.crawling import FAST, crawl_home, route_to

ERROR = (
    "error: bing answered but no image was found on its page; its format may have changed "
    "(saved to {})\n"
)


@pytest.fixture
def server():
    srv = EngineServer().start()
    yield srv
    srv.stop()


def results(server: EngineServer, query: str, n: int, seed: int = 0) -> None:
    server.results[query] = [
        (
            server.add_image(f"{query.replace(' ', '-')}-{i}.jpg", Behaviour(good_jpeg(seed + i))),
            None,
        )
        for i in range(n)
    ]


def bing_renamed_murl(server: EngineServer, first: int | None = None) -> None:
    """Bing's tiles as they are, their JSON's ``murl`` renamed (on every page, or only on the
    page starting at ``first``)."""
    original = server.bing

    def page(q: dict[str, str]) -> bytes:
        body = original(q)
        if first is None or int(q.get("first", 0)) == first:
            body = body.replace(html.escape('"murl"').encode(), html.escape('"mediaurl"').encode())
        return body

    server.bing = page


def google_without_scripts(server: EngineServer) -> None:
    """Google's results moved out of its script tags, into attributes."""

    def page(q: dict[str, str]) -> bytes:
        found = server._results(q.get("q", ""), int(q.get("start", 0)), 100)
        tiles = "".join(f'<div class="tile" data-ou="{url}"></div>' for url, _ in found)
        return f"<html><body>{tiles}</body></html>".encode()

    server.google = page


def page_requests(server: EngineServer, engine: str) -> list:
    return [r for r in server.requests if r.path.startswith(f"/{engine}/")]


def catalog_rows(home: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(home / "catalog.db") as db:
        return db.execute(sql).fetchall()


def run(home: Path, server: EngineServer, queries: list[str], **kw) -> dict:
    base = dict(routes=server.routes, policy=FAST, threads=4, limits=Limits(max_bytes=2_000_000))
    return crawl_home(home, queries, CrawlOptions(**{**base, **kw}))


def test_a_changed_bing_page_is_one_line_and_the_page_is_kept(tmp_path, monkeypatch, cli, server):
    results(server, "happy couple", 30)
    bing_renamed_murl(server)
    route_to(monkeypatch, server.routes)
    home = tmp_path / "home"
    result = cli("--home", home, "crawl", "happy couple", "--label", "happy")
    assert result.exit_code == 1
    saved = list((home / "logs" / "broken-pages").iterdir())
    assert len(saved) == 1 and saved[0].name.startswith("bing-") and saved[0].suffix == ".html"
    assert result.stderr == ERROR.format(saved[0])
    assert b"mediaurl" in saved[0].read_bytes()
    # Two pages looked at, then the verdict; nothing fetched or recorded as if it were empty.
    assert len(page_requests(server, "bing")) == 2 and server.image_requests() == []
    assert catalog_rows(home, "SELECT count(*) FROM sources") == [(0,)]
    status, error = catalog_rows(home, "SELECT status, error FROM runs")[0]
    assert status == "failed" and "format may have changed" in error


def test_a_changed_google_page_is_a_broken_engine_too(tmp_path, server):
    results(server, "q", 5)
    google_without_scripts(server)
    with pytest.raises(BrokenEngine) as caught:
        run(tmp_path / "home", server, ["q"], engine="google")
    assert caught.value.engine == "google" and caught.value.saved.is_file()


def test_an_engine_with_no_results_is_an_empty_success(tmp_path, server):
    # A page without tiles and without image addresses: the engine's "no results".
    summary = run(tmp_path / "home", server, ["nothing like it"])["nothing like it"]
    assert summary["added"] == 0 and summary["pages"] == 1
    assert summary["pages_without_images"] == 1
    assert not (tmp_path / "home" / "logs" / "broken-pages").exists()


def test_one_unreadable_first_page_followed_by_readable_ones_is_no_broken_engine(tmp_path, server):
    results(server, "q", 30)
    bing_renamed_murl(server, first=0)  # the first page only: a passing glitch
    summary = run(tmp_path / "home", server, ["q"], max_images=100)["q"]
    # The first page, and the empty one past the last result.
    assert summary["added"] == 10 and summary["pages_without_images"] == 2


def test_the_next_engine_serves_when_one_is_broken(tmp_path, monkeypatch, cli, server):
    results(server, "happy couple", 5)
    bing_renamed_murl(server)
    route_to(monkeypatch, server.routes)
    home = tmp_path / "home"
    result = cli("--home", home, "crawl", "happy couple", "--engine", "bing,google")
    assert result.exit_code == 0, result.stderr
    assert "'happy couple' (google): added 5 (target 100)" in result.stdout
    saved = next((home / "logs" / "broken-pages").iterdir())
    assert (
        f"  skipped bing: bing answered but no image was found on its page; its format may "
        f"have changed (saved to {saved})" in result.stdout
    )
    assert set(catalog_rows(home, "SELECT engine FROM sources")) == {("google",)}
    again = json.loads(
        cli("--home", home, "crawl", "happy couple", "-e", "bing,google", "--json").stdout
    )
    # The search counts over the engines of the list: the five count for the second run.
    assert again["queries"]["happy couple"]["already"] == 5


def test_the_next_engine_serves_when_one_is_unreachable(tmp_path, server):
    results(server, "q", 3)
    routes = {**server.routes, "www.bing.com": "http://127.0.0.1:9"}  # port 9: refused
    summary = run(tmp_path / "home", server, ["q"], engine="bing,google", routes=routes)["q"]
    assert summary["engine"] == "google" and summary["added"] == 3
    assert "cannot reach www.bing.com" in summary["engines_skipped"]["bing"]


def test_a_broken_engine_is_left_for_the_queries_after_it(tmp_path, server):
    results(server, "one", 3)
    results(server, "two", 3, seed=50)
    bing_renamed_murl(server)
    out = run(tmp_path / "home", server, ["one", "two"], engine="bing,google")
    assert (out["one"]["engine"], out["two"]["engine"]) == ("google", "google")
    # Bing was judged on the first query's two pages and not asked again.
    assert {r.query["q"] for r in page_requests(server, "bing")} == {"one"}


def test_every_engine_failing_is_one_line_naming_each(tmp_path, monkeypatch, cli, server):
    results(server, "q", 5)
    bing_renamed_murl(server)
    dead = {**server.routes, "www.google.com": "http://127.0.0.1:9"}
    with pytest.raises(NoEngineServed) as caught:
        run(tmp_path / "lib", server, ["q"], engine="bing,google", routes=dead)
    assert set(caught.value.failures) == {"bing", "google"}
    route_to(monkeypatch, dead)
    home = tmp_path / "home"
    result = cli("--home", home, "crawl", "q", "-e", "bing,google", "--retries", "0")
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "bing answered but no image was found" in result.stderr
    assert "cannot reach www.google.com" in result.stderr


def test_engine_lists_are_checked_before_anything_is_fetched(tmp_path, cli):
    home = tmp_path / "home"
    for spec, words in [
        ("bing,altavista", "unknown engine 'altavista'"),
        ("bing,urls", "--engine urls takes a URL list, not search words"),
        ("greedy,google", "--engine greedy takes sites, not search words"),
        ("google,flickr", "needs an API key"),
    ]:
        result = cli("--home", home, "crawl", "q", "--engine", spec)
        assert result.exit_code == 1 and words in result.stderr, (spec, result.stderr)
        assert result.stderr.count("\n") == 1
    assert not home.exists()
