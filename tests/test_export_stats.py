"""curator export, stats and classes through the real CLI."""

from __future__ import annotations

import csv
import json
import os

import pytest
from torchvision.datasets import ImageFolder

from tests.helpers import imagefiles as f

pytestmark = pytest.mark.backends


def setup_catalog(cli, tmp_path):
    for i in range(8):
        f.jpeg(tmp_path / "happy" / f"h{i}.jpg", f.texture(i))
        f.jpeg(tmp_path / "unhappy" / f"u{i}.jpg", f.texture(100 + i))
    f.jpeg(tmp_path / "unlabeled" / "x.jpg", f.texture(200))
    img = f.texture(1, (640, 480))
    f.jpeg(tmp_path / "happy-copies" / "big.jpg", img)  # near copy of h1, larger
    assert cli("import", tmp_path / "happy", "--label", "happy").exit_code == 0
    assert cli("import", tmp_path / "unhappy", "--label", "unhappy").exit_code == 0
    assert cli("import", tmp_path / "unlabeled", tmp_path / "happy-copies").exit_code == 0


def test_imagefolder_export_loads_in_torchvision(cli, home, tmp_path):
    setup_catalog(cli, tmp_path)
    out = tmp_path / "out"
    result = cli("export", out, "--json")
    assert result.exit_code == 0, result.stderr
    counts = json.loads(result.stdout)
    assert counts["files"] == 16  # active images with a class label; duplicates left out
    loaded = {}
    numbering = set()
    for split in ("train", "val", "test"):
        ds = ImageFolder(out / split, allow_empty=True)
        numbering.add(tuple(sorted(ds.class_to_idx.items())))
        for path, target in ds.samples:
            loaded[os.path.basename(path)] = ds.classes[target]
    # The same class numbers in every split, as classes.json says.
    assert numbering == {
        tuple(sorted(json.loads((out / "classes.json").read_text())["class_to_idx"].items()))
    }
    assert len(loaded) == 16
    assert sorted(loaded.values()).count("happy") == 8
    # Hard links to the stored originals, not copies.
    any_file = next((out).rglob("*.jpg"))
    assert any_file.stat().st_nlink >= 2


def test_export_again_after_a_relabel_moves_the_file(cli, home, tmp_path):
    setup_catalog(cli, tmp_path)
    out = tmp_path / "out"
    assert cli("export", out).exit_code == 0
    f.jpeg(tmp_path / "moved" / "h0.jpg", f.texture(0))
    relabel = cli("import", tmp_path / "happy" / "h0.jpg", "--label", "unhappy", "--relabel")
    assert relabel.exit_code == 0
    result = cli("export", out, "--json")
    assert json.loads(result.stdout)["removed"] == 1
    names = {p.parent.name for p in out.rglob("*.jpg")}
    assert names == {"happy", "unhappy"}
    assert sum(1 for p in out.rglob("*.jpg") if p.parent.name == "unhappy") == 9


def test_an_interrupted_export_is_finished_by_running_it_again(cli, home, tmp_path, monkeypatch):
    import curator.export as export

    setup_catalog(cli, tmp_path)
    out = tmp_path / "out"
    real, placed = export._place, []

    def crash_after_three(src, dst, link):
        if len(placed) == 3:
            raise KeyboardInterrupt  # as if Ctrl-C or a crash hit mid-export
        placed.append(dst)
        real(src, dst, link)

    monkeypatch.setattr(export, "_place", crash_after_three)
    assert cli("export", out).exit_code == 130
    monkeypatch.setattr(export, "_place", real)
    result = cli("export", out, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["files"] == 16
    assert len(list(out.rglob("*.jpg"))) == 16


def test_export_refuses_a_folder_with_other_things_in_it(cli, home, tmp_path):
    setup_catalog(cli, tmp_path)
    out = tmp_path / "busy"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    result = cli("export", out)
    assert result.exit_code == 1 and "not empty" in result.stderr
    assert (out / "mine.txt").read_text() == "keep me"


def test_csv_export_has_a_row_per_image(cli, home, tmp_path):
    setup_catalog(cli, tmp_path)
    out = tmp_path / "catalog.csv"
    assert cli("export", out, "--format", "csv").exit_code == 0
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 18
    by_status = [r["status"] for r in rows]
    assert by_status.count("duplicate") == 1
    labeled = [r for r in rows if r["label"]]
    assert {r["label_origin"] for r in labeled} == {"import"}
    assert all(len(r["phash"]) == 16 and json.loads(r["sources"]) for r in rows)


def test_export_to_a_csv_name_writes_csv_unless_told_otherwise(cli, home, tmp_path):
    setup_catalog(cli, tmp_path)
    told = tmp_path / "told.csv"
    assert cli("export", told, "--format", "csv").exit_code == 0
    for name in ("inferred.csv", "LOUD.CSV"):
        result = cli("export", tmp_path / name)
        assert result.exit_code == 0, result.stderr
        assert (tmp_path / name).is_file() and "wrote 18 rows" in result.stdout
        assert (tmp_path / name).read_text() == told.read_text()
    # Asked for a folder, a folder it is, whatever its name.
    folder = tmp_path / "looks-like.csv"
    result = cli("export", folder, "--format", "imagefolder", "--json")
    assert result.exit_code == 0, result.stderr
    assert folder.is_dir() and json.loads(result.stdout)["files"] == 16


def test_stats(cli, home, tmp_path):
    setup_catalog(cli, tmp_path)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.jpg").write_bytes(b"")
    cli("import", tmp_path / "bad")
    stats = json.loads(cli("stats", "--json").stdout)
    assert stats["images"] == {
        "total": 18,
        "active": 17,
        "duplicate": 1,
        "bytes": stats["images"]["bytes"],
    }
    assert stats["labels"]["by_class"] == {"happy": 8, "unhappy": 8}
    assert stats["labels"]["unlabeled"] == 1
    assert stats["sources"]["failed_by_reason"] == {"empty": 1}
    assert sum(stats["splits"].values()) == 17
    text = cli("stats").stdout
    assert "18 (17 active, 1 duplicates" in text and "empty 1" in text


def test_classes_can_be_changed_but_not_from_under_labels(cli, home, tmp_path):
    assert cli("classes").stdout.split() == ["happy", "unhappy"]
    assert cli("classes", "happy", "unhappy", "neutral").exit_code == 0
    f.jpeg(tmp_path / "n.jpg", f.texture(1))
    assert cli("import", tmp_path / "n.jpg", "--label", "neutral").exit_code == 0
    result = cli("classes", "happy", "unhappy")
    assert result.exit_code == 1 and "labeled neutral" in result.stderr
    assert cli("classes").stdout.split() == ["happy", "unhappy", "neutral"]
