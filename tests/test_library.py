"""curator from Python, as a notebook uses it: open a home, import, look, train, score."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

import curator
from curator.errors import CuratorError
from db.errors import CatalogError
from tests.helpers import imagefiles as f
from tests.helpers.training import blob_picture


def test_a_notebook_imports_trains_and_scores_through_the_library(tmp_path, monkeypatch):
    monkeypatch.delenv("CURATOR_DB_URL", raising=False)
    for truth, warm, seed in (("happy", True, 0), ("unhappy", False, 500)):
        for i in range(24):
            folder = tmp_path / "pictures" / truth
            folder.mkdir(parents=True, exist_ok=True)
            blob_picture(seed + i, warm).save(folder / f"{i}.jpg")
    with curator.open(tmp_path / "home") as catalog:
        assert catalog.classes() == ["happy", "unhappy"]
        added = 0
        for truth in ("happy", "unhappy"):
            counts = catalog.import_paths([tmp_path / "pictures" / truth], label=truth)
            assert counts["added"] + counts["near_duplicate"] == 24
            added += counts["added"]
        assert catalog.dedup()["changed"] == 0
        rows = catalog.image_rows()
        assert len(rows) == added and {r.label for r in rows} == {"happy", "unhappy"}
        assert len(catalog.image_rows(status=None)) == 48
        assert all(r.path.is_file() and r.predicted is None for r in rows)
        train = catalog.image_rows(split="train", label="happy")
        assert train and all(r.split == "train" and r.label == "happy" for r in train)
        assert catalog.stats()["images"]["active"] == added
        outcome = catalog.train(
            backbone="resnet18", image_size=48, weights="none", epochs=4, batch_size=16,
            include_weak=True, augment="light", workers=0,
        )  # fmt: skip
        assert outcome.report.is_file() and outcome.result.best_epoch >= 1
        assert [m["id"] for m in catalog.models()] == [outcome.model_id]
        scored = catalog.score(workers=0)
        assert scored["scored"] == added
        rows = catalog.image_rows()
        assert all(r.predicted in ("happy", "unhappy") and 0.5 <= r.confidence <= 1 for r in rows)
        assert all(r.probs and max(r.probs.values()) == pytest.approx(r.confidence) for r in rows)
        assert len(catalog.queue("uncertain", limit=5)) == 5
        ranked = catalog.ranking("uncertain")
        assert sorted(i for i, _s in ranked) == sorted(r.id for r in rows)
        assert [i for i, _s in ranked[:5]] == [q["id"] for q in catalog.queue("uncertain", limit=5)]
        sources = catalog.sources()
        assert len(sources) == 48 and {s["image"] for s in sources} >= {r.id for r in rows}
        assert all(s["engine"] is None and s["locator"].endswith(".jpg") for s in sources)
        out = tmp_path / "out" / "rows.csv"
        out.parent.mkdir()
        files = catalog.score_files([tmp_path / "pictures" / "happy"], out, workers=0)
        assert files["model"] == outcome.model_id and files["scored"] == 24
        with out.open(encoding="utf-8") as fh:
            assert len(list(csv.DictReader(fh))) == 24
        assert not list(out.parent.glob("*.partial"))
        _an_interrupted_scoring_continues(catalog, tmp_path / "pictures" / "happy", out)
        explained = catalog.explain(rows[0].id, tmp_path / "cams")
        assert explained["predicted"] == rows[0].predicted
        assert Path(explained["gradcam"][explained["predicted"]]).is_file()
        first = rows[0].id
        assert catalog.label([first], "unhappy") == 1
        assert catalog.show(first)["label"] == "unhappy"
        with pytest.raises(CatalogError, match="images are labeled happy; relabel them"):
            catalog.set_classes(["unhappy", "neutral"])
        assert catalog.set_classes(["happy", "unhappy", "neutral"]) == [
            "happy", "unhappy", "neutral",
        ]  # fmt: skip
        assert catalog.classes() == ["happy", "unhappy", "neutral"]
    # What the library wrote is the catalog the commands read.
    home = tmp_path / "home"
    assert (home / "catalog.db").is_file() and (home / "models" / str(outcome.model_id)).is_dir()


def test_the_library_says_what_is_wrong_as_the_commands_do(tmp_path, monkeypatch):
    monkeypatch.delenv("CURATOR_DB_URL", raising=False)
    with curator.open(tmp_path / "home") as catalog:
        f.jpeg(tmp_path / "a.jpg", f.texture(1))
        with pytest.raises(CatalogError, match="not one of this catalog's classes"):
            catalog.import_paths([tmp_path / "a.jpg"], label="ecstatic")
        with pytest.raises((CuratorError, CatalogError), match="no trained model yet"):
            catalog.score()
        with pytest.raises(TypeError, match="unknown setting 'epoch'"):
            catalog.train(epoch=3)
    assert repr(catalog).startswith("curator.Catalog(")


def _an_interrupted_scoring_continues(catalog: curator.Catalog, folder: Path, whole: Path):
    """Stopped after its second batch (Ctrl-C in a notebook), score_files keeps the rows in
    FILE.partial; the same call again scores only the rest, and the file is the whole one."""
    out = whole.with_name("again.csv")

    def stop(p) -> None:
        if p.done >= 8:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        catalog.score_files([folder], out, workers=0, batch_size=4, on_progress=stop)
    partial = out.with_name("again.csv.partial")
    assert not out.exists() and len(partial.read_text(encoding="utf-8").splitlines()) == 1 + 8
    counts = catalog.score_files([folder], out, workers=0, batch_size=4)
    assert counts["kept"] == 8 and counts["scored"] == 24 and not partial.exists()
    with out.open(encoding="utf-8") as fh, whole.open(encoding="utf-8") as theirs:
        ours, expected = list(csv.reader(fh)), list(csv.reader(theirs))
    assert [r[:2] for r in ours] == [r[:2] for r in expected]  # every file once, same class
