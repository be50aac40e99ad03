"""curator crawl against a loopback server playing the engines, with icrawler's real classes."""

from __future__ import annotations

import itertools
import json
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from curator.crawl.http import FetchPolicy
from curator.crawl.runner import CrawlOptions, NoNetwork
from curator.ingest.imaging import Limits
from tests.helpers.crawl_server import (
    COPY_PAIRS,
    Behaviour,
    EngineServer,
    good_jpeg,
    hostile_catalogue,
    page_of,
)
from tests.helpers.crawling import FAST, crawl_home, route_to


@pytest.fixture
def server():
    srv = EngineServer().start()
    yield srv
    srv.stop()


def options(server: EngineServer, **kw) -> CrawlOptions:
    base = dict(routes=server.routes, policy=FAST, threads=4, limits=Limits(max_bytes=2_000_000))
    base.update(kw)
    return CrawlOptions(**base)


def rows(home: Path, sql: str, *args) -> list[tuple]:
    with sqlite3.connect(home / "catalog.db") as db:
        return db.execute(sql, args).fetchall()


def run(home: Path, server: EngineServer, queries: list[str], **kw) -> dict:
    return crawl_home(home, queries, options(server, **kw))


def test_bing_crawl_records_every_url_with_its_outcome(tmp_path, server):
    expected = hostile_catalogue(server)
    server.results["happy couple"] = [
        (server.image_url(name), page_of(server, name)) for name in expected
    ]
    home = tmp_path / "home"
    result = run(home, server, ["happy couple"], label="happy", max_images=50)
    summary = result["happy couple"]
    got = {
        Path(loc).name: (outcome, reason)
        for loc, outcome, reason in rows(home, "SELECT locator, outcome, reason FROM sources")
    }
    paired = {name for pair in COPY_PAIRS for name in pair}
    assert {n: v for n, v in got.items() if n not in paired} == {
        n: v for n, v in expected.items() if n not in paired
    }
    for pair in COPY_PAIRS:  # the copy that finished first is the one added
        assert sorted(got[n] for n in pair) == sorted(expected[n] for n in pair), pair
    added = sum(1 for outcome, _ in expected.values() if outcome == "added")
    assert summary["added"] == added
    # Provenance: engine, query, the page each image was found on, the run.
    for engine, query, page, run_id in rows(
        home, "SELECT engine, query, page_url, run_id FROM sources"
    ):
        assert (engine, query, run_id) == ("bing", "happy couple", 1)
        assert page.startswith("https://pages.example/")
    # Weak labels with origin query, one per image that entered the catalog.
    labels = rows(home, "SELECT label, origin FROM label_events")
    assert set(labels) == {("happy", "query")}
    assert len(labels) == rows(home, "SELECT count(*) FROM images")[0][0]
    # Files are stored and the WebP served as .jpg is recognised for what it is.
    for path, _fmt in rows(home, "SELECT path, format FROM images"):
        assert (home / path).is_file()
    assert ("WEBP",) in rows(home, "SELECT format FROM images")
    # Redirects followed for the hop, recorded against the URL the result gave.
    info = json.loads(rows(home, "SELECT info FROM sources WHERE locator LIKE '%hop.jpg'")[0][0])
    assert info["final_url"].endswith("/img/good-4.jpg")
    # 429 with Retry-After: 1 was retried after at least that long.
    busy = server.image_requests("busy.jpg")
    assert len(busy) == 2 and busy[1].started - busy[0].started >= 0.9
    # The User-Agent names curator.
    assert all(r.headers["User-Agent"].startswith("curator/") for r in server.requests)


def test_keywords_are_url_encoded(tmp_path, server):
    query = "c# couple & friends"
    server.results[query] = [(server.add_image("a.jpg", Behaviour(good_jpeg(10))), None)]
    for engine in ("bing", "baidu", "google"):
        run(tmp_path / engine, server, [query], engine=engine)
    pages = [r for r in server.requests if "/img/" not in r.path]
    assert {r.query.get("q") or r.query.get("word") for r in pages} == {query}
    assert {r.path for r in pages} == {
        "/bing/images/async",
        "/baidu/search/acjson",
        "/google/search",
    }


