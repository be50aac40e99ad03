"""curator score, the queues it feeds, curator explain and video scoring, with a real model
trained on tiny generated pictures (warm blobs: happy; cold blobs: unhappy)."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from curator.cli import app
from curator.config import load_settings
from tests.helpers import videofiles
from tests.helpers.catalog_copy import private_copy
from tests.helpers.sql import rows as catalog_rows
from tests.helpers.training import FAST, blob_picture

PER_CLASS = 48
#: Weak labels that are wrong: planted among the imported folders.
FLIPPED = {("happy", 3), ("happy", 17), ("happy", 31), ("unhappy", 5), ("unhappy", 22)}


def run(home: Path, *args: object):
    result = CliRunner().invoke(app, ["--home", str(home), *[str(a) for a in args]])
    return result


def rows(home: Path, sql: str, **params: object) -> list[tuple]:
    return catalog_rows(sql, load_settings(home=home).db_url, **params)


def decoded(value: str | list) -> list:
    """A JSON column as read back: text on SQLite, already decoded on PostgreSQL."""
    return value if isinstance(value, list) else json.loads(value)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A catalog imported from two labeled folders (a few labels wrong), and a model trained
    on those weak labels."""
    base = tmp_path_factory.mktemp("trained")
    home = base / "home"
    for truth, warm, seed in (("happy", True, 0), ("unhappy", False, 1000)):
        for i in range(PER_CLASS):
            folder = (
                ("unhappy" if truth == "happy" else "happy") if (truth, i) in FLIPPED else truth
            )
            (base / "in" / folder).mkdir(parents=True, exist_ok=True)
            blob_picture(seed + i, warm).save(base / "in" / folder / f"{truth}-{i}.jpg")
    for label in ("happy", "unhappy"):
        assert run(home, "import", base / "in" / label, "--label", label).exit_code == 0
    result = run(
        home,
        "train",
        "--include-weak",
        *FAST,
        "--augment",
        "light",
        "--lr",
        "2e-3",
        "--epochs",
        "5",
    )
    assert result.exit_code == 0, result.output
    return home


@pytest.fixture
def scored_home(trained, tmp_path, backend, new_db_url, monkeypatch) -> Path:
    """A private copy of the trained catalog, for tests that change it; on PostgreSQL, its
    catalog copied there with curator db copy."""
    return private_copy(trained, tmp_path / "home", backend, new_db_url, monkeypatch)


def truth_of(home: Path) -> dict[int, str]:
    """image id -> true class, from the imported file names."""
    out = {}
    for image_id, locator in rows(
        home, "SELECT image_id, locator FROM sources WHERE image_id IS NOT NULL"
    ):
        out[image_id] = Path(locator).name.split("-")[0]
    return out


@pytest.mark.backends
def test_score_writes_a_prediction_per_active_image_and_reruns_only_new(scored_home, tmp_path):
    result = run(scored_home, "score", "--json", "--workers", "0")
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout)
    active = rows(scored_home, "SELECT id FROM images WHERE status = 'active'")
    assert counts["scored"] == len(active) >= 2 * PER_CLASS - 4  # near copies grouped
    stored = rows(
        scored_home,
        "SELECT image_id, probs, predicted, confidence, margin, in_sample "
        "FROM predictions WHERE model_id = 1",
    )
    assert sorted(r[0] for r in stored) == sorted(r[0] for r in active)
    model = torch.load(scored_home / "models" / "1" / "model.pt", weights_only=True)
    train_ids = set(model["splits"]["train"])
    for image_id, probs, predicted, confidence, margin, in_sample in stored:
        p = decoded(probs)
        assert abs(sum(p) - 1) < 1e-4
        assert predicted == ("happy", "unhappy")[int(np.argmax(p))]
        assert confidence == pytest.approx(max(p), abs=1e-5)
        assert margin == pytest.approx(abs(p[0] - p[1]), abs=1e-5)
        assert bool(in_sample) == (image_id in train_ids)
    # Mostly right: the model learned warm from cold despite the planted wrong labels.
    truth = truth_of(scored_home)
    right = sum(predicted == truth[i] for i, _p, predicted, *_ in stored)
    assert right / len(stored) >= 0.85
    again = json.loads(run(scored_home, "score", "--json", "--workers", "0").stdout)
    assert again["scored"] == 0 and again["already_scored"] == len(active)
    # A new picture imported later: only it is scored.
    blob_picture(5000, True).save(tmp_path / "late.jpg")
    assert run(scored_home, "import", tmp_path / "late.jpg").exit_code == 0
    late = json.loads(run(scored_home, "score", "--json", "--workers", "0").stdout)
    assert late["scored"] == 1
    rescored = json.loads(run(scored_home, "score", "--rescore", "--json").stdout)
    assert rescored["scored"] == len(active) + 1
    assert len(rows(scored_home, "SELECT id FROM predictions")) == len(active) + 1


