"""curator train --distributed: two CPU processes under torchrun (gloo), against one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from classifier.checkpoint import load_model
from tests.helpers.training import FAST

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node"]


def torchrun(spawn, home: Path, *args: str, timeout: float = 600) -> tuple[int, str, str]:
    """``curator --home HOME train ARGS --distributed`` on two processes: (rc, out, err)."""
    proc = spawn(
        [*TORCHRUN, "2", "-m", "curator", "--home", str(home), "train", *args, "--distributed"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def test_two_processes_train_what_one_trains(cli, toy, spawn):
    options = [a if a != "3" else "4" for a in FAST]  # 4 epochs
    single = cli("train", *options, "--json")
    assert single.exit_code == 0, single.stderr
    one = json.loads(single.stdout)
    rc, out, err = torchrun(spawn, toy, *options, "--restart", "--json")
    assert rc == 0, err[-3000:]
    two = json.loads(out)  # rank 0 alone printed
    assert two["model"] != one["model"] and two["epochs"] == one["epochs"] == 4
    # One model registered for the two processes, finished, its files written once.
    models = {m["id"]: m for m in json.loads(cli("models", "--json").stdout)}
    assert len(models) == 2 and models[two["model"]]["status"] == "done"
    folder = Path(two["folder"])
    assert (folder / "model.pt").is_file() and not (folder / "last.pt").exists()
    meta = load_model(folder / "model.pt")[1]
    assert meta["machine"]["world_size"] == 2 and meta["training"]["batch_size"] == 16
    # Each process saw half of every epoch's batches, 8 pictures at a time: the same global
    # batch and number of steps, so the same learning, within what per-process BatchNorm
    # statistics and dropout change.
    for split in ("val", "test"):
        assert two["metrics"][split]["accuracy"] >= one["metrics"][split]["accuracy"] - 0.1
        assert two["metrics"][split]["loss"] == pytest.approx(
            one["metrics"][split]["loss"], abs=0.25
        )
    single_history = load_model(Path(one["folder"]) / "model.pt")[1]["history"]
    assert [round(h["lr"], 8) for h in meta["history"]] == [
        round(h["lr"], 8) for h in single_history
    ]  # the same schedule: as many optimiser steps per epoch
    weights = meta["model"]
    assert all(torch.isfinite(t).all() for t in weights.values() if t.is_floating_point())


def test_distributed_needs_torchrun_and_a_batch_that_splits(cli, toy, spawn):
    result = cli("train", *FAST, "--distributed")
    assert result.exit_code == 1 and "runs under torchrun" in result.stderr
    rc, _out, err = torchrun(spawn, toy, *[a if a != "16" else "15" for a in FAST], timeout=300)
    assert rc != 0 and "does not split into 2 processes" in err
    assert json.loads(cli("models", "--json").stdout) == []  # nothing registered
