"""``curator demo``: the whole job, end to end, on a machine without internet.

1. A generated web: pictures of couples, happy or unhappy, with what crawls bring (exact and
   near copies, broken files, off-topic pictures, a query's label wrong about one time in ten),
   and the truth about each, seeded.
2. A local search engine on 127.0.0.1 (`curator.localsearch`) answering in Bing's format.
3. The pipeline, through the code a user's commands run: crawl "happy couple" and "unhappy
   couple" -> dedup -> train round 1 on the weak labels -> score the catalog, cross-fit ->
   a simulated reviewer (who knows the truth) relabels the top of `disagree`, then of
   `uncertain`, within a budget -> train round 2 -> score a folder of new photos -> Grad-CAM.
4. A report: one HTML file with PNG plots, beside the demo catalog.
"""

from __future__ import annotations

import html
import json
import shlex
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import numpy as np
from sqlalchemy import select

from curator.config import Settings, load_settings
from curator.errors import CuratorError
from curator.synthetic import CLASSES, Item, clean_collection, make_collection

MARKER = ".curator-demo"
QUERIES = {"happy": "happy couple", "unhappy": "unhappy couple"}


@dataclass(frozen=True)
class DemoConfig:
    per_class: int = 300
    seed: int = 0
    backbone: str = "resnet18"
    image_size: int = 80
    epochs: int = 10
    batch_size: int = 16
    lr: float = 2e-3
    #: Round 2 fine-tunes round 1's model on the corrected labels, as a user would.
    finetune_epochs: int = 6
    finetune_lr: float = 1e-3
    weights: str = "none"
    folds: int = 2
    #: Share of the catalog's groups the simulated reviewer looks at.
    budget: float = 0.2
    #: Of the budget, the share spent on the top of `disagree` (the rest: `uncertain`).
    disagree_share: float = 0.6
    new_photos: int = 50  # per class, scored in bulk at the end
    explain: int = 4
    workers: int = 2
    device: str = "auto"

    @classmethod
    def full(cls, **overrides: Any) -> DemoConfig:
        """The paper's configuration: ResNet-34 at 512 px from ImageNet weights (for a GPU)."""
        values = {
            "backbone": "resnet34",
            "image_size": 512,
            "weights": "imagenet",
            "epochs": 15,
            "batch_size": 16,
            "lr": 3e-4,
            "per_class": 400,
            **overrides,
        }
        return cls(**values)


#: step(message), progress(description, done, total, status)
Step = Callable[[str], None]
ProgressFn = Callable[[str, int, int | None, str], None]


@dataclass
class DemoResult:
    home: Path
    config: dict[str, Any]
    report: Path | None = None
    crawl: dict[str, dict[str, Any]] = field(default_factory=dict)
    planted: dict[str, int] = field(default_factory=dict)
    dedup: dict[str, Any] = field(default_factory=dict)
    noise: dict[str, Any] = field(default_factory=dict)
    review: dict[str, Any] = field(default_factory=dict)
    rounds: dict[str, dict[str, Any]] = field(default_factory=dict)
    new_photos: dict[str, Any] = field(default_factory=dict)
    explained: list[str] = field(default_factory=list)
    machine: str = ""
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def browse(self) -> str:
        """The command that opens the demo catalog's disagree queue, quoted for a shell: a
        home with spaces in it works when pasted."""
        return shlex.join(["curator", "--home", str(self.home), "review", "--queue", "disagree"])

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["home"], data["report"] = str(self.home), str(self.report) if self.report else None
        data["browse"] = self.browse
        return data


def prepare_home(home: Path) -> None:
    """Start from an empty demo home; refuse to wipe a folder that is not one."""
    if home.exists() and not home.is_dir():
        raise CuratorError(f"{home} is a file, not a folder; choose another --home")
    if home.exists() and any(home.iterdir()):
        if not (home / MARKER).exists():
            raise CuratorError(f"{home} is not empty and is not a demo home; choose another --home")
        shutil.rmtree(home)
    home.mkdir(parents=True, exist_ok=True)
    (home / MARKER).write_text("created by curator demo; safe to delete\n")