@pytest.mark.backends
def test_the_queues_rank_by_the_predictions(scored_home):
    assert run(scored_home, "queue", "uncertain").exit_code == 1  # no predictions yet
    assert run(scored_home, "score", "--workers", "0").exit_code == 0
    uncertain = json.loads(
        run(scored_home, "queue", "uncertain", "--limit", "500", "--json").stdout
    )
    margins = [item["prediction"]["margin"] for item in uncertain["items"]]
    groups = rows(scored_home, "SELECT count(*) FROM images WHERE status = 'active'")[0][0]
    assert len(margins) == groups  # no human label anywhere: every group
    assert margins == sorted(margins)
    disagree = json.loads(run(scored_home, "queue", "disagree", "--limit", "500", "--json").stdout)
    out_of_sample = {
        r[0] for r in rows(scored_home, "SELECT image_id FROM predictions WHERE in_sample = false")
    }
    items = disagree["items"]
    assert items and {item["id"] for item in items} == out_of_sample
    confidence_in_label = [item["prediction"]["probs"][item["label"]] for item in items]
    assert confidence_in_label == sorted(confidence_in_label)
    assert all(not item["prediction"]["in_sample"] for item in items)
    # No label came from a search query: that queue is empty, not an error.
    weak = json.loads(run(scored_home, "queue", "weak-disagree", "--json").stdout)
    assert weak["items"] == []
    # A person's decision takes an image out of both queues.
    first = items[0]["id"]
    assert run(scored_home, "label", first, "--as", "happy").exit_code == 0
    after = json.loads(run(scored_home, "queue", "disagree", "--limit", "500", "--json").stdout)
    assert first not in {item["id"] for item in after["items"]}
    text = run(scored_home, "queue", "disagree", "--limit", "3").stdout
    assert "model 1:" in text and "p of" in text


