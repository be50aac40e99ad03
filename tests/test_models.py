"""curator models --default and --remove, and the report of a model, on real models trained
on tiny generated pictures (warm blobs: happy; cold blobs: unhappy)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from bs4 import BeautifulSoup
from PIL import Image
from typer.testing import CliRunner

from classifier import train as train_mod
from classifier.model import DeepConnection
from curator.cli import app
from db.catalog import open_catalog
from tests.faults.consistency import assert_consistent
from tests.helpers.review_server import review_client
from tests.helpers.sql import rows as catalog_rows
from tests.helpers.training import FAST, blob_picture

PER_CLASS = 48
#: Model 1: trained. Model 2: trained with a GAP head, after a person gave three pictures of
#: the test split the wrong label (which it then gets "wrong", for the report's gallery).
#: Models 3 and 4: cross-fit folds of model 2. Model 5 failed, model 6 was interrupted.
TRAINED, SECOND, FOLDS = 1, 2, (3, 4)
#: How many test pictures carry a wrong label.
MISLABELED = 3


def run(home: Path, *args: object):
    return CliRunner().invoke(app, ["--home", str(home), *[str(a) for a in args]])


def url(home: Path) -> str:
    return f"sqlite:///{home / 'catalog.db'}"


def rows(home: Path, sql: str, **params: object) -> list[tuple]:
    return catalog_rows(sql, url(home), **params)


def ok(home: Path, *args: object) -> dict | list:
    result = run(home, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def refused(home: Path, *args: object) -> str:
    """The one line a refused command printed."""
    result = run(home, *args)
    assert result.exit_code == 1, result.output
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.output
    return result.stderr


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> Path:
    """A catalog with the six models above, models 1 and 2 having scored every image. The
    home's name holds characters that mean something in HTML."""
    base = tmp_path_factory.mktemp("registry")
    home = base / 'home <b>&"q'
    for label, warm, seed in (("happy", True, 0), ("unhappy", False, 1000)):
        for i in range(PER_CLASS):
            (base / "in" / label).mkdir(parents=True, exist_ok=True)
            blob_picture(seed + i, warm).save(base / "in" / label / f"{i}.jpg")
        assert run(home, "import", base / "in" / label, "--label", label).exit_code == 0
    tested = "SELECT id, label FROM images WHERE split = 'test' AND status = 'active' ORDER BY id"
    for image_id, label in rows(home, tested)[:MISLABELED]:
        other = "unhappy" if label == "happy" else "happy"
        assert run(home, "label", image_id, "--as", other).exit_code == 0
    weak = ["--include-weak", *FAST]
    # 4 epochs: at 2, whether a model has left chance depends on the precision it trains in
    assert run(home, "train", *weak, "--epochs", "4").exit_code == 0
    assert run(home, "train", *weak, "--epochs", "4", "--head", "gap").exit_code == 0
    for model in (TRAINED, SECOND):
        assert run(home, "score", "--model", model, "--workers", "0").exit_code == 0
    assert run(home, "score", "--model", SECOND, "--folds", "2").exit_code == 0
    with pytest.MonkeyPatch.context() as patch:

        def exhausted(self, x):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

        patch.setattr(DeepConnection, "forward", exhausted)
        assert run(home, "train", *weak, "--seed", "5").exit_code == 1
    with pytest.MonkeyPatch.context() as patch:
        real, calls = train_mod.train_one_epoch, []

        def interrupted_in_epoch_two(*args, **kwargs):
            calls.append(1)
            if len(calls) == 2:
                raise KeyboardInterrupt
            return real(*args, **kwargs)

        patch.setattr(train_mod, "train_one_epoch", interrupted_in_epoch_two)
        assert run(home, "train", *weak, "--seed", "6").exit_code == 130
    statuses = rows(home, "SELECT id, status FROM models ORDER BY id")
    assert statuses == [
        (1, "done"),
        (2, "done"),
        (3, "cross-fit"),
        (4, "cross-fit"),
        (5, "failed"),
        (6, "interrupted"),
    ]
    return home


@pytest.fixture
def home(registry, tmp_path) -> Path:
    """A private copy of the catalog with its models, for a test that changes it."""
    copy = tmp_path / registry.name
    shutil.copytree(registry, copy, symlinks=True)
    return copy


