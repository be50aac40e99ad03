"""``curator score``: a trained model's opinion, written back to the catalog or to a file.

* The catalog: every active image gets a row in ``predictions`` (probabilities per class, the
  predicted class, its confidence and margin, and whether the model trained on the image).
  Rows are written batch by batch, so an interrupted run keeps what it scored, and a rerun
  scores only what this model has not scored yet.
* Files and folders: one row per file (path, predicted class, probabilities, or the reason it
  could not be read) to CSV or JSON Lines (`curator.learn.outputs`); ``--add`` also imports
  them.

Loading the model is `curator.learn.models`'s; cross-fitting, `curator.learn.crossfit`'s.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from classifier.score import score_paths
from curator.config import Layout
from curator.defaults import SCORE
from curator.errors import CuratorError
from curator.ingest.door import display_path
from curator.ingest.imaging import describe_failure
from curator.learn.models import LoadedModel, trained_groups
from curator.learn.outputs import Kept, RowWriter
from curator.runs import tracked_run
from db.catalog import Catalog
from db.images import active_paths, ids_by_sha
from db.predictions import prediction_row, replace_predictions, scored_image_ids

#: Rows written per catalog transaction.
WRITE_EVERY = 256


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
    batch_size: int = SCORE["batch_size"],
    workers: int = SCORE["workers"],
    on_progress: Callable[[ScoreProgress], None] = lambda _p: None,
) -> dict[str, Any]:
    """Predictions of ``model`` for the catalog's active images (or ``image_ids``); with
    ``shard`` (i, n), only the images of shard i of n (`shard_of`), so that n processes or
    machines can score one catalog together."""
    with catalog.reading() as session:
        rows = active_paths(session, image_ids=image_ids)
        if shard is not None:
            rows = [(i, p) for i, p in rows if shard_of(i, shard[1]) == shard[0]]
        trained = trained_groups(session, model.train_ids)
        done = set() if rescore else scored_image_ids(session, model_id=model.id)
    todo = [(i, str(home / p)) for i, p in rows if i not in done]
    counts: dict[str, Any] = {
        "model": model.id,
        "images": len(rows),
        "already_scored": len(rows) - len(todo),
        "scored": 0,
        "failed": 0,
        "in_sample": 0,
    }
    params: dict[str, Any] = {"model": model.id, "rescore": rescore, "images": len(todo)}
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
                cache=str(Layout(home).pixel_cache),
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


# --- files and folders ---------------------------------------------------------------------


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
    batch_size: int = SCORE["batch_size"],
    workers: int = SCORE["workers"],
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
        found = ids_by_sha(session, sha256s=wanted)
    return {path: found[sha] for path, sha in shas.items() if sha in found}


# --- sharding ------------------------------------------------------------------------------


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
