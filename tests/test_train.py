"""DeepConnection and curator train on tiny generated images."""

from __future__ import annotations

import json
import platform
import random
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from bs4 import BeautifulSoup

from classifier import train as train_mod
from classifier.checkpoint import load_model
from classifier.device import cpu_has_bf16
from classifier.metrics import classification_metrics, expected_calibration_error, roc_auc
from classifier.model import DeepConnection, ModelConfig
from tests.helpers.sql import rows
from tests.helpers.training import FAST, blob_picture


@pytest.mark.parametrize("backbone", ["resnet18", "resnet34", "resnet50"])
@pytest.mark.parametrize("size", [32, 97, 224])
def test_forward_at_any_size(backbone, size):
    if backbone == "resnet50" and size == 224:
        pytest.skip("the same path as 97 px, only slower")
    model = DeepConnection(ModelConfig(backbone=backbone, image_size=size)).eval()
    with torch.inference_mode():
        assert model(torch.randn(2, 3, size, size)).shape == (2, 2)


@pytest.mark.parametrize(("head", "features"), [("gap", 512), ("spp", 43_520), ("spp-pmt", 87_040)])
def test_the_three_heads_of_the_ablation(head, features):
    model = DeepConnection(ModelConfig(backbone="resnet34", head=head))
    assert model.head_features == features
    model.train()
    out = model(torch.randn(4, 3, 64, 64))
    assert out.shape == (8, 4, 2)  # one set of logits per dropout sample
    loss = model.loss(out, torch.tensor([0, 1, 0, 1]))
    assert loss.shape == () and torch.isfinite(loss)


def test_the_reference_size_at_512_px():
    model = DeepConnection(ModelConfig())  # resnet34, spp-pmt
    counts = model.parameter_counts()
    assert model.head_features == 87_040
    assert round(counts["head"] / 1e6, 2) == 8.70
    assert round(counts["trunk"] / 1e6, 1) == 21.3 and round(counts["total"] / 1e6, 1) == 30.0
    with torch.inference_mode():
        assert model.eval()(torch.randn(1, 3, 512, 512)).shape == (1, 2)


def test_metrics_against_brute_force():
    rng = np.random.default_rng(3)
    target = rng.integers(0, 2, 300)
    score = np.clip(target * 0.3 + rng.random(300) * 0.8, 0, 1).round(2)  # with ties
    pos, neg = score[target == 1], score[target == 0]
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert abs(roc_auc(score, target == 1) - pairs) < 1e-12
    probs = np.stack([1 - score, score], axis=1)
    m = classification_metrics(probs, target, ["a", "b"])
    assert m["confusion"][0][0] + m["confusion"][1][1] == round(m["accuracy"] * 300)
    sure = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert expected_calibration_error(sure, np.array([0, 1])) == 0.0
    assert expected_calibration_error(sure, np.array([1, 0])) == 1.0


