"""curator db copy: a real catalog from SQLite to a real PostgreSQL server and back."""

from __future__ import annotations

import json
import os
import signal
import sys
import time

import pytest

from db import copy
from db.catalog import open_catalog
from db.predictions import prediction_row, replace_predictions
from db.registry import create_model
from tests.faults.consistency import assert_kept_counts_true
from tests.helpers import imagefiles as f
from tests.helpers.sql import rows

#: What a lossless copy must keep: every table's rows, and each image's label history in order.
CHECKS = {
    "counts": "SELECT (SELECT count(*) FROM images), (SELECT count(*) FROM sources), "
    "(SELECT count(*) FROM label_events), (SELECT count(*) FROM image_changes), "
    "(SELECT count(*) FROM runs), (SELECT count(*) FROM models), "
    "(SELECT count(*) FROM predictions), (SELECT count(*) FROM settings)",
    "histories": "SELECT id, image_id, label, origin, author, run_id FROM label_events "
    "ORDER BY image_id, id",
    "images": "SELECT id, sha256, phash, phash_mirror, status, duplicate_of, split, bytes "
    "FROM images ORDER BY id",
    "predictions": "SELECT model_id, image_id, predicted, confidence, in_sample "
    "FROM predictions ORDER BY model_id, image_id",
}


@pytest.fixture
def server(pg_server):
    if isinstance(pg_server, str):
        pytest.skip(f"PostgreSQL is not available: {pg_server}")
    return pg_server


@pytest.fixture
def source(cli, home, tmp_path) -> str:
    """A SQLite catalog made by the real commands: labels, relabels, an undone label, near
    copies (one pointing at a later image), and a model's predictions."""
    f.jpeg(tmp_path / "small" / "copy.jpg", f.texture(7, (160, 120)))  # imported first
    for i in range(8):
        f.jpeg(tmp_path / "happy" / f"h{i}.jpg", f.texture(i, (320, 240)))
    for i in range(5):
        f.jpeg(tmp_path / "unhappy" / f"u{i}.jpg", f.texture(50 + i, (320, 240)))
    assert cli("import", tmp_path / "small").exit_code == 0
    assert cli("import", tmp_path / "happy", "--label", "happy").exit_code == 0
    assert cli("import", tmp_path / "unhappy", "--label", "unhappy").exit_code == 0
    assert cli("dedup").exit_code == 0
    assert cli("label", "2", "3", "--as", "unhappy", "--author", "ann").exit_code == 0
    assert cli("label", "3", "--as", "happy", "--author", "bob").exit_code == 0
    assert cli("label", "4", "--as", "reject").exit_code == 0
    url = f"sqlite:///{home / 'catalog.db'}"
    catalog = open_catalog(url)
    with catalog.writing() as session:
        model = create_model(
            session, status="done", config={"backbone": "resnet18", "image_size": 64},
            training={"epochs": 1}, classes=["happy", "unhappy"], path="models/1",
            metrics={"val_accuracy": 0.5}, torch_version="2", curator_version="0",
        )  # fmt: skip
        replace_predictions(
            session,
            model_id=model.id,
            rows=[
                prediction_row(model_id=model.id, image_id=i, probs=[p, 1 - p],
                               classes=["happy", "unhappy"], in_sample=i % 2 == 0)
                for i, p in ((2, 0.91), (5, 0.125), (9, 1 / 3))
            ],
        )  # fmt: skip
    catalog.dispose()
    assert rows("SELECT count(*) FROM images WHERE duplicate_of > id", url) == [(1,)]
    return url


def facts(url: str) -> dict[str, list[tuple]]:
    return {name: rows(query, url) for name, query in CHECKS.items()}


