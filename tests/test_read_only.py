"""A catalog its user can read but not write (a folder and file without write permission):
the commands that only read work, and those that write say so in one line, changing nothing.

The commands run in their own process as an ordinary user: nobody, when the tests run as root
(whom permissions do not stop).
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from db.catalog import open_catalog
from db.copy import tables as catalog_tables
from db.labels import label_images
from tests.helpers import imagefiles as f
from tests.helpers.readonly import MESSAGE, as_ordinary_user, fingerprint, set_writable


def curator(home: Path, *args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CURATOR_DB_URL"}
    env["CURATOR_HOME"] = str(home)
    command = as_ordinary_user([sys.executable, "-m", "curator", *[str(a) for a in args]])
    return subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.fixture
def writable(cli, home, tmp_path) -> Path:
    """A catalog with labels, a near copy and a failure, made by the real commands."""
    for i in range(4):
        f.jpeg(tmp_path / "in" / "happy" / f"h{i}.jpg", f.texture(i))
        f.jpeg(tmp_path / "in" / "unhappy" / f"u{i}.jpg", f.texture(100 + i))
    f.jpeg(tmp_path / "in" / "copies" / "big.jpg", f.texture(1, (640, 480)))
    (tmp_path / "in" / "copies" / "empty.jpg").write_bytes(b"")
    assert cli("import", tmp_path / "in" / "happy", "--label", "happy").exit_code == 0
    assert cli("import", tmp_path / "in" / "unhappy", "--label", "unhappy").exit_code == 0
    assert cli("import", tmp_path / "in" / "copies").exit_code == 0
    assert cli("label", "2", "--as", "unhappy", "--author", "ann").exit_code == 0
    return home


@pytest.fixture
def read_only(writable) -> Iterator[Path]:
    """A copy of the catalog's home, folders and files without write permission for anyone,
    in a folder the ordinary user may enter (a test's tmp_path is root's alone)."""
    base = Path(tempfile.mkdtemp(prefix="curator-ro-"))
    try:
        base.chmod(0o777)
        shutil.copytree(writable, base / "home")
        set_writable(base / "home", False)
        yield base / "home"
    finally:
        set_writable(base / "home", True)
        shutil.rmtree(base, ignore_errors=True)


def without_home(text: str, home: Path) -> str:
    return text.replace(str(home), "HOME")


def test_a_read_only_catalog_serves_stats_show_queue_and_export(cli, writable, read_only):
    work = read_only.parent
    before = fingerprint(read_only)
    for args in (
        ["stats", "--json"],
        ["show", "9", "--json"],
        ["queue", "new", "--json"],
        ["check", "--json"],
        ["queue", "issues", "--json"],
    ):
        expected = cli(*args)
        assert expected.exit_code == 0
        found = curator(read_only, *args, cwd=work)
        assert found.returncode == 0, found.stderr
        assert json.loads(without_home(found.stdout, read_only)) == json.loads(
            without_home(expected.stdout, writable)
        )
    text = curator(read_only, "stats", cwd=work)
    assert text.returncode == 0 and "(read-only)" in text.stdout.splitlines()[0]
    # Exports go elsewhere: a CSV (named .csv), and a folder of copies of the originals.
    (work / "out").mkdir()
    (work / "out").chmod(0o777)
    exported = curator(read_only, "export", work / "out" / "all.csv", cwd=work)
    assert exported.returncode == 0, exported.stderr
    assert cli("export", writable.parent / "mine.csv").exit_code == 0
    theirs = list(csv.DictReader(io.StringIO((work / "out" / "all.csv").read_text())))
    mine = list(csv.DictReader(io.StringIO((writable.parent / "mine.csv").read_text())))
    assert len(theirs) == 9 and [
        {**r, "path": without_home(r["path"], read_only)} for r in theirs
    ] == [{**r, "path": without_home(r["path"], writable)} for r in mine]
    folder = curator(read_only, "export", work / "out" / "set", cwd=work)
    assert folder.returncode == 0, folder.stderr
    assert cli("export", writable.parent / "set").exit_code == 0
    names = {p.relative_to(work / "out" / "set") for p in (work / "out" / "set").rglob("*.jpg")}
    assert names == {
        p.relative_to(writable.parent / "set") for p in (writable.parent / "set").rglob("*.jpg")
    }
    assert len(names) >= 7  # every labeled active image
    # Nothing was written beside the catalog: no journal, no WAL, not a byte changed.
    assert fingerprint(read_only) == before


@pytest.mark.parametrize(
    "args",
    [
        ["import", "{in}"],
        ["label", "1", "--as", "unhappy"],
        ["label", "--from-csv", "{csv}"],
        ["classes", "happy", "unhappy", "neutral"],
        ["dedup", "--undo", "--run", "3"],
        ["dedup", "--undo", "--run", "1"],
        ["review", "--no-browser", "--port", "0"],
        ["check", "--set", "blurry=0.05"],
    ],
)
def test_a_command_that_writes_says_read_only_in_one_line(read_only, args):
    work = read_only.parent
    (work / "fix.csv").write_text("image,label\n1,unhappy\n")
    f.jpeg(work / "new" / "n.jpg", f.texture(500))
    (work / "new").chmod(0o755)
    before = fingerprint(read_only)
    args = [
        a.replace("{in}", str(work / "new")).replace("{csv}", str(work / "fix.csv")) for a in args
    ]
    result = curator(read_only, *args, cwd=work)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the catalog sqlite:///")
    assert MESSAGE in lines[0] and "nothing was changed" in lines[0]
    assert "open http" not in result.stdout  # review offered no page it could not serve
    assert fingerprint(read_only) == before


@pytest.mark.skipif(os.geteuid() != 0, reason="needs a writer who may write where others may not")
def test_a_reader_sees_what_the_owner_has_committed_and_not_yet_checkpointed(read_only):
    """The owner (root) writes in the read-only folder and keeps the catalog open, so its
    latest commit sits in the WAL beside the file: the reader reads it from there."""
    owner = open_catalog(f"sqlite:///{read_only / 'catalog.db'}")
    try:
        with owner.writing() as session:
            label_images(session, image_ids=[3], label="unhappy", author="owner")
        assert (read_only / "catalog.db-wal").stat().st_size > 0
        found = curator(read_only, "show", "3", "--json", cwd=read_only.parent)
        assert found.returncode == 0, found.stderr
        assert json.loads(found.stdout)["labels"][-1]["author"] == "owner"
    finally:
        owner.dispose()


def test_a_read_only_catalog_can_be_copied(cli, writable, read_only):
    work = read_only.parent
    before = fingerprint(read_only)
    (work / "out").mkdir()
    (work / "out").chmod(0o777)
    copy = work / "out" / "copy.db"
    result = curator(read_only, "db", "copy", read_only / "catalog.db", copy, cwd=work)
    assert result.returncode == 0, result.stderr
    assert f"verified: the {len(catalog_tables())} tables" in result.stdout
    ours = cli("stats", "--json")
    theirs = cli("--db-url", f"sqlite:///{copy}", "stats", "--json")
    assert json.loads(theirs.stdout) == json.loads(ours.stdout)
    assert fingerprint(read_only) == before
