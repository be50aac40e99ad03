"""The review page in Chromium: every key press is one decision in order however fast, a
group's copies side by side (one split off at a time), and a page that fits its window."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from curator.config import load_settings
from db.catalog import open_catalog
from tests.helpers import imagefiles as f
from tests.helpers.browser import chromium
from tests.helpers.review_server import review_server

IMAGES = 34


@pytest.fixture
def served(cli, home, tmp_path) -> Iterator[str]:
    for i in range(IMAGES):
        f.jpeg(tmp_path / "in" / f"{i:02d}.jpg", f.texture(300 + i, (320, 240)))
    group = f.texture(7, (480, 360))
    f.jpeg(tmp_path / "in" / "zz-copy-a.jpg", group.resize((240, 180)))
    f.jpeg(tmp_path / "in" / "zz-copy-b.jpg", group.resize((320, 240)))
    f.jpeg(tmp_path / "in" / "zz-kept.jpg", group)
    assert cli("import", tmp_path / "in", "--label", "unhappy").exit_code == 0
    catalog = open_catalog(load_settings().db_url)
    try:
        with review_server(catalog, home) as base:
            yield base
    finally:
        catalog.dispose()


@pytest.fixture
def browser():
    with chromium() as b:
        yield b


def open_page(browser, url: str, width: int = 1280, height: int = 900):
    tab = browser.new_page(viewport={"width": width, "height": height})
    tab.goto(url)
    tab.locator("body[data-ready='true']").wait_for(timeout=20_000)
    return tab


def settled(tab) -> None:
    """Every queued action done."""
    tab.locator("body[data-busy='false']").wait_for(timeout=30_000)


def human(home: Path) -> list[tuple]:
    with sqlite3.connect(home / "catalog.db") as db:
        return db.execute(
            "SELECT image_id, label FROM label_events WHERE origin = 'human' ORDER BY id"
        ).fetchall()


def current_human(home: Path) -> dict[int, str | None]:
    latest: dict[int, str | None] = {}
    for image_id, label in human(home):
        latest[image_id] = label
    return latest


def test_twenty_fast_presses_are_twenty_decisions_in_order(served, home, browser):
    tab = open_page(browser, f"{served}/?queue=new")
    # All twenty keydowns land before the first answer comes back.
    tab.evaluate(
        "() => { for (let i = 0; i < 20; i++) document.dispatchEvent("
        "new KeyboardEvent('keydown', {key: 'h', bubbles: true})); }"
    )
    settled(tab)
    assert human(home) == [(i, "happy") for i in range(1, 21)]
    tab.locator("body[data-image-id='21']").wait_for()


def test_thirty_presses_then_thirty_undos_leave_nothing_decided(served, home, browser):
    tab = open_page(browser, f"{served}/?queue=new")
    for _ in range(30):
        tab.keyboard.press("h", delay=0)
    for _ in range(30):
        tab.keyboard.press("z", delay=0)
    settled(tab)
    events = human(home)
    assert len(events) == 60
    assert [i for i, _label in events[:30]] == list(range(1, 31))
    assert set(current_human(home).values()) == {None}


def test_a_groups_copies_are_shown_side_by_side_and_one_can_be_split_off(served, home, browser):
    with sqlite3.connect(home / "catalog.db") as db:
        (rep,) = db.execute("SELECT id FROM images WHERE width = 480").fetchone()
        copies = [r[0] for r in db.execute(f"SELECT id FROM images WHERE duplicate_of = {rep}")]
    tab = open_page(browser, f"{served}/?queue=duplicates")
    tab.locator(f"body[data-image-id='{rep}']").wait_for()
    cards = tab.locator("#group .member")
    assert cards.count() == 3
    captions = cards.all_inner_texts()
    assert "(kept)" in captions[0] and all("unhappy" in c for c in captions)
    tab.keyboard.press("u")  # the group: every copy with it, and on to the next group
    tab.keyboard.press("ArrowLeft")
    tab.keyboard.press("c")  # the first copy, large
    tab.locator(f"body[data-shown-id='{copies[0]}']").wait_for()
    tab.keyboard.press("h")  # labels that copy alone
    settled(tab)
    assert sorted(human(home)[:3]) == sorted([(rep, "unhappy"), *[(c, "unhappy") for c in copies]])
    assert human(home)[3:] == [(copies[0], "happy")]
    tab.locator("#current-label.conflict").wait_for()  # the group now disagrees with itself
    tab.keyboard.press("n")
    tab.keyboard.press("n")  # and that copy is not one of them after all
    settled(tab)
    with sqlite3.connect(home / "catalog.db") as db:
        left = db.execute(f"SELECT id FROM images WHERE duplicate_of = {rep}").fetchall()
        pair = db.execute("SELECT image_id, other_id FROM separations").fetchall()
    # Apart from every other member of the group, and only that copy.
    others = {rep, copies[1]}
    assert left == [(copies[1],)]
    assert {tuple(sorted(p)) for p in pair} == {tuple(sorted((copies[0], o))) for o in others}
    assert tab.locator("#group .member").count() == 2


def test_a_queue_that_needs_predictions_says_why(served, browser):
    tab = open_page(browser, f"{served}/?queue=new")
    button = tab.locator("#queues button[data-queue='uncertain']")
    assert button.is_disabled() and "curator score" in (button.get_attribute("title") or "")
    assert tab.locator("#model").inner_text() == "no model yet"
    empty = open_page(browser, f"{served}/?queue=uncertain")
    empty.locator("#empty").wait_for()
    assert "curator score" in empty.locator("#empty").inner_text()


def test_the_header_stays_one_line_at_1024_by_640_and_keys_are_readable(served, browser):
    tab = open_page(browser, f"{served}/?queue=new", 1024, 640)
    layout = tab.evaluate(
        """() => {
          const header = document.querySelector('header');
          const shown = [...header.children].filter((el) => !el.hidden);  // not a closed box
          const tops = shown.map((el) => Math.round(el.getBoundingClientRect().top));
          const nav = document.querySelector('#queues');
          const nav_tops = [...nav.children].map((el) => el.offsetTop);
          return {height: header.getBoundingClientRect().height, tops, nav_tops,
                  overflow: document.documentElement.scrollWidth - window.innerWidth};
        }"""
    )
    assert layout["height"] <= 48 and len(set(layout["nav_tops"])) == 1, layout
    assert max(layout["tops"]) - min(layout["tops"]) <= 12 and layout["overflow"] <= 0, layout
    colours = tab.evaluate(
        """() => {
          const b = document.querySelector('#view-focus');
          const k = b.querySelector('kbd');
          return [getComputedStyle(k).color, getComputedStyle(b).backgroundColor];
        }"""
    )
    assert contrast(*colours) >= 4.5, colours


def contrast(fg: str, bg: str) -> float:
    """WCAG contrast ratio of two CSS rgb() colours."""

    def luminance(css: str) -> float:
        parts = [float(x) for x in css[css.index("(") + 1 : css.index(")")].split(",")[:3]]
        linear = [
            c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
            for c in (p / 255 for p in parts)
        ]
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    a, b = sorted((luminance(fg), luminance(bg)), reverse=True)
    return (a + 0.05) / (b + 0.05)


def test_clicks_and_keys_keep_their_order(served, home, browser):
    tab = open_page(browser, f"{served}/?queue=new")
    tab.keyboard.press("g")
    tab.locator("#grid:not([hidden]) .tile").first.wait_for()
    tab.locator(".tile[data-image-id='3']").click()
    tab.keyboard.press("u", delay=0)  # labels image 3: the click came first
    tab.locator(".tile[data-image-id='5']").click()
    tab.keyboard.press("h", delay=0)
    settled(tab)
    deadline = time.monotonic() + 10
    while len(human(home)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert human(home) == [(3, "unhappy"), (5, "happy")]
