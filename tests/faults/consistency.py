"""What "the catalog stays consistent" means, checked the same way after every fault.

- the database itself is sound (SQLite's integrity and foreign-key checks; on PostgreSQL the
  constraints are always enforced);
- every image row's file exists and holds the bytes its sha256 names;
- every stored file has its row, once the command has run to its end (a file stored by a
  command that was then killed or failed is adopted by its rerun);
- no temporary file of a writer that is gone remains;
- duplicates point at an image that is in the catalog;
- no run is left `running` by a process that is gone, once a later command has run;
- the counts the database keeps (tallies) and the group labels kept on the images' rows are
  what the rows and the label history give when counted again from scratch;
- every model folder has its model's row, and a model chosen as the default is in the catalog.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from sqlalchemy import create_engine

from curator.config import load_settings
from db.catalog import open_catalog
from db.grouplabels import conflicted_groups, recount_conflicts
from db.grouplabels import recount as recount_groups
from db.labels import group_labels
from db.rankcheck import kept as kept_rankings
from db.rankcheck import recount as recount_rankings
from db.runs import process_alive
from db.tallies import recount, tallies
from tests.helpers.sql import rows


def assert_consistent(home: Path, url: str | None = None, *, interrupted: bool = False) -> None:
    """`interrupted`: right after a command that failed or was killed, whose stored files it
    had not recorded yet may remain (its rerun adopts them); every row must still be whole."""
    url = url or load_settings(home=home).db_url
    if url.startswith("sqlite"):
        engine = create_engine(url)
        try:
            with engine.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
                assert conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall() == []
        finally:
            engine.dispose()
    images = rows("SELECT id, sha256, path, status, duplicate_of FROM images", url)
    ids = {image_id for image_id, *_ in images}
    for image_id, sha, path, status, duplicate_of in images:
        stored = home / path
        assert stored.is_file(), f"image {image_id}: {path} is missing"
        assert hashlib.sha256(stored.read_bytes()).hexdigest() == sha, f"image {image_id}"
        assert status in ("active", "duplicate", "rejected"), (image_id, status)
        if duplicate_of is not None:
            assert duplicate_of in ids and duplicate_of != image_id, image_id
    on_disk = {
        str(p.relative_to(home)) for p in (home / "images").rglob("*") if p.is_file()
    } if (home / "images").exists() else set()  # fmt: skip
    unrecorded = on_disk - {path for _i, _s, path, _st, _d in images}
    if not interrupted:
        assert unrecorded == set(), f"files without a row: {sorted(unrecorded)[:5]}"
    temporary = [
        p.name
        for p in (home / "tmp").iterdir()
        if p.name.startswith(".tmp-") and not _writer_alive(p.name)
    ] if (home / "tmp").exists() else []  # fmt: skip
    assert temporary == [], temporary
    for (label_image,) in rows("SELECT DISTINCT image_id FROM label_events", url):
        assert label_image in ids
    assert_kept_counts_true(url)
    assert_models_whole(home, url)


def assert_models_whole(home: Path, url: str) -> None:
    """Every folder under models/ belongs to a model of the catalog (hidden ones are a
    removal's, set aside until it ends), and the model chosen as the default is one."""
    ids = {model_id for (model_id,) in rows("SELECT id FROM models", url)}
    models = home / "models"
    folders = {p.name for p in models.iterdir() if not p.name.startswith(".")} if (
        models.is_dir()
    ) else set()  # fmt: skip
    assert folders <= {str(i) for i in ids}, f"model folders without a row: {folders}"
    for (value,) in rows("SELECT value FROM settings WHERE key = 'default_model'", url):
        chosen = json.loads(value) if isinstance(value, str) else value
        assert chosen is None or chosen in ids, f"the chosen default {chosen} is gone"


def assert_kept_counts_true(url: str) -> None:
    """Tallies, stored group labels and kept rankings equal a recount from the rows,
    events and predictions."""
    catalog = open_catalog(url)
    try:
        with catalog.reading() as session:
            assert tallies(session) == recount(session)
            assert group_labels(session) == recount_groups(session)
            assert conflicted_groups(session) == recount_conflicts(session)
            assert kept_rankings(session) == recount_rankings(session)
    finally:
        catalog.dispose()


def _writer_alive(name: str) -> bool:
    """Whether the process that named a temporary file `.tmp-PID-...` still runs."""
    try:
        return process_alive(int(name.split("-")[1]))
    except (IndexError, ValueError):
        return False


def assert_no_run_left_running(url: str) -> None:
    """Every run is closed: done, failed or interrupted (a killed one, marked by the rerun)."""
    left = rows("SELECT id, kind FROM runs WHERE status = 'running'", url)
    assert left == [], left
