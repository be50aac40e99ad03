"""Crop matching as catalogs grow: the exact window scan against a plain comparison of every
pair, each picture's bound of containers, the pixel check in bounded batches, and crop
matching left out of a catalog over its size (and said so), on real photographs."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

import curator.ingest.crops as crops
import curator.ingest.imaging as imaging
from curator.ingest.hashindex import as_u64
from curator.ingest.windows import unpack_window_records, windows_of
from tests.helpers import photos


@pytest.fixture(scope="module")
def pictures() -> list[tuple[int, int, bytes, bytes]]:
    """Real photos, their quarters, crops of 10 to 25 % and a banner copy: (pHash, mirror
    pHash, windows, thumbnail)."""
    found = []
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        img = photos.photo(name, 400)
        kinds = [img, photos.with_banner(img), *photos.quarters(name)]
        kinds += [photos.cropped(img, share, seed=i) for i, share in enumerate((0.1, 0.2, 0.25))]
        for one in kinds:
            out = io.BytesIO()
            one.convert("RGB").save(out, "JPEG", quality=90)
            a = imaging.analyze(out.getvalue())
            found.append((a.phash, a.phash_mirror, windows_of(a.thumbnail), a.thumbnail))
    return found


def arrays(pictures):
    ids = np.arange(100, 100 + len(pictures))  # ids are not row numbers
    plain = as_u64([p[0] for p in pictures])
    mirror = as_u64([p[1] for p in pictures])
    windows = [(int(ids[i]), p[2]) for i, p in enumerate(pictures)]
    return ids, plain, mirror, windows


def plainly(pictures, radius: int) -> dict[tuple[int, int], int]:
    """(part, container) -> the least distance of the part's hash or mirror to one of the
    container's windows, within ``radius``, by comparing every pair."""
    out = {}
    for c, container in enumerate(pictures):
        hashes = unpack_window_records(container[2])["hash"].astype(np.uint64)
        for p, part in enumerate(pictures):
            if p == c or not hashes.size:
                continue
            d = min(int(np.bitwise_count(hashes ^ np.uint64(h)).min()) for h in part[:2])
            if d <= radius:
                out[(p, c)] = d
    return out


@pytest.mark.parametrize("chunks", ["one", "many"])
def test_the_window_scan_finds_every_pair_a_plain_comparison_finds(pictures, chunks, monkeypatch):
    if chunks == "many":  # queries in chunks of a few, sized down by the pairs they bring
        monkeypatch.setattr(crops, "_FIRST_CHUNK", 3)
        monkeypatch.setattr(crops, "_CHUNK_PAIRS", 40)
    ids, plain, mirror, windows = arrays(pictures)
    found = crops.candidates(ids, plain, mirror, windows, most=len(pictures))
    got = {(p, c): d for p, c, _w, _m, d in found.tolist()}
    want = plainly(pictures, crops.WINDOW_THRESHOLD)
    assert want and got == want
    for p, c, w, mirrored, d in found.tolist():  # the window named is one at that distance
        records = unpack_window_records(pictures[c][2])
        h = records["hash"][records["index"] == w].astype(np.uint64)[0]
        assert int(np.bitwise_count(h ^ np.uint64(pictures[p][mirrored]))) == d


def test_each_picture_keeps_only_its_nearest_containers(pictures):
    ids, plain, mirror, windows = arrays(pictures)
    want = plainly(pictures, crops.WINDOW_THRESHOLD)
    for most in (1, 2):
        found = crops.candidates(ids, plain, mirror, windows, most=most)
        parts = found[:, 0].tolist()
        assert max(parts.count(p) for p in set(parts)) <= most
        for p in {p for p, _c in want}:
            kept = sorted(d for q, _c, _w, _m, d in found.tolist() if q == p)
            assert kept == sorted(d for (q, _c), d in want.items() if q == p)[:most]


def test_the_pixel_check_in_small_batches_holds_few_pictures_and_agrees(pictures, monkeypatch):
    ids, plain, mirror, windows = arrays(pictures)
    by_id = {int(ids[i]): p for i, p in enumerate(pictures)}
    asked: list[int] = []

    def squares(wanted: list[int]) -> dict[int, np.ndarray]:
        asked.append(len(wanted))
        return {i: crops.grey_square(by_id[i][3]) for i in wanted}

    whole = crops.crop_edges(ids, plain, mirror, windows, squares)
    monkeypatch.setattr(crops, "_VERIFY_BATCH", 2)
    asked.clear()
    batched = crops.crop_edges(ids, plain, mirror, windows, squares)
    assert sorted(map(tuple, batched.tolist())) == sorted(map(tuple, whole.tolist()))
    assert len(whole) >= 6 and max(asked) <= 4  # two candidates: four pictures at most
    # Each crop and the banner copy joined to its photo (rows 0, 1 and 6 to 8 of each).
    joined = {frozenset(pair) for pair in whole.tolist()}
    for base in range(0, len(pictures), 9):
        for copy in (base + 1, base + 6, base + 7, base + 8):
            assert frozenset((base, copy)) in joined


