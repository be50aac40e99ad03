"""kill -9 in the middle of `curator train` and of `curator score`, then the same command
again: the model resumes and ends as an uninterrupted one, the scores are all there once."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from classifier.checkpoint import load_model
from curator.cli import app
from tests.faults.consistency import assert_consistent, assert_no_run_left_running
from tests.helpers.sql import rows
from tests.helpers.training import FAST, blob_picture

pytestmark = pytest.mark.slow

EPOCHS = ["--epochs", "4"]


def run(home: Path, *args: object):
    return CliRunner().invoke(app, ["--home", str(home), *[str(a) for a in args]])


def url(home: Path) -> str:
    return f"sqlite:///{home / 'catalog.db'}"


@pytest.fixture(scope="module")
def labeled(tmp_path_factory) -> Path:
    """A catalog of 90 warm and 90 cold pictures with their labels."""
    base = tmp_path_factory.mktemp("labeled")
    for label, warm, seed in (("happy", True, 0), ("unhappy", False, 1000)):
        for i in range(90):
            (base / "in" / label).mkdir(parents=True, exist_ok=True)
            blob_picture(seed + i, warm).save(base / "in" / label / f"{i}.jpg")
        assert run(base / "home", "import", base / "in" / label, "--label", label).exit_code == 0
    return base / "home"


def curator(spawn, home: Path, *args: str) -> subprocess.Popen:
    return spawn(
        [sys.executable, "-m", "curator", "--home", str(home), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def kill_when(proc: subprocess.Popen, ready, what: str) -> None:
    """kill -9 the command's whole process group as soon as `ready()` holds."""
    deadline = time.monotonic() + 300
    while not ready() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, f"{what} ended before it could be killed"
    assert ready(), f"{what} never got there"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)


def test_kill_9_during_training_then_the_same_command_resumes_it(labeled, tmp_path, spawn):
    home = tmp_path / "home"
    shutil.copytree(labeled, home)
    folder = home / "models" / "1"
    proc = curator(spawn, home, "train", "--include-weak", *FAST, *EPOCHS)
    # Killed in epoch 3 or later: two checkpoints on disk, the model row says "training".
    kill_when(proc, lambda: (folder / "previous.pt").exists(), "training")
    assert rows("SELECT id, status FROM models", url(home)) == [(1, "training")]
    rerun = curator(spawn, home, "train", "--include-weak", *FAST, *EPOCHS, "--json")
    out, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err.decode()
    report = json.loads(out)
    assert report["resumed_from"] in (2, 3, 4) and report["epochs"] == 4
    assert f"resuming model 1 after epoch {report['resumed_from'] - 1}" in err.decode()
    assert rows("SELECT id, status, epochs FROM models", url(home)) == [(1, "done", 4)]
    assert rows("SELECT kind, status FROM runs WHERE kind = 'train' ORDER BY id", url(home)) == [
        ("train", "interrupted"),
        ("train", "done"),
    ]
    assert sorted(p.name for p in folder.glob("*.pt")) == ["model.pt"]
    # The model is the one an uninterrupted run trains, bit for bit.
    whole = tmp_path / "whole"
    shutil.copytree(labeled, whole)
    assert run(whole, "train", "--include-weak", *FAST, *EPOCHS).exit_code == 0
    resumed = load_model(folder / "model.pt")[1]["model"]
    for name, tensor in load_model(whole / "models" / "1" / "model.pt")[1]["model"].items():
        assert torch.equal(tensor, resumed[name]), name
    assert_consistent(home)
    assert_no_run_left_running(url(home))


