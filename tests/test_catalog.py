"""The catalog itself: migrations, SQLite settings, label history, concurrent openers."""

from __future__ import annotations

import multiprocessing
import re
import sqlite3
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from db.catalog import alembic_config, open_catalog
from db.errors import (
    AmbiguousImage,
    BadClassName,
    CatalogBusy,
    CatalogError,
    UnknownClass,
    UnknownImage,
)
from db.images import add_image, find_image, split_for
from db.labels import current_labels, label_history, record_label
from db.models import Base
from db.settings import get_classes, set_classes


@pytest.mark.backends
def test_migrations_and_models_agree(catalog):
    with catalog.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_sqlite_runs_in_wal_with_foreign_keys_and_a_busy_timeout(catalog):
    with catalog.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000


@pytest.mark.backends
def test_foreign_keys_are_enforced(catalog):
    with pytest.raises(Exception, match=r"(?i)foreign key"), catalog.writing() as session:
        session.execute(
            text(
                "INSERT INTO label_events (image_id, label, origin, author, created_at) "
                "VALUES (999, 'happy', 'human', 'x', '2026-01-01')"
            )
        )


def _open(url: str) -> str:
    catalog = open_catalog(url)
    with catalog.reading() as session:
        classes = get_classes(session)
    catalog.dispose()
    return ",".join(classes)


@pytest.mark.backends
def test_two_processes_opening_a_new_catalog_at_once(tmp_path, new_db_url):
    url = new_db_url(tmp_path / "new")
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        assert pool.map(_open, [url] * 4) == ["happy,unhappy"] * 4


@pytest.mark.backends
def test_writers_take_turns_readers_never_wait_and_a_long_wait_is_a_clear_error(
    db_url, monkeypatch
):
    monkeypatch.setenv("CURATOR_DB_TIMEOUT", "0.5")
    first, second = open_catalog(db_url), open_catalog(db_url)
    try:
        with first.writing() as session:
            set_classes(session, classes=["cat", "dog"])
            with second.reading() as other:  # a reader sees the last commit, unblocked
                assert get_classes(other) == ["happy", "unhappy"]
            busy = pytest.raises(CatalogBusy, match=r"more than 0\.5 s; nothing was written")
            with busy, second.writing() as other:
                set_classes(other, classes=["ant", "bee"])
        with second.writing() as session:  # the lock is free again
            assert get_classes(session) == ["cat", "dog"]
            set_classes(session, classes=["ant", "bee"])
        with first.reading() as session:
            assert get_classes(session) == ["ant", "bee"]
    finally:
        first.dispose()
        second.dispose()


@pytest.mark.backends
def test_every_migration_runs_down_and_up_again(catalog):
    from alembic import command

    with catalog.engine.begin() as conn:
        command.downgrade(alembic_config(conn), "base")
    with catalog.engine.connect() as conn:
        assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
    with catalog.engine.begin() as conn:
        command.upgrade(alembic_config(conn), "head")
    with catalog.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("mysql://u@127.0.0.1/db", "SQLite or PostgreSQL, not mysql"),
        ("not a url", "is not a database URL"),
        ("postgresql+pg8000://u@127.0.0.1/db", "pip install 'curator[postgresql]'"),
        ("postgresql+psycopg://u@127.0.0.1:9/db", "cannot open the catalog at"),
    ],
)
def test_a_catalog_url_curator_cannot_use_is_one_clear_error(url, words):
    with pytest.raises(CatalogError, match=re.escape(words)):
        open_catalog(url)


def test_a_bad_timeout_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("CURATOR_DB_TIMEOUT", "soon")
    with pytest.raises(CatalogError, match="CURATOR_DB_TIMEOUT must be a number of seconds"):
        open_catalog(f"sqlite:///{tmp_path / 'catalog.db'}")


def test_a_file_that_is_not_a_catalog_is_a_clear_error(tmp_path):
    bad = tmp_path / "catalog.db"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(CatalogError, match="cannot open the catalog"):
        open_catalog(f"sqlite:///{bad}")


def _image(session, n: int, **fields):
    sha = f"{n:064x}"
    values = dict(
        sha256=sha,
        phash=n,
        phash_mirror=n,
        hash_version="v",
        width=10,
        height=10,
        format="JPEG",
        bytes=1,
        path=f"images/{sha}.jpg",
        split=split_for(sha),
    )
    values.update(fields)
    return add_image(session, **values)


@pytest.mark.backends
def test_current_label_comes_from_the_strongest_origin_and_history_is_kept(catalog):
    with catalog.writing() as session:
        a, b = _image(session, 1), _image(session, 2)
        record_label(session, image_id=a.id, label="happy", origin="query", author="crawl")
        record_label(session, image_id=a.id, label="unhappy", origin="human", author="ann")
        record_label(session, image_id=a.id, label="happy", origin="query", author="crawl")
        record_label(session, image_id=b.id, label="happy", origin="human", author="ann")
        record_label(session, image_id=b.id, label=None, origin="human", author="ann")  # undo
        record_label(session, image_id=b.id, label="unhappy", origin="import", author="bob")
    with catalog.reading() as session:
        current = current_labels(session)
        assert (current[a.id].label, current[a.id].origin) == ("unhappy", "human")
        assert (current[b.id].label, current[b.id].origin) == ("unhappy", "import")
        assert [e.label for e in label_history(session, image_id=a.id)] == [
            "happy",
            "unhappy",
            "happy",
        ]