def test_a_crop_with_many_copies_of_its_own_still_finds_its_photo():
    """A picture's own whole-frame group does not take the places of its photo: five
    re-encoded copies of one crop are nearer one another than the photo's windows."""
    from curator.ingest.dedup import row_edges
    from db.images import HashRow, to_signed64

    img = photos.photo("astronaut", 400)
    crop = photos.cropped(img, 0.2, seed=1)
    pics = [img] + [crop.resize((crop.width - 8 * k, crop.height - 6 * k)) for k in range(5)]
    found = []
    for k, one in enumerate(pics):
        out = io.BytesIO()
        one.convert("RGB").save(out, "JPEG", quality=90 - k)
        found.append(imaging.analyze(out.getvalue()))
    rows = [
        HashRow(
            10 + i,
            to_signed64(a.phash),
            to_signed64(a.phash_mirror),
            a.width * a.height,
            "active",
            None,
            "train",
        )
        for i, a in enumerate(found)
    ]
    thumbs = {10 + i: crops.grey_square(a.thumbnail) for i, a in enumerate(found)}
    windows = [(10 + i, windows_of(a.thumbnail)) for i, a in enumerate(found)]
    a, b = row_edges(rows, 10, None, windows, lambda ids: {i: thumbs[i] for i in ids})
    joined = {frozenset(p) for p in zip(a.tolist(), b.tolist(), strict=True)}
    assert any(frozenset((0, copy)) in joined for copy in range(1, 6))
    copies = {frozenset((x, y)) for x in range(1, 6) for y in range(1, 6) if x < y}
    assert copies & joined  # the copies found one another by whole frame


@pytest.mark.backends
def test_a_catalog_over_the_size_leaves_crops_out_and_says_so(cli, home, tmp_path, monkeypatch):
    assert cli("import", photos.photo_and_crop(tmp_path / "in")).exit_code == 0
    monkeypatch.setattr(crops, "CROPS_AUTO_LIMIT", 1)
    left_out = json.loads(cli("dedup", "--dry-run", "--json").stdout)
    assert left_out["crops"] is False and left_out["crops_left_out"] is True
    assert left_out["in_groups"] == 0
    shown = cli("dedup", "--dry-run")
    assert shown.exit_code == 0 and "whole frames only" in shown.stdout
    checked = json.loads(cli("check", "--json").stdout)
    assert checked["leaks_without_crops"] is True
    assert json.loads(cli("check", "--crops", "--json").stdout)["leaks_without_crops"] is False
    forced = json.loads(cli("dedup", "--crops", "--json").stdout)
    assert forced["crops"] is True and forced["crops_left_out"] is False
    assert forced["in_groups"] == 2 and forced["changed"] == 1
    # Left out again, crop matching undoes nothing: the group it made is kept.
    again = json.loads(cli("dedup", "--json").stdout)
    assert again["crops_left_out"] is True
    assert again["in_groups"] == 2 and again["changed"] == 0
    # Asked for whole frames, the copy is released.
    whole = json.loads(cli("dedup", "--no-crops", "--json").stdout)
    assert whole["in_groups"] == 0 and whole["to_active"] == 1
    monkeypatch.setattr(crops, "CROPS_AUTO_LIMIT", 20_000)
    assert json.loads(cli("check", "--json").stdout)["leaks_without_crops"] is False


def _rows(home, sql: str) -> list[tuple]:
    from curator.config import load_settings
    from tests.helpers.sql import rows

    return rows(sql, load_settings(home=home).db_url)


