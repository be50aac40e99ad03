"""``curator score``: a trained model's opinion, written back to the catalog or to a file.

* The catalog: every active image gets a row in ``predictions`` (probabilities per class, the
  predicted class, its confidence and margin, and whether the model trained on the image).
  Rows are written batch by batch, so an interrupted run keeps what it scored, and a rerun
  scores only what this model has not scored yet.
* Files and folders: one row per file (path, predicted class, probabilities, or the reason it
  could not be read) to CSV or JSON Lines; ``--add`` also imports them.
* Cross-fitting (``--folds K``): K models, each trained on all labeled groups but one fold,
  score the fold they did not see. Every labeled image then has an out-of-sample prediction,
  which is what the ``disagree`` queues rank (a model's opinion of an image it trained on
  mostly repeats its label).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from PIL import Image as PILImage
from PIL import UnidentifiedImageError
from sqlalchemy import select

from classifier.data import Examples, catalog_examples
from classifier.errors import TrainingError
from classifier.model import DeepConnection, ModelConfig
from classifier.score import Predictor, score_paths
from classifier.train import (
    Progress,
    TrainConfig,
    check_examples,
    fit,
    load_model,
    pick_device,
)
from curator import __version__
from curator.display import escape_controls
from curator.errors import CuratorError
from curator.ingest.door import display_path
from curator.ingest.imaging import describe_non_image
from curator.registry import classes_differ
from curator.runs import tracked_run
from curator.training import mark_unfinished, record_result, register_model
from db.catalog import Catalog
from db.images import ACTIVE
from db.models import Image, Model, Prediction
from db.predictions import prediction_row, replace_predictions
from db.registry import CROSS_FIT, SCORING, get_model, update_model
from db.settings import get_classes

#: Rows written per catalog transaction.
WRITE_EVERY = 256


@dataclass
class LoadedModel:
    id: int
    classes: list[str]
    size: int
    fit: str
    train_ids: frozenset[int]
    predictor: Predictor
    network: DeepConnection
    folder: Path
    val_ids: frozenset[int] = frozenset()  # chose its best epoch: seen, if not learned from


def load_registered(
    catalog: Catalog, home: Path, ref: int | None, *, device: str = "auto", amp: bool = True
) -> LoadedModel:
    """The registered model ``ref`` (default: the newest finished one), ready to score."""
    with catalog.reading() as session:
        row = get_model(session, ref=ref)
        if row.status not in ("done", CROSS_FIT, SCORING):
            raise CuratorError(f"model {row.id} is {row.status}, not trained; see curator models")
        model_id, relpath = row.id, row.path
    path = home / relpath / "model.pt"
    if not path.exists():
        raise CuratorError(f"model {model_id}'s file is missing: {path}")
    target = pick_device(device)
    try:
        network, state = load_model(path, device=str(target))
    except TrainingError:
        raise
    except Exception as exc:
        raise CuratorError(f"cannot load model {model_id} from {path}: {exc}") from None
    return LoadedModel(
        id=model_id,
        classes=list(state["classes"]),
        size=int(state["config"]["image_size"]),
        fit=str(state["training"].get("fit", "pad")),
        train_ids=frozenset(int(i) for i in state.get("splits", {}).get("train", [])),
        val_ids=frozenset(int(i) for i in state.get("splits", {}).get("val", [])),
        predictor=Predictor(network, target, amp=amp),
        network=network,
        folder=path.parent,
    )


def class_mismatch(catalog: Catalog, model: LoadedModel) -> dict[str, list[str]] | None:
    """The model's classes and the catalog's, when they are not the same names (the catalog's
    were changed after it trained); None when they are.

    Its predictions are still written, and the queues still use them: the uncertain queue
    ranks by the margin between the model's own two likeliest classes, which still marks the
    pictures it hesitates on, and the disagree queues count a prediction only where the
    image's label is one of the model's classes (db/queues.py). Leaving them out would empty
    the queues while the new classes are being labeled, before a model of them can be
    trained; the caller warns instead."""
    with catalog.reading() as session:
        classes = get_classes(session)
    if not classes_differ(model.classes, classes):
        return None
    return {"model": list(model.classes), "catalog": classes}


def describe_failure(path: str, exc: BaseException) -> str:
    """Why a file could not be scored, in a few words."""
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, IsADirectoryError):
        return "a folder, not a file"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, PILImage.DecompressionBombError):
        return f"too many pixels: {exc}"
    if isinstance(exc, UnidentifiedImageError):
        try:
            with open(path, "rb") as fh:
                head = fh.read(4096)
        except OSError as err:
            return f"unreadable: {err.strerror or err}"
        return "zero-byte file" if not head else describe_non_image(head)
    if isinstance(exc, OSError) and "truncated" in str(exc):
        return "truncated or damaged image"
    return f"cannot decode: {type(exc).__name__}: {exc}"


@dataclass
class ScoreProgress:
    done: int
    total: int
    failed: int = 0
    status: str = ""


# --- the catalog ---------------------------------------------------------------------------


def score_catalog(
    catalog: Catalog,
    home: Path,
    model: LoadedModel,
    *,
    rescore: bool = False,
    image_ids: list[int] | None = None,
    shard: tuple[int, int] | None = None,
    batch_size: int = 32,
    workers: int = 2,
    on_progress: Callable[[ScoreProgress], None] = lambda _p: None,
) -> dict[str, Any]:
    """Predictions of ``model`` for the catalog's active images (or ``image_ids``); with
    ``shard`` (i, n), only the images of shard i of n (`shard_of`), so that n processes or
    machines can score one catalog together."""
    with catalog.reading() as session:
        query = select(Image.id, Image.path).where(Image.status == ACTIVE).order_by(Image.id)
        if image_ids is not None:
            query = query.where(Image.id.in_(image_ids))
        rows = list(session.execute(query))
        if shard is not None:
            rows = [(i, p) for i, p in rows if shard_of(i, shard[1]) == shard[0]]
        trained = trained_groups(session, model.train_ids)
        done = (
            set()
            if rescore
            else set(
                session.scalars(select(Prediction.image_id).where(Prediction.model_id == model.id))
            )
        )
    todo = [(i, str(home / p)) for i, p in rows if i not in done]
    counts: dict[str, Any] = {
        "model": model.id,
        "images": len(rows),
        "already_scored": len(rows) - len(todo),
        "scored": 0,
        "failed": 0,
        "in_sample": 0,
    }
    params = {"model": model.id, "rescore": rescore, "images": len(todo)}
    if shard is not None:
        counts["shard"] = params["shard"] = f"{shard[0] + 1}/{shard[1]}"
    with tracked_run(catalog, kind="score", params=params) as run:
        run.counts = counts
        pending: list[dict[str, Any]] = []
        progress = ScoreProgress(done=0, total=len(todo))
        on_progress(progress)

        def flush() -> None:
            if pending:
                with catalog.writing() as session:
                    replace_predictions(session, model_id=model.id, rows=pending)
                pending.clear()

        try:
            for batch in score_paths(
                model.predictor,
                [path for _i, path in todo],
                size=model.size,
                fit=model.fit,
                batch_size=batch_size,
                workers=workers,
                describe=describe_failure,
            ):
                for result in batch:
                    image_id = todo[result.index][0]
                    if result.probs is None:
                        counts["failed"] += 1
                        counts.setdefault("failures", {})[str(image_id)] = result.error
                        continue
                    in_sample = image_id in trained
                    counts["in_sample"] += int(in_sample)
                    pending.append(
                        prediction_row(
                            model_id=model.id,
                            image_id=image_id,
                            probs=result.probs.tolist(),
                            classes=model.classes,
                            in_sample=in_sample,
                        )
                    )
                    counts["scored"] += 1
                progress.done += len(batch)
                progress.failed = counts["failed"]
                on_progress(progress)
                if len(pending) >= WRITE_EVERY:
                    flush()
        finally:
            flush()  # what was scored is kept, even on Ctrl-C
    return counts


def trained_groups(session: Any, train_ids: frozenset[int]) -> set[int]:
    """The images whose near-duplicate group a model trained on: its training images and
    their groups' representatives (the representative may have changed since)."""
    reps: set[int] = set(train_ids)
    ids = list(train_ids)
    for start in range(0, len(ids), 900):
        reps.update(
            rep
            for rep in session.scalars(
                select(Image.duplicate_of).where(
                    Image.id.in_(ids[start : start + 900]), Image.duplicate_of.is_not(None)
                )
            )
        )
    return reps