def _machine(device: str) -> str:
    import os

    import torch

    from classifier.train import pick_device

    chosen = pick_device(device)
    if chosen.type == "cuda":
        return f"{torch.cuda.get_device_name(chosen)} (CUDA), {os.cpu_count()} CPU cores"
    return f"{os.cpu_count()} CPU cores, no GPU used"


def check_config(config: DemoConfig) -> None:
    """The device and the starting weights, checked before anything is generated."""
    from classifier.model import DeepConnection, ModelConfig
    from classifier.train import apply_weights, pick_device, starting_weights

    pick_device(config.device)  # each raises a TrainingError that says what to do
    model_cfg = ModelConfig(backbone=config.backbone, image_size=config.image_size, classes=CLASSES)
    apply_weights(
        DeepConnection(model_cfg), *starting_weights(config.backbone, config.weights, CLASSES)
    )


class _Clock:
    def __init__(self, result: DemoResult) -> None:
        self.result, self.began, self.name = result, time.perf_counter(), ""

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        if self.name:
            self.result.seconds[self.name] = round(now - self.began, 1)
        self.name, self.began = name, now


def run_demo(
    home: Path,
    config: DemoConfig | None = None,
    *,
    step: Step = lambda _m: None,
    progress: ProgressFn = lambda *_a: None,
) -> DemoResult:
    from curator.crawl.runner import CrawlOptions, crawl
    from curator.ingest.dedup import DEFAULT_THRESHOLD, apply_plan, plan_dedup
    from curator.localsearch import LocalSearch
    from curator.runs import tracked_run
    from db.catalog import open_catalog

    config = config or DemoConfig()
    check_config(config)
    prepare_home(home)
    settings: Settings = load_settings(home=home, db_url=f"sqlite:///{home / 'catalog.db'}")
    result = DemoResult(home=home, config=asdict(config), machine=_machine(config.device))
    clock = _Clock(result)
    clock.lap("generate")
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
    by_file = {i.file: i for i in items}
    rng = np.random.default_rng(config.seed)
    results = {
        QUERIES[label]: [
            i.file
            for i in rng.permutation(np.array([i for i in items if i.query == label], dtype=object))
        ]
        for label in CLASSES
    }

    clock.lap("crawl")
    with LocalSearch(web, results) as engine:
        for label in CLASSES:
            query = QUERIES[label]
            step(f"crawling {query!r} from a local search engine at {engine.base} (Bing's format)")
            options = CrawlOptions(
                engine="bing",
                max_images=len(results[query]),
                label=label,
                author="demo",
                routes=engine.routes,
            )
            counts = crawl(
                settings,
                [query],
                options,
                on_progress=lambda p, q=query: progress(f"crawling {q!r}", p.added, p.target, ""),
            )
            result.crawl[query] = counts[query]
    catalog = open_catalog(settings.db_url)
    try:
        clock.lap("dedup")
        step("grouping near duplicates over the whole catalog")
        with catalog.reading() as session:
            plan = plan_dedup(session, threshold=DEFAULT_THRESHOLD)
        with tracked_run(catalog, kind="dedup", params={"threshold": DEFAULT_THRESHOLD}) as run:
            with catalog.writing() as session:
                apply_plan(session, plan=plan, image_ids=sorted(plan.changes), run_id=run.id)
            run.counts = plan.summary()
        result.dedup = plan.summary()
        truth = _truth_by_image(catalog, by_file)
        _pipeline(catalog, home, config, result, truth, clock, step, progress)
    finally:
        catalog.dispose()
    clock.lap("")
    result.report = write_demo_report(home, result)
    return result


