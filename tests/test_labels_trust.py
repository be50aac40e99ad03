"""Labels you can trust: a second import or crawl never relabels without being told to, a
group's label is the same in every command, and a group whose people disagree is reported
and kept out of training until it is settled."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from curator.config import load_settings
from curator.crawl.runner import CrawlOptions
from curator.ingest.imaging import Limits
from curator.learn.examples import catalog_examples
from db.catalog import open_catalog
from tests.helpers import imagefiles as f
from tests.helpers.crawl_server import Behaviour, EngineServer, good_jpeg
from tests.helpers.crawling import crawl_home
from tests.helpers.sql import rows

pytestmark = pytest.mark.backends


def import_json(cli, *args) -> dict:
    result = cli("import", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def labels_by_image(cli) -> dict[int, str | None]:
    """What `curator stats`-like reads say: each active image's group label."""
    return dict(rows("SELECT id, label FROM images WHERE status = 'active' ORDER BY id"))


def six(tmp_path: Path) -> Path:
    for i in range(6):
        f.jpeg(tmp_path / "couples" / f"c{i}.jpg", f.texture(40 + i, (320, 240)))
    return tmp_path / "couples"


def test_reimporting_with_another_label_keeps_the_labels_and_says_so(cli, home, tmp_path):
    folder = six(tmp_path)
    assert cli("import", folder, "--label", "unhappy").exit_code == 0
    second = cli("import", folder, "--label", "happy")
    assert second.exit_code == 0
    line = next(ln for ln in second.stdout.splitlines() if "label conflicts" in ln)
    assert " 6 " in f" {line} " and "--relabel" in line and "curator show" in line
    assert set(labels_by_image(cli).values()) == {"unhappy"}
    # Running it again changes nothing back or forth, and still says what differs.
    third = import_json(cli, folder, "--label", "unhappy")
    assert third["label_conflicts"] == 0 and set(labels_by_image(cli).values()) == {"unhappy"}
    again = import_json(cli, folder, "--label", "happy")
    assert again["label_conflicts"] == 6 and set(labels_by_image(cli).values()) == {"unhappy"}
    assert rows("SELECT count(*) FROM label_conflicts") == [(6,)]  # met twice, on record once
    shown = cli("show", "1")
    assert "label conflicts" in shown.stdout and "met unhappy (import): kept" in shown.stdout
    # Told to, it relabels: as new events, the conflict on record as replaced.
    replaced = import_json(cli, folder, "--label", "happy", "--relabel")
    assert replaced["label_conflicts_by_outcome"] == {"replaced": 6}
    assert set(labels_by_image(cli).values()) == {"happy"}
    assert rows("SELECT label, count(*) FROM label_events GROUP BY label ORDER BY label") == [
        ("happy", 6),
        ("unhappy", 6),
    ]


def test_relabel_never_overrides_a_persons_decision(cli, home, tmp_path):
    folder = six(tmp_path)
    import_json(cli, folder, "--label", "unhappy")
    assert cli("label", "1", "--as", "happy").exit_code == 0
    result = import_json(cli, folder, "--label", "unhappy", "--relabel")
    assert result["label_conflicts_by_outcome"] == {"kept-human": 1}
    assert labels_by_image(cli)[1] == "happy"
    text = cli("import", folder, "--label", "unhappy", "--relabel").stdout
    assert "kept a person's label" in text


def test_a_near_copy_arriving_with_another_label_does_not_flip_its_group(cli, home, tmp_path):
    picture = f.texture(7, (400, 300))
    f.jpeg(tmp_path / "a" / "small.jpg", picture.resize((200, 150)))
    f.jpeg(tmp_path / "b" / "big.jpg", picture)
    import_json(cli, tmp_path / "a", "--label", "happy")
    result = import_json(cli, tmp_path / "b", "--label", "unhappy")
    assert result["near_duplicate"] == 1 and result["label_conflicts"] == 1
    assert set(labels_by_image(cli).values()) == {"happy"}


def test_a_crawl_query_label_that_differs_is_a_conflict_too(home, tmp_path):
    server = EngineServer().start()
    try:
        data = good_jpeg(5)
        first = server.add_image("one.jpg", Behaviour(data))
        second = server.add_image("same-bytes-elsewhere.jpg", Behaviour(data))

        def run(url: str, label: str, **kw) -> dict:
            listing = tmp_path / f"{label}.txt"
            listing.write_text(url + "\n")
            opts = CrawlOptions(
                engine="urls", label=label, routes=server.routes, threads=2,
                limits=Limits(max_bytes=2_000_000), **kw,
            )  # fmt: skip
            return crawl_home(home, [str(listing)], opts)[str(listing)]

        assert run(first, "happy")["added"] == 1
        met = run(second, "unhappy")
        assert met["exact_duplicate"] == 1 and met["label_conflicts"] == 1
        assert rows("SELECT label, label_origin FROM images") == [("happy", "query")]
        assert rows("SELECT label, held, origin, outcome FROM label_conflicts") == [
            ("unhappy", "happy", "query", "kept")
        ]
    finally:
        server.stop()