# --- files and folders ---------------------------------------------------------------------


class RowWriter:
    """CSV or JSON Lines rows, flushed batch by batch, to a file or standard output."""

    def __init__(self, out: IO[str], fmt: str, classes: list[str], with_ids: bool) -> None:
        self.out, self.fmt, self.classes, self.with_ids = out, fmt, classes, with_ids
        # CSV rows on a terminal are read, not parsed: a file name's ESC or newline is shown
        # escaped there; in a file or a pipe it is kept exactly. (JSON escapes them anyway.)
        self.text: Callable[[str], str] = escape_controls if _is_terminal(out) else str
        self.csv: Any = None
        #: Rows written so far (kept ones included).
        self.rows = 0
        if fmt == "csv":
            self.csv = csv.writer(out, lineterminator="\n")
            self.csv.writerow([self.text(name) for name in csv_header(classes, with_ids)])

    def write_kept(self, kept: Kept) -> None:
        """The rows an interrupted run wrote, as it wrote them."""
        for row in kept.rows:
            if self.csv is not None:
                self.csv.writerow(row)
            else:
                self.out.write(row + "\n")
        self.rows += len(kept.rows)

    def write(self, path: str, probs: np.ndarray | None, error: str | None, image_id: Any) -> None:
        shown = display_path(path)
        if probs is None:
            predicted, confidence, values = "", None, [None] * len(self.classes)
        else:
            best = int(np.argmax(probs))
            predicted, confidence = self.classes[best], round(float(probs[best]), 6)
            values = [round(float(p), 6) for p in probs]
        if self.csv is not None:
            row = [self.text(shown), self.text(predicted), "" if confidence is None else confidence]
            row += ["" if v is None else v for v in values] + [self.text(error or "")]
            self.csv.writerow([*row, image_id or ""] if self.with_ids else row)
        else:
            record: dict[str, Any] = {
                "path": shown,
                "predicted": predicted or None,
                "confidence": confidence,
                "probs": None if probs is None else dict(zip(self.classes, values, strict=True)),
                "error": error,
            }
            if self.with_ids:
                record["image_id"] = image_id
            self.out.write(json.dumps(record) + "\n")
        self.rows += 1

    def flush(self) -> None:
        self.out.flush()