@pytest.mark.backends
def test_cross_fitting_puts_the_wrong_labels_first(scored_home):
    result = run(scored_home, "score", "--folds", "2", "--json", "--workers", "0")
    assert result.exit_code == 0, result.output
    outcome = json.loads(result.stdout)
    assert [f["fold"] for f in outcome["folds"]] == [0, 1]
    groups = rows(scored_home, "SELECT count(*) FROM images WHERE status = 'active'")[0][0]
    assert sum(f["held_out"] for f in outcome["folds"]) == groups
    # Each fold's model learned from the from-scratch recipe, with the options given to
    # model 1 (its --lr 2e-3 and --augment light), for enough steps for the fold's size (at
    # most 30 epochs: these folds are tiny), and says how well on its own val images.
    for fold in outcome["folds"]:
        ((stored, metrics, verdict, epochs),) = rows(
            scored_home,
            "SELECT training, metrics, verdict, epochs FROM models WHERE id = :m",
            m=fold["model"],
        )
        training = stored if isinstance(stored, dict) else json.loads(stored)
        metrics = metrics if isinstance(metrics, dict) else json.loads(metrics)
        assert training["recipe"] == "scratch" and training["epochs"] == epochs == 30
        assert (training["lr"], training["augment"], training["batch_size"]) == (2e-3, "light", 16)
        assert fold["val_accuracy"] == metrics["val"]["accuracy"] and fold["verdict"] == verdict
        assert fold["val_images"] == metrics["val"]["n"] > 0 and fold["epochs"] == 30
    assert (outcome["count"], outcome["rule"]) == (2, "as asked")
    # Every labeled image now has a prediction from a model that did not train on it.
    independent = rows(
        scored_home, "SELECT DISTINCT image_id FROM predictions WHERE in_sample = false"
    )
    assert len(independent) == groups
    statuses = rows(scored_home, "SELECT id, status FROM models ORDER BY id")
    assert statuses == [(1, "done"), (2, "cross-fit"), (3, "cross-fit")]
    # The default model is still the one trained by curator train.
    listing = run(scored_home, "models").stdout
    assert "1* done" in listing
    disagree = json.loads(run(scored_home, "queue", "disagree", "--limit", "10", "--json").stdout)
    truth = truth_of(scored_home)
    wrong = [item["id"] for item in disagree["items"] if item["label"] != truth[item["id"]]]
    # 5 wrong labels among ~96: random order would put about half of one in the top 10.
    assert len(wrong) >= 3, disagree["items"]
    # Each queue shows the prediction it ranks by: uncertain, the default model's (which has
    # to score the catalog first).
    assert run(scored_home, "queue", "uncertain").exit_code == 1
    assert run(scored_home, "score", "--workers", "0").exit_code == 0
    uncertain = json.loads(run(scored_home, "queue", "uncertain", "--limit", "20", "--json").stdout)
    assert {item["prediction"]["model"] for item in uncertain["items"]} == {1}
    assert {item["prediction"]["model"] for item in disagree["items"]} <= {2, 3}
    # A rerun keeps the folds it finished, and scores what was labeled since, with the fold
    # model that did not train on it.
    ramp = np.tile(np.linspace(0, 255, 120, dtype=np.uint8), (90, 1))
    late_picture = np.stack([ramp // 4, ramp // 2, ramp], axis=2)
    late_picture[20:60, 30:80] = (40, 120, 230)  # a cold blob on a ramp: like no other picture
    Image.fromarray(late_picture).save(scored_home.parent / "late.jpg")
    assert run(scored_home, "import", scored_home.parent / "late.jpg").exit_code == 0
    late = rows(scored_home, "SELECT max(id) FROM images")[0][0]
    assert run(scored_home, "label", late, "--as", "unhappy").exit_code == 0
    again = run(scored_home, "score", "--folds", "2")
    assert again.exit_code == 0, again.output
    for fold in outcome["folds"]:
        (line,) = [
            x for x in again.stdout.splitlines() if x.startswith(f"  fold {fold['fold'] + 1}:")
        ]
        assert line.startswith(f"  fold {fold['fold'] + 1}: model {fold['model']}, ")
        assert line.endswith(
            f"val accuracy {fold['val_accuracy'] * 100:.1f} % of {fold['val_images']} images "
            "after 30 epochs" + (", at chance" if fold["verdict"] == "chance" else "")
        )
    assert "(2 folds kept from an earlier run; 1 images new)" in again.stdout
    assert len(rows(scored_home, "SELECT id FROM models")) == 3
    assert rows(
        scored_home, "SELECT model_id, in_sample FROM predictions WHERE image_id = :id", id=late
    ) in ([(2, False)], [(3, False)])


def test_score_a_folder_to_csv_and_jsonl_with_bad_files(trained, tmp_path):
    new = tmp_path / "new"
    (new / "deeper").mkdir(parents=True)
    blob_picture(7000, True).save(new / "warm.jpg")
    blob_picture(7001, False).save(new / "deeper" / "cold.png")
    (new / "empty.jpg").write_bytes(b"")
    (new / "page.jpg").write_text("<!doctype html><html><body>gone</body></html>")
    data = io.BytesIO()
    blob_picture(7002, True).save(data, "JPEG")
    (new / "cut.jpg").write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    (new / "notes.txt").write_text("not an image name: not tried")
    odd = new / "caf\udce9.jpg"  # a name that is not UTF-8
    blob_picture(7003, False).save(odd)
    out = tmp_path / "out.csv"
    before = rows(trained, "SELECT count(*) FROM predictions")
    result = run(trained, "score", new, "--out", out, "--workers", "1")
    assert result.exit_code == 0, result.output
    table = list(csv.DictReader(out.open(encoding="utf-8")))
    by_name = {Path(r["path"]).name: r for r in table}
    assert set(by_name) == {
        "warm.jpg",
        "cold.png",
        "empty.jpg",
        "page.jpg",
        "cut.jpg",
        "caf\\xe9.jpg",
    }
    assert by_name["warm.jpg"]["predicted"] == "happy"
    assert by_name["cold.png"]["predicted"] == "unhappy"
    assert by_name["caf\\xe9.jpg"]["predicted"] == "unhappy"
    p = float(by_name["warm.jpg"]["p_happy"]) + float(by_name["warm.jpg"]["p_unhappy"])
    assert p == pytest.approx(1, abs=1e-4)
    assert by_name["empty.jpg"]["error"] == "zero-byte file"
    assert "HTML" in by_name["page.jpg"]["error"]
    assert "truncated" in by_name["cut.jpg"]["error"]
    assert by_name["cut.jpg"]["predicted"] == ""
    assert "3 unreadable" in result.stderr
    assert f"1 files in folders were neither pictures nor videos, not scored: {new}/notes.txt" in (
        result.stderr
    )
    # Scoring files leaves the catalog alone.
    assert rows(trained, "SELECT count(*) FROM predictions") == before
    # JSON Lines, on standard output when no --out is given.
    lines = run(trained, "score", new / "warm.jpg", new / "empty.jpg", "--format", "jsonl")
    records = [json.loads(line) for line in lines.stdout.splitlines()]
    assert records[0]["predicted"] == "happy" and set(records[0]["probs"]) == {"happy", "unhappy"}
    assert records[1]["error"] == "zero-byte file" and records[1]["probs"] is None


def test_files_are_scored_with_a_read_only_catalog_and_catalog_scoring_says_read_only(
    trained, tmp_path
):
    import subprocess
    import sys
    import tempfile

    from tests.helpers.readonly import MESSAGE, as_ordinary_user, fingerprint, set_writable

    base = Path(tempfile.mkdtemp(prefix="curator-ro-"))
    try:
        base.chmod(0o777)
        home = base / "home"
        shutil.copytree(trained, home)
        set_writable(home, False)
        (base / "new").mkdir(mode=0o755)
        for i in range(4):
            blob_picture(7100 + i, i % 2 == 0).save(base / "new" / f"{i}.jpg")
        before = fingerprint(home)
        env = {k: v for k, v in os.environ.items() if k != "CURATOR_DB_URL"}
        env["CURATOR_HOME"] = str(home)

        def curator(*args: object) -> subprocess.CompletedProcess[str]:
            command = as_ordinary_user([sys.executable, "-m", "curator", *map(str, args)])
            return subprocess.run(
                command, env=env, cwd=base, capture_output=True, text=True, timeout=300
            )

        done = curator("score", base / "new", "--workers", "0")
        assert done.returncode == 0, done.stderr
        theirs = list(csv.DictReader(io.StringIO(done.stdout)))
        ours = list(
            csv.DictReader(
                io.StringIO(run(trained, "score", base / "new", "--workers", "0").stdout)
            )
        )
        assert len(theirs) == 4 and theirs == ours
        refused = curator("score", "--workers", "0")
        assert refused.returncode == 1
        assert len(refused.stderr.strip().splitlines()) == 1 and MESSAGE in refused.stderr
        assert fingerprint(home) == before
    finally:
        set_writable(base / "home", True)
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.backends
def test_score_add_imports_and_keeps_the_predictions(scored_home, tmp_path):
    new = tmp_path / "new"
    new.mkdir()
    for i in range(3):
        blob_picture(8000 + i, i % 2 == 0).save(new / f"{i}.jpg")
    (new / "bad.jpg").write_text("nope")
    out = tmp_path / "added.jsonl"
    result = run(scored_home, "score", new, "--add", "--out", out, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["files"]["imported"]["added"] == 3
    assert summary["files"]["imported"]["failed"] == 1
    records = [json.loads(line) for line in out.read_text().splitlines()]
    ids = [r["image_id"] for r in records if r["error"] is None]
    assert len(ids) == 3 and all(isinstance(i, int) for i in ids)
    stored = {r[0] for r in rows(scored_home, "SELECT image_id FROM predictions")}
    assert set(ids) <= stored
    # Imported without a label: the uncertain queue now holds them.
    listed = json.loads(run(scored_home, "queue", "uncertain", "--limit", "500", "--json").stdout)
    assert set(ids) <= {item["id"] for item in listed["items"]}


def test_videos_in_a_scored_folder_are_scored_and_skipped_names_are_listed(trained, tmp_path):
    stills = tmp_path / "stills"
    stills.mkdir()
    for i in range(2):
        blob_picture(9400 + i, i == 0, size=(160, 120)).save(stills / f"s{i}.png")
    pictures = sorted(stills.iterdir())
    folder = tmp_path / "shoot"
    (folder / "day1").mkdir(parents=True)
    (folder / "day2").mkdir()
    blob_picture(9410, True).save(folder / "photo.jpg")
    videofiles.make_video(folder / "day1" / "clip.mp4", pictures)
    videofiles.make_video(folder / "day2" / "clip.MKV", pictures[::-1], seconds_each=1.5)
    skipped = ["a.txt", "b.doc", "c.pdf", "d.xmp", "e\x1bf.txt", "g.nfo", "h.srt"]
    for name in skipped:
        (folder / name).write_text("not a picture")
    out_dir = tmp_path / "frames"
    out_dir.mkdir()
    table = tmp_path / "photos.csv"
    result = run(
        trained, "score", folder, "--every", "0.5", "--out-dir", out_dir, "--out", table, "--json"
    )
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert found["files"]["files"] == 1 and found["files"]["scored"] == 1
    assert [r["path"] for r in csv.DictReader(table.open())] == [str(folder / "photo.jpg")]
    by_path = {Path(v["path"]).relative_to(folder).as_posix(): v for v in found["videos"]}
    assert set(by_path) == {"day1/clip.mp4", "day2/clip.MKV"}
    # Each as curator score VIDEO scores it.
    for name in by_path:
        alone = run(
            trained, "score", folder / name, "--every", "0.5", "--out-dir", tmp_path, "--json"
        )
        assert alone.exit_code == 0, alone.output
        expected = json.loads(alone.stdout)["videos"][0]
        assert {k: v for k, v in by_path[name].items() if k not in ("frames_csv", "timeline")} == {
            k: v for k, v in expected.items() if k not in ("frames_csv", "timeline")
        }
    # Two clips of one name in two folders: two sets of files, neither over the other.
    assert {Path(v["frames_csv"]).name for v in found["videos"]} == {
        "clip.frames.csv",
        "clip-2.frames.csv",
    }
    assert sorted(p.name for p in out_dir.iterdir()) == [
        "clip-2.frames.csv",
        "clip-2.timeline.png",
        "clip.frames.csv",
        "clip.timeline.png",
    ]
    assert found["files"]["ignored_names"] == 7
    # As text: the skipped names, the first five in the order found, escaped, then a count.
    text = run(trained, "score", folder, "--every", "0.5", "--out-dir", out_dir)
    assert text.exit_code == 0, text.output
    shown = ", ".join(str(folder / n).replace("\x1b", "\\x1b") for n in sorted(skipped)[:5])
    line = f"7 files in folders were neither pictures nor videos, not scored: {shown} and 2 more"
    assert line in text.stderr and "\x1b" not in text.stderr
    assert sum(": happy (" in ln or ": unhappy (" in ln for ln in text.stdout.splitlines()) == 2


def test_a_folder_of_videos_alone_writes_no_empty_table(trained, tmp_path):
    blob_picture(9420, False, size=(160, 120)).save(tmp_path / "s.png")
    folder = tmp_path / "films"
    folder.mkdir()
    videofiles.make_video(folder / "only.webm", [tmp_path / "s.png"], codec="libvpx")
    result = run(trained, "score", folder, "--out-dir", tmp_path)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{folder / 'only.webm'}: unhappy")
    assert "path,predicted" not in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "9"], "no model 9"),
        (["--folds", "1"], "at least 2 folds"),
        (["--every", "0"], "more than 0 seconds"),
        (["--out", "x.csv"], "give paths"),
        (["/no/such/folder"], "no such file or folder"),
        (["{folder}", "--out", "{folder}/x.txt"], "name it .csv or .jsonl"),
        (["{folder}", "--out", "/no/such/dir/x.csv"], "no such folder"),
        (["{folder}", "--folds", "2"], "give no paths"),
        (["--shard", "3/2"], "I must be from 1 to N"),
        (["--shard", "0/2"], "I must be from 1 to N"),
        (["--shard", "half"], "write it as I/N"),
        (["--shard", "1/2", "{folder}"], "give no paths or --folds"),
    ],
)
def test_bad_requests_are_one_line_errors(trained, tmp_path, args, message):
    blob_picture(1, True).save(tmp_path / "a.jpg")
    args = [a.replace("{folder}", str(tmp_path)) for a in args]
    result = run(trained, "score", *args)
    assert result.exit_code == 1
    assert message in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.glob("*.csv")) and not list(tmp_path.glob(".*partial"))


