"""Cases found by trying the catalog as a hostile user would: each must stay fixed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from sqlalchemy import text

from curator.config import load_settings
from curator.ingest.dedup import DEFAULT_THRESHOLD, apply_plan, plan_dedup
from curator.ingest.door import Ingestor, prepare_file
from curator.ingest.imaging import Limits
from curator.ingest.importer import import_paths
from curator.ingest.storage import Store
from db.catalog import open_catalog
from tests.helpers import imagefiles as f
from tests.helpers.sql import rows as catalog_rows

pytestmark = pytest.mark.backends


def rows(home: Path, sql: str) -> list[tuple]:
    return catalog_rows(sql, load_settings(home=home).db_url)


def test_a_concurrent_writer_s_images_are_found_as_near_duplicates(tmp_path, home):
    settings = load_settings()
    catalog = open_catalog(settings.db_url)
    store = Store(settings.home)
    for i in range(3):
        f.jpeg(tmp_path / "copies" / f"{i}.jpg", f.texture(i, (300, 225)))
        f.jpeg(tmp_path / "originals" / f"{i}.jpg", f.texture(i, (600, 450)))
    # An ingestor opened before another process imports the originals...
    ingestor = Ingestor(catalog, store=store, run_id=_run(catalog), threshold=DEFAULT_THRESHOLD)
    import_paths(
        catalog, settings.home, [str(tmp_path / "originals")], author="other", threshold=10
    )
    with ingestor:
        for path in sorted((tmp_path / "copies").iterdir()):
            ingestor.add(prepare_file(str(path), store, Limits()))
    # ...still sees them when the copies arrive.
    assert ingestor.tally.outcomes["near_duplicate"] == 3


def _run(catalog) -> int:
    from db.runs import start_run

    with catalog.writing() as session:
        return start_run(session, kind="import", params={}).id


def test_one_picture_in_two_label_folders_is_a_conflict_not_a_flip_flop(cli, home, tmp_path):
    data = f.jpeg_bytes(f.texture(9))
    for label in ("happy", "unhappy"):
        (tmp_path / label).mkdir()
        (tmp_path / label / "same.jpg").write_bytes(data)
    first = [
        json.loads(cli("import", tmp_path / label, "--label", label, "--json").stdout)
        for label in ("happy", "unhappy")
    ]
    events = rows(home, "SELECT count(*) FROM label_events")
    assert first[1]["label_conflicts"] == 1
    for label, conflicts in (("happy", 0), ("unhappy", 1)):
        again = json.loads(cli("import", tmp_path / label, "--label", label, "--json").stdout)
        assert again["label_conflicts"] == conflicts  # still reported, never flipped
    assert rows(home, "SELECT count(*) FROM label_events") == events == [(1,)]
    assert rows(home, "SELECT label, held, outcome FROM label_conflicts") == [
        ("unhappy", "happy", "kept")
    ]


def test_file_names_with_brackets_are_shown_as_they_are(cli, home, tmp_path):
    path = f.jpeg(tmp_path / "[/oops][red]a.jpg", f.texture(1))
    assert cli("import", path, "--label", "happy").exit_code == 0
    shown = cli("show", "1")
    assert shown.exit_code == 0 and "[/oops][red]a.jpg" in shown.stdout
    out = tmp_path / "[bold]out"
    result = cli("export", out)
    assert result.exit_code == 0 and str(out) in result.stdout


def test_bad_references_and_names_are_clear_errors(cli, home, tmp_path):
    f.jpeg(tmp_path / "a.jpg", f.texture(1))
    for ref in ("99999999999", "²", "zz"):
        result = cli("show", ref)
        assert result.exit_code == 1 and "no image with id" in result.stderr
    result = cli("import", tmp_path / "a.jpg", "--label", "happy", "--author", "x" * 200)
    assert result.exit_code == 1 and "author name" in result.stderr
    result = cli("import", tmp_path / "a.jpg", "--threshold", "40")
    assert result.exit_code == 2 and "less than or equal to 16" in result.output


def test_undo_mends_groups_that_grew_after_the_undone_run(cli, home, tmp_path):
    img = f.texture(3, (400, 300))
    f.jpeg(tmp_path / "a.jpg", img.resize((200, 150)))
    f.jpeg(tmp_path / "b.jpg", img)  # larger: becomes the representative of a
    f.jpeg(tmp_path / "c.jpg", img.resize((300, 225)))
    for name in ("a", "b", "c"):
        assert cli("import", tmp_path / f"{name}.jpg").exit_code == 0
    result = cli("dedup", "--undo", "--run", "2", "--json")
    assert result.exit_code == 0
    images = {
        i: (status, dup, split)
        for i, status, dup, split in rows(
            home, "SELECT id, status, duplicate_of, split FROM images"
        )
    }
    for status, dup, split in images.values():
        if status == "duplicate":  # every duplicate points at an active image of its split
            assert images[dup][0] == "active" and images[dup][2] == split


def test_dedup_leaves_alone_what_changed_after_it_planned(tmp_path, cli, home):
    img = f.texture(4, (400, 300))
    f.jpeg(tmp_path / "x.jpg", img)
    f.jpeg(tmp_path / "y.jpg", img.resize((200, 150)))
    cli("import", tmp_path / "x.jpg", tmp_path / "y.jpg")
    cli("dedup", "--undo", "--run", "1")
    catalog = open_catalog(load_settings().db_url)
    with catalog.reading() as session:
        plan = plan_dedup(session, threshold=DEFAULT_THRESHOLD)
    assert plan.changes
    with catalog.writing() as session:  # meanwhile, someone moves an image's split
        session.execute(
            text(
                "UPDATE images SET split = CASE split WHEN 'test' THEN 'val' ELSE 'test' END "
                "WHERE id = 2"
            )
        )
    with catalog.writing() as session:
        _changed, skipped = apply_plan(session, plan=plan, image_ids=sorted(plan.changes), run_id=1)
    assert skipped == 1


def test_two_spellings_of_one_file_are_one_input(cli, home, tmp_path):
    for i in range(3):
        f.jpeg(tmp_path / "in" / f"{i}.jpg", f.texture(i))
    other = f"{tmp_path}/in/../in/0.jpg"
    counts = json.loads(cli("import", tmp_path / "in", other, "--json").stdout)
    assert counts["added"] == 3 and counts["exact_duplicate"] == 0
    assert rows(home, "SELECT count(*) FROM sources") == [(3,)]


def test_a_folder_given_through_a_symbolic_link_is_imported(cli, home, tmp_path):
    f.jpeg(tmp_path / "real" / "a.jpg", f.texture(1))
    os.symlink(tmp_path / "real", tmp_path / "linked")
    counts = json.loads(cli("import", tmp_path / "linked", "--json").stdout)
    assert counts["added"] == 1


def test_an_unreadable_subfolder_is_recorded(tmp_path):
    """As an ordinary user (nobody, when the tests run as root)."""
    base = Path(tempfile.mkdtemp(prefix="curator-perm-"))
    try:
        base.chmod(0o777)
        f.jpeg(base / "in" / "ok.jpg", f.texture(1))
        f.jpeg(base / "in" / "locked" / "hidden.jpg", f.texture(2))
        (base / "in").chmod(0o755)
        (base / "in" / "locked").chmod(0o700 if os.geteuid() == 0 else 0)
        env = {**os.environ, "CURATOR_HOME": str(base / "home")}
        command = [sys.executable, "-m", "curator", "import", str(base / "in"), "--json"]
        if os.geteuid() == 0:
            command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        counts = json.loads(done.stdout)
        assert counts["added"] == 1 and counts["failed_by_reason"] == {"unreadable-folder": 1}
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_a_stored_file_with_wrong_bytes_is_replaced_and_originals_are_read_only(tmp_path):
    store = Store(tmp_path)
    good = b"A" * 100
    rel = "images/ab/abc.jpg"
    (tmp_path / "images" / "ab").mkdir(parents=True)
    (tmp_path / rel).write_bytes(b"\\0" * 50 + b"B" * 50)  # same size, never synced
    assert store.put(rel, good) is True
    assert (tmp_path / rel).read_bytes() == good
    assert (tmp_path / rel).stat().st_mode & 0o777 == 0o444
    assert store.put(rel, good) is False