def csv_header(classes: list[str], with_ids: bool) -> list[str]:
    header = ["path", "predicted", "confidence", *[f"p_{c}" for c in classes], "error"]
    return [*header, "image_id"] if with_ids else header


def _is_terminal(out: IO[str]) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError):  # not a real stream, or closed
        return False


def output_format(out: Path | None, fmt: str | None) -> str:
    if fmt:
        if fmt not in ("csv", "jsonl"):
            raise CuratorError(f"--format {fmt!r}: csv or jsonl")
        return fmt
    if out is None or out.suffix.lower() == ".csv":
        return "csv"
    if out.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    raise CuratorError(f"{out}: name it .csv or .jsonl (or say --format csv|jsonl)")


def partial_of(out: Path) -> Path:
    """Where an interrupted run leaves the rows it wrote to ``out``."""
    return out.with_name(f"{out.name}.partial")


def _made_by_of(out: Path) -> Path:
    # What wrote FILE.partial (model, format, columns): a rerun continues only the same run.
    return out.with_name(f".{out.name}.partial.json")


@dataclass
class Kept:
    """The rows of an interrupted run's ``FILE.partial`` that a rerun keeps instead of
    scoring their files again: CSV rows as lists of fields, JSON Lines as lines."""

    rows: list[Any] = field(default_factory=list)
    paths: set[str] = field(default_factory=set)
    failed: int = 0
    by_class: dict[str, int] = field(default_factory=dict)

    def add(self, row: Any, path: str, predicted: str | None) -> None:
        self.rows.append(row)
        self.paths.add(path)
        if predicted:
            self.by_class[predicted] = self.by_class.get(predicted, 0) + 1
        else:
            self.failed += 1


