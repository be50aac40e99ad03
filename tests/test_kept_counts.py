"""The counts the database keeps (tallies, by triggers) and the group labels kept on image rows
(by curator's write functions) stay equal to a recount from scratch through every kind of
change, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest
from PIL import ImageEnhance

from curator.stats import catalog_stats, counted_stats
from db.catalog import open_catalog
from db.runs import start_run
from tests.faults.consistency import assert_kept_counts_true
from tests.helpers import imagefiles as f
from tests.helpers.review_server import review_client
from tests.helpers.sql import rows

pytestmark = pytest.mark.backends


def test_every_kind_of_change_keeps_the_counts_and_group_labels_true(cli, home, db_url, tmp_path):
    def check() -> None:
        assert_kept_counts_true(db_url)
        catalog = open_catalog(db_url)
        with catalog.reading() as session:
            assert catalog_stats(session) == counted_stats(session)
        catalog.dispose()

    assert cli("stats").exit_code == 0
    check()  # empty
    # Small copies first, larger originals later: the later, larger image becomes the
    # representative, and inherits the label given to its smaller copy.
    for i in range(4):
        copy = ImageEnhance.Contrast(f.texture(i, (160, 120))).enhance(1.3)
        f.jpeg(tmp_path / "small" / f"s{i}.jpg", copy, quality=40)
    for i in range(8):
        f.jpeg(tmp_path / "big" / f"b{i}.jpg", f.texture(i, (480, 360)))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    # Imported without grouping (threshold 0), grouped by the dedup run that follows.
    assert cli("import", tmp_path / "small", "--label", "happy", "--threshold", "0").exit_code == 0
    check()
    assert cli("import", tmp_path / "big", "--label", "unhappy", "--threshold", "0").exit_code == 0
    assert cli("import", tmp_path / "bad").exit_code == 0
    check()
    assert cli("dedup").exit_code == 0
    check()
    groups = rows("SELECT duplicate_of, count(*) FROM images WHERE duplicate_of IS NOT NULL "
                  "GROUP BY duplicate_of ORDER BY duplicate_of", db_url)  # fmt: skip
    assert groups, "the near copies were grouped"
    rep = groups[0][0]
    (member,) = rows("SELECT min(id) FROM images WHERE duplicate_of = :rep", db_url, rep=rep)[0]
    # A person labels the member: the group (its representative) is labeled with it.
    assert cli("label", member, "--as", "happy").exit_code == 0
    assert rows("SELECT label, label_origin FROM images WHERE id = :id", db_url, id=rep) == [
        ("happy", "human")
    ]
    check()
    assert cli("label", rep, "--as", "reject").exit_code == 0
    check()
    # Undo through the review page, and split a group there.
    catalog = open_catalog(db_url)
    try:
        with catalog.writing() as session:
            run = start_run(session, kind="review", params={})
        client = review_client(catalog, home, author="ann", run_id=run.id)
        answer = client.post("/api/label", json={"ids": [rep], "label": "unhappy"}).json()
        assert client.post("/api/undo", json={"events": answer["events"]}).status_code == 200
        check()
        split = client.post("/api/separate", json={"id": member})
        assert split.status_code == 200, split.text
        check()
        state = client.get("/api/state").json()
        assert state["queues"]["all"] == catalog_stats_of(catalog)["images"]["active"]
    finally:
        catalog.dispose()
    undo = cli("dedup", "--undo")
    assert undo.exit_code == 0, undo.output
    check()
    table = tmp_path / "fix.csv"
    table.write_text("image,label\n" + "".join(f"{i},unhappy\n" for i in range(1, 6)))
    assert cli("label", "--from-csv", table).exit_code == 0
    check()
    stats = json.loads(cli("stats", "--json").stdout)
    assert stats["sources"]["failed_by_reason"] and stats["labels"]["by_origin"]["human"] >= 5


def catalog_stats_of(catalog):
    with catalog.reading() as session:
        return catalog_stats(session)