@pytest.mark.backends
def test_labels_outside_the_classes_are_refused(catalog):
    with pytest.raises(UnknownClass), catalog.writing() as session:
        record_label(
            session, image_id=_image(session, 3).id, label="meh", origin="human", author="x"
        )
    with catalog.writing() as session:
        img = _image(session, 4)
        record_label(session, image_id=img.id, label="reject", origin="human", author="x")


@pytest.mark.backends
def test_classes_are_a_setting(catalog):
    with catalog.writing() as session:
        set_classes(session, classes=["cat", "dog", "bird"])
    with catalog.reading() as session:
        assert get_classes(session) == ["cat", "dog", "bird"]
    for bad in (["one"], ["a", "a"], ["a", "reject"], ["a", "b/c"]):
        with pytest.raises(CatalogError), catalog.writing() as session:
            set_classes(session, classes=bad)


BAD_CLASS_NAMES = {
    "new\nline": "'\n' is not one of",
    "esc\x1b[31m": "'\x1b' is not one of",
    "back\\slash": "'\\' is not one of",
    "a/b": "'/' is not one of",
    "right\u202eleft": "'\u202e' is not one of",
    "..": "starts with .",
    ".hidden": "starts with .",
    " happy": "starts or ends with a space",
    "reject": "label for unusable images",
    "x" * 65: "longer than 64",
}
GOOD_CLASS_NAMES = ["heureux", "счастливый", "幸せ", "हँसमुख", "happy-2", "very_happy", "not.sad"]


@pytest.mark.backends
@pytest.mark.parametrize("bad", list(BAD_CLASS_NAMES))
def test_a_class_name_that_could_not_be_a_plain_folder_is_refused(catalog, bad):
    with pytest.raises(BadClassName) as refused, catalog.writing() as session:
        set_classes(session, classes=["happy", bad])
    assert BAD_CLASS_NAMES[bad] in str(refused.value)
    with catalog.reading() as session:
        assert get_classes(session) == ["happy", "unhappy"]


@pytest.mark.backends
def test_class_names_of_any_script_are_accepted_and_stored_composed(catalog):
    with catalog.writing() as session:
        set_classes(session, classes=GOOD_CLASS_NAMES)
    with catalog.reading() as session:
        assert get_classes(session) == GOOD_CLASS_NAMES
    decomposed = "cafe\u0301"  # e and a combining acute accent: the same word as café
    with catalog.writing() as session:
        set_classes(session, classes=[decomposed, "thé"])
    with catalog.reading() as session:
        assert get_classes(session) == ["caf\u00e9", "thé"]
    for twice in (["café", decomposed], ["Happy", "happy"]):
        with pytest.raises(BadClassName), catalog.writing() as session:
            set_classes(session, classes=twice)


@pytest.mark.backends
def test_find_image_by_id_or_sha_prefix(catalog):
    with catalog.writing() as session:
        _image(session, 0xABCDEF01)
        _image(session, 0xABCDEF02)
        _image(session, 0x12345678)
    with catalog.reading() as session:
        assert find_image(session, ref="1").id == 1
        assert find_image(session, ref=f"{0x12345678:064x}"[:60]).id == 3
        with pytest.raises(AmbiguousImage):
            find_image(session, ref="00000000")
        with pytest.raises(UnknownImage):
            find_image(session, ref="ffffffff")


def test_splits_are_stable_and_about_80_10_10():
    keys = [f"{i:064x}" for i in range(20_000)]
    splits = [split_for(k) for k in keys]
    assert splits == [split_for(k) for k in keys]
    share = {s: splits.count(s) / len(splits) for s in ("train", "val", "test")}
    assert abs(share["train"] - 0.8) < 0.02 and abs(share["val"] - 0.1) < 0.02


def test_an_older_catalog_file_is_upgraded_on_open(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)")
    # An empty version table: a catalog created before any migration ran.
    catalog = open_catalog(f"sqlite:///{path}")
    with catalog.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
    catalog.dispose()


