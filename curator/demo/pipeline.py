"""``curator demo``: the whole job, end to end, on a machine without internet.

1. A generated web: pictures of couples, happy or unhappy, with what crawls bring (exact and
   near copies, broken files, off-topic pictures, a query's label wrong about one time in ten),
   and the truth about each, seeded.
2. A local search engine on 127.0.0.1 (`curator.demo.localsearch`) answering in Bing's format.
3. The pipeline, through the library face (`curator.open`: the code a user's commands run):
   crawl "happy couple" and "unhappy
   couple" -> dedup -> train round 1 on the weak labels -> score the catalog, cross-fit ->
   embed with round 1's trunk -> a simulated reviewer (who knows the truth) relabels the top
   of `disagree`, then of `outlier`, then of `uncertain`, within a budget -> train round 2 ->
   score a folder of new photos -> Grad-CAM.
4. A report: one HTML file with PNG plots, beside the demo catalog.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import numpy as np

import curator
from curator.config import Layout
from curator.demo.report import write_demo_report
from curator.demo.setup import (
    QUERIES,
    DemoConfig,
    DemoResult,
    ProgressFn,
    Step,
    check_config,
    machine_of,
    prepare_home,
)
from curator.demo.synthetic import CLASSES, Item, clean_collection, make_collection

if TYPE_CHECKING:
    from curator.crawl.query import CrawlProgress
    from curator.learn.training import TrainOutcome
    from curator.library import Catalog


#: What the report shows of the dedup run's summary.
_DEDUP_KEYS = ("images", "groups", "in_groups", "changed", "to_duplicate", "to_active")


class _Clock:
    def __init__(self, result: DemoResult) -> None:
        self.result, self.began, self.name = result, time.perf_counter(), ""

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        if self.name:
            self.result.seconds[self.name] = round(now - self.began, 1)
        self.name, self.began = name, now


def health_of(catalog: Catalog) -> dict[str, Any]:
    """What curator check says of the catalog: counts per issue type, leaks, entanglements."""
    found = catalog.check()
    return {
        "counts": found["counts"],
        "leaks": len(found["leaks"]),
        "entanglement": found["entanglement"],
    }


def run_demo(
    home: Path,
    config: DemoConfig | None = None,
    *,
    step: Step = lambda _m: None,
    progress: ProgressFn = lambda *_a: None,
) -> DemoResult:
    config = config or DemoConfig()
    check_config(config)
    prepare_home(home)
    result = DemoResult(home=home, config=asdict(config), machine=machine_of(config.device))
    clock = _Clock(result)
    clock.lap("generate")
    items, results = _generate(home, config, result, step)
    # the demo's own SQLite catalog, whatever CURATOR_DB_URL says
    with curator.open(home, db_url=f"sqlite:///{Layout(home).catalog}") as catalog:
        clock.lap("crawl")
        _crawl_web(catalog, home / "web", results, result, step, progress)
        clock.lap("dedup")
        step("grouping near duplicates over the whole catalog")
        # exact and perceptual copies; cut copies are what the health check counts
        summary = catalog.dedup(crops=False)
        result.dedup = {k: summary[k] for k in _DEDUP_KEYS if k in summary}
        result.health = health_of(catalog)
        truth = _truth_by_image(catalog, {i.file: i for i in items})
        _pipeline(catalog, config, result, truth, clock, step, progress)
    clock.lap("")
    result.report = write_demo_report(home, result)
    return result


def _generate(
    home: Path, config: DemoConfig, result: DemoResult, step: Step
) -> tuple[list[Item], dict[str, list[str]]]:
    """The web (and the new photos scored at the end); returns its items and what the search
    engine lists for each query, in a shuffled order."""
    web, new_photos = home / "web", home / "new-photos"
    step(
        f"generating a web of {config.per_class} couple pictures per search, with copies, "
        "broken files and wrong labels"
    )
    items = make_collection(web, per_class=config.per_class, seed=config.seed, base_size=240)
    clean_collection(
        new_photos, per_class=config.new_photos, seed=config.seed + 7919, base_size=240
    )
    (new_photos / "truth.json").rename(home / "new-photos-truth.json")
    kinds = Counter(i.kind.split("-")[0] if i.kind != "exact-duplicate" else "exact" for i in items)
    result.planted = {
        "pictures": sum(1 for i in items if i.kind == "original"),
        "exact": kinds["exact"],
        "near": kinds["near"],
        "broken": kinds["broken"],
        "off_topic": kinds["off"],
        "wrong_labels": sum(1 for i in items if i.truth and i.truth != i.query),
    }
    rng = np.random.default_rng(config.seed)
    results = {
        QUERIES[label]: [
            i.file
            for i in rng.permutation(np.array([i for i in items if i.query == label], dtype=object))
        ]
        for label in CLASSES
    }
    return items, results


def _crawl_web(
    catalog: Catalog,
    web: Path,
    results: dict[str, list[str]],
    result: DemoResult,
    step: Step,
    progress: ProgressFn,
) -> None:
    """Both searches crawled through curator's own crawl, from the local engine."""
    from curator.demo.localsearch import LocalSearch

    with LocalSearch(web, results) as engine:
        for label in CLASSES:
            query = QUERIES[label]
            step(f"crawling {query!r} from a local search engine at {engine.base} (Bing's format)")
            counts = catalog.crawl(
                [query],
                engine="bing",
                max_images=len(results[query]),
                label=label,
                author="demo",
                routes=engine.routes,
                on_progress=partial(_crawl_bar, progress, query),
            )
            result.crawl[query] = counts[query]