def _truth_by_image(catalog: Any, by_file: dict[str, Item]) -> dict[int, Item]:
    """image id -> the generated item it came from (the first source that added it)."""
    from db.models import Source

    out: dict[int, Item] = {}
    with catalog.reading() as session:
        for image_id, locator in session.execute(
            select(Source.image_id, Source.locator)
            .where(Source.image_id.is_not(None))
            .order_by(Source.id)
        ):
            path = unquote(urlsplit(locator).path)
            if path.startswith("/img/") and image_id not in out:
                item = by_file.get(path[len("/img/") :])
                if item is not None:
                    out[image_id] = item
    return out


def _train(
    catalog: Any,
    home: Path,
    config: DemoConfig,
    name: str,
    progress: ProgressFn,
    start: Path | None = None,
) -> int:
    from classifier.model import ModelConfig
    from classifier.train import Progress, TrainConfig
    from curator.learn.training import train_model

    def on_progress(p: Progress) -> None:
        if p.kind == "step":
            progress(name, p.step, p.steps, f"epoch {p.epoch}/{p.epochs} · loss {p.loss:.3f}")

    outcome = train_model(
        catalog,
        home,
        model_cfg=ModelConfig(backbone=config.backbone, image_size=config.image_size),
        cfg=TrainConfig(
            epochs=config.finetune_epochs if start else config.epochs,
            batch_size=config.batch_size,
            lr=config.finetune_lr if start else config.lr,
            patience=config.epochs,  # from scratch, a model can plateau before it learns
            seed=config.seed,
            augment="light" if config.weights == "none" else "reference",
            include_weak=True,
            weights=str(start) if start else config.weights,
            device=config.device,
            workers=config.workers,
        ),
        on_progress=on_progress,
        restart=True,
    )
    return outcome.model_id


def _pipeline(
    catalog: Any,
    home: Path,
    config: DemoConfig,
    result: DemoResult,
    truth: dict[int, Item],
    clock: _Clock,
    step: Step,
    progress: ProgressFn,
) -> None:
    from curator.learn.crossfit import cross_fit
    from curator.learn.models import load_registered
    from curator.learn.scoring import score_catalog
    from db.images import ACTIVE
    from db.labels import group_labels, label_images
    from db.models import Image
    from db.queues import ranking

    with catalog.reading() as session:
        groups = {
            i: split
            for i, split in session.execute(
                select(Image.id, Image.split).where(Image.status == ACTIVE)
            )
        }
        labels = group_labels(session)
    wrong = {
        i
        for i in groups
        if i in truth and i in labels and labels[i].label != (truth[i].truth or "reject")
    }
    result.noise = {"groups": len(groups), "wrong_weak_labels": len(wrong)}

    clock.lap("round 1")
    step(
        f"round 1: training {config.backbone} at {config.image_size} px on the crawl's weak "
        f"labels ({len(groups)} groups, {len(wrong)} of them wrongly labeled)"
    )
    first = _train(catalog, home, config, "training round 1", progress)
    clock.lap("score and cross-fit")
    step(f"scoring the catalog with model {first}, then cross-fitting {config.folds} folds")
    model = load_registered(catalog, home, first, device=config.device)
    score_catalog(
        catalog,
        home,
        model,
        workers=config.workers,
        on_progress=lambda p: progress("scoring", p.done, p.total, ""),
    )
    cross_fit(
        catalog,
        home,
        base_ref=first,
        folds=config.folds,
        device=config.device,
        workers=config.workers,
        on_progress=lambda p: (
            progress(f"fold {p.fold + 1}/{p.folds}", p.training.step, p.training.steps, "")
            if p.training is not None and p.training.kind == "step"
            else None
        ),
    )
    with catalog.reading() as session:
        disagree = [i for i, _s in ranking(session, "disagree")]
        uncertain = [i for i, _s in ranking(session, "uncertain")]
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

    clock.lap("review")
    budget = round(len(groups) * config.budget)
    chosen = disagree[: round(budget * config.disagree_share)]
    from_disagree = len(chosen)
    seen = set(chosen)
    for image_id in uncertain:
        if len(chosen) >= budget:
            break
        if image_id not in seen:
            chosen.append(image_id)
            seen.add(image_id)
    step(
        f"a simulated reviewer who knows the truth looks at {len(chosen)} images: the top of "
        "the disagree queue, then of uncertain"
    )
    decisions: dict[str, list[int]] = {}
    for image_id in chosen:
        item = truth.get(image_id)
        decisions.setdefault(item.truth if item and item.truth else "reject", []).append(image_id)
    with catalog.writing() as session:
        for label, ids in decisions.items():
            label_images(session, image_ids=ids, label=label, author="demo reviewer")
    result.review = {
        "budget": budget,
        "looked_at": len(chosen),
        "from_disagree": from_disagree,
        "wrong_labels_fixed": len(set(chosen) & wrong),
        "wrong_labels_left": len(wrong - set(chosen)),
        "decisions": {k: len(v) for k, v in decisions.items()},
    }

    clock.lap("round 2")
    step(f"round 2: fine-tuning model {first} on the corrected labels")
    second = _train(
        catalog, home, config, "training round 2", progress, start=model.folder / "model.pt"
    )
    model2 = load_registered(catalog, home, second, device=config.device)
    score_catalog(catalog, home, model2, workers=config.workers)
    test_ids = [
        i for i, split in groups.items() if split == "test" and i in truth and truth[i].truth
    ]
    for name, model_id in (("round 1", first), ("round 2", second)):
        result.rounds[name] = {"model": model_id, **_metrics(catalog, model_id, test_ids, truth)}

    clock.lap("new photos")
    step(f"scoring {2 * config.new_photos} new photos in bulk with model {second}")
    result.new_photos = _score_new_photos(home, model2, config)

    clock.lap("explain")
    step(f"Grad-CAM for {config.explain} test images")
    result.explained = _explain(home, model2, test_ids, truth, config.explain)