def kept_rows(out: Path, made_by: dict[str, Any], wanted: set[str]) -> Kept | None:
    """The rows of ``FILE.partial`` for the paths in ``wanted`` (as written), if the same
    model wrote it in the same format; None when there is nothing to continue."""
    try:
        if json.loads(_made_by_of(out).read_text(encoding="utf-8")) != made_by:
            return None
        text = partial_of(out).read_text(encoding="utf-8")
    except (OSError, ValueError):
        return None
    kept = Kept()
    if made_by["format"] == "csv":
        records = list(csv.reader(io.StringIO(text, newline="")))
        if not records or records[0] != csv_header(made_by["classes"], made_by["with_ids"]):
            return None
        complete = records[1:] if text.endswith("\n") else records[1:-1]  # a cut last row
        for row in complete:
            if len(row) == len(records[0]) and row[0] in wanted and row[0] not in kept.paths:
                kept.add(row, row[0], row[1])
        return kept
    for line in text.splitlines():
        try:
            record = json.loads(line)
            path, predicted = record["path"], record["predicted"]
        except (ValueError, TypeError, KeyError):
            continue  # a line cut short
        if path in wanted and path not in kept.paths:
            kept.add(line, path, predicted)
    return kept


@contextmanager
def open_output(out: Path | None, made_by: dict[str, Any] | None = None) -> Iterator[IO[str]]:
    """The output file (written beside, renamed into place at the end; an interrupted run
    leaves its rows in ``FILE.partial``, and what wrote them, ``made_by``, beside it) or
    standard output."""
    if out is None:
        import sys

        yield sys.stdout
        return
    if out.is_dir():
        raise CuratorError(f"{out} is a folder; --out needs a file name")
    if not out.parent.is_dir():
        raise CuratorError(f"no such folder: {out.parent}")
    partial = out.with_name(f".{out.name}.partial")
    try:
        fh = open(partial, "w", encoding="utf-8", newline="")  # noqa: SIM115 (closed below)
    except OSError as exc:
        raise CuratorError(f"cannot write {out}: {exc.strerror or exc}") from None
    try:
        with fh:
            yield fh
    except BaseException:
        # Keep what was scored, beside the output (never over an earlier, complete one).
        with contextlib.suppress(OSError):
            _made_by_of(out).write_text(json.dumps(made_by or {}), encoding="utf-8")
            os.replace(partial, partial_of(out))
        raise
    os.replace(partial, out)
    for done in (partial_of(out), _made_by_of(out)):
        with contextlib.suppress(FileNotFoundError):
            done.unlink()


def sha256_of(path: str) -> str | None:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    except OSError:
        return None
    return digest.hexdigest()


def score_files(
    model: LoadedModel,
    files: list[str],
    writer: RowWriter,
    *,
    catalog: Catalog | None = None,
    kept: Kept | None = None,
    batch_size: int = 32,
    workers: int = 2,
    on_progress: Callable[[ScoreProgress], None] = lambda _p: None,
) -> dict[str, Any]:
    """Score files into ``writer``; with ``catalog`` (after an import of the same files), also
    write each file's prediction to its catalog image. ``kept`` rows (of an interrupted run)
    are written first, and their files are not scored again."""
    counts: dict[str, Any] = {"files": len(files), "scored": 0, "failed": 0, "by_class": {}}
    if kept is not None:
        writer.write_kept(kept)
        writer.flush()
        files = [path for path in files if display_path(path) not in kept.paths]
        counts["kept"] = len(kept.rows)
        counts["failed"] = kept.failed
        counts["scored"] = len(kept.rows) - kept.failed
        counts["by_class"] = dict(kept.by_class)
    trained: set[int] = set()
    if catalog is not None:
        with catalog.reading() as session:
            trained = trained_groups(session, model.train_ids)
    progress = ScoreProgress(done=counts["files"] - len(files), total=counts["files"])
    on_progress(progress)
    for batch in score_paths(
        model.predictor,
        files,
        size=model.size,
        fit=model.fit,
        batch_size=batch_size,
        workers=workers,
        describe=describe_failure,
    ):
        ids: dict[str, int] = {}
        if catalog is not None:
            ids = _catalog_ids(catalog, [files[r.index] for r in batch if r.probs is not None])
        rows = []
        for result in batch:
            path = files[result.index]
            image_id = ids.get(path)
            if result.probs is None:
                counts["failed"] += 1
                continue
            counts["scored"] += 1
            predicted = model.classes[int(np.argmax(result.probs))]
            counts["by_class"][predicted] = counts["by_class"].get(predicted, 0) + 1
            if image_id is not None:
                rows.append(
                    prediction_row(
                        model_id=model.id,
                        image_id=image_id,
                        probs=result.probs.tolist(),
                        classes=model.classes,
                        in_sample=image_id in trained,
                    )
                )
        if catalog is not None and rows:
            unique = {r["image_id"]: r for r in rows}  # two identical files: one row
            with catalog.writing() as session:
                replace_predictions(session, model_id=model.id, rows=list(unique.values()))
        # The rows only now: a row kept by an interrupted run has its prediction stored.
        for result in batch:
            path = files[result.index]
            writer.write(path, result.probs, result.error, ids.get(path))
        writer.flush()
        progress.done += len(batch)
        progress.failed = counts["failed"]
        on_progress(progress)
    return counts


