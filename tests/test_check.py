"""curator check on real photographs and their degraded copies: properties measured at
ingest, each issue type flagged, thresholds per catalog, the backfill, leaks across splits,
the report, and refusing issues at the door."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from curator.config import load_settings
from db.catalog import open_catalog
from tests.helpers import photos
from tests.helpers.sql import rows as catalog_rows

pytestmark = pytest.mark.backends

CLEAN = ("chelsea", "rocket")


def rows(home: Path, sql: str) -> list[tuple]:
    return catalog_rows(sql, load_settings(home=home).db_url)


def ids_by_name(home: Path) -> dict[str, int]:
    found = rows(home, "SELECT locator, image_id FROM sources WHERE image_id IS NOT NULL")
    return {Path(locator).stem: image_id for locator, image_id in found}


def check_json(cli, *args: object) -> dict:
    result = cli("check", "--json", *args)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture
def degraded_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "crawl"
    folder.mkdir()
    for name in CLEAN:
        photos.photo(name).save(folder / f"{name}.jpg", quality=90)
    # Each issue on a picture of its own: copies of one picture would be near duplicates of
    # one another, and only a group's representative is checked.
    bases = [*photos.quarters("astronaut"), *photos.quarters("coffee")]
    for base, issue in zip(bases, photos.ISSUE_NAMES, strict=False):
        photos.degraded(base)[issue].save(folder / f"{issue}.jpg", quality=90)
    return folder


def test_every_issue_type_flags_its_copy_and_no_clean_photo(cli, home, degraded_folder):
    assert cli("import", degraded_folder, "--label", "happy").exit_code == 0
    measured = rows(home, "SELECT COUNT(*) FROM image_properties")[0][0]
    assert measured == len(list(degraded_folder.iterdir()))
    ids = ids_by_name(home)
    result = check_json(cli)
    flagged = {i for found in result["issues"].values() for i in found}
    for name in CLEAN:
        assert ids[name] not in flagged, name
    for issue, found in result["issues"].items():
        assert ids[issue] in found, issue
        assert result["counts"][issue] == len(found)
    assert result["images"] == len(ids) and result["not_measured"] == 0


def test_thresholds_are_set_per_catalog_and_bad_ones_refused(cli, home, degraded_folder):
    assert cli("import", degraded_folder).exit_code == 0
    small = ids_by_name(home)["small"]
    assert small in check_json(cli)["issues"]["small"]
    result = cli("check", "--set", "small=40")
    assert result.exit_code == 0 and "thresholds set: small=40" in result.stdout
    after = check_json(cli)
    assert small not in after["issues"]["small"] and after["thresholds"]["small"] == 40
    for bad, words in (
        ("fuzzy=1", "no issue type 'fuzzy'"),
        ("blurry=abc", "a threshold is a number"),
        ("dark=2", "lies between 0 and 1"),
        ("small=nan", "a short_side threshold is at least 1"),
        ("small=-5", "a short_side threshold is at least 1"),
        ("blurry=nan", "a sharpness threshold"),
        ("blurry", "give a threshold as ISSUE=VALUE"),
    ):
        result = cli("check", "--set", bad)
        assert result.exit_code == 1 and words in result.stderr, bad
        assert len(result.stderr.strip().splitlines()) == 1
    assert check_json(cli)["thresholds"]["small"] == 40


def test_a_catalog_with_no_images_checks_clean(cli, home):
    result = check_json(cli)
    assert result["images"] == 0 and result["leaks"] == [] and result["balance"] == {}
    assert all(not found for found in result["issues"].values())
    assert cli("check", "--backfill").exit_code == 0


def test_an_interrupted_backfill_keeps_its_work_and_a_rerun_finishes_it(
    cli, home, degraded_folder, monkeypatch
):
    from curator.ingest import health

    assert cli("import", degraded_folder).exit_code == 0
    before = rows(home, "SELECT image_id, sharpness, entropy FROM image_properties ORDER BY 1")
    catalog = open_catalog(load_settings(home=home).db_url)
    with catalog.writing() as session:  # as a catalog from before properties were measured
        from db.models import ImageProperty

        session.execute(ImageProperty.__table__.delete())
    monkeypatch.setattr(health, "BACKFILL_BATCH", 3)

    def interrupt(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        health.backfill(catalog, home, on_progress=interrupt)
    assert rows(home, "SELECT COUNT(*) FROM image_properties")[0][0] == 3
    assert check_json(cli)["not_measured"] == len(before) - 3
    result = cli("check", "--backfill")
    assert result.exit_code == 0 and f"measured {len(before) - 3} images" in result.stdout
    after = rows(home, "SELECT image_id, sharpness, entropy FROM image_properties ORDER BY 1")
    assert [(i, round(s, 9), round(e, 9)) for i, s, e in after] == [
        (i, round(s, 9), round(e, 9)) for i, s, e in before
    ]
    assert "measured 0 images" in cli("check", "--backfill").stdout


def test_issues_can_be_refused_at_the_door_with_a_reason(cli, home, degraded_folder):
    result = cli("import", degraded_folder, "--reject-issues", "small,low-information", "--json")
    assert result.exit_code == 0, result.stderr
    counts = json.loads(result.stdout)
    assert counts["failed_by_reason"] == {"issue:low-information": 1, "issue:small": 1}
    failed = rows(home, "SELECT locator, reason, detail FROM sources WHERE outcome = 'failed'")
    assert {Path(loc).stem for loc, _, _ in failed} == {"small", "low-information"}
    assert all(detail and reason.removeprefix("issue:") in detail for _, reason, detail in failed)
    for bad in ("fuzzy", "small,fuzzy", ","):
        result = cli("import", degraded_folder, "--reject-issues", bad)
        assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1, bad
    assert rows(home, "SELECT COUNT(*) FROM sources")[0][0] == len(list(degraded_folder.iterdir()))


def _split_of(home: Path, image_id: int) -> str:
    return rows(home, f"SELECT split FROM images WHERE id = {image_id}")[0][0]


def test_cropped_and_bannered_copies_join_their_photo_and_leaks_are_regrouped(cli, home, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    astronaut = photos.photo("astronaut", 400)
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        photos.photo(name, 400).save(folder / f"{name}.jpg", quality=92)
    photos.cropped(astronaut, 0.15, seed=1).save(folder / "crop15.jpg", quality=92)
    photos.cropped(astronaut, 0.20, seed=2).resize((160, 160)).save(folder / "crop20-small.jpg")
    photos.with_banner(astronaut).save(folder / "banner.jpg", quality=92)
    assert cli("import", folder).exit_code == 0
    ids = ids_by_name(home)
    copies = {ids["crop15"], ids["crop20-small"], ids["banner"]}
    result = check_json(cli)
    leaked = {i for pair in result["leaks"] for i in pair}
    across = {c for c in copies if _split_of(home, c) != _split_of(home, ids["astronaut"])}
    assert across <= leaked and not leaked - copies - {ids["astronaut"]}
    fixed = check_json(cli, "--fix-splits")
    assert fixed["fix_splits"]["leaks_before"] == len(result["leaks"])
    assert fixed["leaks"] == [] and fixed["fix_splits"]["leaks_after"] == 0
    group = rows(home, "SELECT id, status, duplicate_of, split FROM images ORDER BY id")
    by_id = {i: (status, of, split) for i, status, of, split in group}
    root = ids["banner"]  # the most pixels: the group's representative
    assert by_id[root][0] == "active"
    for member in copies - {root} | {ids["astronaut"]}:
        assert by_id[member][:2] == ("duplicate", root)
    assert len({by_id[m][2] for m in copies | {ids["astronaut"]}}) == 1
    for other in ("coffee", "chelsea", "rocket"):  # distinct photos stay on their own
        assert by_id[ids[other]][:2] == ("active", None)
    assert cli("dedup", "--undo").exit_code == 0
    assert rows(home, "SELECT COUNT(*) FROM images WHERE status = 'duplicate'")[0][0] == 0


def test_dedup_without_crops_leaves_cropped_copies_apart(cli, home, tmp_path):
    assert cli("import", photos.photo_and_crop(tmp_path / "in")).exit_code == 0
    assert json.loads(cli("dedup", "--no-crops", "--json").stdout)["in_groups"] == 0
    assert json.loads(cli("dedup", "--json").stdout)["in_groups"] == 2


def test_the_report_escapes_hostile_names_and_keeps_to_its_folder(cli, home, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    hostile = '<img src=x onerror="alert(1)">&"\''
    photos.degraded(photos.photo("coffee"))["dark"].save(folder / f"{hostile}.jpg")
    photos.photo("rocket").save(folder / "rocket.jpg")
    assert cli("import", folder).exit_code == 0
    out = tmp_path / "report"
    result = cli("check", "--report", out)
    assert result.exit_code == 0, result.stderr
    page = (out / "index.html").read_text()
    assert hostile not in page and "onerror=" not in page.replace("onerror=&quot;", "")
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page
    dark = ids_by_name(home)[hostile]
    assert (out / "thumbs" / f"{dark}.jpg").read_bytes()[:2] == b"\xff\xd8"
    assert sorted(p.name for p in (out / "thumbs").iterdir()) == [f"{dark}.jpg"]
    # A folder holding anything else is refused, whole, unless forced.
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    result = cli("check", "--report", other)
    assert result.exit_code == 1 and "already holds other files" in result.stderr
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]
    assert cli("check", "--report", other, "--force").exit_code == 0
    assert (other / "notes.txt").read_text() == "mine" and (other / "index.html").is_file()
    assert cli("check", "--report", out).exit_code == 0  # its own report: rewritten
    assert cli("check", "--force").exit_code == 1


def test_issue_queues_rank_flagged_pictures_until_a_person_decides(cli, home, degraded_folder):
    assert cli("import", degraded_folder, "--label", "happy").exit_code == 0
    ids = ids_by_name(home)
    result = cli("queue", "issue:dark", "--json")
    assert result.exit_code == 0, result.stderr
    dark = [item["id"] for item in json.loads(result.stdout)["items"]]
    assert dark[0] == ids["dark"]  # the darkest first (a letterboxed copy is dark too)
    everything = json.loads(cli("queue", "issues", "--json").stdout)["items"]
    flagged = {i for found in check_json(cli)["issues"].values() for i in found}
    assert {item["id"] for item in everything} == flagged
    assert cli("label", str(ids["dark"]), "--as", "reject").exit_code == 0
    after = json.loads(cli("queue", "issue:dark", "--json").stdout)["items"]
    assert [item["id"] for item in after] == dark[1:]
    assert cli("queue", "issue:fuzzy").exit_code == 1


def test_the_pixel_check_averages_each_box_as_a_plain_mean_would():
    """The crop check's cells (one summed-area table per container, shared by its candidates)
    equal each cell's plain mean, and the correlation from the regions' sums equals NumPy's
    correlation of the two sets of cells, on a real photograph (to float32's precision, in
    which the cells are kept; the table itself is exact, in integers)."""
    from curator.ingest.crops import _correlations, _whole_cells, grey_square
    from curator.ingest.imaging import encode_jpeg
    from curator.ingest.windows import box_cells, box_edges, integral_image

    square = grey_square(encode_jpeg(photos.photo("astronaut")))
    rng = np.random.default_rng(0)
    sizes = rng.uniform(0.3, 1.0, (6, 2))
    boxes = np.column_stack(
        [rng.uniform(0, 1 - sizes[:, 0]), rng.uniform(0, 1 - sizes[:, 1]), sizes]
    )
    cells = box_cells(square, boxes, integral_image(square))
    ys, xs = box_edges(square.shape[0], boxes)
    for k in range(len(boxes)):
        for i, j in ((0, 0), (5, 17), (31, 31)):
            block = square[ys[k, i] : ys[k, i + 1], xs[k, j] : xs[k, j + 1]]
            assert cells[k, i, j] == pytest.approx(block.mean(), rel=1e-6)
    assert np.allclose(_whole_cells(square), box_cells(square, ((0.0, 0.0, 1.0, 1.0),))[0])
    target = _whole_cells(grey_square(encode_jpeg(photos.photo("coffee")))).reshape(-1)
    target = target - target.mean()
    got = _correlations(square, integral_image(square), target, boxes)
    want = [np.corrcoef(cells[k].reshape(-1), target)[0, 1] for k in range(len(boxes))]
    assert np.allclose(got, want, atol=1e-5)
    assert integral_image(square).dtype == np.int32
    assert int(integral_image(square)[-1, -1]) == int(square.astype(np.int64).sum())


def test_a_backfill_measures_small_pictures_their_import_let_in(cli, home, tmp_path):
    folder = tmp_path / "small"
    folder.mkdir()
    for name in CLEAN:
        photos.photo(name).resize((30, 25)).save(folder / f"{name}.png")
    assert cli("import", folder, "--min-side", "20").exit_code == 0
    catalog = open_catalog(load_settings(home=home).db_url)
    with catalog.writing() as session:  # as measured by an older version of the numbers
        from db.models import ImageProperty

        session.execute(ImageProperty.__table__.update().values(version="props-v0"))
    catalog.dispose()
    result = cli("check", "--backfill")
    assert result.exit_code == 0 and "measured 2 images" in result.stdout, result.stdout
    assert "unreadable" not in result.stdout
    assert check_json(cli)["not_measured"] == 0
    assert rows(home, "SELECT DISTINCT version FROM image_properties") != [("props-v0",)]


def test_a_report_folder_that_cannot_be_made_is_one_line(cli, home, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = cli("check", "--report", blocker / "report")
    assert result.exit_code == 1 and "cannot make the report folder" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and blocker.read_text() == "x"


def test_an_unexpected_error_is_logged_in_the_home_the_command_was_given(
    cli, home, tmp_path, monkeypatch
):
    import curator.check

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("planted")

    monkeypatch.setattr(curator.check, "check_catalog", broken)
    other = tmp_path / "other-home"
    result = cli("--home", other, "check")
    assert result.exit_code == 1 and "unexpected RuntimeError: planted" in result.stderr
    log = other / "logs" / "errors.log"
    assert str(log) in result.stderr.replace("\n", "")
    assert "RuntimeError: planted" in log.read_text()
    assert not (home / "logs" / "errors.log").exists()