def test_no_model_and_a_missing_model_file(tmp_path, scored_home):
    home = tmp_path / "empty"
    blob_picture(1, True).save(tmp_path / "a.jpg")
    assert run(home, "import", tmp_path / "a.jpg").exit_code == 0
    result = run(home, "score")
    assert result.exit_code == 1 and "no trained model yet" in result.stderr
    (scored_home / "models" / "1" / "model.pt").unlink()
    result = run(scored_home, "score")
    assert result.exit_code == 1 and "model 1's file is missing" in result.stderr


def test_video_frames_timeline_and_verdict(trained, tmp_path):
    pictures = []
    for i in range(6):
        path = tmp_path / f"p{i}.png"
        blob_picture(9000 + i, i < 4, size=(160, 120)).save(path)
        pictures.append(path)
    video = videofiles.make_video(tmp_path / "clip.mp4", pictures, seconds_each=1.0, fps=10)
    result = run(trained, "score", video, "--every", "0.5", "--out-dir", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)["videos"][0]
    assert found["frames"] == 12 and found["duration"] == pytest.approx(6.0, abs=0.2)
    assert found["verdict"] == "happy"  # four seconds warm, two cold
    table = list(csv.DictReader((tmp_path / "clip.frames.csv").open()))
    assert [float(r["seconds"]) for r in table] == pytest.approx([i * 0.5 for i in range(12)])
    early = [r["predicted"] for r in table[:7]]
    late = [r["predicted"] for r in table[-3:]]
    assert early.count("happy") >= 6 and late.count("unhappy") >= 2
    with Image.open(tmp_path / "clip.timeline.png") as img:
        assert img.format == "PNG" and img.width > 500


