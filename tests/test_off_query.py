"""The ``off-query`` queue: pictures a search found, farthest from the words of its query
first, with CLIP vectors. Real crawls (the real icrawler classes, a loopback engine), real
photographs, and a small randomly initialised open_clip model saved to a folder: its
distances mean nothing, so they are checked against the same arithmetic done here."""

from __future__ import annotations

import itertools
import json
import zlib
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from curator.cli import app
from curator.config import load_settings
from curator.crawl.query import CrawlOptions
from curator.ingest.imaging import Limits
from curator.learn.embedding import PROMPT, newest_set
from db.catalog import open_catalog
from tests.faults.consistency import assert_kept_counts_true
from tests.helpers.clip import tiny_clip
from tests.helpers.crawl_server import Behaviour, EngineServer, good_jpeg
from tests.helpers.crawling import FAST, crawl_home
from tests.helpers.sql import rows as catalog_rows
from tests.helpers.training import blob_picture


def run(home: Path, *args: object):
    return CliRunner().invoke(app, ["--home", str(home), *[str(a) for a in args]])


def rows(home: Path, sql: str) -> list[tuple]:
    return catalog_rows(sql, load_settings(home=home).db_url)


@pytest.fixture
def server():
    srv = EngineServer().start()
    yield srv
    srv.stop()


def serve(server: EngineServer, query: str, names: list[str]) -> None:
    for name in names:
        server.add_image(name, _jpeg(zlib.crc32(name.encode())))
    server.results[query] = [(server.image_url(n), None) for n in names]


def _jpeg(seed: int) -> Behaviour:
    return Behaviour(body=good_jpeg(seed, (160, 120)))


def crawl(home: Path, server: EngineServer, query: str, engine: str = "bing") -> None:
    options = CrawlOptions(
        engine=engine,
        routes=server.routes,
        policy=FAST,
        threads=2,
        limits=Limits(max_bytes=2_000_000),
        label="happy",
        max_images=50,
    )
    crawl_home(home, [query], options)


def distances_by_hand(home: Path, clip: Path) -> dict[int, float]:
    """Each embedded picture's distance to the nearest words of the searches that found it,
    from the vectors file and the text tower, as the queue's score should be."""
    from classifier.device import pick_device
    from classifier.embed import clip_embedder

    settings = load_settings(home=home)
    catalog = open_catalog(settings.db_url)
    vectors = newest_set(catalog, home, "clip")
    assert vectors is not None
    ids, data = vectors.read()
    row_of = {int(i): n for n, i in enumerate(ids)}
    found: dict[int, set[str]] = {}
    for image_id, query, engine in rows(
        home,
        "SELECT coalesce(i.duplicate_of, i.id), s.query, s.engine FROM sources s "
        "JOIN images i ON i.id = s.image_id",
    ):  # a picture's own searches, and its near copies'
        if engine in ("bing", "google", "baidu", "flickr") and query:
            found.setdefault(image_id, set()).add(query)
    words = clip_embedder(str(clip), pick_device("cpu")).words
    out = {}
    for image_id, queries in found.items():
        if image_id not in row_of:
            continue
        vector = np.asarray(data[row_of[image_id]], dtype=np.float32)
        said = words([PROMPT.format(q) for q in sorted(queries)])
        out[image_id] = 1.0 - float((said @ vector).max())
    return out


def queue_order(home: Path) -> list[int]:
    result = run(home, "queue", "off-query", "--limit", "1000", "--json")
    assert result.exit_code == 0, result.output
    return [item["id"] for item in json.loads(result.stdout)["items"]]


def six_searched_and_embedded(tmp_path: Path, server: EngineServer) -> tuple[Path, Path]:
    """A home with six pictures one search found, embedded with a tiny CLIP; (home, model)."""
    home = tmp_path / "home"
    serve(server, "happy couple", [f"a{i}.jpg" for i in range(6)])
    crawl(home, server, "happy couple")
    clip = tiny_clip(tmp_path / "clip")
    assert run(home, "embed", "--embedder", "clip", "--clip-model", clip).exit_code == 0
    return home, clip


