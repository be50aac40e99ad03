"""curator from Python: what the commands do, for a notebook or a script.

    import curator

    catalog = curator.open("~/couples")               # a home folder (CURATOR_HOME if none)
    catalog.import_paths(["~/Pictures/happy"], label="happy")
    catalog.dedup()
    rows = catalog.images(split="train")              # a DataFrame: labels, predictions
    pictures = catalog.torch_dataset(split="train", size=224)  # (tensor, class index)
    model = catalog.train(backbone="resnet18", image_size=128, weights="none", epochs=8)
    catalog.score()                                   # predictions for the review queues
    catalog.queue("uncertain", limit=20)
    catalog.close()

Each method is the command of the same name, through the same code: the same checks, the
same runs on record, the same one-sentence errors (`curator.errors.CuratorError` and
`db.errors.CatalogError`). Heavy parts (torch, the crawler) load only when a method needs
them, so ``import curator`` stays quick.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from curator.config import Layout, Settings, load_settings
from db.catalog import Catalog as Database
from db.catalog import open_catalog

if TYPE_CHECKING:
    import pandas

    from classifier.config import Progress
    from classifier.data import ModelInputs
    from curator.crawl.query import CrawlProgress
    from curator.learn.crossfit import CrossFitOutcome
    from curator.learn.training import TrainOutcome


@dataclass(frozen=True)
class ImageRow:
    """One image as the catalog knows it. ``label`` is its group's (the one every command
    goes by); ``predicted``/``confidence`` are the default model's, when it scored it."""

    id: int
    sha256: str
    path: Path
    split: str
    status: str
    duplicate_of: int | None
    width: int
    height: int
    label: str | None
    label_origin: str | None
    predicted: str | None = None
    confidence: float | None = None
    #: The same prediction's probability of each class.
    probs: dict[str, float] | None = None


def _author() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


