"""The recipes, the verdict at chance and the learning-rate range test: the rules as functions,
then through the real command line on tiny generated pictures."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
from bs4 import BeautifulSoup

from classifier.chance import CHANCE, LEARNED, Chance, should_count_patience, stall_warning
from classifier.checkpoint import load_model
from classifier.config import RECIPES, TrainConfig, format_lr, patience_for, resolve_recipe
from curator.learn.crossfit import fold_epochs, fold_recipe, folds_for
from tests.helpers.sql import rows
from tests.helpers.training import FAST, blob_picture

#: Smaller still than FAST: 32 px, and the ablation's global-average-pooling head, whose
#: weights (and so each epoch's checkpoint) are a fraction of the pyramid head's.
SMALL = ["--image-size", "32", "--head", "gap"]


def test_the_starting_point_chooses_the_recipe_and_given_options_win():
    imagenet = resolve_recipe("imagenet")
    assert imagenet.name == "imagenet" and imagenet.given == ()
    assert (imagenet.cfg.batch_size, imagenet.cfg.lr, imagenet.cfg.augment) == (
        48,
        3e-4,
        "reference",
    )
    assert imagenet.cfg == RECIPES["imagenet"] == TrainConfig()  # the dataclass's own defaults
    # A state dict of other weights (a local copy of ImageNet's) is fine-tuned as ImageNet's;
    # an earlier curator model is fine-tuned gently; none trains from scratch.
    assert resolve_recipe("/w/resnet18.pth").name == "imagenet"
    finetune = resolve_recipe("/m/3/model.pt", earlier_model=True)
    assert (finetune.name, finetune.cfg.epochs, finetune.cfg.lr) == ("finetune", 6, 1e-3)
    scratch = resolve_recipe("none", epochs=30, lr=None, augment="none", seed=4)
    assert scratch.name == "scratch" and scratch.given == ("epochs", "augment")
    assert (scratch.cfg.epochs, scratch.cfg.batch_size, scratch.cfg.lr) == (30, 16, 2e-3)
    assert (scratch.cfg.augment, scratch.cfg.seed, scratch.cfg.weights) == ("none", 4, "none")
    # Patience follows the epochs unless given.
    assert scratch.cfg.patience == patience_for(30) == 10 and patience_for(4) == 3
    assert resolve_recipe("none", epochs=30, patience=2).cfg.patience == 2
    assert scratch.line().endswith(", augment none (given), patience 10")
    auto = resolve_recipe("none", lr_auto=True, lr=5.0)
    assert auto.cfg.lr_auto and auto.cfg.lr == 2e-3 and auto.given == ("lr",)
    with pytest.raises(TypeError, match="unknown training setting 'epoch'"):
        resolve_recipe("none", epoch=3)
    assert [format_lr(x) for x in (2e-3, 3.2e-4, 0.0187, 0.0)] == ["2e-3", "3.2e-4", "0.019", "0"]


def test_chance_is_the_majority_rate_and_a_margin_a_handful_of_images_cannot_fake():
    even = Chance.of([30, 30])  # two standard errors are 12.9 points; a third of the errors 16.7
    assert even.majority == 0.5 and even.bar == pytest.approx(0.5 + 1 / 6)
    assert not even.left(0.65) and even.left(0.67)
    small = Chance.of([5, 5])  # on 10 images, two standard errors: 31.6 points
    assert small.bar == pytest.approx(0.5 + 2 * math.sqrt(0.025)) and not small.left(0.8)
    assert Chance.of([2, 1]).bar == 1.0 and Chance.of([2, 1]).left(1.0)  # only perfect tells
    skewed = Chance.of([90, 10])  # always "the first class" scores 90 %
    assert skewed.verdict(0.9) == CHANCE and skewed.verdict(0.97) == LEARNED
    # Early stopping counts patience only once an epoch has left chance.
    assert not should_count_patience([0.5, 0.6, 0.55], even)
    assert should_count_patience([0.5, 0.7, 0.55], even)


def test_the_warning_says_what_is_wrong_and_what_to_try():
    even = Chance.of([30, 30])
    cfg = resolve_recipe("none", batch_size=48, lr=3e-4, augment="reference", epochs=15).cfg
    warning = stall_warning(
        epoch=5, epochs=15, accuracies=[0.5, 0.52, 0.5, 0.55, 0.5],
        train_losses=[0.70, 0.69, 0.69, 0.70, 0.69], chance=even, classes=2, cfg=cfg,
    )  # fmt: skip
    assert warning == (
        "after 5 of 15 epochs val accuracy is 50.0 %, at chance (the majority class is 50.0 % "
        "of 60 val images; learning shows from 66.7 %), and the train loss has not fallen "
        "(0.700 -> 0.690): this run may not learn; try the from-scratch recipe's --batch-size "
        "16 --lr 2e-3 --augment light, --lr auto, --epochs 30 or --weights imagenet where it "
        "can be downloaded"
    )
    fitting = stall_warning(
        epoch=5, epochs=15, accuracies=[0.5] * 5, train_losses=[0.7, 0.5, 0.3, 0.2, 0.1],
        chance=even, classes=2, cfg=resolve_recipe("none", epochs=15).cfg,
    )  # fmt: skip
    assert fitting is not None and "fits its training pictures without telling val apart" in (
        fitting
    )
    assert "try --lr auto, --epochs 30 or --weights imagenet" in fitting
    learning = stall_warning(
        epoch=5, epochs=15, accuracies=[0.5, 0.8], train_losses=[0.7, 0.4], chance=even,
        classes=2, cfg=cfg,
    )  # fmt: skip
    assert learning is None


def test_folds_train_with_the_recipe_that_learns_on_small_sets_for_enough_steps():
    assert [folds_for(n)[0] for n in (8, 45, 60, 99, 100, 5000)] == [2, 2, 3, 4, 5, 5]
    # 282 pictures at batch 16: 17 steps an epoch, 24 epochs for 400 steps; never fewer than
    # the recipe's, never more than 30.
    assert fold_epochs(282, 16, 15) == 24
    assert fold_epochs(5000, 16, 15) == 15 and fold_epochs(40, 16, 15) == 30
    root = {"weights": "none", "seed": 3, "epochs": 10, "lr": 5e-3, "augment": "none",
            "batch_size": 16, "given": ["epochs", "lr"], "lr_auto": False}  # fmt: skip
    recipe = fold_recipe(root, 282)
    cfg = recipe.cfg
    assert recipe.name == "scratch" and recipe.given == ("lr",)  # its epochs are the fold's
    assert (cfg.epochs, cfg.patience, cfg.lr, cfg.augment, cfg.seed) == (24, 24, 5e-3, "light", 3)
    assert cfg.include_weak and not cfg.lr_auto
    pretrained = fold_recipe({"weights": "imagenet", "given": []}, 282).cfg
    assert (pretrained.weights, pretrained.lr, pretrained.batch_size) == ("imagenet", 1e-3, 16)
    # Old records, without "given": the recipe's values.
    assert fold_recipe({"weights": "none", "lr": 0.0}, 100).cfg.lr == 2e-3


def test_the_help_shows_each_recipe(cli):
    text = " ".join(cli("train", "--help").stdout.split())
    assert "from scratch (--weights none): epochs 30, batch 16, lr 2e-3" in text
    assert "ImageNet fine-tuning (--weights imagenet): epochs 15, batch 48, lr 3e-4" in text
    assert "fine-tuning an earlier model (--weights MODEL.pt): epochs 6, batch 16, lr 1e-3" in text


@pytest.fixture
def unlearnable(cli, home, tmp_path) -> Path:
    """The toy set's pictures under labels drawn at random: nothing to learn."""
    rng = random.Random(5)
    for i in range(80):
        label = rng.choice(["happy", "unhappy"])
        (tmp_path / label).mkdir(exist_ok=True)
        blob_picture(i, i % 2 == 0).save(tmp_path / label / f"{i}.jpg")
    for label in ("happy", "unhappy"):
        assert cli("import", tmp_path / label, "--label", label).exit_code == 0
    return home