def test_damaged_and_unsupported_videos(trained, tmp_path):
    pictures = []
    for i in range(4):
        blob_picture(9100 + i, i % 2 == 0, size=(160, 120)).save(tmp_path / f"p{i}.png")
        pictures.append(tmp_path / f"p{i}.png")
    # Matroska is written as it plays: cut in half, the first half still decodes.
    cut = videofiles.truncate(
        videofiles.make_video(tmp_path / "cut.mkv", pictures * 4, seconds_each=1.0), 0.6
    )
    result = run(trained, "score", cut, "--every", "0.5", "--out-dir", tmp_path)
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "is damaged at" in errors[0]
    kept = list(csv.DictReader((tmp_path / "cut.frames.csv").open()))
    assert 1 <= len(kept) < 32
    # MP4 keeps its index at the end: cut, it cannot be opened at all.
    whole = videofiles.make_video(tmp_path / "cut.mp4", pictures)
    videofiles.truncate(whole, 0.6)
    result = run(trained, "score", whole, "--out-dir", tmp_path)
    assert result.exit_code == 1 and "cannot be read as a video" in result.stderr
    fake = tmp_path / "fake.mov"
    fake.write_text("not a film")
    result = run(trained, "score", fake, "--out-dir", tmp_path)
    assert result.exit_code == 1 and "cannot be read as a video" in result.stderr
    assert "Traceback" not in result.output


def test_explain_writes_gradcam_and_the_state_of_activation(trained, tmp_path):
    picture = np.full((120, 160, 3), 40, dtype=np.uint8)
    picture[60:110, 100:150] = (230, 120, 40)  # one warm blob, bottom right
    Image.fromarray(picture).save(tmp_path / "warm.png")
    out = tmp_path / "why"
    result = run(trained, "explain", tmp_path / "warm.png", "--out", out, "--json")
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert found["predicted"] == "happy"
    names = sorted(Path(f).name for f in found["files"])
    assert names == ["warm.activations.png", "warm.gradcam-happy.png", "warm.gradcam-unhappy.png"]
    for f in found["files"]:
        with Image.open(f) as img:
            assert img.format == "PNG" and min(img.size) > 300
    # By catalog id: named after the image.
    assert run(trained, "explain", "1", "--out", out).exit_code == 0
    assert (out / "image-1.gradcam-happy.png").exists()


def test_gradcam_follows_its_definition(trained):
    """Each class's map is ReLU(sum_c mean(dlogit/dA_c) * A_c) over the last block's maps,
    upsampled bilinearly and scaled to 0-1: recomputed here with autograd, step by step."""
    import torch.nn.functional as F

    from classifier import images
    from classifier.checkpoint import load_model
    from classifier.explain import content_box, explain

    model, _state = load_model(trained / "models" / "1" / "model.pt")
    size = 96  # any size works (pyramid pooling); at 96 px the last block is 3 x 3
    rng = np.random.default_rng(0)
    picture = Image.fromarray(rng.integers(0, 255, (120, 200, 3), dtype=np.uint8))
    result = explain(model, picture, size, "pad")
    fitted = np.asarray(images.fit(picture, size, "pad"), dtype=np.float32)
    x = torch.from_numpy(fitted).permute(2, 0, 1)[None]
    x = (x - torch.tensor(images.MEAN).view(1, 3, 1, 1)) / torch.tensor(images.STD).view(1, 3, 1, 1)
    features = model.trunk(x).detach().requires_grad_(True)
    logits = model.forward_head(features)
    assert np.allclose(result.probs, torch.softmax(logits, 1)[0].tolist(), atol=1e-5)
    for k in range(2):
        (grad,) = torch.autograd.grad(logits[0, k], features, retain_graph=True)
        cam = (grad.mean(dim=(2, 3), keepdim=True) * features).sum(1, keepdim=True).clamp(min=0)
        cam = F.interpolate(cam, size=(size, size), mode="bilinear", align_corners=False)[0, 0]
        expected = (cam / cam.max()).detach().numpy() if cam.max() > 0 else cam.detach().numpy()
        assert result.cams[k].shape == (size, size)
        assert np.allclose(result.cams[k], expected, atol=1e-4)
    assert result.hidden.shape == (100,) and result.weights.shape == (2, 100)
    # A 200 x 120 picture padded to a square: the map is cut back to the picture's part.
    assert content_box((200, 120), size, "pad") == (0, 19, 96, 77)
    assert result.box == (0, 19, 96, 77)