def test_a_catalog_goes_to_postgresql_and_back_without_loss(cli, source, server, tmp_path):
    before = facts(source)
    assert before["counts"][0][0] == 14 and len(before["histories"]) >= 16
    pg = server.create_database()
    result = cli("db", "copy", source, pg, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["tables"]["label_events"]["rows"] == len(before["histories"])
    assert facts(pg) == before
    # Stats read the same from either engine.
    on_sqlite = json.loads(cli("stats", "--json").stdout)
    on_pg = json.loads(cli("--db-url", pg, "stats", "--json").stdout)
    assert on_pg == on_sqlite
    # The copy is a working catalog: a new image takes the next id, a label goes on record.
    f.jpeg(tmp_path / "more" / "m.jpg", f.texture(99))
    assert cli("--db-url", pg, "import", tmp_path / "more", "--label", "happy").exit_code == 0
    assert rows("SELECT max(id) FROM images", pg) == [(15,)]
    assert cli("--db-url", pg, "label", "15", "--as", "unhappy").exit_code == 0
    assert_kept_counts_true(pg)  # the counts the copy made, and the triggers after it
    # And back to a new SQLite file, the file path given as it is.
    back = tmp_path / "back" / "catalog.db"
    result = cli("db", "copy", pg, back)
    assert result.exit_code == 0, result.output
    tables = len(copy.tables())
    assert f"verified: the {tables} tables (label histories included)" in result.stdout
    assert facts(f"sqlite:///{back}") == facts(pg)
    assert facts(f"sqlite:///{back}")["counts"][0][0] == 15


def test_a_copy_into_a_catalog_that_holds_rows_is_refused_and_changes_nothing(cli, source, server):
    pg = server.create_database()
    assert cli("db", "copy", source, pg).exit_code == 0
    before = facts(pg)
    result = cli("db", "copy", source, pg)
    assert result.exit_code == 1
    assert "the destination already holds a catalog (" in result.stderr
    assert "copy into an empty one" in result.stderr and "Traceback" not in result.output
    assert facts(pg) == before


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("same", "same"), "the source and the destination are the same catalog"),
        (("missing.db", "out.db"), "no catalog file at"),
        (("SRC", "mysql://u@127.0.0.1/x"), "SQLite or PostgreSQL, not mysql"),
        (("SRC", "postgresql+psycopg://u@127.0.0.1:9/x"), "cannot open the catalog at"),
    ],
)
def test_bad_copies_are_one_line_errors(cli, source, tmp_path, args, words, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = tuple(source if a == "SRC" else a for a in args)
    result = cli("db", "copy", *args)
    assert result.exit_code == 1, result.output
    assert words in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "out.db").exists()


def _foreign_sqlite(path):
    import sqlite3

    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        db.execute("INSERT INTO notes (body) VALUES ('mine')")
    db.close()


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda p: p.write_bytes(b""), "is an empty file, not a catalog"),
        (lambda p: p.write_text("notes, not a database\n"), "is not a SQLite database"),
        (_foreign_sqlite, "is a SQLite database without curator's tables, not a catalog"),
        (lambda p: None, "no catalog file at"),
        (lambda p: p.mkdir(), "is not a file"),
    ],
    ids=["empty", "text", "foreign-sqlite", "missing", "folder"],
)
def test_a_source_that_is_not_a_catalog_is_refused_and_nothing_is_made(tmp_path, cli, make, words):
    given = tmp_path / "given.db"
    make(given)
    before = given.read_bytes() if given.is_file() else None
    destination = tmp_path / "copy" / "catalog.db"
    result = cli("db", "copy", given, destination)
    assert result.exit_code == 1, result.output
    assert words in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert "verified" not in result.stdout
    # The source is as it was (no catalog made in it, not even its journal switched to WAL),
    # and the destination was never opened.
    assert (given.read_bytes() if given.is_file() else None) == before
    made = {p.name for p in tmp_path.iterdir()} - {"home"}  # home: the cli fixture's own
    assert made == ({"given.db"} if given.exists() else set())  # no -wal, -journal, copy/
    assert not destination.parent.exists()


def test_a_copy_killed_half_way_leaves_the_destination_empty_and_runs_again(
    source, server, spawn, tmp_path
):
    big = tmp_path / "big.db"
    catalog = open_catalog(f"sqlite:///{big}")
    with catalog.writing() as session:
        from sqlalchemy import insert

        from db.models import Image, LabelEvent

        session.execute(
            insert(Image),
            [dict(sha256=f"{n:064x}", phash=n, phash_mirror=-n, hash_version="v", width=9,
                  height=9, format="JPEG", bytes=n, path=f"images/{n}.jpg", split="train",
                  status="active") for n in range(1, 60_001)],
        )  # fmt: skip
        session.execute(
            insert(LabelEvent),
            [dict(image_id=n, label="happy", origin="import", author="x")
             for n in range(1, 60_001)],
        )  # fmt: skip
    catalog.dispose()
    pg = server.create_database()
    command = [sys.executable, "-m", "curator", "db", "copy", str(big), pg]
    proc = spawn(command, stdout=-1, stderr=-1, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        # Wait until the copy is writing rows (its one transaction is not committed): another
        # connection's latest statement is an INSERT, past the migrations, which insert rows
        # too (alembic 0010 fills the rankings) before their tables are committed.
        writing = rows(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND query ILIKE 'INSERT INTO%' "
            "AND to_regclass('images') IS NOT NULL",
            pg,
        )[0][0]
        if writing:
            time.sleep(0.3)
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert rows("SELECT count(*) FROM images", pg) == [(0,)]
    again = spawn(command, stdout=-1, stderr=-1, text=True)
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert rows("SELECT count(*), sum(bytes) FROM images", pg) == [(60_000, 60_000 * 60_001 // 2)]
    assert rows("SELECT count(*) FROM label_events", pg) == [(60_000,)]
    assert rows("SELECT count FROM tallies WHERE name = 'images'", pg) == [(60_000,)]