def _metrics(catalog: Any, model_id: int, ids: list[int], truth: dict[int, Item]) -> dict[str, Any]:
    from classifier.metrics import classification_metrics
    from db.predictions import latest_predictions

    with catalog.reading() as session:
        found = latest_predictions(session, image_ids=ids, model_id=model_id)
    ids = [i for i in ids if i in found]
    probs = np.array([[found[i].probs[c] for c in CLASSES] for i in ids])
    target = np.array([CLASSES.index(truth[i].truth or "") for i in ids])
    metrics = classification_metrics(probs, target, list(CLASSES))
    metrics.pop("per_class", None)
    return metrics


def _score_new_photos(home: Path, model: Any, config: DemoConfig) -> dict[str, Any]:
    from curator.ingest.importer import collect_inputs
    from curator.learn.outputs import RowWriter
    from curator.learn.scoring import score_files

    files = collect_inputs([str(home / "new-photos")]).files
    out = home / "new-photos.csv"
    with open(out, "w", encoding="utf-8", newline="") as fh:
        counts = score_files(
            model, files, RowWriter(fh, "csv", model.classes, False), workers=config.workers
        )
    truth = {
        str(home / "new-photos" / row["file"]): row["truth"]
        for row in json.loads((home / "new-photos-truth.json").read_text())
    }
    import csv

    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    right = sum(1 for r in rows if r["predicted"] == truth.get(r["path"]))
    return {**counts, "csv": str(out), "accuracy": right / max(len(rows), 1)}


def _explain(
    home: Path, model: Any, ids: list[int], truth: dict[int, Item], count: int
) -> list[str]:
    from curator.learn.explaining import write_explanation
    from db.catalog import open_catalog
    from db.models import Image

    out = home / "report"
    by_class = [[i for i in ids if truth[i].truth == label] for label in CLASSES]
    picked: list[int] = []
    for rank in range(max(map(len, by_class), default=0)):  # the classes in turn
        picked += [group[rank] for group in by_class if rank < len(group)]
    catalog = open_catalog(f"sqlite:///{home / 'catalog.db'}")
    files: list[str] = []
    try:
        with catalog.reading() as session:
            paths = {i: home / session.get(Image, i).path for i in picked}  # type: ignore[union-attr]
    finally:
        catalog.dispose()
    for image_id in picked[:count]:
        done = write_explanation(model, f"image-{image_id}", paths[image_id], out)
        files.append(str(done.files[done.explanation.predicted].relative_to(out)))
    return files


