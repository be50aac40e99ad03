"""curator dedup through the real CLI: groups, representatives, splits, dry runs and undo."""

from __future__ import annotations

import json

import pytest
from PIL import Image, ImageEnhance

from curator.config import load_settings
from tests.helpers import imagefiles as f
from tests.helpers.sql import rows

pytestmark = pytest.mark.backends


def table(home, sql):
    return rows(sql, load_settings(home=home).db_url)


def state(home):
    return table(home, "SELECT id, status, duplicate_of, split FROM images ORDER BY id")


def make_family(folder, seed):
    """An original (800 x 600) and four kinds of near copy, all smaller than it."""
    img = f.picture(seed, (800, 600))
    f.jpeg(folder / f"{seed}-original.jpg", img, quality=92)
    f.jpeg(folder / f"{seed}-small.jpg", img.resize((400, 300)), quality=70)
    f.jpeg(folder / f"{seed}-crop.jpg", img.crop((20, 15, 780, 585)), quality=85)
    f.jpeg(
        folder / f"{seed}-bright.jpg", ImageEnhance.Brightness(img.resize((640, 480))).enhance(1.15)
    )
    f.jpeg(
        folder / f"{seed}-mirror.jpg",
        img.transpose(Image.Transpose.FLIP_LEFT_RIGHT).resize((600, 450)),
    )


def imported(cli, home, tmp_path, families=3, singles=6):
    folder = tmp_path / "in"
    for seed in range(families):
        make_family(folder, seed)
    for seed in range(100, 100 + singles):
        f.jpeg(folder / f"single-{seed}.jpg", f.texture(seed, (500, 400)))
    result = cli("import", folder, "--json")
    assert result.exit_code == 0, result.stderr
    # The import grouped near copies as they arrived; undo that, so that here only
    # `curator dedup` groups them.
    assert cli("dedup", "--undo", "--run", "1").exit_code == 0
    assert table(home, "SELECT DISTINCT status FROM images") == [("active",)]
    names = {}
    for loc, image_id in table(home, "SELECT locator, image_id FROM sources"):
        names[loc.rsplit("/", 1)[1].removesuffix(".jpg")] = image_id
    return names


def test_dedup_groups_near_copies_and_keeps_the_largest(cli, home, tmp_path):
    names = imported(cli, home, tmp_path)
    result = cli("dedup", "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["groups"] == 3 and summary["in_groups"] == 15 and summary["to_duplicate"] == 12
    rows = {r[0]: r[1:] for r in state(home)}
    for seed in range(3):
        original = names[f"{seed}-original"]
        assert rows[original][:2] == ("active", None)
        for copy in ("small", "crop", "bright", "mirror"):
            status, dup_of, split = rows[names[f"{seed}-{copy}"]]
            assert (status, dup_of, split) == ("duplicate", original, rows[original][2])
    for seed in range(100, 106):
        assert rows[names[f"single-{seed}"]][:2] == ("active", None)
    # Running it again changes nothing.
    again = json.loads(cli("dedup", "--json").stdout)
    assert again["changed"] == 0


def test_dry_run_changes_nothing(cli, home, tmp_path):
    imported(cli, home, tmp_path, families=2, singles=2)
    before = state(home)
    result = cli("dedup", "--dry-run")
    assert result.exit_code == 0
    assert "would mark 8 as duplicate" in result.stdout and "nothing was changed" in result.stdout
    assert state(home) == before
    assert table(home, "SELECT count(*) FROM runs WHERE kind = 'dedup'") == [(0,)]


def test_undo_puts_everything_back(cli, home, tmp_path):
    imported(cli, home, tmp_path, families=2, singles=2)
    before = state(home)
    assert cli("dedup").exit_code == 0
    assert state(home) != before
    result = cli("dedup", "--undo")
    assert result.exit_code == 0 and "put back" in result.stdout
    assert state(home) == before
    # The history keeps both the marking and its undo.
    assert table(home, "SELECT count(*) FROM image_changes")[0][0] >= 16


def test_undo_twice_says_already_undone_and_changes_nothing(cli, home, tmp_path):
    imported(cli, home, tmp_path, families=2, singles=2)
    before = state(home)
    assert cli("dedup").exit_code == 0
    dedup_run = table(home, "SELECT max(id) FROM runs WHERE kind = 'dedup'")[0][0]
    assert cli("dedup", "--undo").exit_code == 0
    undo_run = table(home, "SELECT max(id) FROM runs WHERE kind = 'dedup-undo'")[0][0]
    changes = table(home, "SELECT count(*) FROM image_changes")
    runs = table(home, "SELECT count(*) FROM runs")
    for args in (["--undo"], ["--undo", "--run", str(dedup_run)]):
        again = cli("dedup", *args)
        assert again.exit_code == 0, again.stderr
        assert again.stdout.strip() == (
            f"dedup run {dedup_run} was already undone (by run {undo_run}); nothing was changed"
        )
    found = json.loads(cli("dedup", "--undo", "--json").stdout)
    assert found == {"undone_run": dedup_run, "already_undone_by": undo_run, "reverted": 0}
    assert state(home) == before
    assert table(home, "SELECT count(*) FROM image_changes") == changes
    assert table(home, "SELECT count(*) FROM runs") == runs
    # Undoing the undo puts the grouping back; then the dedup run can be undone again.
    assert cli("dedup", "--undo", "--run", str(undo_run)).exit_code == 0
    assert state(home) != before
    result = cli("dedup", "--undo", "--run", str(dedup_run))
    assert result.exit_code == 0 and "put back" in result.stdout
    assert state(home) == before


def test_run_without_undo_is_refused(cli, home, tmp_path):
    imported(cli, home, tmp_path, families=1, singles=0)
    before = state(home)
    result = cli("dedup", "--run", "1")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "error: --run names the run to undo: curator dedup --undo --run 1"
    )
    assert state(home) == before
    assert table(home, "SELECT count(*) FROM runs WHERE kind = 'dedup'") == [(0,)]


def test_a_lower_threshold_releases_what_no_longer_matches(cli, home, tmp_path):
    names = imported(cli, home, tmp_path, families=1, singles=0)
    assert cli("dedup").exit_code == 0
    # Whole frames only: the crop match (curator.ingest.crops) would keep the cropped copy.
    summary = json.loads(cli("dedup", "--threshold", "0", "--no-crops", "--json").stdout)
    assert summary["to_active"] >= 1  # the cropped copy is 4 bits away from its original
    rows = {r[0]: r[1:] for r in state(home)}
    assert rows[names["0-crop"]][:2] == ("active", None)


def test_show_tells_the_history_of_an_image(cli, home, tmp_path):
    names = imported(cli, home, tmp_path, families=1, singles=0)
    cli("dedup")
    result = cli("show", names["0-small"], "--json")
    assert result.exit_code == 0
    info = json.loads(result.stdout)
    assert info["status"] == "duplicate" and info["duplicate_of"] == names["0-original"]
    assert info["sources"][0]["outcome"] == "near_duplicate"
    assert info["changes"][-1]["status"] == ["active", "duplicate"]
    text = cli("show", info["sha256"][:10]).stdout
    assert f"duplicate of {names['0-original']}" in text and info["sha256"] in text