def facts_of(report: Path) -> dict[str, str]:
    soup = BeautifulSoup(report.read_text(encoding="utf-8"), "html.parser")
    return {
        tr.th.get_text(): tr.td.get_text()
        for tr in soup.select("table tr")
        if tr.th is not None and tr.td is not None
    }


def test_a_run_that_cannot_learn_is_flagged_and_never_the_default(cli, unlearnable):
    result = cli("train", *FAST, *SMALL, "--include-weak", "--epochs", "4", "--patience", "1")
    assert result.exit_code == 3, result.output
    (listed,) = json.loads(cli("models", "--json").stdout)
    meta = load_model(unlearnable / listed["path"] / "model.pt")[1]
    verdict = meta["verdict"]
    assert verdict["verdict"] == "chance" and verdict["accuracy"] < verdict["bar"]
    # Early stopping never ended it on the plateau: all 4 epochs ran at a patience of 1.
    assert len(meta["history"]) == listed["epochs"] == 4
    lines = result.stderr.splitlines()
    assert lines[0].startswith("recipe: from scratch (--weights none): epochs 4 (given), ")
    assert lines[0].endswith(", patience 1 (given)")
    warnings = [line for line in lines if line.startswith("warning:")]
    assert len(warnings) == 1, result.stderr
    assert warnings[0].startswith("warning: after 2 of 4 epochs val accuracy is ")
    assert ", at chance (the majority class is " in warnings[0]
    assert warnings[0].endswith("try --lr auto, --epochs 8 or --weights imagenet where it can be "
                                "downloaded")  # fmt: skip
    # Its last lines say so, and what to try.
    assert "model 1 is no better than chance: " in result.stdout
    assert "there is no default. Try --lr auto" in result.stdout
    # curator models shows the verdict, and the model is not the default.
    assert listed["verdict"] == "chance" and not listed["default"]
    table = cli("models").stdout
    assert "at chance" in table.splitlines()[1] and "model 1 is no better than chance" in table
    refused = cli("models", "--default", "1")
    assert refused.exit_code == 1 and refused.stderr.count("\n") == 1
    assert "model 1 is no better than chance on val" in refused.stderr
    scoring = cli("score")
    assert scoring.exit_code == 1 and "no model that learned" in scoring.stderr
    # The uncertain queue, which ranks by the default model, says why it has none.
    queue = cli("queue", "uncertain")
    assert queue.exit_code == 1 and queue.stderr.count("\n") == 1, queue.output
    assert "no model learned: the finished ones (1) are no better than chance" in queue.stderr
    assert queue.stderr.strip().endswith(": train again (curator train warned what to try)")
    # The report says so first, and on what it rests.
    report = unlearnable / listed["path"] / "report.html"
    assert 'class="chance"' in report.read_text(encoding="utf-8")
    assert facts_of(report)["verdict"].startswith("no better than chance: ")