@pytest.mark.parametrize(
    ("ref", "message"),
    [("9999", "no image with id"), ("{folder}", "is a folder"), ("{text}", "text, not an image")],
)
def test_explain_bad_input(trained, tmp_path, ref, message):
    (tmp_path / "t.jpg").write_text("plain words")
    ref = ref.replace("{folder}", str(tmp_path)).replace("{text}", str(tmp_path / "t.jpg"))
    result = run(trained, "explain", ref, "--out", tmp_path / "o")
    assert result.exit_code == 1 and message in result.stderr
    assert not (tmp_path / "o").exists()


def test_review_page_explains_on_the_e_key(scored_home):
    from db.catalog import open_catalog
    from tests.helpers.browser import ARGS, CHROMIUM, ensure_chromium
    from tests.helpers.review_server import review_server

    ensure_chromium()
    from playwright.sync_api import sync_playwright

    catalog = open_catalog(f"sqlite:///{scored_home / 'catalog.db'}")
    try:
        with review_server(catalog, scored_home) as base, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            tab = browser.new_page(viewport={"width": 1280, "height": 900}, bypass_csp=True)
            tab.goto(f"{base}/?queue=all")
            tab.wait_for_function("document.body.dataset.ready === 'true'", timeout=20_000)
            tab.keyboard.press("e")
            tab.wait_for_function(
                "(() => { const b = document.querySelector('#big');"
                " return b.dataset.explain === 'true' && b.complete && b.naturalWidth > 300"
                " && b.src.includes('/api/explain/1.png'); })()",
                timeout=30_000,
            )
            tab.keyboard.press("s")  # the next image: explained too
            tab.wait_for_function(
                "document.querySelector('#big').src.includes('/api/explain/2.png')"
            )
            tab.keyboard.press("e")  # back to the pictures
            tab.wait_for_function("document.querySelector('#big').src.includes('/originals/')")
            browser.close()
    finally:
        catalog.dispose()
    cached = sorted(p.name for p in (scored_home / "cache" / "explain" / "1").iterdir())
    assert cached == ["1.png", "2.png"]
    with Image.open(scored_home / "cache" / "explain" / "1" / "1.png") as img:
        assert img.format == "PNG"


def test_the_review_page_names_its_model_and_offers_the_models_suggestion(scored_home):
    import sqlite3
    import urllib.request

    from db.catalog import open_catalog
    from tests.helpers.browser import ARGS, CHROMIUM, ensure_chromium
    from tests.helpers.review_server import review_server

    ensure_chromium()
    from playwright.sync_api import sync_playwright

    (model,) = rows(scored_home, "SELECT max(id) FROM models WHERE status = 'done'")[0]
    catalog = open_catalog(f"sqlite:///{scored_home / 'catalog.db'}")
    try:
        with review_server(catalog, scored_home) as base, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            tab = browser.new_page(viewport={"width": 1280, "height": 900})
            # Before scoring: the default model has scored nothing, and the page says so.
            tab.goto(f"{base}/?queue=uncertain")
            tab.locator("body[data-ready='true']").wait_for(timeout=20_000)
            assert tab.locator("#model").inner_text() == f"model {model}"
            assert f"model {model}" in tab.locator("#empty").inner_text()
            assert "curator score" in tab.locator("#empty").inner_text()
            assert run(scored_home, "score", "--workers", "0").exit_code == 0
            tab.goto(f"{base}/?queue=uncertain")
            tab.locator("body[data-ready='true']").wait_for(timeout=20_000)
            panel = tab.locator("#prediction").inner_text()
            assert panel.startswith(f"model {model}: ")
            # Grad-CAM explains the model the panel names.
            tab.keyboard.press("e")
            tab.locator("#big[data-explain='true']").wait_for(timeout=30_000)
            assert f"?model={model}" in (tab.locator("#big").get_attribute("src") or "")
            tab.keyboard.press("e")
            tab.keyboard.press("g")
            tab.locator("#grid:not([hidden]) .tile .guess").first.wait_for()
            guesses = tab.locator(".tile .guess").all_inner_texts()
            ids = [int(t) for t in tab.locator(".tile").evaluate_all(
                "(ts) => ts.slice(0, 3).map((t) => t.dataset.imageId)")]  # fmt: skip
            assert len(guesses) == len(tab.locator(".tile").all()) and "%" in guesses[0]
            for _ in range(2):
                tab.keyboard.press("Shift+ArrowRight")
            tab.keyboard.press("y")  # the model's suggestion for the three selected
            tab.locator("body[data-busy='false']").wait_for()
            browser.close()
            answer = urllib.request.urlopen(f"{base}/api/explain/{ids[0]}.png?model={model}")
            png = Image.open(io.BytesIO(answer.read())).convert("RGB")
    finally:
        catalog.dispose()
    with sqlite3.connect(scored_home / "catalog.db") as db:
        taken = db.execute(
            "SELECT image_id, label FROM label_events WHERE origin = 'human' ORDER BY image_id"
        ).fetchall()
        predicted = dict(
            db.execute(f"SELECT image_id, predicted FROM predictions WHERE model_id = {model}")
        )
    assert sorted(i for i, _ in taken) == sorted(ids)
    assert all(label == predicted[i] for i, label in taken)
    # The figure sits on the page's own background, with its colour scale beside it.
    corners = [png.getpixel(xy) for xy in ((0, 0), (png.width - 1, png.height - 1))]
    assert all(max(c) < 60 for c in corners), corners
    right = png.crop((int(png.width * 0.8), 0, png.width, png.height))
    colours = right.getcolors(maxcolors=1_000_000) or []
    reds = sum(n for n, (r, g, b) in colours if r > 180 and g < 80 and b < 80)
    blues = sum(n for n, (r, g, b) in colours if b > 120 and r < 60 and g < 80)
    assert reds > 50 and blues > 50  # the jet scale, from blue to red