def _crawl_bar(progress: ProgressFn, query: str, p: CrawlProgress) -> None:
    progress(f"crawling {query!r}", p.added, p.target, "")


def _truth_by_image(catalog: Catalog, by_file: dict[str, Item]) -> dict[int, Item]:
    """image id -> the generated item it came from (the first source that added it)."""
    out: dict[int, Item] = {}
    for source in catalog.sources():
        path = unquote(urlsplit(source["locator"]).path)
        if path.startswith("/img/") and source["image"] not in out:
            item = by_file.get(path[len("/img/") :])
            if item is not None:
                out[source["image"]] = item
    return out


def _train(
    catalog: Catalog,
    config: DemoConfig,
    result: DemoResult,
    name: str,
    progress: ProgressFn,
    start: Path | None = None,
) -> TrainOutcome:
    """A round's model, with the recipe of its starting point as curator train chooses it:
    round 1 from ``config.weights``, round 2 fine-tuning round 1's (``start``); the demo
    gives only what it sets itself (None: the recipe's)."""
    from classifier.config import Progress

    def on_progress(p: Progress) -> None:
        if p.kind == "step":
            progress(name, p.step, p.steps, f"epoch {p.epoch}/{p.epochs} · loss {p.loss:.3f}")

    outcome = catalog.train(
        weights=str(start) if start else config.weights,
        epochs=config.finetune_epochs if start else config.epochs,
        batch_size=config.batch_size,
        lr=config.finetune_lr if start else config.lr,
        seed=config.seed,
        include_weak=True,
        backbone=config.backbone,
        image_size=config.image_size,
        device=config.device,
        workers=config.workers,
        on_progress=on_progress,
        checkpoints=False,  # the demo is rebuilt on each run, never resumed
    )
    shown = "model.pt of round 1" if start else config.weights
    if outcome.recipe is not None:
        result.recipes[name.removeprefix("training ")] = outcome.recipe.line(weights_shown=shown)
    return outcome


