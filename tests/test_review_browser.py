"""The review page in a real browser (Debian's Chromium, driven by Playwright): label with
the keyboard in both views, undo, and find every decision in the catalog."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from curator.config import load_settings
from db.catalog import open_catalog
from tests.helpers import imagefiles as f
from tests.helpers.browser import chromium
from tests.helpers.review_server import review_server


@pytest.fixture
def served(cli, home, tmp_path) -> Iterator[str]:
    for i in range(8):
        f.jpeg(tmp_path / "in" / f"{i}.jpg", f.texture(i, (400, 300)))
    assert cli("import", tmp_path / "in", "--label", "happy").exit_code == 0
    catalog = open_catalog(load_settings().db_url)
    try:
        with review_server(catalog, home) as base:
            yield f"{base}/?queue=new"
    finally:
        catalog.dispose()


@pytest.fixture
def page(served):
    with chromium() as browser:
        # The page's own CSP forbids eval, which Playwright's wait_for_function needs; the
        # page under its CSP is tested in tests/test_review_security.py.
        tab = browser.new_page(viewport={"width": 1280, "height": 900}, bypass_csp=True)
        tab.goto(served)
        tab.wait_for_function("document.body.dataset.ready === 'true'", timeout=20_000)
        yield tab


def decisions(home: Path) -> list[tuple]:
    with sqlite3.connect(home / "catalog.db") as db:
        return db.execute(
            "SELECT image_id, label, author FROM label_events WHERE origin = 'human' ORDER BY id"
        ).fetchall()


def shown(page, image_id: int) -> None:
    page.wait_for_function(f"document.body.dataset.imageId === '{image_id}'", timeout=10_000)


def test_focus_view_keyboard_labeling_and_undo(page, home):
    shown(page, 1)
    page.keyboard.press("1")  # happy, then on to the next image
    shown(page, 2)
    page.keyboard.press("u")  # unhappy
    shown(page, 3)
    page.keyboard.press("z")  # undo: back to image 2, its decision withdrawn
    shown(page, 2)
    page.keyboard.press("x")  # reject
    shown(page, 3)
    page.keyboard.press("s")  # skip
    shown(page, 4)
    page.keyboard.press("ArrowLeft")  # back without deciding
    shown(page, 3)
    page.keyboard.press("2")
    shown(page, 4)
    page.wait_for_function("document.querySelector('#current-label').textContent.length > 0")
    assert decisions(home) == [
        (1, "happy", "tester"),
        (2, "unhappy", "tester"),
        (2, None, "tester"),
        (2, "reject", "tester"),
        (3, "unhappy", "tester"),
    ]


def chip_of(page, image_id: int) -> str:
    return page.locator(f".tile[data-image-id='{image_id}'] .chip").inner_text()


def test_grid_view_select_many_and_label_in_one_stroke(page, home):
    page.keyboard.press("g")
    page.wait_for_selector("#grid:not([hidden]) .tile")
    page.keyboard.press(" ")  # select image 1 (under the cursor)
    page.keyboard.press("ArrowRight")
    page.keyboard.press(" ")  # and image 2
    page.keyboard.press("u")
    page.wait_for_function(
        "document.querySelector(\".tile[data-image-id='2'] .chip\").textContent"
        ".startsWith('unhappy')"
    )
    assert chip_of(page, 1).startswith("unhappy")
    page.locator(".tile[data-image-id='4']").click()
    page.locator(".tile[data-image-id='6']").click(modifiers=["Shift"])
    page.keyboard.press("x")  # 4, 5 and 6 rejected together
    page.wait_for_function(
        "document.querySelector(\".tile[data-image-id='6'] .chip\").textContent"
        ".startsWith('reject')"
    )
    page.keyboard.press("z")  # and that stroke undone
    page.wait_for_function(
        "document.querySelector(\".tile[data-image-id='6'] .chip\").textContent.startsWith('happy')"
    )
    assert decisions(home) == [
        (1, "unhappy", "tester"),
        (2, "unhappy", "tester"),
        (4, "reject", "tester"),
        (5, "reject", "tester"),
        (6, "reject", "tester"),
        (4, None, "tester"),
        (5, None, "tester"),
        (6, None, "tester"),
    ]
    page.keyboard.press("Enter")  # the focus view at the cursor
    page.wait_for_selector("#focus:not([hidden])")


def test_explain_key_without_a_model_says_so(page):
    shown(page, 1)
    page.keyboard.press("e")
    page.wait_for_function(
        "document.querySelector('#toast').textContent.includes('no trained model yet')"
    )
    assert page.locator("#big").get_attribute("src").startswith("/originals/")