def test_catalog_folder_that_cannot_be_created(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(CatalogError, match="cannot create"):
        open_catalog(f"sqlite:///{Path(blocker) / 'sub' / 'catalog.db'}")


def test_the_catalog_url_comes_from_flag_then_environment_then_home(
    cli, home, tmp_path, monkeypatch
):
    from tests.helpers import imagefiles as f

    f.jpeg(tmp_path / "a.jpg", f.texture(1))
    elsewhere = tmp_path / "elsewhere.db"
    monkeypatch.setenv("CURATOR_DB_URL", f"sqlite:///{elsewhere}")
    assert cli("import", tmp_path / "a.jpg").exit_code == 0
    assert elsewhere.is_file() and not (home / "catalog.db").exists()
    assert any((home / "images").rglob("*.jpg"))  # files stay under the home
    flagged = tmp_path / "flag.db"
    assert cli("--db-url", f"sqlite:///{flagged}", "stats").exit_code == 0
    assert flagged.is_file()


def test_the_schema_head_constant_is_the_newest_migration():
    from alembic.script import ScriptDirectory

    from db.catalog import SCHEMA_HEAD, alembic_config

    assert ScriptDirectory.from_config(alembic_config()).get_current_head() == SCHEMA_HEAD


def test_help_defaults_match_the_code_that_uses_them():
    from dataclasses import asdict

    from curator import defaults
    from curator.crawl.engines import ENGINES
    from curator.ingest.imaging import Limits

    assert asdict(Limits()) == defaults.LIMITS
    assert tuple(ENGINES) == defaults.ENGINE_NAMES
    from db.properties import ISSUES

    assert tuple(ISSUES) == defaults.ISSUE_NAMES
    # And the commands offer them: each option's default is the settings' own.
    from typer.main import get_command

    from curator.cli import app
    from curator.crawl.http import FetchPolicy
    from curator.crawl.query import CrawlOptions

    command = get_command(app)
    crawl = {p.name: p.default for p in command.commands["crawl"].params}
    policy, options = FetchPolicy(), CrawlOptions()
    assert (crawl["max_images"], crawl["threads"], crawl["max_pages"]) == (
        options.max_images, options.threads, options.max_pages,
    )  # fmt: skip
    assert (crawl["per_host"], crawl["delay"], crawl["timeout"], crawl["deadline"]) == (
        policy.per_host, policy.delay, policy.read_timeout, policy.deadline,
    )  # fmt: skip
    assert crawl["retries"] == policy.retries
    score = {p.name: p.default for p in command.commands["score"].params}
    assert (score["batch_size"], score["workers"]) == tuple(defaults.SCORE.values())
    import inspect

    from curator.formats import export_format

    export = {p.name: p.default for p in command.commands["export"].params}
    shard_mb = inspect.signature(export_format).parameters["shard_mb"].default
    assert export["shard_size"] == shard_mb == defaults.EXPORT_SHARD_MB
    train = {p.name: p.default for p in command.commands["train"].params}
    from classifier.config import RECIPE_OPTIONS, Machine, ModelConfig, TrainConfig, resolve_recipe

    machine, model = Machine(), ModelConfig()
    # The recipe's options default to None: each takes the value of the recipe that the
    # starting weights choose, and a run given none of them marks none as given.
    recipe_defaults = {k: train[k] for k in RECIPE_OPTIONS if k in train}
    assert set(recipe_defaults) == set(RECIPE_OPTIONS) - {"warmup_epochs"}
    assert set(recipe_defaults.values()) == {None}
    assert train["weights"] == TrainConfig().weights == "imagenet"
    chosen = resolve_recipe(train["weights"], **recipe_defaults)
    assert chosen.given == () and chosen.cfg == TrainConfig()
    assert (train["workers"], train["cache_mb"], train["image_size"]) == (
        machine.workers, machine.cache_mb, model.image_size,
    )  # fmt: skip


def test_a_command_that_has_returned_leaves_no_connection_open(cli, home, tmp_path):
    # Several commands in one process (a program, a notebook, this suite): each closes its
    # catalog and thumbnail connections as it ends. SQLite removes a WAL file when the last
    # connection to its database closes, so none may be left beside either file.
    from tests.helpers import imagefiles as f

    for i in range(3):
        f.jpeg(tmp_path / "in" / f"{i}.jpg", f.texture(i, (96, 64)))
    commands = (("import", tmp_path / "in", "--label", "happy"), ("stats",), ("check",))
    for args in (*commands, ("queue", "new")):
        result = cli(*args)
        assert result.exit_code == 0, result.output
        left = sorted(p.name for p in home.iterdir() if p.name.endswith(("-wal", "-shm")))
        assert left == [], (args, left)


def test_an_interrupt_as_a_commit_ends_is_reported_as_the_interrupt(catalog):
    """A Ctrl-C or a service manager's stop that lands as a commit ends: the interrupt is
    what reaches the command (not an error of the session), and the commit stands."""
    from sqlalchemy import event

    from db.settings import get_setting, set_setting

    def interrupt(_session) -> None:
        raise KeyboardInterrupt  # as curator's signal handler raises it

    with pytest.raises(KeyboardInterrupt), catalog.writing() as session:
        event.listen(session, "after_commit", interrupt, once=True)
        set_setting(session, key="written", value=1)
    with catalog.reading() as session:
        assert get_setting(session, key="written") == 1