def _pipeline(
    catalog: Catalog,
    config: DemoConfig,
    result: DemoResult,
    truth: dict[int, Item],
    clock: _Clock,
    step: Step,
    progress: ProgressFn,
) -> None:
    groups, wrong = _noise(catalog, truth, result)
    clock.lap("round 1")
    step(
        f"round 1: training {config.backbone} at {config.image_size} px on the crawl's weak "
        f"labels ({len(groups)} groups, {len(wrong)} of them wrongly labeled)"
    )
    round1 = _train(catalog, config, result, "training round 1", progress)
    first = round1.model_id
    clock.lap("score and cross-fit")
    step(f"scoring the catalog with model {first}, then cross-fitting {config.folds} folds")
    disagree, uncertain = _rank(catalog, config, first, progress)
    _found(result, disagree, wrong)
    clock.lap("embed")
    step(f"embedding the catalog with model {first}'s trunk, for the outlier queue")
    outliers = _outliers(catalog, config, first, truth, result)
    clock.lap("review")
    chosen = _review(
        catalog, config, result, truth, len(groups), [disagree, outliers, uncertain], step
    )
    result.review["wrong_labels_fixed"] = len(set(chosen) & wrong)
    result.review["wrong_labels_left"] = len(wrong - set(chosen))

    clock.lap("round 2")
    step(f"round 2: fine-tuning model {first} on the corrected labels")
    second = _train(
        catalog, config, result, "training round 2", progress, start=round1.folder / "model.pt"
    ).model_id
    catalog.score(model=second, device=config.device, workers=config.workers)
    test_ids = [
        i for i, split in groups.items() if split == "test" and i in truth and truth[i].truth
    ]
    for name, model_id in (("round 1", first), ("round 2", second)):
        result.rounds[name] = {"model": model_id, **_metrics(catalog, model_id, test_ids, truth)}

    clock.lap("new photos")
    step(f"scoring {2 * config.new_photos} new photos in bulk with model {second}")
    result.new_photos = _score_new_photos(catalog, second, config)

    clock.lap("explain")
    step(f"Grad-CAM for {config.explain} test images")
    result.explained = _explain(catalog, second, test_ids, truth, config)


def _noise(
    catalog: Catalog, truth: dict[int, Item], result: DemoResult
) -> tuple[dict[int, str], set[int]]:
    """Each group's split, and the groups whose weak label the truth says is wrong."""
    rows = catalog.image_rows()  # a group's active image, with the group's label
    groups = {r.id: r.split for r in rows}
    labels = {r.id: r.label for r in rows if r.label is not None}
    wrong = {
        i
        for i in groups
        if i in truth and i in labels and labels[i] != (truth[i].truth or "reject")
    }
    result.noise = {"groups": len(groups), "wrong_weak_labels": len(wrong)}
    return groups, wrong


def _rank(
    catalog: Catalog, config: DemoConfig, model_id: int, progress: ProgressFn
) -> tuple[list[int], list[int]]:
    """Round 1's predictions, and the folds' out-of-sample ones: the disagree and uncertain
    queues in their order."""
    from db.queues import QueueUnavailable

    catalog.score(
        model=model_id,
        device=config.device,
        workers=config.workers,
        on_progress=lambda p: progress("scoring", p.done, p.total, ""),
    )
    catalog.cross_fit(
        model=model_id,
        folds=config.folds,
        device=config.device,
        workers=config.workers,
        on_progress=lambda p: (
            progress(f"fold {p.fold + 1}/{p.folds}", p.training.step, p.training.steps, "")
            if p.training is not None and p.training.kind == "step"
            else None
        ),
    )
    disagree = [i for i, _s in catalog.ranking("disagree")]
    try:
        uncertain = [i for i, _s in catalog.ranking("uncertain")]
    except QueueUnavailable:  # round 1 at chance: no default model, no uncertain queue
        uncertain = []
    return disagree, uncertain


def _outliers(
    catalog: Catalog,
    config: DemoConfig,
    model_id: int,
    truth: dict[int, Item],
    result: DemoResult,
) -> list[int]:
    """The outlier queue by round 1's trunk, and how many off-topic pictures it puts first."""
    from curator.demo.outliers import off_topic_found

    catalog.embed(embedder="model", model=model_id, device=config.device, workers=config.workers)
    order = [image_id for image_id, _score in catalog.ranking("outlier")]
    off = {i for i, item in truth.items() if item.kind == "off-topic"}
    result.outliers = off_topic_found(order, off, seed=config.seed)
    return order