@pytest.mark.parametrize("engine", ["google", "baidu", "flickr"])
def test_other_engines_formats(tmp_path, server, engine):
    server.results["smiling couple"] = [
        (server.add_image(f"e{i}.jpg", Behaviour(good_jpeg(20 + i))), page_of(server, f"p{i}"))
        for i in range(5)
    ]
    extra = {"flickr_key": "test-key"} if engine == "flickr" else {}
    result = run(tmp_path / "home", server, ["smiling couple"], engine=engine, **extra)
    assert result["smiling couple"]["added"] == 5
    pages = {p for (p,) in rows(tmp_path / "home", "SELECT page_url FROM sources")}
    if engine == "baidu":
        assert pages == {page_of(server, f"p{i}") for i in range(5)}
    if engine == "flickr":
        assert all(p.startswith("https://www.flickr.com/photos/12345@N00/") for p in pages)


def test_greedy_crawls_a_site_within_its_pages(tmp_path, server):
    for i in range(3):
        server.add_image(f"s{i}.jpg", Behaviour(good_jpeg(40 + i)))
    server.site_pages["index.html"] = (
        f'<img src="{server.image_url("s0.jpg")}"><a href="{server.base}/site/two.html">next</a>'
        '<a href="https://elsewhere.example/x.html">away</a>'
    )
    server.site_pages["two.html"] = (
        f'<img src="{server.image_url("s1.jpg")}"><img src="{server.image_url("s2.jpg")}">'
    )
    result = run(tmp_path / "home", server, [f"{server.base}/site/index.html"], engine="greedy")
    site = f"{server.base}/site/index.html"
    assert result[site]["added"] == 3
    assert not any("elsewhere" in r.host for r in server.requests)


def test_url_list_engine(tmp_path, server):
    urls = [server.add_image(f"u{i}.jpg", Behaviour(good_jpeg(60 + i))) for i in range(4)]
    listing = tmp_path / "urls.txt"
    listing.write_text("# my list\n\n" + "\n".join(urls) + "\nnot a url\n")
    result = run(tmp_path / "home", server, [str(listing)], engine="urls")
    counts = result[str(listing)]
    assert counts["added"] == 4 and counts["failed_by_reason"] == {"bad-url": 1}


def test_max_counts_added_images_and_is_never_overshot(tmp_path, server):
    server.results["q"] = [
        (server.add_image(f"m{i}.jpg", Behaviour(good_jpeg(100 + i))), None) for i in range(40)
    ]
    home = tmp_path / "home"
    result = run(home, server, ["q"], max_images=10, threads=8)
    assert result["q"]["added"] == 10
    assert rows(home, "SELECT count(*) FROM images") == [(10,)]
    assert len(server.image_requests()) == 10  # a download starts only when it may count


def test_a_second_run_fetches_nothing_again_and_a_larger_max_continues(tmp_path, server):
    server.results["q"] = [
        (server.add_image(f"r{i}.jpg", Behaviour(good_jpeg(200 + i))), None) for i in range(12)
    ]
    server.results["q"].append((server.add_image("gone.jpg", Behaviour(b"x", status=404)), None))
    home = tmp_path / "home"
    run(home, server, ["q"], max_images=5)
    first = len(server.image_requests())
    again = run(home, server, ["q"], max_images=5)["q"]
    assert again["added"] == 0 and len(server.image_requests()) == first
    more = run(home, server, ["q"], max_images=30)["q"]
    assert more["added"] == 7 and more["already"] == 5
    assert len(server.image_requests("gone.jpg")) == 1  # a permanent failure is not retried
    assert rows(home, "SELECT count(*) FROM images") == [(12,)]


