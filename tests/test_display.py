"""Names, URLs and labels with terminal escapes in them, printed by the real CLI."""

from __future__ import annotations

import io
import json
import os
import re

import pytest

from curator.config import load_settings
from curator.display import escape_controls
from curator.ingest.door import Ingestor, prepare_bytes
from curator.ingest.imaging import Limits
from curator.ingest.storage import Store
from db.catalog import open_catalog
from db.runs import start_run
from db.settings import set_setting
from tests.helpers import imagefiles as f

pytestmark = pytest.mark.backends

#: Recolours the terminal, sets its title, clears the screen (C1 CSI), forges a line, and
#: shows what follows right to left.
HOSTILE = "a\x1b[31mred\x1b]0;owned\x07\x9b2J\nforged line\u202egpj."
#: What no output may hold raw: C0 but the output's own line breaks, DEL, C1, bidi controls.
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
#: The escapes HOSTILE is shown with.
SHOWN = ["\\x1b[31mred", "\\x1b]0;owned\\x07", "\\x9b2J", "\\x0aforged line", "\\u202egpj."]


def assert_shown_escaped(text: str, count: int = 1) -> None:
    assert not RAW.search(text), RAW.search(text)
    for escape in SHOWN:
        assert text.count(escape) >= count, (escape, text)
    assert not any(line.startswith("forged line") for line in text.splitlines())


def test_escape_controls_shows_controls_and_bidi_and_leaves_every_script_alone():
    assert escape_controls("\x00\t\n\x1b\x7f\x80\x9b\x9f") == (
        "\\x00\\x09\\x0a\\x1b\\x7f\\x80\\x9b\\x9f"
    )
    bidi = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
    assert escape_controls(bidi) == "".join(f"\\u{ord(c):04x}" for c in bidi)
    readable = "счастливый 幸せ हँसमुख heureux é \\ [bold] :smile: 🙂"
    assert escape_controls(readable) == readable


def _hostile_sources(tmp_path, cli) -> None:
    """An imported file with HOSTILE in its name, by an author with it, and the same picture
    found by a crawl whose URL, page and query hold it."""
    data = f.jpeg_bytes(f.texture(5))
    path = tmp_path / f"{HOSTILE}.jpg"
    path.write_bytes(data)
    result = cli("import", path, "--label", "happy", "--author", f"eve{HOSTILE}")
    assert result.exit_code == 0, result.stderr
    settings = load_settings()
    catalog = open_catalog(settings.db_url)
    with catalog.writing() as session:
        run_id = start_run(session, kind="crawl", params={}).id
    store = Store(settings.home)
    with Ingestor(catalog, store=store, run_id=run_id, threshold=10, label_origin="query") as ing:
        ing.add(
            prepare_bytes(
                data,
                locator=f"https://example.com/{HOSTILE}.jpg",
                kind="url",
                store=store,
                limits=Limits(),
                page_url=f"https://example.com/page?{HOSTILE}",
                engine="bing",
                query=f"happy {HOSTILE}",
            )
        )
    catalog.dispose()


def test_show_escapes_file_names_urls_queries_and_authors(cli, home, tmp_path):
    _hostile_sources(tmp_path, cli)
    shown = cli("show", "1")
    assert shown.exit_code == 0, shown.stderr
    assert_shown_escaped(shown.stdout, count=4)  # file, URL, query, author
    assert "query 'happy a\\x1b[31mred" in shown.stdout
    as_json = cli("show", "1", "--json")
    assert not RAW.search(as_json.stdout) and as_json.stdout.isascii()
    info = json.loads(as_json.stdout)
    locators = {s["locator"] for s in info["sources"]}
    assert locators == {str(tmp_path / f"{HOSTILE}.jpg"), f"https://example.com/{HOSTILE}.jpg"}
    assert {s["query"] for s in info["sources"]} == {None, f"happy {HOSTILE}"}
    assert {s["page_url"] for s in info["sources"]} == {None, f"https://example.com/page?{HOSTILE}"}
    assert info["labels"][0]["author"] == f"eve{HOSTILE}"