def test_kill_9_during_scoring_then_the_same_command_scores_the_rest(labeled, tmp_path, spawn):
    home = tmp_path / "home"
    shutil.copytree(labeled, home)
    assert run(home, "train", "--include-weak", *FAST, "--epochs", "2").exit_code == 0
    # New pictures, unlabeled: enough that scoring writes several times (every 256 images).
    for i in range(600):
        (tmp_path / "new").mkdir(exist_ok=True)
        blob_picture(5000 + i, i % 2 == 0).save(tmp_path / "new" / f"{i}.jpg")
    assert run(home, "import", tmp_path / "new").exit_code == 0
    whole = tmp_path / "whole"
    shutil.copytree(home, whole)
    score = ["score", "--batch-size", "1", "--workers", "0"]
    proc = curator(spawn, home, *score)
    count = "SELECT count(*) FROM predictions"
    kill_when(proc, lambda: rows(count, url(home))[0][0] > 0, "scoring")
    partial = rows(count, url(home))[0][0]
    active = rows("SELECT count(*) FROM images WHERE status = 'active'", url(home))[0][0]
    assert 0 < partial < active
    rerun = curator(spawn, home, *score, "--json")
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err.decode()
    counts = json.loads(out)
    assert (
        counts["already_scored"] >= partial
        and counts["scored"] == active - counts["already_scored"]
    )
    assert run(whole, *score).exit_code == 0
    sql = "SELECT image_id, predicted, probs, in_sample FROM predictions ORDER BY image_id"
    resumed, uninterrupted = rows(sql, url(home)), rows(sql, url(whole))
    assert [r[:2] for r in resumed] == [r[:2] for r in uninterrupted]
    for (image_id, _p, probs, in_sample), twin in zip(resumed, uninterrupted, strict=True):
        assert json.loads(probs) == pytest.approx(json.loads(twin[2]), abs=1e-5), image_id
        assert in_sample == twin[3]
    assert rows("SELECT status FROM runs WHERE kind = 'score' ORDER BY id", url(home)) == [
        ("interrupted",),
        ("done",),
    ]
    assert_consistent(home)


def test_a_damaged_checkpoint_is_set_aside_and_the_run_goes_on_from_the_one_before(
    labeled, tmp_path, spawn
):
    home = tmp_path / "home"
    shutil.copytree(labeled, home)
    folder = home / "models" / "1"
    proc = curator(spawn, home, "train", "--include-weak", *FAST, *EPOCHS)
    kill_when(proc, lambda: (folder / "previous.pt").exists(), "training")
    previous_epoch = torch.load(folder / "previous.pt", weights_only=True)["epoch"]
    (folder / "last.pt").write_bytes(b"\0" * 4096)  # a torn write, a bad sector
    rerun = curator(spawn, home, "train", "--include-weak", *FAST, *EPOCHS, "--json")
    out, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err.decode()
    assert "warning: the checkpoint" in err.decode() and "set aside as last.pt.damaged" in (
        err.decode()
    )
    assert json.loads(out)["resumed_from"] == previous_epoch + 1
    assert (folder / "last.pt.damaged").read_bytes() == b"\0" * 4096  # kept, not deleted
    # Both damaged: the model starts over, and says so.
    proc = curator(spawn, home, "train", "--include-weak", *FAST, *EPOCHS, "--restart")
    folder = home / "models" / "2"
    kill_when(proc, lambda: (folder / "previous.pt").exists(), "training")
    for name in ("last.pt", "previous.pt"):
        (folder / name).write_bytes(b"PK\x03\x04 not a checkpoint")
    again = curator(spawn, home, "train", "--include-weak", *FAST, *EPOCHS, "--json")
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, err.decode()
    assert err.decode().count("warning: the checkpoint") == 2
    assert json.loads(out)["resumed_from"] is None and json.loads(out)["model"] == 2
    assert "Traceback" not in err.decode()
    assert_consistent(home)


def test_a_damaged_model_file_is_one_clear_error_for_every_command_that_reads_it(labeled, tmp_path):
    home = tmp_path / "home"
    shutil.copytree(labeled, home)
    # Two epochs, as in the scoring test above: a model that learned, so the default one.
    assert run(home, "train", "--include-weak", *FAST, "--epochs", "2").exit_code == 0
    (home / "models" / "1" / "model.pt").write_bytes(b"\x80\x02garbage")
    damaged = home / "models" / "1" / "model.pt"
    for args in (
        ("score",),
        ("explain", "1"),
        ("train", "--include-weak", *FAST, "--weights", damaged),
    ):
        result = run(home, *args)
        assert result.exit_code == 1, (args, result.output)
        assert "damaged" in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert rows("SELECT count(*) FROM predictions", url(home)) == [(0,)]