def test_lr_auto_trains_at_the_rate_its_range_test_found(cli, toy):
    result = cli("train", *FAST, *SMALL, "--epochs", "1", "--lr", "auto", "--json")
    assert result.exit_code in (0, 3), result.output
    report = json.loads(result.stdout)
    assert result.exit_code == (3 if report["verdict"]["verdict"] == "chance" else 0)
    found = report["lr_range"]["chosen"]
    assert math.isfinite(found) and 1e-6 < found < 1 and report["lr_range"]["steps"] >= 10
    first = result.stderr.splitlines()[0]
    assert first.startswith("recipe: from scratch (--weights none): epochs 1 (given), batch 16")
    assert f", lr {format_lr(found)} (--lr auto: its range test), " in first
    folder = Path(report["folder"])
    meta = load_model(folder / "model.pt")[1]
    assert meta["training"]["lr"] == found and meta["training"]["lr_auto"]
    curve = meta["lr_range"]
    assert curve["lrs"][0] == pytest.approx(1e-6) and curve["chosen"] == found
    assert len(curve["losses"]) == len(curve["lrs"]) and all(map(math.isfinite, curve["losses"]))
    assert (folder / "lr-range.png").is_file()
    assert 'src="lr-range.png"' in (folder / "report.html").read_text(encoding="utf-8")
    assert facts_of(folder / "report.html")["learning-rate range test"].startswith(format_lr(found))
    ((stored,),) = rows("SELECT training FROM models WHERE id = :m", m=report["model"])
    stored = stored if isinstance(stored, dict) else json.loads(stored)
    assert stored["lr"] == found and stored["given"] == ["epochs", "batch_size", "lr"]


def test_bad_recipe_values_are_one_line_and_register_nothing(cli, toy):
    cases = [
        (["--lr", "fast"], "--lr 'fast': a learning rate such as 2e-3, or auto"),
        (["--lr", "-1"], "--lr '-1': a learning rate of 0 or more, or auto"),
        (["--augment", "strong"], "--augment 'strong': one of reference, light, none"),
        (["--lr", "auto", "--batch-size", "64"], "--lr auto needs at least 256 training pictures"),
    ]
    for args, message in cases:
        result = cli("train", *FAST, *args)
        assert result.exit_code == 1 and result.stderr.count("\n") == 1, (args, result.output)
        assert message in result.stderr, (args, result.stderr)
    assert json.loads(cli("models", "--json").stdout) == []


def test_folds_auto_takes_what_the_catalog_supports_and_bad_folds_are_one_line(cli, home, tmp_path):
    for label, warm, base in (("happy", True, 0), ("unhappy", False, 1000)):
        (tmp_path / label).mkdir()
        for i in range(16):
            blob_picture(base + i, warm).save(tmp_path / label / f"{i}.jpg")
        assert cli("import", tmp_path / label, "--label", label).exit_code == 0
    trained = cli("train", *FAST, *SMALL, "--include-weak", "--epochs", "1")
    assert trained.exit_code in (0, 3), trained.output
    for args, message in (
        (["--folds", "many"], "--folds 'many': a number of folds from 2 to 20, or auto"),
        (["--folds", "1"], "--folds 1: needs at least 2 folds"),
        (["--folds", "21"], "--folds 21: at most 20"),
        (["--folds", "2", tmp_path], "--folds scores the catalog's labeled images"),
    ):
        result = cli("score", "--model", "1", *args)
        assert result.exit_code == 1 and result.stderr.count("\n") == 1, (args, result.output)
        assert message in result.stderr, (args, result.stderr)
    result = cli("score", "--folds", "auto", "--model", "1", "--workers", "0", "--json")
    assert result.exit_code == 0, result.output
    outcome = json.loads(result.stdout)
    labeled = sum(f["held_out"] for f in outcome["folds"])
    assert outcome["count"] == len(outcome["folds"]) == 2 == folds_for(labeled)[0]
    assert outcome["rule"] == (
        f"2 folds: one per 20 of the {labeled} labeled groups (at least 2; 5 from 100)"
    )
    for fold in outcome["folds"]:  # a fold of ~13 pictures: one step an epoch, so 30 epochs
        assert fold["epochs"] == 30 and 0 <= fold["val_accuracy"] <= 1
        assert fold["verdict"] in (CHANCE, LEARNED) and fold["val_images"] > 0