def test_a_slow_result_page_still_has_its_images_fetched(tmp_path, server):
    server.results["slow"] = [
        (server.add_image(f"w{i}.jpg", Behaviour(good_jpeg(300 + i))), None) for i in range(3)
    ]
    server.page_delay["slow"] = 6.0  # longer than icrawler's 5 s downloader queue timeout
    result = run(tmp_path / "home", server, ["slow"], policy=FetchPolicy(read_timeout=10))
    assert result["slow"]["added"] == 3


def test_slow_downloads_that_fill_the_download_queue_lose_no_image(tmp_path, server):
    # One thread at 0.25 s an image: the page's 20 URLs wait for room in the queue longer
    # than one put's timeout (icrawler's cached queue then dropped them as duplicates of
    # themselves, and the crawl stalled and ended short, exiting 0).
    server.image_delay = 0.25
    server.results["q"] = [
        (server.add_image(f"s{i}.jpg", Behaviour(good_jpeg(900 + i))), None) for i in range(30)
    ]
    home = tmp_path / "home"
    result = run(home, server, ["q"], max_images=30, threads=1)
    assert result["q"]["added"] == 30, result["q"]
    assert rows(home, "SELECT count(*) FROM images") == [(30,)]


def added_rows(home: Path) -> int:
    try:
        with sqlite3.connect(f"file:{home / 'catalog.db'}?mode=ro", uri=True) as db:
            return db.execute("SELECT count(*) FROM sources WHERE outcome = 'added'").fetchone()[0]
    except sqlite3.Error:  # not made yet
        return 0


def test_results_are_recorded_as_they_finish_not_in_list_order(tmp_path, server):
    # A drip first in the list, eight good images after it: they are in the catalog while the
    # drip is still being served (in list order, they waited for it to end).
    drip = Behaviour(good_jpeg(800), drip=0.05)
    server.results["q"] = [(server.add_image("drip.jpg", drip), None)] + [
        (server.add_image(f"g{i}.jpg", Behaviour(good_jpeg(810 + i))), None) for i in range(8)
    ]
    home = tmp_path / "home"
    policy = FetchPolicy(read_timeout=5, deadline=5, retries=0)
    done: dict = {}
    crawling = threading.Thread(target=lambda: done.update(run(home, server, ["q"], policy=policy)))
    crawling.start()
    try:
        assert drip.started.wait(30)
        for _ in range(600):  # until the eight are recorded or the drip ends, 30 s at most
            if added_rows(home) == 8 or drip.ended.is_set():
                break
            time.sleep(0.05)
        recorded, dripping = added_rows(home), not drip.ended.is_set()
    finally:
        server.closing.set()  # the drip ends now, cut off
        crawling.join(60)
    assert (recorded, dripping) == (8, True)
    assert done["q"]["added"] == 8 and done["q"]["failed"] == 1


def test_no_thread_is_left_running(tmp_path, server):
    server.results["q"] = [
        (server.add_image(f"t{i}.jpg", Behaviour(good_jpeg(400 + i), delay=0.2)), None)
        for i in range(20)
    ]
    before = set(threading.enumerate())
    run(tmp_path / "home", server, ["q"], max_images=5, threads=8)
    left = [
        t.name
        for t in threading.enumerate()
        if t not in before and t.is_alive() and "process_request" not in t.name  # the server's
    ]
    assert left == []


def test_politeness_per_host(tmp_path, server):
    server.results["q"] = [
        (server.add_image(f"h{i}.jpg", Behaviour(good_jpeg(500 + i), delay=0.05)), None)
        for i in range(8)
    ]
    policy = FetchPolicy(per_host=1, delay=0.1, retries=0)
    run(tmp_path / "home", server, ["q"], threads=6, policy=policy)
    host = server.image_requests()[0].host
    assert server.max_active[host] == 1
    starts = sorted(r.started for r in server.image_requests())
    assert all(b - a >= 0.09 for a, b in itertools.pairwise(starts))


def test_noai_can_be_ignored(tmp_path, server):
    server.results["q"] = [
        (
            server.add_image(
                "n.jpg", Behaviour(good_jpeg(600), headers={"X-Robots-Tag": "noimageai"})
            ),
            None,
        )
    ]
    kept = run(tmp_path / "home", server, ["q"], policy=FetchPolicy(respect_noai=False))
    assert kept["q"]["added"] == 1


