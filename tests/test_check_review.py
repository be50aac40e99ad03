"""The issue queues on the review page in Chromium: x rejects a flagged picture, a class
key keeps it, and either way it leaves the queue."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from curator.config import load_settings
from db.catalog import open_catalog
from tests.helpers import photos
from tests.helpers.browser import chromium
from tests.helpers.review_server import review_server


@pytest.fixture
def browser():
    with chromium() as b:
        yield b


def human(home: Path) -> list[tuple]:
    with sqlite3.connect(home / "catalog.db") as db:
        return db.execute(
            "SELECT image_id, label FROM label_events WHERE origin = 'human' ORDER BY id"
        ).fetchall()


def test_x_rejects_and_a_class_key_keeps_a_flagged_picture(cli, home, tmp_path, browser):
    folder = tmp_path / "in"
    folder.mkdir()
    bases = photos.quarters("astronaut")
    photos.degraded(bases[0])["blurry"].save(folder / "a-blurry.jpg", quality=90)
    photos.degraded(bases[1])["dark"].save(folder / "b-dark.jpg", quality=90)
    photos.degraded(bases[2])["small"].save(folder / "c-small.jpg", quality=90)
    photos.photo("rocket").save(folder / "rocket.jpg", quality=90)
    assert cli("import", folder, "--label", "unhappy").exit_code == 0
    catalog = open_catalog(load_settings().db_url)
    try:
        with review_server(catalog, home) as base:
            tab = browser.new_page(viewport={"width": 1280, "height": 900})
            tab.goto(f"{base}/?queue=issue:blurry")
            tab.locator("body[data-ready='true']").wait_for(timeout=20_000)
            tab.locator("body[data-image-id='1']").wait_for()
            tab.keyboard.press("x")
            tab.locator("body[data-busy='false']").wait_for(timeout=30_000)
            assert human(home) == [(1, "reject")]
            tab.goto(f"{base}/?queue=issues")
            tab.locator("body[data-ready='true']").wait_for(timeout=20_000)
            first = int(tab.locator("body").get_attribute("data-image-id"))
            assert first in (2, 3)  # the rejected one has left the queue; rocket was never in
            tab.keyboard.press("h")
            tab.locator("body[data-busy='false']").wait_for(timeout=30_000)
            assert human(home) == [(1, "reject"), (first, "happy")]
            left = [i for i in (2, 3) if i != first]
            tab.locator(f"body[data-image-id='{left[0]}']").wait_for()
    finally:
        catalog.dispose()