def test_a_flood_of_explanations_is_answered_and_leaves_the_page_responsive(scored_home):
    import concurrent.futures
    import urllib.error
    import urllib.request

    from db.catalog import open_catalog
    from tests.helpers.review_server import review_server

    def fetch(url: str) -> int:
        try:
            with urllib.request.urlopen(url, timeout=120) as answer:
                answer.read()
                return answer.status
        except urllib.error.HTTPError as exc:
            return exc.code

    catalog = open_catalog(f"sqlite:///{scored_home / 'catalog.db'}")
    try:
        with review_server(catalog, scored_home) as base:
            urls = [f"{base}/api/explain/{i}.png" for i in range(1, 58)]  # e on 57 images
            with concurrent.futures.ThreadPoolExecutor(57) as pool:
                flood = [pool.submit(fetch, u) for u in urls]
                state = fetch(f"{base}/api/state")
                statuses = [f.result() for f in flood]
    finally:
        catalog.dispose()
    assert state == 200
    assert set(statuses) <= {200, 404, 429} and statuses.count(200) >= 1


def test_grad_cam_refuses_a_stored_file_that_links_out_of_the_store(scored_home, tmp_path):
    from db.catalog import open_catalog
    from tests.helpers.review_server import review_client

    (path,) = catalog_rows(
        "SELECT path FROM images WHERE id = 1", f"sqlite:///{scored_home}/catalog.db"
    )[0]
    outside = tmp_path / "elsewhere.jpg"
    shutil.copyfile(scored_home / path, outside)
    (scored_home / path).unlink()
    (scored_home / path).symlink_to(outside)
    catalog = open_catalog(f"sqlite:///{scored_home / 'catalog.db'}")
    try:
        client = review_client(catalog, scored_home)
        assert client.get("/api/explain/1.png").status_code == 404
        assert client.get("/api/explain/2.png").status_code == 200
    finally:
        catalog.dispose()


@pytest.mark.backends
def test_ranked_queue_pages_skip_nothing_while_images_are_labeled(scored_home):
    from db.catalog import open_catalog
    from tests.helpers.review_server import review_client

    assert run(scored_home, "score", "--workers", "0").exit_code == 0
    everything = json.loads(
        run(scored_home, "queue", "uncertain", "--limit", "500", "--json").stdout
    )
    order = [item["id"] for item in everything["items"]]
    catalog = open_catalog(load_settings(home=scored_home).db_url)
    try:
        client = review_client(catalog, scored_home, author="tester")
        seen: list[int] = []
        after: object = 0
        while after is not None and len(seen) < 30:
            page = client.get("/api/queue/uncertain", params={"limit": 5, "after": after}).json()
            ids = [item["id"] for item in page["items"]]
            seen += ids
            # Label the whole page: it leaves the queue, and the next page must not skip.
            answer = client.post("/api/label", json={"ids": ids, "label": "happy"})
            assert answer.status_code == 200
            after = page["next"]
        assert seen == order[: len(seen)] and len(seen) == 30
        assert client.get("/api/queue/uncertain", params={"after": "nonsense"}).status_code == 400
    finally:
        catalog.dispose()


def test_an_interrupted_output_never_replaces_a_complete_one(tmp_path):
    from curator.learn.outputs import open_output

    out = tmp_path / "preds.csv"
    out.write_text("path,predicted\na.jpg,happy\n")
    with pytest.raises(KeyboardInterrupt), open_output(out) as fh:
        fh.write("path,predicted\nb.jpg,unhappy\n")
        raise KeyboardInterrupt
    assert out.read_text() == "path,predicted\na.jpg,happy\n"
    assert (tmp_path / "preds.csv.partial").read_text() == "path,predicted\nb.jpg,unhappy\n"
    with open_output(out) as fh:
        fh.write("done\n")
    assert out.read_text() == "done\n"