@pytest.mark.backends
def test_off_query_ranks_searched_pictures_by_their_query_words(
    tmp_path, server, backend, new_db_url, monkeypatch
):
    home = tmp_path / "home"
    if backend == "postgresql":
        monkeypatch.setenv("CURATOR_DB_URL", new_db_url(home))
    serve(server, "happy couple", [f"a{i}.jpg" for i in range(8)])
    serve(server, "couple laughing", [f"b{i}.jpg" for i in range(6)])
    for name in ("a0.jpg", "a1.jpg"):  # the same pictures at other addresses
        server.add_image(f"again-{name}", server.images[name])
        server.results["couple laughing"].append((server.image_url(f"again-{name}"), None))
    crawl(home, server, "happy couple")
    crawl(home, server, "couple laughing")
    site = tmp_path / "imported"
    site.mkdir()
    for i in range(4):
        blob_picture(i, True).save(site / f"{i}.jpg")
    assert run(home, "import", site, "--label", "happy").exit_code == 0

    # Before any vectors, and with vectors of an embedder that reads no words: one line each.
    result = run(home, "queue", "off-query")
    assert result.exit_code == 1 and "run curator embed" in result.stderr

    clip = tiny_clip(tmp_path / "clip")
    result = run(home, "embed", "--embedder", "clip", "--clip-model", clip, "--workers", "0")
    assert result.exit_code == 0, result.output
    expected = distances_by_hand(home, clip)
    assert len(expected) == 14  # 8 + 6 crawled; the imported pictures were found by no search
    imported = {i for (i,) in rows(home, "SELECT image_id FROM sources WHERE engine IS NULL")}
    both = {
        i
        for (i,) in rows(
            home,
            "SELECT image_id FROM sources WHERE query = 'couple laughing' AND image_id IN "
            "(SELECT image_id FROM sources WHERE query = 'happy couple')",
        )
    }
    assert len(both) == 2  # found by both searches: scored by the nearer of the two

    stored = dict(
        rows(home, "SELECT image_id, query_distance FROM embedded WHERE query_distance IS NOT NULL")
    )
    assert stored.keys() == expected.keys() and not stored.keys() & imported
    for image_id, distance in expected.items():
        assert stored[image_id] == pytest.approx(distance, abs=2e-3)
    shown = queue_order(home)
    assert set(shown) == set(expected)
    assert all(
        expected[a] >= expected[b] - 2e-3 for a, b in itertools.pairwise(shown)
    )  # farthest first
    farthest = shown
    assert_kept_counts_true(load_settings(home=home).db_url)

    # A person's label takes a picture out of the queue; a rerun measures nothing again.
    first = farthest[0]
    assert run(home, "label", first, "--as", "unhappy").exit_code == 0
    assert first not in queue_order(home)
    again = run(home, "embed", "--embedder", "clip", "--clip-model", clip, "--json")
    assert again.exit_code == 0 and json.loads(again.stdout)["query_distances"] == 0

    # A new search's pictures are measured alone; the others keep theirs.
    serve(server, "couple at sunset", [f"c{i}.jpg" for i in range(5)])
    crawl(home, server, "couple at sunset")
    more = run(home, "embed", "--embedder", "clip", "--clip-model", clip, "--json")
    assert more.exit_code == 0 and json.loads(more.stdout)["query_distances"] == 5
    after = distances_by_hand(home, clip)
    assert len(after) == 19
    assert set(queue_order(home)) == set(after) - {first}
    assert_kept_counts_true(load_settings(home=home).db_url)

    # A picture a later search finds again is measured again, against every search of it.
    server.add_image("again-a2.jpg", server.images["a2.jpg"])
    server.results["happy together"] = [(server.image_url("again-a2.jpg"), None)]
    crawl(home, server, "happy together")
    [(again_id,)] = rows(home, "SELECT image_id FROM sources WHERE query = 'happy together'")
    moved = run(home, "embed", "--embedder", "clip", "--clip-model", clip, "--json")
    counts = json.loads(moved.stdout)
    assert (counts["embedded"], counts["query_distances"]) == (0, 1)
    stored = dict(rows(home, "SELECT image_id, query_distance FROM embedded"))
    assert stored[again_id] == pytest.approx(distances_by_hand(home, clip)[again_id], abs=2e-3)
    assert_kept_counts_true(load_settings(home=home).db_url)


