"""curator label and curator queue through the real CLI."""

from __future__ import annotations

import json

import pytest

from curator.config import load_settings
from tests.helpers import imagefiles as f
from tests.helpers.sql import rows

pytestmark = pytest.mark.backends


@pytest.fixture
def labeled(cli, home, tmp_path):
    for i in range(5):
        f.jpeg(tmp_path / "in" / f"{i}.jpg", f.texture(i))
    assert cli("import", tmp_path / "in", "--label", "happy").exit_code == 0
    return home


def human(home):
    return rows(
        "SELECT image_id, label, author FROM label_events WHERE origin='human' ORDER BY id",
        load_settings(home=home).db_url,
    )


def sha(home, image_id):
    url = load_settings(home=home).db_url
    return rows("SELECT sha256 FROM images WHERE id = :id", url, id=image_id)[0][0]


def test_label_by_id_and_sha(cli, labeled):
    result = cli("label", "1", sha(labeled, 2)[:10], "--as", "unhappy", "--author", "anna")
    assert result.exit_code == 0, result.stderr
    assert "image 1: unhappy (by anna); now unhappy" in result.stdout
    assert cli("label", "3", "--as", "reject", "--json").exit_code == 0
    assert human(labeled)[:2] == [(1, "unhappy", "anna"), (2, "unhappy", "anna")]
    assert human(labeled)[2][:2] == (3, "reject")


def test_label_from_csv(cli, labeled, tmp_path):
    table = tmp_path / "fix.csv"
    table.write_text(f"image,label,author\n1,unhappy,bob\n{sha(labeled, 4)},reject,\n")
    assert cli("label", "--from-csv", table).exit_code == 0
    assert [r[:2] for r in human(labeled)] == [(1, "unhappy"), (4, "reject")]
    assert human(labeled)[0][2] == "bob"


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("image,label\n1,unhappy\n99,happy\n", "line 3: no image with id or sha256 '99'"),
        ("image,label\n1,unhappy\n2,ecstatic\n", "line 3: 'ecstatic' is not one of"),
        ("image,label\n1,\n", "line 2: no label for '1'"),
        ("picture,verdict\n1,happy\n", "needs a header with an image column"),
        ("\xff\xfe\x00bad", "is not a readable CSV file"),
    ],
)
def test_a_bad_csv_row_records_nothing(cli, labeled, tmp_path, content, words):
    table = tmp_path / "fix.csv"
    table.write_bytes(content.encode("latin-1"))
    result = cli("label", "--from-csv", table)
    assert result.exit_code == 1 and words in result.stderr, result.stderr
    assert human(labeled) == []


def test_every_bad_csv_row_is_reported_at_once_in_file_order(cli, labeled, tmp_path):
    table = tmp_path / "fix.csv"
    long_author = "x" * 200
    table.write_text(
        "image,label,author\n"
        "1,unhappy,\n"  # good
        "99,happy,\n"  # unknown image
        "2,ecstatic,\n"  # unknown class
        "3,,\n"  # no label
        f"4,happy,{long_author}\n"  # bad author
        "5,reject,ann\n"  # good
        "nope,fuzzy,\n"  # unknown image and unknown class
    )
    result = cli("label", "--from-csv", table)
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0] == f"error: 5 rows of {table} are wrong; nothing was recorded"
    assert [ln.split(":", 1)[0].strip() for ln in lines[1:]] == [
        "line 3",
        "line 4",
        "line 5",
        "line 6",
        "line 8",
    ]
    assert "no image with id or sha256 '99'" in lines[1]
    assert "'ecstatic' is not one of this catalog's classes" in lines[2]
    assert "no label for '3'" in lines[3]
    assert "an author name needs 1 to 128 characters" in lines[4]
    assert "'nope'" in lines[5] and "'fuzzy' is not one of" in lines[5]
    assert human(labeled) == []


def test_a_large_csv_with_many_bad_rows_shows_the_first_and_counts_the_rest(cli, labeled, tmp_path):
    table = tmp_path / "big.csv"
    body = [f"{1 + i % 5},happy" if i % 5 else f"{1000 + i},happy" for i in range(300)]
    table.write_text("image,label\n" + "\n".join(body) + "\n")
    result = cli("label", "--from-csv", table)
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0] == f"error: 60 rows of {table} are wrong; nothing was recorded"
    shown = [int(ln.split()[1].rstrip(":")) for ln in lines[1:-1]]
    assert shown == [2 + 5 * k for k in range(20)]  # file lines of the first 20 bad rows
    assert lines[-1] == "  and 40 more"
    assert human(labeled) == []


def test_ids_with_a_bad_label_say_it_once(cli, labeled):
    result = cli("label", "1", "2", "3", "--as", "ecstatic")
    assert result.exit_code == 1
    assert result.stderr.count("'ecstatic' is not one of") == 1
    assert len(result.stderr.splitlines()) == 1
    result = cli("label", "1", "98", "99", "--as", "happy")
    assert result.exit_code == 1
    assert "2 of the images given are wrong" in result.stderr
    assert "'98'" in result.stderr and "'99'" in result.stderr
    assert human(labeled) == []


def test_label_usage_errors(cli, labeled, tmp_path):
    assert "give image ids" in cli("label").stderr
    assert "--as" in cli("label", "1").stderr
    assert "no such file" in cli("label", "--from-csv", tmp_path / "none.csv").stderr
    assert "no image with id" in cli("label", "77", "--as", "happy").stderr


def test_queue_lists_what_review_shows_first(cli, labeled):
    cli("label", "1", "--as", "happy")
    listed = json.loads(cli("queue", "new", "--json").stdout)
    assert [i["id"] for i in listed["items"]] == [2, 3, 4, 5]
    assert "  unlabeled" not in cli("queue", "weak").stdout
    result = cli("queue", "uncertain")
    assert result.exit_code == 1 and "predictions" in result.stderr