def default_of(home: Path) -> tuple[int | None, bool]:
    """The default model as curator models --json marks it, and whether it was chosen."""
    marked = [(m["id"], m["chosen"]) for m in ok(home, "models") if m["default"]]
    assert len(marked) <= 1
    return marked[0] if marked else (None, False)


def uncertain_models(home: Path) -> set[int]:
    queue = ok(home, "queue", "uncertain", "--limit", "500")
    assert queue["items"]
    return {item["prediction"]["model"] for item in queue["items"]}


def gradcam_model(home: Path) -> int:
    """The model whose Grad-CAM the review page shows for image 1 (from its cache)."""
    catalog = open_catalog(url(home))
    try:
        answer = review_client(catalog, home).get("/api/explain/1.png")
        assert answer.status_code == 200
    finally:
        catalog.dispose()
    (cached,) = [p.parent.name for p in (home / "cache" / "explain").glob("*/1.png")]
    shutil.rmtree(home / "cache" / "explain")
    return int(cached)


def test_the_default_is_never_unfinished_and_each_refusal_is_one_line(home):
    # Models 3 to 6 are newer, but none is a finished model of curator train.
    assert default_of(home) == (SECOND, False)
    assert "   2* done" in run(home, "models").stdout
    cases = [
        ("99", "no model 99 in the catalog"),
        ("3", "model 3 is a cross-fit fold model of model 2"),
        ("5", "model 5 failed"),
        ("6", "model 6 was interrupted"),
        ("two", "--default 'two': a model id"),
    ]
    for ref, message in cases:
        assert message in refused(home, "models", "--default", ref), ref
    model_file = home / "models" / "1" / "model.pt"
    model_file.rename(model_file.with_name("elsewhere.pt"))
    assert "model 1's file is missing" in refused(home, "models", "--default", "1")
    model_file.with_name("elsewhere.pt").rename(model_file)
    assert run(home, "classes", "happy", "unhappy", "neutral").exit_code == 0
    message = refused(home, "models", "--default", "1")
    assert "trained for happy, unhappy, and the catalog's classes are now happy, unhappy, " in (
        message
    )
    assert run(home, "classes", "unhappy", "happy").exit_code == 0  # the same classes
    assert default_of(home) == (SECOND, False)  # every refusal left it as it was
    assert "--default and --remove" in refused(home, "models", "--default", "1", "--remove", "2")


def test_a_model_at_chance_is_never_the_default_even_the_newest_or_chosen(home):
    """curator train gives the verdict (tests/test_recipes.py); here the rule that follows
    from it, on a catalog whose newest model, 2, is marked at chance."""
    ok(home, "models", "--default", str(SECOND))
    with sqlite3.connect(home / "catalog.db") as db:
        db.execute("UPDATE models SET verdict = 'chance' WHERE id = :m", {"m": SECOND})
    assert default_of(home) == (TRAINED, False)  # chosen, and still not the default
    assert uncertain_models(home) == {TRAINED} and gradcam_model(home) == TRAINED
    assert ok(home, "score", "--workers", "0")["model"] == TRAINED
    assert "model 2 is no better than chance on val" in refused(home, "models", "--default", "2")
    listing = run(home, "models").stdout
    assert "at chance: model 2 is no better than chance on val" in listing
    with sqlite3.connect(home / "catalog.db") as db:
        db.execute("UPDATE models SET verdict = 'learned' WHERE id = :m", {"m": SECOND})
    assert default_of(home) == (SECOND, True)  # the choice was kept all along


def test_the_chosen_default_is_what_scoring_the_queues_and_grad_cam_use(home):
    assert uncertain_models(home) == {SECOND} and gradcam_model(home) == SECOND
    assert ok(home, "models", "--default", "1") == {"default": 1, "chosen": True}
    assert default_of(home) == (TRAINED, True)
    listing = run(home, "models").stdout
    assert "   1* done" in listing and "chosen with curator models --default 1" in listing
    assert uncertain_models(home) == {TRAINED}
    assert ok(home, "score", "--workers", "0")["model"] == TRAINED
    assert ok(home, "explain", "1", "--out", home.parent / "why")["model"] == TRAINED
    assert gradcam_model(home) == TRAINED
    # A model trained later does not replace the one chosen, and says so.
    result = run(home, "train", "--include-weak", *FAST, "--epochs", "1", "--seed", "7", "--json")
    trained = json.loads(result.stdout)
    # One epoch may leave it at chance (exit status 3): then it can never be the default.
    learned = trained["verdict"]["verdict"] == "learned"
    assert result.exit_code == (0 if learned else 3), result.output
    assert trained["model"] == 7 and trained["default"] == TRAINED
    assert default_of(home) == (TRAINED, True)
    # Until the newest is asked for again: the newest that learned.
    newest = 7 if learned else SECOND
    assert ok(home, "models", "--default", "newest") == {"default": newest, "chosen": False}
    assert default_of(home) == (newest, False)
    assert "the newest finished one" in run(home, "models").stdout


