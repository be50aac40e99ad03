"""The active-learning loop, measured on generated couples with known truth.

    python bench/active_learning.py [--per-class 300] [--noise 0.1] [--folds 3] [--epochs 15]
                                    [--budget 0.1] [--size 80] [--seed 0]

1. A crawl's worth of pictures: `--per-class` per search, of which `--noise` truly belong to
   the other class (their weak, query-given label is wrong). Imported as two labeled folders.
2. Round 1: DeepConnection (resnet18, spp-pmt, from scratch at `--size` px) trained on the weak
   labels; the catalog scored, then cross-fitted (`curator score --folds K`).
3. Finding the wrong labels: the share of all wrong labels that sit in the first 10 % of the
   `disagree` queue (recall at 10 %), against a shuffled order (about 10 %) in the same run.
   Goal: 70 % or more.
4. Spending a review budget: `--budget` of the images relabeled by a simulated reviewer who
   gives the true class, chosen by the `uncertain` queue, at random, or by `disagree`; round 1's
   model fine-tuned on each catalog (`--finetune-epochs` at lr 1e-3, same seed; or trained
   again from scratch with `--round2 scratch`) and its accuracy measured on a separate, clean,
   generated test set. Goal: uncertain above random at equal effort.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import curator  # noqa: E402
from curator.demo.synthetic import CLASSES, clean_collection, make_collection  # noqa: E402


def open_home(home: Path) -> curator.Catalog:
    """The home's own SQLite catalog, whatever CURATOR_DB_URL says."""
    return curator.open(home, db_url=f"sqlite:///{home / 'catalog.db'}")


def truth_by_image(catalog: curator.Catalog, sample: Path) -> dict[int, tuple[str, str]]:
    """image id -> (true class, weak label), from the generator's truth file."""
    truth = {
        row["file"]: (row["truth"], row["query"])
        for row in json.loads((sample / "truth.json").read_text())
    }
    out: dict[int, tuple[str, str]] = {}
    for source in catalog.sources():
        key = str(Path(source["locator"]).relative_to(sample))
        if key in truth:
            out[source["image"]] = truth[key]
    return out


def train(catalog: curator.Catalog, args: argparse.Namespace, start: Path | None = None) -> int:
    """Round 1 from scratch; round 2 (``start``: round 1's model file) fine-tunes it, as the
    demo and the README's workflow do, unless ``--round2 scratch``: each with the recipe of
    its starting point, as curator train chooses it (classifier.config.RECIPES)."""
    outcome = catalog.train(
        backbone="resnet18",
        head="spp-pmt",
        image_size=args.size,
        weights=str(start) if start else "none",
        epochs=args.finetune_epochs if start else args.epochs,
        seed=args.seed,
        include_weak=True,
        workers=2,
    )
    return outcome.model_id


def test_accuracy(catalog: curator.Catalog, model_id: int, test_set: Path) -> float:
    items = [i for i in json.loads((test_set / "truth.json").read_text()) if i["truth"]]
    files = [test_set / i["file"] for i in items]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rows.jsonl"
        catalog.score_files(files, out, model=model_id, workers=2)
        rows = [json.loads(line) for line in out.read_text().splitlines()]
    right = sum(r["predicted"] == i["truth"] for r, i in zip(rows, items, strict=True))
    return right / len(items)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-class", type=int, default=300)
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=None, help="the recipe's: 15")
    parser.add_argument(
        "--round2",
        choices=("finetune", "scratch"),
        default="finetune",
        help="round 2 fine-tunes round 1's model (default) or starts from scratch",
    )
    parser.add_argument("--finetune-epochs", type=int, default=None, help="the recipe's: 6")
    parser.add_argument("--budget", type=float, default=0.1)
    parser.add_argument("--size", type=int, default=80)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="keep the catalogs here")
    args = parser.parse_args()
    began = time.perf_counter()
    work = args.keep or Path(tempfile.mkdtemp(prefix="curator-al-"))
    shutil.rmtree(work, ignore_errors=True)
    sample, test_set, home = work / "crawl", work / "test", work / "round1"
    make_collection(
        sample,
        per_class=args.per_class,
        seed=args.seed,
        base_size=200,
        noise=args.noise,
        duplicates=0,
        near=0,
        broken=0,
        off_topic=0,
    )
    clean_collection(
        test_set,
        per_class=max(100, args.per_class // 2),
        seed=args.seed + 1000,
        base_size=200,
    )
    catalog = open_home(home)
    for label in CLASSES:
        catalog.import_paths([sample / label], label=label, author="crawl")
    truth = truth_by_image(catalog, sample)
    wrong = {i for i, (true, weak) in truth.items() if true != weak}
    print(f"{len(truth)} images, {len(wrong)} with a wrong weak label", flush=True)

    base = train(catalog, args)
    catalog.score(model=base, workers=2)
    catalog.cross_fit(model=base, folds=args.folds, workers=2)
    round1 = test_accuracy(catalog, base, test_set)
    disagree = [i for i, _s in catalog.ranking("disagree")]
    uncertain = [i for i, _s in catalog.ranking("uncertain")]
    top = disagree[: round(len(disagree) * 0.10)]
    shuffled = list(disagree)
    random.Random(args.seed).shuffle(shuffled)
    found = {
        "disagree": len(set(top) & wrong) / len(wrong),
        "shuffled": len(set(shuffled[: len(top)]) & wrong) / len(wrong),
        "precision_of_top": len(set(top) & wrong) / max(len(top), 1),
    }
    print(f"wrong labels in the first 10 % of disagree: {found}", flush=True)
    catalog.close()

    budget = round(len(truth) * args.budget)
    pool = sorted(truth)
    choices = {
        "uncertain": uncertain[:budget],
        "random": random.Random(args.seed + 1).sample(pool, budget),
        "disagree": disagree[:budget],
    }
    accuracy = {"round 1 (weak labels only)": round1}
    fixed = {}
    for arm, ids in choices.items():
        arm_home = work / f"round2-{arm}"
        shutil.copytree(home, arm_home)
        arm_catalog = open_home(arm_home)
        for true in CLASSES:
            chosen = [i for i in ids if truth[i][0] == true]
            arm_catalog.label(chosen, true, author="reviewer")
        fixed[arm] = len(set(ids) & wrong)
        start = arm_home / "models" / str(base) / "model.pt" if args.round2 == "finetune" else None
        model_id = train(arm_catalog, args, start)
        accuracy[f"round 2, {budget} relabeled by {arm}"] = test_accuracy(
            arm_catalog, model_id, test_set
        )
        arm_catalog.close()
        print(f"{arm}: {fixed[arm]} wrong labels fixed, accuracy {accuracy}", flush=True)
    result = {
        "images": len(truth),
        "wrong_labels": len(wrong),
        "folds": args.folds,
        "recall_at_10pct": {k: round(v, 3) for k, v in found.items()},
        "budget": budget,
        "wrong_labels_fixed": fixed,
        "test_accuracy": {k: round(v, 4) for k, v in accuracy.items()},
        "test_images": len([i for i in json.loads((test_set / "truth.json").read_text())]),
        "minutes": round((time.perf_counter() - began) / 60, 1),
    }
    print(json.dumps(result, indent=2))
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
