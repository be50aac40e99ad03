"""The near-duplicate index kept in a file beside the catalog (curator/ingest/nearfile.py):
read back as it was written, extended with the rows added since, and rebuilt whenever it is
not the catalog's as it is: another catalog (a `db copy`), rows it does not know, a file cut
short or left half-written by a crash."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from curator.config import Layout
from curator.ingest.door import Ingestor, prepare_file
from curator.ingest.hashindex import NearIndex
from curator.ingest.imaging import Limits
from curator.ingest.nearfile import open_index, read_index, write_index
from curator.ingest.storage import Store
from db.catalog import open_catalog
from db.copy import copy_catalog
from db.images import NEAR_DUPLICATE
from db.runs import start_run
from db.settings import catalog_identity
from tests.helpers import imagefiles as f


def test_an_index_written_and_read_back_answers_every_query_the_same(tmp_path: Path):
    rng = np.random.default_rng(7)
    hashes = rng.integers(0, 2**63, 60_000, dtype=np.int64)
    hashes[1::50] = hashes[::50][: hashes[1::50].size] ^ 0b1011  # near copies, 3 bits off
    index = NearIndex(np.arange(1, hashes.size + 1), hashes, radius=10)
    write_index(tmp_path / "i.bin", index, {"radius": 10})
    back, meta = read_index(tmp_path / "i.bin")
    assert meta["radius"] == 10 and len(back) == len(index)
    for q in [*hashes[:200:7].tolist(), *rng.integers(0, 2**63, 20).tolist()]:
        assert back.query(q) == index.query(q)
    back.add(10**7, int(hashes[3]) ^ 1)  # the index read back grows like any other
    assert (10**7, 1) in back.query(int(hashes[3]))


def _ingest(catalog, home: Path, files: list[Path]) -> Ingestor:
    with catalog.writing() as session:
        run_id = start_run(session, kind="import", params={}).id
    store = Store(home)
    with Ingestor(catalog, store=store, run_id=run_id, threshold=10, label="happy") as ingestor:
        for path in files:
            ingestor.add(prepare_file(str(path), store, Limits()))
    return ingestor


def _opened(catalog, home: Path):
    with catalog.reading() as session:
        return open_index(session, home=home, radius=10)


def test_an_importer_reads_the_kept_index_adds_new_rows_and_rebuilds_what_does_not_match(
    tmp_path: Path,
):
    home = tmp_path / "home"
    catalog = open_catalog(f"sqlite:///{home / 'catalog.db'}")
    pictures = [f.jpeg(tmp_path / f"p{i}.jpg", f.texture(i, (96, 72))) for i in range(6)]
    try:
        _ingest(catalog, home, pictures[:4])  # the first importer writes the file
        path = Layout(home).near_index(10)
        assert path.is_file()
        first = _opened(catalog, home)
        assert first.from_file and len(first.index) == 4
        backup = tmp_path / "backup.db"
        with sqlite3.connect(home / "catalog.db") as live, sqlite3.connect(backup) as copy:
            live.backup(copy)
        # Rows added since the file was written are read by id and found.
        _ingest(catalog, home, pictures[4:])
        later = _opened(catalog, home)
        assert later.from_file and len(later.index) == 6
        again = f.jpeg(tmp_path / "again.jpg", f.texture(5, (96, 72)), quality=60)
        found = _ingest(catalog, home, [again]).tally.as_dict()
        assert found[NEAR_DUPLICATE] == 1, found  # a near copy of a row the file lacked
        # A file cut short (as a crash of a writer without the rename would leave it),
        # garbage, or a stray half-written temporary: each is rebuilt, never read.
        size = path.stat().st_size
        for damage in (lambda: path.write_bytes(path.read_bytes()[: size // 2]),
                       lambda: path.write_bytes(b"\0" * size)):  # fmt: skip
            damage()
            rebuilt = _opened(catalog, home)
            assert not rebuilt.from_file and len(rebuilt.index) == len(later.index) + 1
            assert _opened(catalog, home).from_file  # written whole again
        (path.parent / f".tmp-999-{path.name}").write_bytes(b"half")
        assert _opened(catalog, home).from_file
        # The catalog put back from a backup made before the last imports: the same
        # identity, but fewer rows up to the file's high-water mark.
        catalog.dispose()
        live = sqlite3.connect(home / "catalog.db")
        with sqlite3.connect(backup) as old:
            old.backup(live)
        live.close()
        catalog = open_catalog(f"sqlite:///{home / 'catalog.db'}")
        behind = _opened(catalog, home)
        assert not behind.from_file and len(behind.index) == 4
    finally:
        catalog.dispose()


def test_db_copy_gives_the_copy_an_identity_of_its_own_so_its_index_is_rebuilt(tmp_path):
    home = tmp_path / "home"
    source = open_catalog(f"sqlite:///{home / 'catalog.db'}")
    target = open_catalog(f"sqlite:///{tmp_path / 'copy' / 'catalog.db'}")
    pictures = [f.jpeg(tmp_path / f"p{i}.jpg", f.texture(i, (96, 72))) for i in range(3)]
    try:
        _ingest(source, home, pictures)
        assert _opened(source, home).from_file
        copy_catalog(source, target)
        with source.reading() as a, target.reading() as b:
            assert catalog_identity(a) and catalog_identity(b)
            assert catalog_identity(a) != catalog_identity(b)
        # The copy put in the home's place: the file there is the source's, and not read.
        with target.reading() as session:
            opened = open_index(session, home=home, radius=10)
        assert not opened.from_file and len(opened.index) == 3
    finally:
        source.dispose()
        target.dispose()


@pytest.mark.parametrize("radius", [0, 4])
def test_each_radius_has_its_own_file(tmp_path: Path, radius: int):
    home = tmp_path / "home"
    catalog = open_catalog(f"sqlite:///{home / 'catalog.db'}")
    try:
        _ingest(catalog, home, [f.jpeg(tmp_path / "a.jpg", f.texture(random.randrange(9)))])
        with catalog.reading() as session:
            assert not open_index(session, home=home, radius=radius).from_file
            assert open_index(session, home=home, radius=radius).from_file
        assert Layout(home).near_index(radius).is_file()
    finally:
        catalog.dispose()