def test_an_interrupted_folder_scoring_continues_from_its_partial(trained, tmp_path, spawn):
    import signal
    import subprocess
    import sys
    import time

    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(160):
        blob_picture(20_000 + i, i % 3 == 0, size=(64, 48)).save(folder / f"{i:03d}.jpg")
    (folder / "broken.jpg").write_bytes(b"not a picture")
    # A named pipe in place of one picture holds the run there (reading it waits for a
    # writer), so that the interrupt lands half way however fast the machine scores.
    stuck = folder / "100.jpg"
    stuck.unlink()
    os.mkfifo(stuck)
    out = tmp_path / "preds.csv"
    hidden = tmp_path / ".preds.csv.partial"
    env = {**os.environ, "CURATOR_HOME": str(trained)}
    env.pop("CURATOR_DB_URL", None)
    command = [sys.executable, "-m", "curator", "score", str(folder), "--out", str(out)]
    command += ["--batch-size", "4", "--workers", "0"]
    proc = spawn(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if hidden.exists() and hidden.read_text().count("\n") == 1 + 100:  # 000 to 099
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    kept = list(csv.reader((tmp_path / "preds.csv.partial").open(encoding="utf-8")))
    header, done = kept[0], kept[1:]
    assert [Path(r[0]).name for r in done] == [f"{i:03d}.jpg" for i in range(100)]
    assert not out.exists()
    assert f"the 100 rows written are kept in {tmp_path / 'preds.csv.partial'}" in err
    stuck.unlink()
    blob_picture(20_100, False, size=(64, 48)).save(stuck)
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert f"continuing {tmp_path / 'preds.csv.partial'}: 100 files" in again.stderr
    assert "scored 160 of 161 files" in again.stderr and "1 unreadable" in again.stderr
    final = list(csv.reader(out.open(encoding="utf-8")))
    assert final[0] == header and final[1:101] == done  # kept as they were written
    # Every file once, as an uninterrupted run scores them.
    straight = tmp_path / "straight.csv"
    whole = run(trained, "score", folder, "--out", straight, "--workers", "0")
    assert whole.exit_code == 0, whole.output
    expected = list(csv.reader(straight.open(encoding="utf-8")))
    assert [r[0] for r in final] == [r[0] for r in expected]  # the same files, in one order
    for ours, theirs in zip(final[1:], expected[1:], strict=True):
        assert ours[1] == theirs[1] and ours[-1] == theirs[-1]  # predicted, error
        for a, b in zip(ours[2:-1], theirs[2:-1], strict=True):
            assert a == b or abs(float(a) - float(b)) < 1e-4
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []


def test_a_partial_of_another_model_is_not_continued(trained, tmp_path):
    from curator.learn.outputs import open_output

    blob_picture(30_001, True).save(tmp_path / "a.jpg")
    out = tmp_path / "preds.csv"
    # An interrupted run of model 99 left its rows, with a wrong prediction for a.jpg.
    with pytest.raises(KeyboardInterrupt), open_output(out, {"model": 99}) as fh:
        fh.write(f"path,predicted,confidence,p_happy,p_unhappy,error\n{tmp_path}/a.jpg,unhappy\n")
        raise KeyboardInterrupt
    result = run(trained, "score", tmp_path / "a.jpg", "--out", out)
    assert result.exit_code == 0, result.output
    assert "was written by another model or in another format" in result.stderr
    table = list(csv.DictReader(out.open(encoding="utf-8")))
    assert len(table) == 1 and table[0]["predicted"] == "happy"
    assert not (tmp_path / "preds.csv.partial").exists()


def test_add_with_a_bad_out_imports_nothing(trained, tmp_path):
    blob_picture(4242, True).save(tmp_path / "new.jpg")
    before = rows(trained, "SELECT count(*) FROM images")
    result = run(trained, "score", tmp_path, "--add", "--out", tmp_path / "no" / "x.csv")
    assert result.exit_code == 1 and "no such folder" in result.stderr
    assert rows(trained, "SELECT count(*) FROM images") == before


def test_sound_longer_than_the_film_is_not_damage_and_one_bad_video_stops_none(trained, tmp_path):
    pictures = []
    for i in range(2):
        blob_picture(9300 + i, True, size=(160, 120)).save(tmp_path / f"p{i}.png")
        pictures.append(tmp_path / f"p{i}.png")
    film = videofiles.make_video(tmp_path / "talk.mkv", pictures, sound_seconds=5.0)
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a film")
    result = run(trained, "score", bad, film, "--every", "0.5", "--out-dir", tmp_path, "--json")
    assert result.exit_code == 1
    found = json.loads(result.stdout)["videos"]
    assert "cannot be read as a video" in found[0]["error"]
    assert found[1]["frames"] == 4 and found[1]["damage"] is None
    assert (tmp_path / "talk.frames.csv").exists()
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "bad.mp4" in errors[0]


@pytest.mark.backends
def test_two_shards_at_once_score_what_one_process_scores(scored_home, tmp_path, spawn, new_db_url):
    """Two processes, each scoring its shard of the catalog into the same catalog at the same
    time, store the same predictions as one process scoring everything."""
    import subprocess
    import sys

    one = tmp_path / "one"
    shutil.copytree(scored_home, one)
    one_url = new_db_url(one)
    if not one_url.startswith("sqlite"):
        source = load_settings(home=scored_home).db_url
        assert run(one, "db", "copy", source, one_url).exit_code == 0
    assert run(one, "--db-url", one_url, "score", "--workers", "0").exit_code == 0
    procs = [
        spawn(
            [
                sys.executable,
                "-m",
                "curator",
                "--home",
                str(scored_home),
                "score",
                "--shard",
                f"{i}/2",
                "--workers",
                "0",
                "--json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in (1, 2)
    ]
    outputs = [proc.communicate(timeout=300) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), [err for _o, err in outputs]
    counts = [json.loads(out) for out, _e in outputs]
    assert [c["shard"] for c in counts] == ["1/2", "2/2"]
    active = rows(scored_home, "SELECT count(*) FROM images WHERE status = 'active'")[0][0]
    assert counts[0]["scored"] + counts[1]["scored"] == active
    assert min(c["scored"] for c in counts) >= active // 4  # the hash spreads the ids
    sql = "SELECT image_id, probs, predicted, in_sample FROM predictions ORDER BY image_id"
    sharded, single = rows(scored_home, sql), catalog_rows(sql, one_url)
    assert [r[0] for r in sharded] == [r[0] for r in single]
    for (image_id, probs, predicted, in_sample), twin in zip(sharded, single, strict=True):
        assert (predicted, in_sample) == (twin[2], twin[3]), image_id
        assert decoded(probs) == pytest.approx(decoded(twin[1]), abs=1e-4), image_id
    # A shard run again has nothing left to do; the other shard's images are not its own.
    again = json.loads(run(scored_home, "score", "--shard", "1/2", "--json").stdout)
    assert again["scored"] == 0 and again["already_scored"] == counts[0]["scored"]
