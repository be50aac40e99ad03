"""The vectors in the review page (Chromium) and the library face: the outlier queue, m (more
like this) labeled with the grid's keys, / (text search) and a cluster labeled in one stroke;
with a small randomly initialised open_clip model as the embedder (nothing downloaded)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

import curator
from curator.config import load_settings
from db.catalog import open_catalog
from tests.helpers.browser import ARGS, CHROMIUM, ensure_chromium
from tests.helpers.clip import tiny_clip
from tests.helpers.review_server import review_server
from tests.helpers.training import blob_picture


@pytest.fixture
def embedded(cli, home, tmp_path) -> Path:
    import skimage.data

    for label, warm, seed in (("happy", True, 0), ("unhappy", False, 500)):
        (tmp_path / label).mkdir()
        for i in range(20):
            blob_picture(seed + i, warm).save(tmp_path / label / f"{i}.jpg")
    for name in ("astronaut", "coffee", "chelsea"):
        picture = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
        picture.resize((96, 72)).save(tmp_path / "happy" / f"{name}.jpg")
    for label in ("happy", "unhappy"):
        assert cli("import", tmp_path / label, "--label", label).exit_code == 0
    model = tiny_clip(tmp_path / "clip", vision_layers=1, seed=1)
    result = cli("embed", "--embedder", "clip", "--clip-model", model, "--workers", "0")
    assert result.exit_code == 0, result.output
    return home


@pytest.fixture
def tab(embedded) -> Iterator[tuple]:
    ensure_chromium()
    from playwright.sync_api import sync_playwright

    catalog = open_catalog(load_settings().db_url)
    try:
        with review_server(catalog, embedded) as base, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            yield page, base
            browser.close()
    finally:
        catalog.dispose()


def ready(page, url: str) -> None:
    page.goto(url)
    page.locator("body[data-ready='true']").wait_for(timeout=20_000)


def settled(page) -> None:
    page.locator("body[data-busy='false']").wait_for(timeout=30_000)


def human(home: Path) -> dict[int, str]:
    with sqlite3.connect(home / "catalog.db") as db:
        events = db.execute(
            "SELECT image_id, label FROM label_events WHERE origin = 'human' ORDER BY id"
        ).fetchall()
    return dict(events)


def test_more_like_this_search_and_a_cluster_in_one_stroke(tab, embedded):
    page, base = tab
    ready(page, f"{base}/?queue=outlier")
    assert page.locator("#queues button[data-queue='outlier']").inner_text().startswith("outlier")
    first = page.evaluate("() => S.items[S.pos].id")
    page.keyboard.press("m")
    settled(page)
    assert page.locator("#special").inner_text().startswith("like #")
    tiles = page.locator("#tiles > *").count()
    assert tiles > 10 and not page.locator("#grid").is_hidden()
    page.keyboard.press("a")
    page.keyboard.press("2")  # unhappy, for the whole selection
    settled(page)
    labeled = human(embedded)
    shown = page.evaluate("() => S.items.map((item) => item.id)")
    assert len(shown) == tiles and all(labeled[i] == "unhappy" for i in shown)
    assert set(labeled.values()) == {"unhappy"}
    assert first not in labeled  # the picture itself is not among its neighbours

    page.keyboard.press("/")
    page.locator("#search-text").fill("a cat on a sofa")
    page.keyboard.press("Enter")
    settled(page)
    assert page.locator("#special").inner_text() == "“a cat on a sofa”"
    assert page.locator("#tiles > *").count() > 0

    ready(page, f"{base}/?queue=clusters")
    assert not page.locator("#grid").is_hidden()
    members = page.locator("#tiles > *").count()
    before = len(human(embedded))
    page.keyboard.press("1")  # happy, for the whole cluster: one stroke
    settled(page)
    after = human(embedded)
    assert len(after) - before >= members > 0
    assert set(after.values()) == {"happy", "unhappy"}


def test_the_library_face_lists_the_vector_queues_and_neighbours(embedded):
    with curator.open(embedded) as catalog:
        outliers = catalog.queue("outlier", limit=5)
        assert len(outliers) == 5
        near = catalog.similar(outliers[0]["id"], limit=3)
        assert len(near) == 3 and outliers[0]["id"] not in [n["id"] for n in near]
        assert len(catalog.search("two people smiling", limit=4)) == 4
        assert catalog.embed(embedder="clip", clip_model=str(embedded.parent / "clip"))[
            "already_embedded"
        ] == len(catalog.queue("all", limit=1000))