def _catalog_ids(catalog: Catalog, paths: list[str]) -> dict[str, int]:
    """path -> the catalog image holding that file's content (a near copy keeps its own
    prediction; its group's representative keeps its own too)."""
    shas = {p: sha256_of(p) for p in paths}
    wanted = [s for s in shas.values() if s]
    if not wanted:
        return {}
    with catalog.reading() as session:
        found = dict(
            session.execute(select(Image.sha256, Image.id).where(Image.sha256.in_(wanted))).all()
        )
    return {path: found[sha] for path, sha in shas.items() if sha in found}


# --- cross-fitting -------------------------------------------------------------------------


@dataclass
class FoldProgress:
    fold: int
    folds: int
    training: Progress | None = None
    scoring: ScoreProgress | None = None


@dataclass
class CrossFitOutcome:
    base: int
    folds: list[dict[str, Any]] = field(default_factory=list)
    scored: int = 0


def shard_of(image_id: int, shards: int) -> int:
    """An image's scoring shard, 0 to ``shards`` - 1: a stable hash of its id, the same on
    every machine and every run, spreading consecutive ids evenly."""
    digest = hashlib.sha256(f"shard:{image_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % shards


def parse_shard(text: str) -> tuple[int, int]:
    """``I/N`` (1 <= I <= N) to the 0-based (i, n)."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise CuratorError(f"--shard {text!r}: write it as I/N, such as 1/4") from None
    if count < 1 or not 1 <= index <= count:
        raise CuratorError(f"--shard {text!r}: I must be from 1 to N, such as 1/4 ... 4/4")
    return index - 1, count


def fold_of(image_id: int, folds: int, seed: int) -> int:
    """A labeled group's fold: a stable hash, so a rerun puts it in the same fold."""
    digest = hashlib.sha256(f"{seed}:{image_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % folds


def root_training(training: dict[str, Any]) -> dict[str, Any]:
    """The settings a model's line started with: a model fine-tuned from an earlier one
    (``--weights .../model.pt``) is followed back to the first, so that fold models never
    start from weights that saw their held-out fold, and train for the full schedule."""
    seen: set[str] = set()
    while isinstance(training.get("weights"), str) and training["weights"] not in seen:
        path = Path(training["weights"]).expanduser()
        seen.add(training["weights"])
        if path.suffix != ".pt" or not path.is_file():
            break
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:
            break
        if not isinstance(state, dict) or state.get("format") != "curator-deepconnection-1":
            break
        training = dict(state.get("training") or {})
    return training


def cross_fit(
    catalog: Catalog,
    home: Path,
    *,
    base_ref: int | None,
    folds: int,
    device: str = "auto",
    batch_size: int = 32,
    workers: int = 2,
    on_progress: Callable[[FoldProgress], None] = lambda _p: None,
) -> CrossFitOutcome:
    """Out-of-sample predictions for every labeled group (human and weak labels), by K
    models trained with the settings of the base model, each on all folds but one."""
    if folds < 2:
        raise CuratorError("--folds needs at least 2 folds")
    pick_device(device)  # before any fold model is registered
    with catalog.reading() as session:
        base = get_model(session, ref=base_ref)
        if base.status != "done":
            raise CuratorError(f"model {base.id} is {base.status}: cross-fit from a trained model")
        base_id, classes = base.id, list(base.classes)
        config, training = dict(base.config), dict(base.training)
        examples = catalog_examples(session, home=home, classes=classes, include_weak=True)
        finished = {
            int(m.training.get("fold", -1)): m.id
            for m in session.scalars(
                select(Model).where(Model.status.in_((CROSS_FIT, SCORING))).order_by(Model.id)
            )
            if m.training.get("cross_fit_of") == base_id and m.training.get("folds") == folds
        }
    labeled = [e for split in examples.splits.values() for e in split]
    if len(labeled) < folds * 4:
        raise CuratorError(
            f"{len(labeled)} labeled images are too few for {folds} folds; label more or use "
            "fewer folds"
        )
    training = root_training(training)
    seed = int(training.get("seed", 0))
    outcome = CrossFitOutcome(base=base_id)
    model_cfg = ModelConfig.from_dict({**config, "classes": classes})
    plans: dict[int, Examples] = {}
    for k in range(folds):  # every fold checked before any is trained
        if k in finished:
            continue
        held = [e for e in labeled if fold_of(e.image_id, folds, seed) == k]
        rest = [e for e in labeled if fold_of(e.image_id, folds, seed) != k]
        rng = random.Random(seed * 7919 + k)
        rng.shuffle(rest)
        n_val = max(1, len(rest) // 10)
        plans[k] = Examples(
            classes=classes, splits={"train": rest[n_val:], "val": rest[:n_val], "test": held}
        )
        try:
            check_examples(plans[k], include_weak=True)
        except TrainingError as exc:
            raise CuratorError(
                f"fold {k + 1} of {folds} cannot be trained ({exc}); use fewer folds"
            ) from None
    for k in range(folds):
        if k in finished:
            # Kept from an earlier run; images labeled since then that fall in this fold
            # (and that this model did not train on) are scored now.
            model_id = finished[k]
            loaded = load_registered(catalog, home, model_id, device=device)
            seen_by_model = loaded.train_ids | loaded.val_ids
            held = [
                e
                for e in labeled
                if fold_of(e.image_id, folds, seed) == k and e.image_id not in seen_by_model
            ]
        else:
            fold_training = {
                **training,
                # No early stop: a fold's val set is small and noisy, and a model trained
                # from scratch can sit on a plateau for epochs before it learns; the best
                # epoch is kept.
                "patience": max(int(training.get("patience", 3)), int(training.get("epochs", 1))),
                "include_weak": True,
                "cross_fit_of": base_id,
                "fold": k,
                "folds": folds,
                "device": device,
            }
            held = plans[k].splits["test"]
            model_id = _train_fold(
                catalog, home, model_cfg, fold_training, plans[k], k, folds, on_progress
            )
            loaded = load_registered(catalog, home, model_id, device=device)
        scored = score_catalog(
            catalog,
            home,
            loaded,
            image_ids=[e.image_id for e in held],
            rescore=k not in finished,
            batch_size=batch_size,
            workers=workers,
            on_progress=lambda p, k=k: on_progress(FoldProgress(k, folds, scoring=p)),
        )
        with catalog.writing() as session:
            update_model(session, model_id=model_id, status=CROSS_FIT)
        outcome.scored += int(scored["scored"])
        outcome.folds.append(
            {
                "fold": k,
                "model": model_id,
                "held_out": len(held),
                "scored": int(scored["scored"]) + int(scored["already_scored"]),
                "kept": k in finished,
            }
        )
    return outcome


def _train_fold(
    catalog: Catalog,
    home: Path,
    model_cfg: ModelConfig,
    training: dict[str, Any],
    examples: Examples,
    k: int,
    folds: int,
    on_progress: Callable[[FoldProgress], None],
) -> int:
    known = {f for f in TrainConfig.__dataclass_fields__}
    cfg = TrainConfig(**{key: v for key, v in training.items() if key in known})
    with catalog.writing() as session:
        model_id, folder = register_model(
            session,
            home,
            config=model_cfg.as_dict(),
            training=training,
            classes=list(model_cfg.classes),
        )
    try:
        result = fit(
            model_cfg=model_cfg,
            cfg=cfg,
            examples=examples,
            folder=folder,
            on_progress=lambda p: on_progress(FoldProgress(k, folds, training=p)),
            resume=False,
            versions={"curator": __version__},
        )
    except BaseException as exc:
        mark_unfinished(catalog, model_id, exc)
        raise
    record_result(catalog, model_id, result, status=SCORING)
    return model_id