@pytest.mark.backends
def test_windows_are_made_when_crops_are_first_matched_kept_and_not_made_twice(
    cli, home, tmp_path, monkeypatch
):
    """An import makes no windows; the first crop matching makes them from the thumbnails
    (the crop joins its photo), a rerun makes none, and an interrupted making keeps what it
    stored and the next run finishes it."""
    import curator.ingest.windows as windows

    folder = photos.photo_and_crop(tmp_path / "in")
    for i, name in enumerate(("coffee", "chelsea", "rocket")):
        photos.photo(name, 300).save(folder / f"{name}.jpg", quality=90 - i)
    assert cli("import", folder).exit_code == 0
    assert _rows(home, "SELECT COUNT(*) FROM image_windows") == [(0,)]
    made = []
    real = windows.windows_of
    monkeypatch.setattr(crops, "windows_of", lambda blob: made.append(1) or real(blob))
    monkeypatch.setattr(crops, "_WINDOWS_BATCH", 2)

    def stop(stage: str, done: int, total: int) -> None:
        if stage == "windows":
            raise KeyboardInterrupt

    from curator.config import load_settings
    from db.catalog import open_catalog

    catalog = open_catalog(load_settings(home=home).db_url)
    try:
        with pytest.raises(KeyboardInterrupt):
            crops.catalog_windows(catalog, home, on_progress=stop)
    finally:
        catalog.dispose()
    assert _rows(home, "SELECT COUNT(*) FROM image_windows") == [(2,)] and len(made) == 2
    first = json.loads(cli("dedup", "--json").stdout)
    assert first["crops"] is True and first["in_groups"] == 2  # the crop and its photo
    stored = _rows(home, "SELECT image_id, version, windows FROM image_windows ORDER BY 1")
    assert len(stored) == 5 and {v for _, v, _ in stored} == {windows.WINDOWS_VERSION}
    assert len(made) == 5  # the two kept from the interrupted run were not made again
    assert all(len(w) % windows.WINDOW_DTYPE.itemsize == 0 and w for _, _, w in stored)
    assert json.loads(cli("check", "--json").stdout)["leaks"] == []
    assert json.loads(cli("dedup", "--json").stdout)["in_groups"] == 2 and len(made) == 5


@pytest.mark.backends
def test_windows_measured_before_their_table_move_there_and_back(cli, home, tmp_path):
    """A catalog of the schema before image_windows keeps the windows of the properties'
    third version through the upgrade, and a downgrade puts them back (real photos, windows
    made by a real crop matching)."""
    from alembic import command
    from sqlalchemy import text

    from curator.config import load_settings
    from db.catalog import alembic_config, open_catalog

    assert cli("import", photos.photo_and_crop(tmp_path / "in")).exit_code == 0
    assert json.loads(cli("dedup", "--json").stdout)["in_groups"] == 2
    made = _rows(home, "SELECT image_id, windows FROM image_windows ORDER BY 1")
    assert len(made) == 2
    catalog = open_catalog(load_settings(home=home).db_url)
    try:
        with catalog.engine.begin() as conn:
            command.downgrade(alembic_config(conn), "0012")
        back = _rows(home, "SELECT image_id, windows FROM image_properties ORDER BY 1")
        assert [(i, bytes(w)) for i, w in back] == [(i, bytes(w)) for i, w in made]
        with catalog.engine.begin() as conn:  # as the third version measured them
            conn.execute(text("UPDATE image_properties SET version = 'props-v3'"))
            command.upgrade(alembic_config(conn), "head")
    finally:
        catalog.dispose()
    moved = _rows(home, "SELECT image_id, version, windows FROM image_windows ORDER BY 1")
    assert [(i, bytes(w)) for i, _, w in moved] == [(i, bytes(w)) for i, w in made]
    assert {v for _, v, _ in moved} == {"windows-v1"}
    assert json.loads(cli("dedup", "--json").stdout)["in_groups"] == 2


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_postgresql_role_that_may_only_read_checks_with_windows_it_does_not_keep(
    cli, home, tmp_path, backend, db_url, monkeypatch
):
    """A role granted SELECT alone: `curator check` matches crops with windows made for
    the run (none stored), gives the owner's findings, and a command that writes says
    read-only in one line."""
    from sqlalchemy import create_engine, make_url, text

    assert cli("import", photos.photo_and_crop(tmp_path / "in")).exit_code == 0
    role = f"reader_{tmp_path.name[-8:].lower().replace('-', '_')}"
    engine = create_engine(db_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f"CREATE ROLE {role} LOGIN PASSWORD 'reader'"))
            conn.execute(text(f"GRANT USAGE ON SCHEMA public TO {role}"))
            conn.execute(text(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"))
        reader = make_url(db_url).set(username=role, password="reader")
        monkeypatch.setenv("CURATOR_DB_URL", reader.render_as_string(hide_password=False))
        theirs = cli("check", "--json")
        assert theirs.exit_code == 0, theirs.output
        assert _rows(home, "SELECT COUNT(*) FROM image_windows") == [(0,)]
        refused = cli("label", "1", "--as", "happy")
        assert refused.exit_code == 1 and "read-only for this user" in refused.output
        monkeypatch.setenv("CURATOR_DB_URL", db_url)
        mine = cli("check", "--json")
        assert json.loads(theirs.stdout) == json.loads(mine.stdout)
        assert _rows(home, "SELECT COUNT(*) FROM image_windows") == [(2,)]
    finally:
        with engine.connect() as conn:
            conn.execute(text(f"DROP OWNED BY {role}"))
        engine.dispose()