def test_remove_deletes_its_own_files_and_predictions_and_nothing_else(home, tmp_path):
    folder, other = home / "models" / "2", home / "models" / "1"
    outside = tmp_path / "outside"
    (outside / "deeper").mkdir(parents=True)
    (outside / "keep.txt").write_text("not the model's")
    (outside / "deeper" / "keep.txt").write_text("nor this")
    (folder / "link-to-a-file").symlink_to(outside / "keep.txt")
    (folder / "link-to-a-folder").symlink_to(outside)
    (folder / "link-to-model-1").symlink_to(other)
    before = {
        str(p.relative_to(other)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in other.rglob("*")
        if p.is_file()
    }
    ok(home, "models", "--default", "2")
    assert gradcam_model(home) == SECOND and uncertain_models(home) == {SECOND}
    catalog = open_catalog(url(home))  # leave model 2's Grad-CAM in the cache this time
    try:
        assert review_client(catalog, home).get("/api/explain/1.png").status_code == 200
    finally:
        catalog.dispose()
    count = "SELECT count(*) FROM predictions WHERE model_id = :m"
    predictions = rows(home, count, m=2)[0][0]
    kept = rows(home, count, m=1)[0][0]
    assert predictions > 0 and kept > 0

    removed = ok(home, "models", "--remove", "2")
    assert removed["removed"] == 2 and removed["predictions"] == predictions
    assert removed["default"] == TRAINED and removed["folds_kept"] == list(FOLDS)
    assert not os.path.lexists(folder) and not (home / "cache" / "explain" / "2").exists()
    assert (outside / "keep.txt").read_text() == "not the model's"
    assert (outside / "deeper" / "keep.txt").read_text() == "nor this"
    after = {
        str(p.relative_to(other)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in other.rglob("*")
        if p.is_file()
    }
    assert after == before
    assert rows(home, count, m=2) == [(0,)] and rows(home, count, m=1) == [(kept,)]
    assert rows(home, "SELECT id FROM models WHERE id = 2") == []
    # The chosen default went with it: the newest finished model is the default again.
    assert default_of(home) == (TRAINED, False)
    assert uncertain_models(home) == {TRAINED} and gradcam_model(home) == TRAINED
    assert_consistent(home)
    assert "no model 2 in the catalog" in refused(home, "models", "--remove", "2")
    # A fold model is removed by itself; the catalog stays whole.
    text = run(home, "models", "--remove", "3")
    assert text.exit_code == 0 and "removed model 3:" in text.stdout
    assert_consistent(home)


@pytest.mark.backends
def test_choose_and_remove_on_each_engine(registry, tmp_path, backend, new_db_url, monkeypatch):
    home = tmp_path / "home"
    shutil.copytree(registry, home)
    db = url(home)
    if backend == "postgresql":
        db = new_db_url(home)
        copied = run(home, "db", "copy", home / "catalog.db", db)
        assert copied.exit_code == 0, copied.output
        monkeypatch.setenv("CURATOR_DB_URL", db)
    ok(home, "models", "--default", "1")
    assert default_of(home) == (TRAINED, True) and uncertain_models(home) == {TRAINED}
    removed = ok(home, "models", "--remove", "1")
    assert removed["default"] == SECOND and removed["predictions"] > 0
    assert catalog_rows("SELECT count(*) FROM predictions WHERE model_id = 1", db) == [(0,)]
    assert default_of(home) == (SECOND, False) and uncertain_models(home) == {SECOND}
    assert not (home / "models" / "1").exists()
    assert_consistent(home, db)


def test_remove_refuses_a_folder_that_is_not_certainly_its_own(home, tmp_path):
    predictions = "SELECT count(*) FROM predictions WHERE model_id = 1"
    before = rows(home, predictions)
    real = tmp_path / "model-1-elsewhere"
    (home / "models" / "1").rename(real)
    (home / "models" / "1").symlink_to(real)
    assert "is a symbolic link" in refused(home, "models", "--remove", "1")
    assert (real / "model.pt").is_file() and rows(home, predictions) == before
    (home / "models" / "1").unlink()
    real.rename(home / "models" / "1")
    with sqlite3.connect(home / "catalog.db") as db:  # a catalog edited by hand
        db.execute("UPDATE models SET path = 'models/1' WHERE id = 6")
    message = refused(home, "models", "--remove", "1")
    assert "model 6's row names models/1" in message
    assert (home / "models" / "1" / "model.pt").is_file() and rows(home, predictions) == before
    message = refused(home, "models", "--remove", "6")
    assert "recorded as 'models/1', not models/6" in message
    assert (home / "models" / "6").is_dir()


def test_a_running_model_is_neither_the_default_nor_removable(home, spawn):
    train = ["train", "--include-weak", *FAST, "--epochs", "500", "--seed", "8"]
    proc = spawn(
        [sys.executable, "-m", "curator", "--home", str(home), *train],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    folder = home / "models" / "7"
    deadline = time.monotonic() + 120
    while not folder.exists() and time.monotonic() < deadline:  # made as training starts
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.05)
    (run_id,) = rows(home, "SELECT run_id FROM models WHERE id = 7")[0]
    assert "model 7 is still training" in refused(home, "models", "--default", "7")
    message = refused(home, "models", "--remove", "7")
    assert f"model 7 is in use by train run {run_id}" in message and "running" in message
    assert folder.is_dir() and rows(home, "SELECT status FROM models WHERE id = 7") == [
        ("training",)
    ]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    # Killed: still no trained model, but no longer in use.
    assert "model 7 stopped while training (killed)" in refused(home, "models", "--default", "7")
    removed = ok(home, "models", "--remove", "7")
    assert removed["removed"] == 7 and not folder.exists()
    assert default_of(home) == (SECOND, False)
    assert_consistent(home)


def test_a_removal_killed_midway_is_finished_or_undone_by_the_next(home):
    """A folder set aside by a removal whose process is gone: put back while its model's row
    remains (the removal never committed), deleted once the row is gone (it did)."""
    from curator.learn.registry import ASIDE, NOTE
    from db.models import Model

    catalog = open_catalog(url(home))
    try:
        with catalog.reading() as session:
            stamp = session.get(Model, 6).created_at.isoformat()
    finally:
        catalog.dispose()
    gone = 2**22 + 1  # above the largest pid Linux gives: no process has it
    aside = home / "models" / f"{ASIDE}6-{gone}"
    (home / "models" / "6").rename(aside)
    (aside / NOTE).write_text(json.dumps({"model": 6, "created": stamp}))
    assert ok(home, "models", "--remove", "5")["removed"] == 5  # any removal finishes it
    assert (home / "models" / "6" / "last.pt").exists() and not aside.exists()
    assert not (home / "models" / "6" / NOTE).exists()
    ok(home, "models", "--remove", "6")
    shutil.copytree(home / "models" / "1", aside)  # as if killed right after its commit
    (aside / NOTE).write_text(json.dumps({"model": 6, "created": stamp}))
    ok(home, "models", "--remove", "4")
    assert not aside.exists() and (home / "models" / "1" / "model.pt").is_file()
    assert_consistent(home)


def test_scoring_with_a_model_of_other_classes_warns_and_still_scores(home, tmp_path):
    assert run(home, "classes", "happy", "unhappy", "neutral").exit_code == 0
    result = run(home, "score", "--rescore", "--workers", "0", "--json")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: model 2 was trained for happy, unhappy, and the catalog's classes are now "
        "happy, unhappy, neutral: its predictions name only its own classes"
    ]
    scored = json.loads(result.stdout)
    assert scored["scored"] > 0 and scored["class_mismatch"] == {
        "model": ["happy", "unhappy"],
        "catalog": ["happy", "unhappy", "neutral"],
    }
    assert uncertain_models(home) == {SECOND}  # the queues still rank by it
    blob_picture(9999, True).save(tmp_path / "new.jpg")
    result = run(home, "score", tmp_path / "new.jpg", "--json", "--format", "jsonl")
    assert result.exit_code == 0 and "catalog's classes are now" in result.stderr
    assert run(home, "classes", "unhappy", "happy").exit_code == 0  # the same names: no warning
    result = run(home, "score", "--workers", "0", "--json")
    assert result.exit_code == 0 and "warning" not in result.stderr
    assert json.loads(result.stdout)["class_mismatch"] is None


def test_the_report_tables_the_images_and_shows_the_test_pictures_it_got_wrong(registry):
    folder = registry / "models" / "2"
    page = (folder / "report.html").read_text(encoding="utf-8")
    soup = BeautifulSoup(page, "html.parser")
    state = torch.load(folder / "model.pt", weights_only=True)
    labels = dict(rows(registry, "SELECT id, label FROM images"))
    classes = state["classes"]
    # The images table: each split's pictures by class, as the model's splits hold them.
    table = soup.select_one("table.images")
    header = [th.get_text() for th in table.find("tr").find_all("th")]
    assert header == ["class", "train", "val", "test", "all"]
    body = {
        tr.find(["td", "th"]).get_text(): [int(c.get_text()) for c in tr.find_all(["td", "th"])[1:]]
        for tr in table.find_all("tr")[1:]
    }
    splits = state["splits"]
    for name in classes:
        counts = [sum(labels[i] == name for i in splits[s]) for s in ("train", "val", "test")]
        assert body[name] == [*counts, sum(counts)], name
    totals = [len(splits[s]) for s in ("train", "val", "test")]
    assert body["all"] == [*totals, sum(totals)]
    # The gallery: exactly the test pictures whose most likely class was not their label.
    figures = soup.select(".gallery figure")
    confusion = state["metrics"]["test"]["confusion"]
    wrong = sum(confusion[i][j] for i in range(2) for j in range(2) if i != j)
    assert wrong >= MISLABELED and len(figures) == wrong
    heading = soup.find("h2", string=lambda s: s and s.startswith("Test pictures it got wrong"))
    assert heading.get_text() == f"Test pictures it got wrong ({wrong} of {len(splits['test'])})"
    scored = {
        image_id: (predicted, confidence, margin)
        for image_id, predicted, confidence, margin in rows(
            registry,
            "SELECT image_id, predicted, confidence, margin FROM predictions WHERE model_id = 2",
        )
    }
    pairs = {}
    confidences = []
    for figure in figures:
        image_id = int(figure["data-image"])
        truth, predicted = figure["data-true"], figure["data-predicted"]
        assert image_id in splits["test"] and truth == labels[image_id] != predicted
        pairs[(truth, predicted)] = pairs.get((truth, predicted), 0) + 1
        confidence = float(figure["data-confidence"])
        confidences.append(confidence)
        assert f"true {truth}" in figure.get_text() and f"predicted {predicted}" in (
            figure.get_text()
        )
        if scored[image_id][2] > 0.05:  # curator score agrees, where the call is not close
            assert scored[image_id][0] == predicted
            assert scored[image_id][1] == pytest.approx(confidence, abs=0.02)
        img = figure.find("img")
        assert img["src"] == f"mistakes/{image_id}.jpg"
        assert img["title"] == str(registry / labels_path(registry, image_id))
        with Image.open(folder / img["src"]) as thumb:
            assert thumb.format == "JPEG" and max(thumb.size) <= 160
    assert confidences == sorted(confidences, reverse=True)  # the most confident first
    for (truth, predicted), n in pairs.items():
        assert confusion[classes.index(truth)][classes.index(predicted)] == n
    # Offline, and the home's name escaped wherever it is written.
    sources = [tag.get("src") or tag.get("href") or "" for tag in soup.find_all(["img", "a"])]
    assert sources and not any("//" in s or s.startswith("/") for s in sources)
    assert 'home <b>&"q' not in page and "home &lt;b&gt;&amp;&quot;q" in page


def labels_path(home: Path, image_id: int) -> str:
    return rows(home, "SELECT path FROM images WHERE id = :i", i=image_id)[0][0]