def test_a_learnable_toy_set_is_learned(cli, toy):
    # 7 epochs: the check for a run that is not learning comes after the third, past the
    # warm-up epoch's noise on 18 val pictures in fp32 as in bf16.
    result = cli("train", *FAST, "--epochs", "7", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["metrics"]["test"]["accuracy"] >= 0.85
    assert report["metrics"]["val"]["roc_auc"] >= 0.9
    # --weights none took the from-scratch recipe; the options given won, and the first line
    # says so; the record keeps the recipe whole, and which options were given.
    assert result.stderr.splitlines()[0] == (
        "recipe: from scratch (--weights none): epochs 7 (given), batch 16 (given), lr 2e-3, "
        "weight decay 0.05, warm-up 1 epoch, augment light, patience 3"
    )
    ((stored,),) = rows("SELECT training FROM models WHERE id = :m", m=report["model"])
    stored = stored if isinstance(stored, dict) else json.loads(stored)
    assert stored["recipe"] == "scratch" and stored["given"] == ["epochs", "batch_size"]
    assert (stored["epochs"], stored["batch_size"], stored["lr"], stored["augment"]) == (
        7, 16, 2e-3, "light"
    )  # fmt: skip
    assert load_model(Path(report["folder"]) / "model.pt")[1]["training"] == stored
    # It learned, says so, and is not warned about.
    assert report["verdict"]["verdict"] == "learned" and "warning" not in result.stderr
    folder = Path(report["folder"])
    assert (folder / "model.pt").is_file() and (folder / "report.html").is_file()
    assert (folder / "curves.png").is_file() and (folder / "roc.png").is_file()
    assert not (folder / "last.pt").exists()
    # Mixed precision where this CPU has bf16 in hardware; emulated, it is many times slower.
    precision = "bfloat16" if cpu_has_bf16() else "float32"
    assert f"cpu / {precision}" in (folder / "report.html").read_text()
    listed = json.loads(cli("models", "--json").stdout)
    assert listed[0]["id"] == report["model"] and listed[0]["status"] == "done"
    assert listed[0]["verdict"] == "learned" and listed[0]["default"]
    assert "*" in cli("models").stdout


def test_a_checkpoint_round_trips(cli, toy):
    report = json.loads(cli("train", *FAST, "--epochs", "1", "--json").stdout)
    model, meta = load_model(Path(report["folder"]) / "model.pt")
    assert meta["classes"] == ["happy", "unhappy"] and meta["config"]["backbone"] == "resnet18"
    assert set(meta["splits"]) == {"train", "val", "test"}
    assert not set(meta["splits"]["train"]) & set(meta["splits"]["test"])
    assert meta["versions"]["torch"] == torch.__version__ and meta["versions"]["curator"]
    x = torch.randn(3, 3, 48, 48)
    again, _ = load_model(Path(report["folder"]) / "model.pt")
    with torch.inference_mode():
        assert torch.equal(model(x), again(x))


def test_an_interrupted_run_resumes(cli, toy, monkeypatch):
    real = train_mod.train_one_epoch
    calls = {"n": 0}

    def interrupted_in_epoch_two(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod, "train_one_epoch", interrupted_in_epoch_two)
    assert cli("train", *FAST).exit_code == 130
    assert json.loads(cli("models", "--json").stdout)[0]["status"] == "interrupted"
    monkeypatch.setattr(train_mod, "train_one_epoch", real)
    # Settings that change only the speed (workers, the memory cache) may differ on resume.
    report = json.loads(cli("train", *FAST, "--cache-mb", "0", "--json").stdout)
    assert report["resumed_from"] == 2 and report["epochs"] == 3
    assert json.loads(cli("models", "--json").stdout)[0]["status"] == "done"
    assert len(json.loads(cli("models", "--json").stdout)) == 1  # the same model, finished
    # The report and the model file name the weights the run started from, not the
    # checkpoint it resumed from.
    folder = Path(report["folder"])
    assert load_model(folder / "model.pt")[1]["weights"] == "random initialisation"
    facts = {
        tr.th.get_text(): tr.td.get_text()
        for tr in BeautifulSoup((folder / "report.html").read_text(), "html.parser").select(
            "table tr"
        )
        if tr.th is not None and tr.td is not None
    }
    assert facts["starting weights"] == "random initialisation"
    assert facts["resumed"] == "after epoch 1, where a run was interrupted"
    # The resumed model is the model an uninterrupted run trains, bit for bit: data order,
    # augmentation and dropout all go on where they stopped.
    whole = json.loads(cli("train", *FAST, "--restart", "--json").stdout)
    resumed = load_model(Path(report["folder"]) / "model.pt")[1]["model"]
    for name, tensor in load_model(Path(whole["folder"]) / "model.pt")[1]["model"].items():
        assert torch.equal(tensor, resumed[name]), name


def test_clear_errors(cli, home, tmp_path, monkeypatch):
    result = cli("train", *FAST)
    assert result.exit_code == 1 and "no labeled images (with a human label)" in result.stderr
    for i in range(12):
        blob_picture(i, True).save(tmp_path / f"{i}.jpg")
    cli("import", tmp_path, "--label", "happy")
    result = cli("train", *FAST, "--include-weak")
    assert "a classifier needs at least two classes" in result.stderr
    result = cli("train", *FAST, "--backbone", "vgg")
    assert result.exit_code == 1 and "--backbone 'vgg'" in result.stderr


def test_a_device_this_machine_lacks_is_refused_before_anything_is_written(cli, toy):
    """No CUDA GPU and no Apple GPU here (a machine that has one skips those): refused in one
    line that names the devices there are, with no model row, folder or run written."""
    devices = ["cuda:99", "tpu", "cpu:1"]
    devices += [] if torch.cuda.is_available() else ["cuda", "cuda:3"]
    devices += [] if torch.backends.mps.is_available() else ["mps"]
    for device in devices:
        result = cli("train", *FAST, "--device", device)
        assert result.exit_code == 1, (device, result.output)
        assert result.stderr.count("\n") == 1 and f"--device {device}" in result.stderr
        assert "the devices here: cpu" in result.stderr, result.stderr
    assert json.loads(cli("models", "--json").stdout) == []
    assert not (toy / "models").exists()
    assert rows("SELECT id FROM runs WHERE kind = 'train'") == []


def test_too_few_images_for_a_split(cli, home, tmp_path):
    blob_picture(1, True).save(tmp_path / "a.jpg")
    blob_picture(2, False).save(tmp_path / "b.jpg")
    cli("import", tmp_path / "a.jpg", "--label", "happy")
    cli("import", tmp_path / "b.jpg", "--label", "unhappy")
    result = cli("train", *FAST, "--include-weak")
    assert result.exit_code == 1 and "split has no labeled images" in result.stderr


def test_imagenet_weights_unavailable_is_one_sentence(cli, toy, monkeypatch):
    def offline(*_args, **_kwargs):
        raise urllib.error.URLError("no route to download.pytorch.org")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    args = [a for a in FAST if a not in ("--weights", "none")]
    result = cli("train", *args, "--weights", "imagenet")
    assert result.exit_code == 1
    assert "cannot get the ImageNet weights of resnet18" in result.stderr
    assert "--weights none" in result.stderr and result.stderr.count("\n") == 1
    assert json.loads(cli("models", "--json").stdout) == []  # nothing registered


def test_a_local_state_dict_is_taken(cli, toy, tmp_path):
    import torchvision

    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    result = cli(
        "train",
        *[a for a in FAST if a != "none" and a != "--weights"],
        "--weights",
        str(path),
        "--epochs",
        "1",
        "--json",
    )
    assert result.exit_code == 0, result.stderr
    result = cli(
        "train",
        *[a for a in FAST if a != "none" and a != "--weights"],
        "--weights",
        str(tmp_path / "nothing.pt"),
        "--restart",
    )
    assert result.exit_code == 1 and "no such file" in result.stderr
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a tensor file")
    result = cli(
        "train",
        *[a for a in FAST if a != "none" and a != "--weights"],
        "--weights",
        str(bad),
        "--restart",
    )
    assert result.exit_code == 1 and "not a PyTorch state dict" in result.stderr


def test_an_earlier_model_is_fine_tuned(cli, toy):
    first = json.loads(cli("train", *FAST, "--epochs", "1", "--json").stdout)
    earlier = Path(first["folder"]) / "model.pt"
    # At a learning rate of 0 the weights stay where they started: the earlier model's.
    result = cli("train", *FAST, "--epochs", "1", "--lr", "0", "--weights", earlier, "--json")
    assert result.exit_code == 0, result.stderr
    second = json.loads(result.stdout)
    assert second["model"] != first["model"]
    before = load_model(earlier)[1]["model"]
    after = load_model(Path(second["folder"]) / "model.pt")[1]["model"]
    for name in ("trunk.0.weight", "trunk.7.1.conv2.weight", "head.hidden.0.weight"):
        assert torch.equal(before[name], after[name]), name
    assert load_model(Path(second["folder"]) / "model.pt")[1]["weights"].startswith(
        f"curator model {earlier}"
    )
    # Cross-fitting from the fine-tuned model starts its folds where the line started
    # (random weights, the first model's schedule), never from weights that saw a fold.
    from curator.learn.crossfit import root_training

    fine_tuned = load_model(Path(second["folder"]) / "model.pt")[1]["training"]
    assert fine_tuned["weights"] == str(earlier) and fine_tuned["lr"] == 0
    root = root_training(fine_tuned)
    assert root["weights"] == "none" and root["lr"] != 0
    # An earlier model of other classes gives its trunk only.
    state, source = train_mod.starting_weights("resnet18", str(earlier), ("cat", "dog"))
    assert state and not any(k.startswith("head.") for k in state)
    assert "its trunk" in source and "happy" in source
    # A model of another backbone cannot start this one: one sentence, nothing registered.
    other = [a if a != "resnet18" else "resnet34" for a in FAST]
    result = cli("train", *other, "--weights", earlier, "--restart")
    assert result.exit_code == 1 and "not a resnet34" in result.stderr
    assert len(json.loads(cli("models", "--json").stdout)) == 2


def test_a_missing_file_is_left_out_and_reported(cli, toy):
    victim = next((toy / "images").rglob("*.jpg"))
    victim.chmod(0o644)
    victim.unlink()
    report = json.loads(cli("train", *FAST, "--epochs", "1", "--json").stdout)
    assert report["missing_files"] == 1


def test_a_file_damaged_since_its_import_is_left_out_and_reported(cli, toy):
    from curator.learn.examples import catalog_examples
    from db.catalog import open_catalog

    catalog = open_catalog(f"sqlite:///{toy / 'catalog.db'}")
    with catalog.reading() as session:
        examples = catalog_examples(session, home=toy, classes=["happy", "unhappy"])
    catalog.dispose()
    victim = Path(examples.splits["train"][0].path)
    victim.chmod(0o644)
    victim.write_bytes(b"<html>replaced by an error page</html>")
    # 3 epochs: one is the warm-up alone, and a model at chance would exit 3
    result = cli("train", *FAST, "--epochs", "3", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["missing_files"] == 1
    splits = load_model(Path(report["folder"]) / "model.pt")[1]["splits"]
    assert examples.splits["train"][0].image_id not in splits["train"]


def test_out_of_memory_says_what_to_lower(cli, toy, monkeypatch):
    def exhausted(self, x):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(DeepConnection, "forward", exhausted)
    result = cli("train", *FAST)
    assert result.exit_code == 1 and "out of memory at --batch-size 16" in result.stderr


def test_deterministic_with_a_seed(cli, toy):
    first = json.loads(cli("train", *FAST, "--epochs", "1", "--json").stdout)
    second = json.loads(cli("train", *FAST, "--epochs", "1", "--restart", "--json").stdout)
    assert first["metrics"]["val"]["loss"] == second["metrics"]["val"]["loss"]
    random.seed(0)


def test_decoded_once_or_on_every_epoch_in_any_worker_the_same_model(cli, toy):
    """Pictures decoded once into memory, or from their files on every epoch, augmented in
    the main process or in two workers: each picture is augmented the same way (seeded by
    the epoch and its index), so the trained weights are the same, bit for bit."""
    weights = []
    for options in (["--workers", "0"], ["--workers", "2", "--cache-mb", "0"]):
        result = cli("train", *FAST, "--epochs", "2", *options, "--restart", "--json")
        assert result.exit_code == 0, result.stderr
        report = json.loads(result.stdout)
        weights.append(load_model(Path(report["folder"]) / "model.pt")[1]["model"])
    assert weights[0].keys() == weights[1].keys()
    for name, tensor in weights[0].items():
        assert torch.equal(tensor, weights[1][name]), name


def test_pictures_are_decoded_once_when_they_fit(toy, monkeypatch):
    from classifier import images
    from classifier.config import Machine, TrainConfig
    from classifier.train import fit
    from curator.learn.examples import catalog_examples
    from db.catalog import open_catalog

    catalog = open_catalog(f"sqlite:///{toy / 'catalog.db'}")
    with catalog.reading() as session:
        examples = catalog_examples(session, home=toy, classes=["happy", "unhappy"])
    catalog.dispose()
    real, opened = images.load, []
    monkeypatch.setattr(
        images, "load", lambda path, *a, **k: opened.append(path) or real(path, *a, **k)
    )
    pictures = sum(len(split) for split in examples.splits.values())
    for cache_mb, expected in ((64, pictures), (0, None)):
        opened.clear()
        fit(
            model_cfg=ModelConfig(backbone="resnet18", image_size=48),
            cfg=TrainConfig(epochs=2, batch_size=16, weights="none"),
            machine=Machine(workers=0, cache_mb=cache_mb),
            examples=examples,
            folder=toy / f"fit-{cache_mb}",
            resume=False,
        )
        train, val, test = (len(examples.splits[s]) for s in ("train", "val", "test"))
        # cached: each picture once; not: the full batches of train and all of val on each
        # of 2 epochs, then val and test
        assert len(opened) == (expected or 2 * (train // 16 * 16 + val) + val + test)


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="the x86 rule")
def test_autocast_on_an_x86_cpu_takes_bf16_only_where_it_is_in_hardware(monkeypatch):
    """What the CPU reports is the one thing made up here: plain AVX-512 (which oneDNN's own
    check passes, though bf16 runs converted there) gets fp32; AVX-512 BF16 or AMX, bf16."""
    from classifier.device import autocast_dtype

    cpu = torch.device("cpu")
    for bf16, amx, want in (
        (False, False, None),
        (True, False, torch.bfloat16),
        (False, True, torch.bfloat16),
    ):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=bf16: v)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v)
        assert autocast_dtype(cpu, True) is want
        assert autocast_dtype(cpu, False) is None