def test_bad_tiles_are_skipped_and_good_ones_kept(tmp_path, server):
    server.results["q"] = [
        (server.add_image(f"b{i}.jpg", Behaviour(good_jpeg(700 + i))), None) for i in range(3)
    ]
    original = server.bing

    def with_bad_tiles(q):
        bad = b'<div class="imgpt"><a m="{not json"></a></div><div class="imgpt"><a></a></div>'
        return bad + original(q)

    server.bing = with_bad_tiles
    assert run(tmp_path / "home", server, ["q"])["q"]["added"] == 3


def test_a_parser_exception_costs_one_page_not_the_crawl(tmp_path, server):
    server.results["q"] = [
        (server.add_image(f"x{i}.jpg", Behaviour(good_jpeg(750 + i))), None) for i in range(150)
    ]
    original = server.flickr

    def first_page_garbled(q):
        if q.get("method") == "flickr.photos.search" and q.get("page") == "1":
            return b"<html>rate limited</html>"  # icrawler's FlickrParser raises on this
        return original(q)

    server.flickr = first_page_garbled
    result = run(tmp_path / "home", server, ["q"], engine="flickr", flickr_key="k", max_images=200)[
        "q"
    ]
    assert result["pages_failed"] == 1 and result["pages_failed_by_reason"] == {
        "unreadable-page": 1
    }
    assert result["added"] == 50  # the second page's


def test_google_page_without_matches_is_no_crash(tmp_path, server):
    result = run(tmp_path / "home", server, ["nothing here"], engine="google")
    assert result["nothing here"]["added"] == 0 and result["nothing here"]["pages"] >= 1


def test_no_network_is_one_clear_error_and_writes_nothing(tmp_path, monkeypatch, cli):
    dead = {host: "http://127.0.0.1:9" for host in ("www.bing.com",)}  # port 9: refused
    home = tmp_path / "home"
    with pytest.raises(NoNetwork, match=r"cannot reach www\.bing\.com .*nothing was changed"):
        crawl_home(home, ["q"], CrawlOptions(routes=dead, policy=FAST))
    assert not home.exists()
    route_to(monkeypatch, dead)
    result = cli("--home", home, "crawl", "happy couple", "--retries", "0")
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and "cannot reach www.bing.com" in result.stderr
    assert not home.exists()


def test_cli_crawl_summary_and_json(tmp_path, monkeypatch, cli, server):
    expected = hostile_catalogue(server)
    server.results["happy couple"] = [(server.image_url(n), None) for n in expected]
    route_to(monkeypatch, server.routes)
    home = tmp_path / "home"
    result = cli(
        "--home",
        home,
        "crawl",
        "happy couple",
        "--label",
        "happy",
        "--max",
        "3",
        "--deadline",
        "2",
        "--max-bytes",
        "2000000",
    )
    assert result.exit_code == 0, result.stderr
    assert "'happy couple' (bing): added 3 (target 3)" in result.stdout
    again = cli("--home", home, "crawl", "happy couple", "--max", "3", "--json")
    data = json.loads(again.stdout)
    assert data["queries"]["happy couple"]["already"] == 3


def test_clear_errors_before_anything_is_fetched(tmp_path, cli):
    home = tmp_path / "home"
    cases = [
        (["crawl", str(tmp_path / "missing.txt"), "--engine", "urls"], "no such URL list"),
        (["crawl", "q", "--engine", "flickr"], "needs an API key"),
        (["crawl", "q", "--engine", "altavista"], "unknown engine 'altavista'"),
        (["crawl", "ftp://example.org", "--engine", "greedy"], "is not an http(s) site"),
    ]
    for args, words in cases:
        result = cli("--home", home, *args)
        assert result.exit_code == 1 and words in result.stderr, (args, result.stderr)
        assert result.stderr.count("\n") == 1
    assert not home.exists()