def _hostile_class(catalog) -> str:
    """A class named as a catalog from before class names were checked could hold."""
    name = f"un{HOSTILE}"
    with catalog.writing() as session:
        set_setting(session, key="classes", value=["happy", name])
    return name


def test_classes_stats_label_and_queue_escape_class_names(cli, home, tmp_path, catalog):
    name = _hostile_class(catalog)
    f.jpeg(tmp_path / "a.jpg", f.texture(1))
    assert cli("import", tmp_path / "a.jpg").exit_code == 0
    for args in (("classes",), ("label", "1", "--as", name), ("queue", "all"), ("stats",)):
        result = cli(*args)
        assert result.exit_code == 0, (args, result.stderr)
        assert_shown_escaped(result.stdout)
    stats = cli("stats", "--json").stdout
    assert not RAW.search(stats)
    assert json.loads(stats)["labels"]["by_class"] == {name: 1}


def test_export_escapes_its_folder_and_counts(cli, home, tmp_path):
    f.jpeg(tmp_path / "a.jpg", f.texture(1))
    assert cli("import", tmp_path / "a.jpg", "--label", "happy").exit_code == 0
    out = tmp_path / f"out{HOSTILE}"
    for fmt, target in (("imagefolder", out), ("csv", tmp_path / f"out{HOSTILE}.csv")):
        result = cli("export", target, "--format", fmt)
        assert result.exit_code == 0, result.stderr
        assert_shown_escaped(result.stdout)
        as_json = cli("export", target, "--format", fmt, "--json").stdout
        assert not RAW.search(as_json) and json.loads(as_json)["out"] == str(target)


def test_an_error_naming_a_file_is_one_line_with_its_escapes(cli, home, tmp_path):
    missing = tmp_path / f"[red]{HOSTILE}[/red].jpg"
    result = cli("import", missing)
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: no such file")
    assert_shown_escaped(result.stderr)
    assert "[red]" in result.stderr  # not read as markup either


def test_a_bad_class_name_is_one_line_naming_the_character(cli, home):
    for bad, escape in (("un\nhappy", "'\\x0a'"), ("sad\u202e", "'\\u202e'")):
        result = cli("classes", "happy", bad)
        assert result.exit_code == 1
        assert result.stderr.count("\n") == 1 and not RAW.search(result.stderr)
        assert f"{escape} is not one of letters, digits" in result.stderr
    assert cli("classes").stdout.split() == ["happy", "unhappy"]


def test_score_rows_on_a_terminal_are_escaped_and_exact_elsewhere():
    from curator.learn.outputs import RowWriter

    primary, secondary = os.openpty()
    with open(secondary, "w", encoding="utf-8", closefd=True) as terminal:
        writer = RowWriter(terminal, "csv", ["happy", "unhappy"], with_ids=False)
        writer.write(f"/x/{HOSTILE}.jpg", None, f"cannot read {HOSTILE}", None)
        writer.flush()
        received = b""
        while received.count(b"\n") < 2:  # the header and the row; a terminal hands over lines
            received += os.read(primary, 65536)
    shown = received.decode("utf-8")
    os.close(primary)
    assert_shown_escaped(shown.replace("\r\n", "\n"), count=2)
    exact = io.StringIO()
    RowWriter(exact, "csv", ["happy", "unhappy"], with_ids=False).write(
        f"/x/{HOSTILE}.jpg", None, "", None
    )
    assert f"/x/{HOSTILE}.jpg" in exact.getvalue()


def test_a_progress_bar_shows_a_name_and_status_escaped_and_not_as_markup(capsys, monkeypatch):
    from curator.cli.common import progress_bar

    monkeypatch.setenv("COLUMNS", "300")  # room for both, or the bar cuts them short
    with progress_bar(f"scoring [red]{HOSTILE}", None) as update:
        update(1, f"[bold]{HOSTILE}", total=2)
    shown = capsys.readouterr().err
    assert_shown_escaped(shown, count=2)
    assert "scoring [red]a" in shown and "[bold]a" in shown