def _found(result: DemoResult, disagree: list[int], wrong: set[int]) -> None:
    """How many of the wrong labels the disagree queue ranks first."""
    top = disagree[: max(1, round(len(disagree) * 0.1))]
    result.noise.update(
        {
            "ranked_by_disagree": len(disagree),
            "wrong_in_ranking": len(set(disagree) & wrong),
            # wrong labels found after each image of the queue, for the report's curve
            "found_along_queue": np.cumsum([i in wrong for i in disagree]).tolist(),
            "wrong_in_top_10pct": len(set(top) & wrong),
            "top_10pct": len(top),
            "recall_at_10pct": len(set(top) & wrong) / max(len(wrong), 1),
        }
    )


def _review(
    catalog: Catalog,
    config: DemoConfig,
    result: DemoResult,
    truth: dict[int, Item],
    groups: int,
    queues: list[list[int]],
    step: Step,
) -> list[int]:
    """A reviewer who knows the truth decides about the top of disagree, then of outlier,
    then of uncertain, within the budget; returns the images looked at."""
    disagree, outliers, uncertain = queues
    budget = round(groups * config.budget)
    chosen = disagree[: round(budget * config.disagree_share)]
    from_disagree = len(chosen)
    seen = set(chosen)
    for queue, stop in (
        (outliers, from_disagree + round(budget * config.outlier_share)),
        (uncertain, budget),
    ):
        for image_id in queue:
            if len(chosen) >= stop:
                break
            if image_id not in seen:
                chosen.append(image_id)
                seen.add(image_id)
        if queue is outliers:
            from_outlier = len(chosen) - from_disagree
    step(
        f"a simulated reviewer who knows the truth looks at {len(chosen)} images: the top of "
        "the disagree queue, then of outlier, then of uncertain"
    )
    decisions: dict[str, list[int]] = {}
    for image_id in chosen:
        item = truth.get(image_id)
        decisions.setdefault(item.truth if item and item.truth else "reject", []).append(image_id)
    for label, ids in decisions.items():
        catalog.label(ids, label, author="demo reviewer")
    result.review = {
        "budget": budget,
        "looked_at": len(chosen),
        "from_disagree": from_disagree,
        "from_outlier": from_outlier,
        "decisions": {k: len(v) for k, v in decisions.items()},
    }
    return chosen


def _metrics(
    catalog: Catalog, model_id: int, ids: list[int], truth: dict[int, Item]
) -> dict[str, Any]:
    from classifier.metrics import classification_metrics

    wanted = set(ids)
    found = {
        r.id: p for r in catalog.image_rows(model=model_id) if r.id in wanted and (p := r.probs)
    }
    ids = [i for i in ids if i in found]
    probs = np.array([[found[i][c] for c in CLASSES] for i in ids])
    target = np.array([CLASSES.index(truth[i].truth or "") for i in ids])
    metrics = classification_metrics(probs, target, list(CLASSES))
    metrics.pop("per_class", None)
    return metrics


def _score_new_photos(catalog: Catalog, model_id: int, config: DemoConfig) -> dict[str, Any]:
    import csv

    home = catalog.home
    out = home / "new-photos.csv"
    counts = catalog.score_files(
        [home / "new-photos"], out, model=model_id, device=config.device, workers=config.workers
    )
    truth = {
        str(home / "new-photos" / row["file"]): row["truth"]
        for row in json.loads((home / "new-photos-truth.json").read_text())
    }
    with out.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    right = sum(1 for r in rows if r["predicted"] == truth.get(r["path"]))
    return {**counts, "csv": str(out), "accuracy": right / max(len(rows), 1)}


def _explain(
    catalog: Catalog, model_id: int, ids: list[int], truth: dict[int, Item], config: DemoConfig
) -> list[str]:
    out = catalog.home / "report"
    by_class = [[i for i in ids if truth[i].truth == label] for label in CLASSES]
    picked: list[int] = []
    for rank in range(max(map(len, by_class), default=0)):  # the classes in turn
        picked += [group[rank] for group in by_class if rank < len(group)]
    files: list[str] = []
    for image_id in picked[: config.explain]:
        done = catalog.explain(image_id, out, model=model_id, device=config.device)
        files.append(str(Path(done["gradcam"][done["predicted"]]).relative_to(out)))
    return files