class Catalog:
    """A catalog and its home folder (images, thumbnails, models). Use as a context manager,
    or call `close` when done."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = settings.home
        self.layout = Layout(settings.home)
        self.db: Database = open_catalog(settings.db_url)

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.db.dispose()

    def __repr__(self) -> str:
        return f"curator.Catalog({str(self.home)!r})"

    # -- reading ------------------------------------------------------------------------------

    def classes(self) -> list[str]:
        from db.settings import get_classes

        with self.db.reading() as session:
            return get_classes(session)

    def set_classes(self, names: Sequence[str]) -> list[str]:
        """`curator classes A B ...`: replace the class names (a class images are labeled
        with cannot be removed); returns them as stored."""
        from db.labels import replace_classes

        with self.db.writing() as session:
            return replace_classes(session, classes=list(names))

    def stats(self) -> dict[str, Any]:
        """What `curator stats --json` prints."""
        from curator.stats import catalog_stats

        with self.db.reading() as session:
            return catalog_stats(session)

    def images(
        self,
        *,
        split: str | None = None,
        label: str | None = None,
        status: str | None = "active",
        model: int | None = None,
    ) -> pandas.DataFrame | list[dict[str, Any]]:
        """The images as a table: a pandas DataFrame when pandas is installed, else a list of
        dicts, one row per image with the fields of `ImageRow` (``path`` as a string).
        The filters are those of `image_rows`."""
        from dataclasses import asdict

        rows = [
            {**asdict(r), "path": str(r.path)}
            for r in self.image_rows(split=split, label=label, status=status, model=model)
        ]
        try:
            import pandas
        except ImportError:
            return rows
        return pandas.DataFrame(rows, columns=list(ImageRow.__dataclass_fields__))

    def image_rows(
        self,
        *,
        split: str | None = None,
        label: str | None = None,
        status: str | None = "active",
        model: int | None = None,
    ) -> list[ImageRow]:
        """The images (active ones by default; ``status=None`` for duplicates too), with
        their group's label and the default model's (or ``model``'s) prediction."""
        from db.images import image_rows
        from db.predictions import latest_predictions
        from db.registry import default_model

        with self.db.reading() as session:
            rows = image_rows(session, split=split, label=label, status=status)
            chosen = model if model is not None else getattr(default_model(session), "id", None)
            scored = (
                latest_predictions(session, image_ids=[r.id for r in rows], model_id=chosen)
                if chosen is not None and rows
                else {}
            )
        out = []
        for r in rows:
            p = scored.get(r.id)
            out.append(
                ImageRow(
                    id=r.id,
                    sha256=r.sha256,
                    path=self.home / r.path,
                    split=r.split,
                    status=r.status,
                    duplicate_of=r.duplicate_of,
                    width=r.width,
                    height=r.height,
                    label=r.label,
                    label_origin=r.label_origin,
                    predicted=p.predicted if p else None,
                    confidence=p.confidence if p else None,
                    probs=dict(p.probs) if p else None,
                )
            )
        return out

    def torch_dataset(
        self,
        *,
        split: str = "train",
        size: int = 224,
        augment: str = "none",
        fit: str = "pad",
        include_weak: bool = False,
        normalized: bool = True,
    ) -> ModelInputs:
        """A torch Dataset of (picture tensor, class index) for one split, chosen and decoded
        as curator train does: one picture per near-duplicate group (its active
        representative), people's labels (and weak ones with ``include_weak``), groups people
        disagree on left out; each picture decoded, oriented and fitted to ``size`` (``fit``:
        pad, crop or stretch) and augmented (``augment``: none, light or reference). Its
        ``classes`` name the indices, in the catalog's order."""
        from classifier.data import SPLITS, CatalogDataset, ModelInputs, augmentation
        from curator.learn.examples import catalog_examples

        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}")
        classes = self.classes()
        with self.db.reading() as session:
            examples = catalog_examples(
                session, home=self.home, classes=classes, include_weak=include_weak
            )
        pictures = CatalogDataset(
            examples.splits[split], size=size, fit=fit, augment=augmentation(augment)
        )
        return ModelInputs(pictures, classes, normalized=normalized)

    def show(self, ref: int | str) -> dict[str, Any]:
        """Everything about one image, as `curator show --json` prints it."""
        from curator.stats import image_details

        with self.db.reading() as session:
            return image_details(session, ref=str(ref), home=str(self.home))

    def queue(self, name: str, *, limit: int = 20) -> list[dict[str, Any]]:
        """The first images of a review queue, as `curator queue NAME --json` lists them."""
        from db.queues import review_queue

        with self.db.reading() as session:
            page = review_queue(session, name=name, limit=limit)
        return [item.as_dict() for item in page.items]

    def ranking(self, name: str) -> list[tuple[int, float]]:
        """A ranked queue whole (``disagree``, ``outlier``, ``off-query``, ``issue:dark``...):
        (image id, score), first to review first. A queue that lacks what it ranks by (no
        predictions yet, no vectors) raises `db.queues.QueueUnavailable` saying what to run."""
        from db.queues import ranking

        with self.db.reading() as session:
            return ranking(session, name)

    def sources(self) -> list[dict[str, Any]]:
        """Where each image came from, one row per source in the order they came: ``image``
        (its id), ``locator`` (the URL or file), ``engine`` and ``query`` (None for an import)."""
        from db.images import image_provenance

        with self.db.reading() as session:
            return [
                {"image": image_id, "locator": locator, "engine": engine, "query": query}
                for image_id, locator, engine, query in image_provenance(session)
            ]

    def check(self, *, examples: int = 5) -> dict[str, Any]:
        """`curator check --json`: the count and examples of each issue type, near copies
        across splits, the label balance per split, and labels entangled with sources."""
        from curator.check import check_catalog

        return check_catalog(self.db, self.home, examples=examples)

    def models(self) -> list[dict[str, Any]]:
        """The registered models, newest first, as `curator models --json` lists them."""
        from db.registry import default_model, list_models

        with self.db.reading() as session:
            default = getattr(default_model(session), "id", None)
            return [
                {
                    "id": m.id,
                    "status": m.status,
                    "classes": list(m.classes),
                    "metrics": dict(m.metrics or {}),
                    "default": m.id == default,
                    "folder": str(self.home / m.path),
                }
                for m in list_models(session)
            ]

    # -- changing -----------------------------------------------------------------------------

    def import_paths(
        self,
        paths: Iterable[str | Path],
        *,
        label: str | None = None,
        relabel: bool = False,
        author: str | None = None,
        workers: int | None = None,
    ) -> dict[str, Any]:
        """`curator import`: files and folders into the catalog; returns the run's counts."""
        from curator.ingest.dedup import DEFAULT_THRESHOLD
        from curator.ingest.importer import import_paths

        return import_paths(
            self.db,
            self.home,
            [str(Path(p).expanduser()) for p in paths],
            label=label,
            relabel=relabel,
            author=author or _author(),
            threshold=DEFAULT_THRESHOLD,
            workers=workers,
        )

    def crawl(
        self,
        queries: Sequence[str],
        *,
        on_progress: Callable[[CrawlProgress], None] | None = None,
        **options: Any,
    ) -> dict[str, Any]:
        """`curator crawl`: ``options`` are `curator.crawl.runner.CrawlOptions` fields
        (engine, max_images, label, threads, policy...); returns counts per query."""
        from curator.crawl.runner import CrawlOptions, crawl

        options.setdefault("author", _author())
        return crawl(
            self.db, self.home, list(queries), CrawlOptions(**options), on_progress=on_progress
        )

    def dedup(self, *, threshold: int | None = None, crops: bool | None = None) -> dict[str, Any]:
        """`curator dedup`: near-duplicate groups over the whole catalog (with ``crops``,
        copies cut from a picture too; None: up to `curator.ingest.crops.CROPS_AUTO_LIMIT`
        pictures); returns its summary."""
        from curator.ingest.dedup import DEFAULT_THRESHOLD, run_dedup

        _plan, summary = run_dedup(
            self.db, self.home, threshold=threshold or DEFAULT_THRESHOLD, crops=crops
        )
        return summary

    def label(
        self, image_ids: Sequence[int], label: str | None, *, author: str | None = None
    ) -> int:
        """`curator label`: a person's decision for these images (None withdraws it);
        returns the number of label events written (a group's members included)."""
        from db.labels import label_images

        with self.db.writing() as session:
            events = label_images(
                session, image_ids=list(image_ids), label=label, author=author or _author()
            )
        return len(events)

    # -- models -------------------------------------------------------------------------------

    def train(
        self,
        *,
        restart: bool = True,
        checkpoints: bool = True,
        report: bool = True,
        on_progress: Callable[[Progress], None] | None = None,
        **settings: Any,
    ) -> TrainOutcome:
        """`curator train`: ``settings`` are fields of `classifier.config.ModelConfig`
        (backbone, head, image_size, fit), `TrainConfig` (epochs, batch_size, lr, weights,
        include_weak, augment...) and `Machine` (device, workers, cache_mb), each in its
        place. As on the command line, the weights (default imagenet) choose the recipe and
        every training setting not given takes its value; ``lr="auto"`` runs the range test.
        ``checkpoints`` False keeps no checkpoint to resume from (a run rebuilt each time),
        ``report`` False writes no report.html.
        Returns the outcome: the model's id, folder, report, metrics, verdict and recipe."""
        from classifier.config import Machine, ModelConfig, TrainConfig
        from curator.learn.training import choose_recipe, train_model

        parts: dict[type, dict[str, Any]] = {ModelConfig: {}, TrainConfig: {}, Machine: {}}
        for key, value in settings.items():
            owner = next((c for c in parts if key in {f.name for f in fields(c)}), None)
            if owner is None or key == "lr_auto":
                raise TypeError(f"train() got an unknown setting {key!r}")
            parts[owner][key] = value
        training = parts[TrainConfig]
        lr_auto = isinstance(training.get("lr"), str) and training["lr"].lower() == "auto"
        if lr_auto:
            training.pop("lr")
        weights = str(training.pop("weights", "imagenet"))
        return train_model(
            self.db,
            self.home,
            model_cfg=ModelConfig(**parts[ModelConfig]),
            recipe=choose_recipe(weights, lr_auto=lr_auto, **training),
            machine=Machine(**parts[Machine]),
            restart=restart,
            checkpoints=checkpoints,
            report=report,
            on_progress=on_progress or (lambda _p: None),
        )

    def score(
        self, *, model: int | None = None, rescore: bool = False, **options: Any
    ) -> dict[str, Any]:
        """`curator score`: the model's (the default one's) predictions for every active
        image, written back for the review queues; returns the counts."""
        from curator.learn.models import load_registered
        from curator.learn.scoring import score_catalog

        device = options.pop("device", "auto")
        loaded = load_registered(self.db, self.home, model, device=device)
        return score_catalog(self.db, self.home, loaded, rescore=rescore, **options)

    def score_files(
        self,
        paths: Iterable[str | Path],
        out: str | Path,
        *,
        model: int | None = None,
        format: str | None = None,
        device: str = "auto",
        **options: Any,
    ) -> dict[str, Any]:
        """`curator score PATHS --out FILE`: the model's (the default one's) predictions for
        picture files and folders, into a CSV or JSON Lines file (by its suffix, or
        ``format``), written beside and renamed into place when whole; the catalog is not
        changed. An interrupted call leaves its rows in ``FILE.partial``, and the same call
        again scores only the rest, as the command does. ``options``: batch_size, workers,
        on_progress. Returns the counts (``kept``: rows continued from ``FILE.partial``)."""
        from curator.ingest.door import display_path
        from curator.ingest.importer import collect_inputs
        from curator.learn.models import load_registered
        from curator.learn.outputs import RowWriter, kept_rows, open_output, output_format
        from curator.learn.scoring import score_files

        target = Path(out).expanduser()
        fmt = output_format(target, format)
        files = collect_inputs([str(Path(p).expanduser()) for p in paths]).files
        loaded = load_registered(self.db, self.home, model, device=device)
        made_by = {"model": loaded.id, "format": fmt, "classes": loaded.classes, "with_ids": False}
        # An interrupted call's rows, when the same model wrote them in the same format.
        kept = kept_rows(target, made_by, {display_path(p) for p in files})
        with open_output(target, made_by) as fh:
            writer = RowWriter(fh, fmt, loaded.classes, with_ids=False)
            counts = score_files(loaded, files, writer, kept=kept, **options)
            return {"model": loaded.id, **counts}

    def explain(
        self,
        ref: int | str,
        out: str | Path = ".",
        *,
        model: int | None = None,
        device: str = "auto",
    ) -> dict[str, Any]:
        """`curator explain`: Grad-CAM per class and the activation plot of one picture (a
        catalog image by id or sha256 prefix, or a file) as PNG files in ``out``; returns
        what `curator explain --json` prints, and ``gradcam``: each class's file."""
        from curator.learn.explaining import resolve, write_explanation
        from curator.learn.models import load_registered

        name, file = resolve(self.db, self.home, str(ref))
        loaded = load_registered(self.db, self.home, model, device=device)
        done = write_explanation(loaded, name, file, Path(out).expanduser())
        classes = done.explanation.classes
        gradcam = {c: str(f) for c, f in zip(classes, done.files, strict=False)}
        return {**done.as_dict(loaded.id), "gradcam": gradcam}

    def embed(
        self, *, embedder: str = "model", model: int | None = None, **options: Any
    ) -> dict[str, Any]:
        """`curator embed`: every active image as a vector (``embedder``: model, imagenet or
        clip; ``clip_model`` and ``device`` choose further), and the outlier, clusters and
        (CLIP) off-query queues brought up to date; returns the counts."""
        from curator.learn.embedding import embed_catalog, load_embedder

        chosen = {k: options.pop(k) for k in ("clip_model", "device") if k in options}
        loaded = load_embedder(self.db, self.home, embedder, model_ref=model, **chosen)
        return embed_catalog(self.db, self.home, loaded, **options)

    def similar(self, ref: int | str, *, limit: int = 20) -> list[dict[str, Any]]:
        """`curator similar`: the pictures most like an image (id, sha256 prefix or a file),
        nearest first, each with its similarity."""
        from curator.learn.neighbours import similar

        _id, found = similar(self.db, self.home, str(ref), limit=limit)
        return [n.as_dict() for n in found]

    def search(self, text: str, *, limit: int = 20) -> list[dict[str, Any]]:
        """`curator search`: the pictures the words describe (CLIP vectors)."""
        from curator.learn.neighbours import text_search

        return [n.as_dict() for n in text_search(self.db, self.home, text, limit=limit)]

    def cross_fit(
        self, *, folds: int | None = None, model: int | None = None, **options: Any
    ) -> CrossFitOutcome:
        """`curator score --folds K`: out-of-sample predictions for every labeled group, for
        the disagree queues; ``folds`` None: as many as the catalog's size supports. Returns
        the folds' models, their val accuracy and verdict, and counts."""
        from curator.learn.crossfit import cross_fit

        return cross_fit(self.db, self.home, base_ref=model, folds=folds, **options)


def open(home: str | Path | None = None, *, db_url: str | None = None) -> Catalog:
    """The catalog of ``home`` (else CURATOR_HOME, else the user's data folder), made and
    brought up to date on first use; ``db_url`` points it at another database."""
    settings = load_settings(home=Path(home).expanduser() if home else None, db_url=db_url)
    return Catalog(settings)