def test_a_site_crawl_has_no_query_words(tmp_path, server):
    home = tmp_path / "home"
    names = [f"s{i}.jpg" for i in range(4)]
    for n, name in enumerate(names):
        server.add_image(name, _jpeg(900 + n))
    server.site_pages["index.html"] = "".join(f'<img src="{server.image_url(n)}">' for n in names)
    crawl(home, server, f"{server.base}/site/index.html", engine="greedy")
    assert rows(home, "SELECT count(*) FROM images")[0][0] == 4
    clip = tiny_clip(tmp_path / "clip")
    result = run(home, "embed", "--embedder", "clip", "--clip-model", clip, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["query_distances"] == 0  # an address is not words
    assert "queue is empty" in run(home, "queue", "off-query").stdout


def test_a_clip_set_made_before_the_queue_is_measured_by_the_next_embed(tmp_path, server):
    """A catalog whose CLIP vectors came before the off-query queue (alembic 0014 adds their
    column empty): the next `curator embed` measures every searched picture, embeds none."""
    from alembic import command

    from db.catalog import alembic_config

    home, clip = six_searched_and_embedded(tmp_path, server)
    before = queue_order(home)
    assert len(before) == 6
    catalog = open_catalog(load_settings(home=home).db_url)
    try:
        with catalog.engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0013")
            command.upgrade(alembic_config(conn), "head")
    finally:
        catalog.dispose()
    assert rows(home, "SELECT count(*) FROM embedded WHERE query_distance IS NULL")[0][0] == 6
    result = run(home, "queue", "off-query")
    assert result.exit_code == 0 and "queue is empty" in result.stdout
    again = run(home, "embed", "--embedder", "clip", "--clip-model", clip, "--json")
    assert again.exit_code == 0, again.output
    counts = json.loads(again.stdout)
    assert counts["embedded"] == 0 and counts["query_distances"] == 6
    assert queue_order(home) == before
    assert_kept_counts_true(load_settings(home=home).db_url)


def test_the_review_page_and_the_library_face_show_the_off_query_queue(tmp_path, server):
    from playwright.sync_api import sync_playwright

    import curator
    from tests.helpers.browser import ARGS, CHROMIUM, ensure_chromium
    from tests.helpers.review_server import review_server

    home, _clip = six_searched_and_embedded(tmp_path, server)
    order = queue_order(home)
    with curator.open(home) as library:
        assert [item["id"] for item in library.queue("off-query", limit=10)] == order
        assert [image_id for image_id, _score in library.ranking("off-query")] == order
    ensure_chromium()
    catalog = open_catalog(load_settings(home=home).db_url)
    try:
        with review_server(catalog, home) as base, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"{base}/?queue=off-query")
            page.locator("body[data-ready='true']").wait_for(timeout=20_000)
            button = page.locator("#queues button[data-queue='off-query']")
            assert button.inner_text() == "off-query 6" and button.is_enabled()
            assert page.evaluate("() => S.items.map((item) => item.id)") == order
            page.keyboard.press("x")  # the farthest from its search's words, rejected
            page.locator("body[data-busy='false']").wait_for(timeout=30_000)
            assert page.evaluate("() => S.items[S.pos].id") == order[1]
            browser.close()
    finally:
        catalog.dispose()
    decided = "SELECT image_id, label FROM label_events WHERE origin = 'human'"
    assert rows(home, decided) == [(order[0], "reject")]
    assert queue_order(home) == order[1:]


def test_a_search_that_finds_a_near_copy_measures_its_group(tmp_path, server):
    """An imported picture that a search then finds a near copy of: the copy joins its group
    and is not embedded, and the group's picture is measured against the search's words."""
    from tests.helpers import imagefiles
    from tests.helpers.crawl_server import near_copy

    home = tmp_path / "home"
    folder = tmp_path / "imported"
    for seed in (31, 32):
        imagefiles.jpeg(folder / f"{seed}.jpg", imagefiles.texture(seed, (480, 360)))
    assert run(home, "import", folder, "--label", "happy").exit_code == 0
    clip = tiny_clip(tmp_path / "clip")
    assert run(home, "embed", "--embedder", "clip", "--clip-model", clip).exit_code == 0
    assert "queue is empty" in run(home, "queue", "off-query").stdout  # no search found them
    server.add_image("copy.jpg", Behaviour(body=near_copy(31)))
    server.results["happy couple"] = [(server.image_url("copy.jpg"), None)]
    crawl(home, server, "happy couple")
    [(copy_id, group)] = rows(
        home, "SELECT id, duplicate_of FROM images WHERE status = 'duplicate'"
    )
    [(imported,)] = rows(home, "SELECT image_id FROM sources WHERE locator LIKE '%31.jpg'")
    assert group == imported
    again = run(home, "embed", "--embedder", "clip", "--clip-model", clip, "--json")
    counts = json.loads(again.stdout)
    assert (counts["embedded"], counts["query_distances"]) == (0, 1)
    assert queue_order(home) == [imported]
    stored = dict(rows(home, "SELECT image_id, query_distance FROM embedded"))
    assert copy_id not in stored
    assert stored[imported] == pytest.approx(distances_by_hand(home, clip)[imported], abs=2e-3)
