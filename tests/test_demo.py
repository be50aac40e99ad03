"""curator demo end to end on a small collection: everything planted is found."""

from __future__ import annotations

import json


def test_demo_finds_what_was_planted(cli, tmp_path):
    home = tmp_path / "demo"
    result = cli("demo", "--home", home, "--per-class", "12", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["found"] == report["planted"]
    assert report["planted"]["near"] > 0 and report["planted"]["exact"] > 0
    stats = report["stats"]
    assert stats["labels"]["by_class"] == {"happy": 13, "unhappy": 13}  # 12 + 1 off-topic each
    assert stats["images"]["duplicate"] == report["planted"]["near"]
    # A second run starts over in the same demo home.
    again = json.loads(cli("demo", "--home", home, "--per-class", "12", "--json").stdout)
    assert again["stats"]["images"] == stats["images"]


def test_demo_will_not_wipe_a_folder_that_is_not_a_demo_home(cli, tmp_path):
    busy = tmp_path / "mine"
    busy.mkdir()
    (busy / "thesis.txt").write_text("precious")
    result = cli("demo", "--home", busy)
    assert result.exit_code == 1 and "not a demo home" in result.stderr
    assert (busy / "thesis.txt").read_text() == "precious"