SMALL = (
    "(small pictures and resnet18 so that it runs in minutes on two CPU cores; "
    "<code>curator demo --full</code> runs the paper's ResNet-34 at 512 px)"
)


def _plot_noise_found(noise: dict[str, Any], review: dict[str, Any], path: Path) -> str:
    """Wrong labels found against images looked at, down the disagree queue and in a random
    order; returns the figure's file name ("" when there is nothing to draw)."""
    from classifier.report import pyplot

    found = noise.get("found_along_queue") or []
    total = noise.get("wrong_weak_labels") or 0
    if not found or not total:
        return ""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    looked = np.arange(1, len(found) + 1)
    ax.plot(looked, np.array(found) / total * 100, label="down the disagree queue")
    share = noise.get("wrong_in_ranking", total) / total * 100
    ax.plot(looked, looked / len(found) * share, ":", color="grey", label="in a random order")
    if review.get("from_disagree"):
        ax.axvline(review["from_disagree"], color="#c33", lw=1, label="where the reviewer stopped")
    ax.set(
        xlabel="images looked at",
        ylabel="wrong weak labels found (%)",
        ylim=(0, 100),
        title="label noise found by the disagree queue",
    )
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def write_demo_report(home: Path, result: DemoResult) -> Path:
    from classifier.report import plot_confusion

    out = home / "report"
    out.mkdir(parents=True, exist_ok=True)
    for name, metrics in result.rounds.items():
        if "confusion" in metrics:
            plot_confusion(
                metrics["confusion"],
                list(CLASSES),
                f"{name}: test split against the truth",
                out / f"confusion-{name.replace(' ', '')}.png",
            )
    curve = _plot_noise_found(result.noise, result.review, out / "noise-found.png")
    esc = html.escape
    c = result.config

    def pct(v: Any) -> str:
        return "-" if v is None else f"{v * 100:.1f} %"

    crawl_rows = []
    for query, counts in result.crawl.items():
        reasons = counts.get("failed_by_reason") or {}
        failed = ", ".join(f"{esc(str(k))} {v}" for k, v in reasons.items())
        crawl_rows.append(
            f"<tr><td>{esc(query)}</td><td>{counts.get('added', 0)}</td>"
            f"<td>{counts.get('exact_duplicate', 0)}</td><td>{counts.get('near_duplicate', 0)}</td>"
            f"<td>{counts.get('failed', 0)}</td><td>{failed or '-'}</td></tr>"
        )

    def auc(m: dict[str, Any]) -> str:
        return "-" if m.get("roc_auc") is None else f"{m['roc_auc']:.3f}"

    round_rows = "".join(
        f"<tr><td>{esc(name)} (model {m['model']})</td><td>{pct(m.get('accuracy'))}</td>"
        f"<td>{m.get('f1', 0):.3f}</td><td>{auc(m)}</td><td>{m.get('n', 0)}</td></tr>"
        for name, m in result.rounds.items()
    )
    confusions = "".join(
        f'<img src="confusion-{name.replace(" ", "")}.png" alt="confusion matrix, {esc(name)}">'
        for name, metrics in result.rounds.items()
        if "confusion" in metrics
    )
    gradcams = "".join(f'<img src="{esc(f)}" alt="Grad-CAM">' for f in result.explained)
    n, r, pl, np_ = result.noise, result.review, result.planted, result.new_photos
    times = ", ".join(f"{esc(k)} {v:.0f} s" for k, v in result.seconds.items() if k)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>curator demo report</title>
