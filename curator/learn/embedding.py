"""``curator embed``: every active image as a vector, by one of three embedders, stored beside
the catalog; and what the vectors say: each image's outlier score and cluster.

* ``model``: the trunk of a curator model (the default model, or ``--model N``): always at
  hand once a model is trained, and it sees what the classes are told apart by;
* ``imagenet``: torchvision's ResNet-50 with its ImageNet weights (its own loader and cache);
* ``clip``: an open_clip model (``pip install 'curator[clip]'``), which also embeds words, for
  text search and zero-shot labels.

A set of vectors is one embedder at one version (a model's id and creation time, the weights'
file): a new model makes a new set, and sets are never mixed. Vectors are written batch by
batch and recorded in the catalog after each, so an interrupted run keeps what it embedded and
a rerun embeds only what is new (`ensure_embedded`: the images added since).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from curator.defaults import EMBED, SCORE
from curator.errors import CuratorError
from curator.ingest.imaging import describe_failure
from curator.learn.vectorindex import VectorIndex
from curator.learn.vectors import VectorFiles, writer
from curator.learn.vectorscores import Kept, Progress, refreshed, stage_weights
from curator.runs import tracked_run
from db.catalog import Catalog
from db.images import active_paths
from db.registry import NoModel, NoModelLearned, get_model
from db.vectors import (
    choose_embedding,
    embedded_ids,
    embedding_by_id,
    embedding_for,
    newest_embedding,
    record_rows,
    set_scores,
    unqueried_rows,
    unreviewed_rows,
)

EMBEDDERS = ("model", "imagenet", "clip")
#: The words a class or a query is described by for CLIP (CLIP's own prompt).
PROMPT = "a photo of {}"

if TYPE_CHECKING:
    from classifier.embed import Embedder
    from db.models import Embedding


@dataclass
class EmbedProgress:
    done: int
    total: int
    failed: int = 0
    #: "embedding" (pictures), then the refresh's (rows): "index", "neighbours", "checking"
    #: (passes), "clusters" (`curator.learn.vectorscores.Progress`).
    stage: str = "embedding"


class NoEmbedderModel(CuratorError):
    def __init__(self, at_chance: list[int] | None = None) -> None:
        if at_chance:  # models there are, but none learned: the user may still want one
            super().__init__(
                f"no default model to embed with: the finished ones "
                f"({', '.join(str(i) for i in at_chance[:5])}) are no better than chance on "
                f"val; give --model {max(at_chance)} to embed with one anyway, "
                "or use --embedder imagenet or --embedder clip"
            )
            return
        super().__init__(
            "no trained model yet to embed with: run curator train first, "
            "or use --embedder imagenet or --embedder clip"
        )


def load_embedder(
    catalog: Catalog,
    home: Path,
    name: str,
    *,
    model_ref: int | None = None,
    clip_model: str = EMBED["clip_model"],
    device: str = "auto",
) -> Embedder:
    """The embedder ``name`` (one of `EMBEDDERS`), its weights loaded."""
    from classifier.device import pick_device
    from classifier.embed import clip_embedder, imagenet_embedder, model_embedder

    if name not in EMBEDDERS:
        raise CuratorError(f"no embedder {name!r}; one of {', '.join(EMBEDDERS)}")
    target = pick_device(device)
    if name == "imagenet":
        return imagenet_embedder(target)
    if name == "clip":
        return clip_embedder(clip_model, target)
    from curator.learn.models import load_registered

    try:
        with catalog.reading() as session:
            row = get_model(session, ref=model_ref)
            version = f"model {row.id} of {row.created_at.isoformat()}"
    except NoModelLearned as exc:
        raise NoEmbedderModel(exc.at_chance) from None
    except NoModel:
        raise NoEmbedderModel() from None
    model = load_registered(catalog, home, row.id, device=device)
    return model_embedder(model.network, version, target)


@dataclass
class VectorSet:
    """One set of vectors: its catalog row's facts and its files."""

    id: int
    embedder: str
    version: str
    count: int
    files: VectorFiles
    #: The rows the outlier scores and clusters were computed over, and the clusters' count.
    scored: int = 0
    clusters: int = 0

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of its whole rows, memory-mapped."""
        return self.files.read(self.count)

    def index(self) -> VectorIndex:
        _ids, vectors = self.read()
        return VectorIndex.open(self.files.folder, vectors)


def _vector_set(row: Embedding, home: Path) -> VectorSet:
    files = VectorFiles(home / row.folder, row.dim, row.dtype)
    return VectorSet(
        row.id, row.embedder, row.version, row.count, files, row.scored or 0, row.clusters or 0
    )


def newest_set(catalog: Catalog, home: Path, embedder: str | None = None) -> VectorSet | None:
    """The set the queues go by (the one `curator embed` ran on last), or None."""
    with catalog.reading() as session:
        row = newest_embedding(session, embedder=embedder)
        return None if row is None else _vector_set(row, home)


def embed_catalog(
    catalog: Catalog,
    home: Path,
    embedder: Embedder,
    *,
    batch_size: int = SCORE["batch_size"],
    workers: int = SCORE["workers"],
    on_progress: Callable[[EmbedProgress], None] = lambda _p: None,
    chosen: bool = True,
) -> dict[str, Any]:
    """Vectors of ``embedder`` for the catalog's active images that its set lacks, then the
    outlier scores and clusters of the whole set, brought up to date: by one process at a
    time (`curator.learn.vectors.writer`; `SetBusy` while another writes the set).
    ``chosen``: once the run is whole, the set becomes the one the queues go by (False: the
    images added since, embedded on demand by a search of a set that may not be that one)."""
    with catalog.writing() as session:
        row = embedding_for(
            session,
            embedder=embedder.name,
            version=embedder.version,
            dim=embedder.dim,
            dtype="float16",
            folder=f"vectors/{embedder.name}-{uuid.uuid4().hex[:12]}",
        )
        set_id, folder = row.id, home / row.folder
    with writer(folder):
        with catalog.reading() as session:  # as the set is now that no one else writes it
            found = embedding_by_id(session, embedding_id=set_id)
            assert found is not None
            vectors = _vector_set(found, home)
        counts = _embed_set(catalog, home, embedder, vectors, batch_size, workers, on_progress)
        if chosen:  # once the run is whole: a stopped one leaves the queues as they were
            with catalog.writing() as session:
                choose_embedding(session, embedding_id=set_id)
        return counts


def _embed_set(
    catalog: Catalog,
    home: Path,
    embedder: Embedder,
    vectors: VectorSet,
    batch_size: int,
    workers: int,
    on_progress: Callable[[EmbedProgress], None],
) -> dict[str, Any]:
    vectors.files.open(vectors.count)  # rows past the catalog's count are cut off
    with catalog.reading() as session:
        done = embedded_ids(session, embedding_id=vectors.id)
        todo = [(i, str(home / p)) for i, p in active_paths(session) if i not in done]
    counts: dict[str, Any] = {
        "embedding": vectors.id,
        "embedder": embedder.name,
        "version": embedder.version,
        "dim": embedder.dim,
        "already_embedded": len(done),
        "embedded": 0,
        "failed": 0,
    }
    params = {"embedder": embedder.name, "version": embedder.version, "images": len(todo)}
    with tracked_run(catalog, kind="embed", params=params) as run:
        run.counts = counts
        _embed_rows(catalog, embedder, vectors, todo, counts, batch_size, workers, on_progress)
        counts["vectors"] = vectors.count
        words = embedder.words if embedder.text is not None else None

        def scoring(stage: str, done: int, total: int) -> None:
            on_progress(EmbedProgress(done=done, total=total, stage=stage))

        counts.update(refresh_scores(catalog, vectors, words=words, on_progress=scoring))
    return counts


def _embed_rows(
    catalog: Catalog,
    embedder: Embedder,
    vectors: VectorSet,
    todo: list[tuple[int, str]],
    counts: dict[str, Any],
    batch_size: int,
    workers: int,
    on_progress: Callable[[EmbedProgress], None],
) -> None:
    from classifier.embed import embed_paths

    progress = EmbedProgress(done=0, total=len(todo))
    on_progress(progress)
    for batch in embed_paths(
        embedder,
        [path for _i, path in todo],
        batch_size=batch_size,
        workers=workers,
        describe=describe_failure,
    ):
        good = [r for r in batch if r.vector is not None]
        for result in batch:
            if result.vector is None:
                counts["failed"] += 1
                counts.setdefault("failures", {})[str(todo[result.index][0])] = result.error
        if good:
            ids = [todo[r.index][0] for r in good]
            # The rows first, then the catalog's count: a crash between the two leaves rows
            # past the count, which the next run cuts off and writes again.
            stacked = np.stack([r.vector for r in good if r.vector is not None])
            vectors.files.append(ids, stacked, vectors.count)
            with catalog.writing() as session:
                vectors.count = record_rows(session, embedding_id=vectors.id, image_ids=ids)
            counts["embedded"] += len(ids)
        progress.done += len(batch)
        progress.failed = counts["failed"]
        on_progress(progress)


def cluster_weights(vectors: VectorSet) -> np.ndarray | None:
    """The clustering's weights for a set: the last stage weighed up for a curator model's
    vectors read at its four stages (`curator.learn.vectorscores.stage_weights`)."""
    if vectors.embedder != "model" or not vectors.version.endswith(" (stages 1-4)"):
        return None
    return stage_weights(vectors.files.vectors.width)


def query_distances(
    catalog: Catalog, vectors: VectorSet, words: Callable[[list[str]], np.ndarray]
) -> tuple[int | None, list[tuple[int, float]]]:
    """(the newest source measured for, where it moved; [(image id, distance)]) for the set's
    pictures that lack a distance or that a search found again since: the cosine distance of
    the picture's vector to the words (`PROMPT`) of the nearest of the searches that found
    it; pictures no search found (imported, a site's) have none."""
    from curator.crawl.engines import WORD_ENGINES

    with catalog.reading() as session:
        through, todo = unqueried_rows(session, embedding_id=vectors.id, engines=WORD_ENGINES)
    todo = {i: (row, texts) for i, (row, texts) in todo.items() if row < vectors.count}
    if not todo:
        return through, []
    _ids, data = vectors.read()
    texts = sorted({t for _row, found in todo.values() for t in found})
    place = {t: n for n, t in enumerate(texts)}
    said = np.concatenate(
        [
            words([PROMPT.format(t[:300]) for t in texts[n : n + 256]])
            for n in range(0, len(texts), 256)
        ]
    ).astype(np.float32)
    out: list[tuple[int, float]] = []
    items = sorted(todo.items(), key=lambda item: item[1][0])
    for start in range(0, len(items), 4096):
        part = items[start : start + 4096]
        rows = np.asarray(data[[row for _i, (row, _t) in part]], dtype=np.float32)
        # One (picture, query) pair a line; a picture's distance is to its nearest query.
        owner = np.repeat(np.arange(len(part)), [len(found) for _i, (_r, found) in part])
        said_of = np.array([place[t] for _i, (_r, found) in part for t in found])
        sims = np.einsum("ij,ij->i", rows[owner], said[said_of])
        firsts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
        best = np.maximum.reduceat(sims, firsts)
        out += zip([i for i, _v in part], (1.0 - best).tolist(), strict=True)
    return through, out


def refresh_scores(
    catalog: Catalog,
    vectors: VectorSet,
    *,
    neighbours: int = EMBED["neighbours"],
    words: Callable[[list[str]], np.ndarray] | None = None,
    on_progress: Progress | None = None,
) -> dict[str, Any]:
    """Each image's outlier score (the mean cosine distance to its ``neighbours`` nearest
    others, as cleanlab's out-of-distribution score) and its k-means cluster, brought up to
    date with the rows added since they were computed (`curator.learn.vectorscores`); with
    ``words`` (a CLIP set's text tower), the distance to its query's words of each picture
    a search found (`query_distances`)."""
    ids, data = vectors.read()
    if len(ids) == 0:
        return {"clusters": 0}
    through, distances = (None, []) if words is None else query_distances(catalog, vectors, words)
    kept = Kept.read(vectors.files.folder)
    if (
        kept is not None
        and vectors.scored == kept.assigned == len(ids)
        and kept.sims.shape[1:] == (neighbours,)
    ):
        if distances or through is not None:
            with catalog.writing() as session:
                set_scores(
                    session,
                    embedding_id=vectors.id,
                    outliers=(),
                    clusters=(),
                    cluster_count=vectors.clusters,
                    over=len(ids),
                    partial=True,
                    query_distances=distances,
                    queried_through=through,
                )
        return {
            "clusters": vectors.clusters,
            "rescored": 0,
            "reclustered": False,
            "query_distances": len(distances),
        }
    with catalog.reading() as session:
        eligible = np.zeros(len(ids), dtype=bool)
        queue_rows = [row for _i, row in unreviewed_rows(session, embedding_id=vectors.id)]
        eligible[[r for r in queue_rows if r < len(ids)]] = True
    if on_progress is not None:
        on_progress("index", 0, len(ids))
    index = vectors.index()  # extended with the rows added since (or built)
    if on_progress is not None:
        on_progress("index", len(ids), len(ids))
    found = refreshed(
        index,
        data,
        vectors.files.folder,
        scored=vectors.scored,
        neighbours=neighbours,
        eligible=eligible,
        weights=cluster_weights(vectors),
        **({} if on_progress is None else {"on_progress": on_progress}),
    )
    outliers = zip(ids[found.outlier_rows].tolist(), found.outliers.tolist(), strict=True)
    clusters = zip(
        ids[found.cluster_rows].tolist(),
        (found.clusters + 1).tolist(),
        found.distances.tolist(),
        strict=True,
    )
    with catalog.writing() as session:
        set_scores(
            session,
            embedding_id=vectors.id,
            outliers=outliers,
            clusters=clusters,
            cluster_count=found.cluster_count,
            over=len(ids),
            partial=not (found.rescored_all or found.reclustered),
            query_distances=distances,
            queried_through=through,
        )
    # After the catalog has them: kept centres always match what the catalog says.
    found.kept.write(vectors.files.folder)
    vectors.scored, vectors.clusters = len(ids), found.cluster_count
    return {
        "clusters": found.cluster_count,
        "rescored": len(found.outlier_rows),
        "reclustered": found.reclustered,
        "query_distances": len(distances),
    }