# -- one rule for a group's label, everywhere ------------------------------------------------


@pytest.fixture
def disputed(cli, home, tmp_path) -> dict[str, int]:
    """Two near copies that a person labeled differently, beside two plain images."""
    picture = f.texture(3, (400, 300))
    f.jpeg(tmp_path / "in" / "big.jpg", picture)
    f.jpeg(tmp_path / "in" / "small.jpg", picture.resize((240, 180)))
    for i in range(2):
        f.jpeg(tmp_path / "in" / f"other{i}.jpg", f.texture(90 + i, (320, 240)))
    import_json(cli, tmp_path / "in")
    by_name = {}
    for image_id, dup in rows("SELECT id, duplicate_of FROM images"):
        by_name["member" if dup else f"plain{image_id}"] = image_id
        if dup:
            by_name["rep"] = dup
    rep, member = by_name["rep"], by_name["member"]
    assert cli("label", str(rep), "--as", "happy").exit_code == 0  # the group: both happy
    assert cli("label", str(member), "--as", "unhappy").exit_code == 0  # one copy: unhappy
    for key, image_id in by_name.items():
        if key.startswith("plain") and image_id != rep:
            assert cli("label", str(image_id), "--as", "happy").exit_code == 0
    return {"rep": rep, "member": member}


def test_every_command_says_the_same_label_for_a_group(cli, home, tmp_path, disputed):
    rep, member = disputed["rep"], disputed["member"]
    group_label = rows(f"SELECT label FROM images WHERE id = {rep}")[0][0]
    shown_rep = json.loads(cli("show", str(rep), "--json").stdout)
    shown_member = json.loads(cli("show", str(member), "--json").stdout)
    assert shown_rep["label"] == shown_member["label"] == group_label
    assert shown_member["own_label"] == "unhappy"
    out = tmp_path / "all.csv"
    assert cli("export", out, "--format", "csv").exit_code == 0
    with open(out, newline="") as fh:
        by_id = {int(r["id"]): r for r in csv.DictReader(fh)}
    assert by_id[rep]["label"] == by_id[member]["label"] == group_label
    queue = json.loads(cli("queue", "all", "--json").stdout)["items"]
    assert next(i for i in queue if i["id"] == rep)["label"] == group_label


def test_a_group_whose_people_disagree_is_reported_and_kept_out_of_training(
    cli, home, tmp_path, disputed
):
    rep, member = disputed["rep"], disputed["member"]
    stats = json.loads(cli("stats", "--json").stdout)
    assert stats["labels"]["conflicts"] == 1
    assert "people labeled differently" in cli("stats").stdout
    queue = json.loads(cli("queue", "conflicts", "--json").stdout)["items"]
    assert [i["id"] for i in queue] == [rep] and queue[0]["conflict"] is True
    members = {m["id"]: m["label"] for m in queue[0]["members"]}
    assert members == {member: "unhappy"}
    catalog = open_catalog(load_settings().db_url)
    try:
        with catalog.reading() as session:
            examples = catalog_examples(session, home=home, classes=["happy", "unhappy"])
    finally:
        catalog.dispose()
    trained_on = {e.image_id for split in examples.splits.values() for e in split}
    assert rep not in trained_on and examples.conflicts == [rep]
    exported = json.loads(cli("export", tmp_path / "out", "--json").stdout)
    assert exported["conflicts"] == 1
    assert not any(p.stem == rows(f"SELECT sha256 FROM images WHERE id = {rep}")[0][0]
                   for p in (tmp_path / "out").rglob("*.jpg"))  # fmt: skip
    # A decision about the group settles it: its members agree again.
    assert cli("label", str(rep), "--as", "unhappy").exit_code == 0
    assert json.loads(cli("stats", "--json").stdout)["labels"]["conflicts"] == 0
    assert json.loads(cli("queue", "conflicts", "--json").stdout)["items"] == []
    assert json.loads(cli("export", tmp_path / "out", "--json").stdout)["files"] == 3


def test_show_lists_a_groups_members_with_their_own_labels(cli, home, disputed):
    # The latest person's decision (the copy's unhappy) is the group's; the kept image's
    # own label is shown beside it.
    text = cli("show", str(disputed["rep"])).stdout
    assert "group     2 near copies" in text and "people disagree" in text
    assert f"unhappy (human), the label of group {disputed['rep']}" in text
    assert "its own: happy (human)" in text
    member_lines = [ln for ln in text.splitlines() if ln.strip().startswith(str(disputed["rep"]))]
    assert member_lines and "kept" in member_lines[0]