<style>
body {{ font: 15px/1.5 system-ui, sans-serif; max-width: 980px; margin: 2em auto; padding: 0 1em; }}
table {{ border-collapse: collapse; margin: .5em 0 1.5em; }}
td, th {{ border: 1px solid #ccc; padding: .25em .6em; text-align: left; }}
img {{ max-width: 460px; margin: .3em; vertical-align: top; }}
code, pre {{ background: #f4f4f4; }} pre {{ padding: .6em; overflow-x: auto; }}
</style></head><body>
<h1>curator demo</h1>
<p>The whole job on a generated web, offline: crawl, de-duplicate, train on weak labels, score,
review the queues, train again. Model: {esc(c["backbone"])} at {c["image_size"]} px,
{c["epochs"]} epochs from starting weights {esc(c["weights"])}, batch {c["batch_size"]}, learning
rate {c["lr"]:g}; round 2 fine-tunes round 1 for {c["finetune_epochs"]} epochs at
{c["finetune_lr"]:g} {SMALL if c["image_size"] < 512 else ""}. This machine: {esc(result.machine)}.
Time: {times}.</p>

<h2>Crawled</h2>
<p>{pl.get("pictures", 0)} generated pictures behind a local search engine in Bing's
format, with {pl.get("exact", 0)} exact copies, {pl.get("near", 0)} near copies,
{pl.get("broken", 0)} broken files and {pl.get("off_topic", 0)} off-topic pictures
planted; {pl.get("wrong_labels", 0)} pictures sit under the wrong query.</p>
<table><tr><th>query</th><th>added</th><th>exact duplicates</th><th>near duplicates</th>
<th>rejected</th><th>why</th></tr>{"".join(crawl_rows)}</table>
<p>De-duplication over the whole catalog: {result.dedup.get("groups", 0)} near-duplicate groups
holding {result.dedup.get("in_groups", 0)} images.</p>

<h2>Label noise, found by the queue</h2>
<p>{n.get("wrong_weak_labels", 0)} of {n.get("groups", 0)} groups carried a wrong weak label.
The first 10 % of the <code>disagree</code> queue ({n.get("top_10pct", 0)} images, ranked by
{c["folds"]}-fold cross-fitted predictions) held {n.get("wrong_in_top_10pct", 0)} of them:
{pct(n.get("recall_at_10pct"))} (a random order: about 10 %).</p>
{f'<img src="{curve}" alt="wrong labels found down the disagree queue">' if curve else ""}
<p>The simulated reviewer looked at {r.get("looked_at", 0)} images ({r.get("from_disagree", 0)} from
the top of <code>disagree</code>, the rest from <code>uncertain</code>) and fixed
{r.get("wrong_labels_fixed", 0)} wrong labels; {r.get("wrong_labels_left", 0)} were left.</p>

<h2>Accuracy on the test split, against the truth</h2>
<table><tr><th>model</th><th>accuracy</th><th>F1</th><th>ROC AUC</th><th>images</th></tr>
{round_rows}</table>
{confusions}
<p>New photos scored in bulk by the round 2 model: {np_.get("scored", 0)} files,
accuracy {pct(np_.get("accuracy"))} (<code>{esc(str(np_.get("csv", "")))}</code>).</p>

<h2>Why the model decided: Grad-CAM</h2>
<p>The round 2 model's class activation on test pictures (red: what pushed it towards the
class it predicted). The map has one cell per 32 pixels of input, {c["image_size"] // 32} x
{c["image_size"] // 32} here, hence the soft blobs; at 512 px it has 16 x 16.</p>
{gradcams}

<h2>The same on real data</h2>
<pre>curator crawl "happy couple" "smiling couple" --label happy --max 500
curator crawl "unhappy couple" "couple arguing" --label unhappy --max 500
curator dedup
curator train --include-weak                  # round 1, on the queries' labels: model 1
curator score                                 # the uncertain queue
curator score --folds 5                       # the disagree queues (out-of-sample)
curator review --queue weak-disagree          # then --queue uncertain
curator train --include-weak --weights ~/.local/share/curator/models/1/model.pt --epochs 6
curator score ~/new-photos --out predictions.csv
curator explain 42</pre>
</body></html>
"""
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
