"""curator check on real photographs and their degraded copies: properties measured at
ingest, each issue type flagged, thresholds per catalog, the backfill, leaks across splits,
the report, and refusing issues at the door."""

from __future__ import annotations

import json
from pathlib import Path

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
        ("small=nan", "lies between"),
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
    before = rows(home, "SELECT image_id, sharpness, windows FROM image_properties ORDER BY 1")
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
    after = rows(home, "SELECT image_id, sharpness, windows FROM image_properties ORDER BY 1")
    assert [(i, round(s, 9), bytes(w)) for i, s, w in after] == [
        (i, round(s, 9), bytes(w)) for i, s, w in before
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
