"""What a set of vectors says of each image: its outlier score and its k-means cluster, kept
up to date as the set grows, at a cost that follows what was added rather than the set's size.

* **Outlier scores** (the mean cosine distance to an image's ``neighbours`` nearest others,
  as cleanlab's out-of-distribution score). The first time, every row's neighbours are
  searched, and their similarities kept. After that, a run that added rows searches the new
  rows' neighbours alone: each new row is put among the neighbours of its `REACH` nearest
  older rows where it is nearer than their farthest kept one, and those rows' scores move.
  An older row can take a new row as a neighbour without being among its `REACH` nearest
  only where its own neighbours are far, so the `CHECKED_HEAD` most outlying rows the queue
  may show are also compared with every new row, exactly. A row outside both keeps its
  score (bench/vector_scores.py measures how close that stays).
* Where the index is approximate, the head's rows have their neighbours searched exactly
  (`check_head`): a missed neighbour only raises a score, so the head is where exact search
  would put it.
* **Clusters** (faiss's spherical k-means, one cluster for about `CLUSTER_SIZE` pictures).
  The centres are trained on a sample of at most `TRAIN_PER_CLUSTER` rows a cluster and
  every row is assigned in chunks, so memory holds the sample and a chunk, not the set. They
  are kept beside the vectors (`KEPT_FILE`, with the neighbours); new rows join the nearest
  kept centre, and the clusters are made anew once the set has grown `RECLUSTER_GROWTH`
  times past the rows they were made from.

bench/vector_scores.py measured each choice (docs/embeddings.md).
"""

from __future__ import annotations

import os
import uuid
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from curator.learn.vectorindex import VectorIndex

#: Pictures a cluster holds on average: about a grid page.
CLUSTER_SIZE = 30
#: Clusters at most (k-means costs rows x clusters per pass).
MAX_CLUSTERS = 4096
#: Rows a cluster's centre is trained on at most: a sample of the set above that many.
TRAIN_PER_CLUSTER = 64
#: How many times the last stage's values count in the clusters of vectors read at a
#: ResNet's four stages (`stage_weights`): clusters are for labeling by class, which the last
#: stage knows best, while the earlier stages keep pictures of one look together. Measured
#: from bench/outliers.py's webs (docs/embeddings.md): on the demo's, where the first model
#: is at chance, 3 cut the review strokes 3.0 and 3.1 times where 1 cut them 2.6 and 2.7 times
#: (two webs, the mean of three k-means seeds each); 2 cut them 2.9 and 3.0 times. On the web
#: of blobs, 3 cut them 25.6 times, 1 and 2 26.7 times.
LAST_STAGE_WEIGHT = 3.0
#: The set grown this many times past the rows its clusters were made from: made anew.
RECLUSTER_GROWTH = 2
#: A new row's nearest rows that learn of it as a neighbour (each where it is nearer than
#: their farthest kept one).
REACH = 100
#: The most outlying rows whose neighbours are searched exactly where the index is
#: approximate. An approximate search misses neighbours, never invents them, so it can only
#: raise a score: where the head's rows are checked exactly, a checked row scoring above
#: every unchecked one is where exact search would rank it.
CHECKED_HEAD = 2000
#: Passes of that check at most (each pass checks the head's rows not yet checked).
CHECK_PASSES = 4
#: Rows whose neighbours are searched, or whose cluster is found, at once.
QUERY_ROWS = 1024
ASSIGN_ROWS = 65_536
#: Rows whose neighbours are searched exactly at once, and the set's rows multiplied with
#: them at once (their products held with their sort's indices: some 128 MiB).
EXACT_ROWS = 2048
EXACT_CHUNK = 4096
#: The file beside the vectors that keeps the centres and each row's neighbours.
KEPT_FILE = "scores.npz"


#: Told how a refresh goes: (its stage, rows done, rows in all): "neighbours" (each row's
#: nearest searched), "checking" (the head's exact passes, done of `CHECK_PASSES`),
#: "clusters" (k-means trained, then each row's centre found).
Progress = Callable[[str, int, int], None]


def _quiet(_stage: str, _done: int, _total: int) -> None:
    return None


def cluster_count(rows: int) -> int:
    return int(min(MAX_CLUSTERS, max(1, round(rows / CLUSTER_SIZE))))


def _chunks(total: int, size: int, start: int = 0) -> Iterator[tuple[int, int]]:
    for first in range(start, total, size):
        yield first, min(total, first + size)


def nearest_others(
    index: VectorIndex,
    data: np.ndarray,
    first: int,
    last: int,
    k: int,
    on_progress: Progress = _quiet,
) -> tuple[np.ndarray, np.ndarray]:
    """(rows (Q, k), similarities (Q, k)) of the ``k`` nearest other rows of rows ``first``
    to ``last``, nearest first; -1 and NaN where fewer were found."""
    rows = np.full((last - first, k), -1, dtype=np.int64)
    sims = np.full((last - first, k), np.nan, dtype=np.float32)
    for start, stop in _chunks(last, QUERY_ROWS, first):
        on_progress("neighbours", start - first, last - first)
        found, found_sims = index.search_rows(np.asarray(data[start:stop]), k + 1)
        keep = (found != np.arange(start, stop)[:, None]) & (found >= 0)
        order = np.argsort(~keep, axis=1, kind="stable")[:, :k]  # the kept ones, in order
        width = order.shape[1]  # fewer than k where the set is small
        held = np.take_along_axis(keep, order, axis=1)
        taken = np.take_along_axis(found, order, axis=1)
        rows[start - first : stop - first, :width] = np.where(held, taken, -1)
        taken_sims = np.take_along_axis(found_sims, order, axis=1)
        sims[start - first : stop - first, :width] = np.where(held, taken_sims, np.nan)
    on_progress("neighbours", last - first, last - first)
    return rows, sims


def scores_of(sims: np.ndarray) -> np.ndarray:
    """Outlier scores from each row's neighbours' similarities: one minus their mean (0 for a
    row with none)."""
    held = ~np.isnan(sims)
    counts = held.sum(axis=1)
    total = np.where(held, sims, 0.0).sum(axis=1, dtype=np.float64)
    return np.where(counts > 0, 1.0 - total / np.maximum(counts, 1), 0.0)


def merge_neighbours(out: np.ndarray, ys: np.ndarray, ss: np.ndarray) -> np.ndarray:
    """Put each similarity ``ss[i]`` among row ``ys[i]``'s neighbours' (``out``, in place,
    nearest first, NaN where fewer) where it is nearer than their farthest; the rows whose
    neighbours moved. Each (row, similarity) pair is to be a neighbour not already there."""
    k = out.shape[1]
    farthest = np.where(np.isnan(out[ys, -1]), -np.inf, out[ys, -1])
    nearer = ss > farthest
    ys, ss = ys[nearer], ss[nearer]
    if not len(ys):
        return np.empty(0, dtype=np.int64)
    order = np.lexsort((-ss, ys))  # by row, nearest first
    ys, ss = ys[order], ss[order]
    moved, starts = np.unique(ys, return_index=True)
    group = np.searchsorted(moved, ys)
    rank = np.arange(len(ys)) - starts[group]
    near = rank < k  # a row takes in at most k of them
    extra = np.full((len(moved), k), np.nan, dtype=np.float32)
    extra[group[near], rank[near]] = ss[near]
    merged = np.concatenate([out[moved], extra], axis=1)
    out[moved] = -np.sort(-merged, axis=1)[:, :k]  # NaN sorts last either way
    return moved


def head_of(sims: np.ndarray, eligible: np.ndarray | None, rows: int) -> np.ndarray:
    """The ``rows`` most outlying rows by these neighbours, of those ``eligible`` (the
    queue's: active, no person's label), as a sorted array."""
    scores = scores_of(sims)
    if eligible is not None:
        scores = np.where(eligible[: len(scores)], scores, -np.inf)
    head = np.argsort(-scores, kind="stable")[:rows]
    head = head[np.isfinite(scores[head])]
    return np.sort(head)


def learn_of_new(
    index: VectorIndex,
    data: np.ndarray,
    sims: np.ndarray,
    start: int,
    eligible: np.ndarray | None = None,
    on_progress: Progress = _quiet,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's neighbours' similarities (``sims``, rows before ``start`` as they were
    kept) with rows ``start`` onwards taken in: the new rows' own searched; a new row put
    among the neighbours of each of its `REACH` nearest older rows; and the `CHECKED_HEAD`
    most outlying older rows compared with every new row, exactly. An older row can take a
    new row as a neighbour without being among its nearest only where its own neighbours
    are far: the most outlying. (The new sims, the rows whose scores moved, and the head
    compared.)"""
    k = sims.shape[1]
    total = len(data)
    found, found_sims = nearest_others(index, data, start, total, max(k, REACH), on_progress)
    out = np.concatenate([sims, np.full((total - start, k), np.nan, dtype=np.float32)])
    out[start:] = found_sims[:, :k]
    older = (found >= 0) & (found < start)
    news = np.broadcast_to(np.arange(start, total)[:, None], found.shape)[older]
    pairs = [(found[older], news, found_sims[older])]
    head = head_of(sims, eligible, CHECKED_HEAD)
    if len(head):
        queries = np.asarray(data[head], dtype=np.float32)
        for first, last in _chunks(total, EXACT_CHUNK, start):
            products = queries @ np.asarray(data[first:last], dtype=np.float32).T
            take = min(k, products.shape[1])
            nearest = np.argpartition(-products, take - 1, axis=1)[:, :take]
            pairs.append(
                (
                    np.repeat(head, take),
                    (nearest + first).ravel(),
                    np.take_along_axis(products, nearest, axis=1).ravel(),
                )
            )
    ys = np.concatenate([p[0] for p in pairs]).astype(np.int64)
    xs = np.concatenate([p[1] for p in pairs]).astype(np.int64)
    ss = np.concatenate([p[2] for p in pairs]).astype(np.float32)
    _, once = np.unique(ys * total + xs, return_index=True)  # a pair found both ways: once
    moved = merge_neighbours(out, ys[once], ss[once])
    return out, np.union1d(moved, np.arange(start, total, dtype=np.int64)), head


def exact_others(data: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """The similarities of the ``k`` nearest other rows of each of ``rows`` by exact search
    (NaN where fewer), nearest first: each chunk of the set read once for all of them."""
    from curator.learn.vectorindex import exact_search

    out = np.full((len(rows), k), np.nan, dtype=np.float32)
    for first, last in _chunks(len(rows), EXACT_ROWS):
        queries = np.asarray(data[rows[first:last]])
        # The set read once for all of these rows, in chunks small enough that their
        # products with every query stay some 64 MiB.
        found, sims = exact_search(data, queries, k + 1, chunk=EXACT_CHUNK)
        keep = found != rows[first:last, None]
        order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
        width = order.shape[1]
        taken = np.take_along_axis(sims, order, axis=1)
        out[first:last, :width] = np.where(np.take_along_axis(keep, order, axis=1), taken, np.nan)
    return out


def check_head(
    index: VectorIndex,
    data: np.ndarray,
    sims: np.ndarray,
    checked: np.ndarray,
    eligible: np.ndarray | None = None,
    on_progress: Progress = _quiet,
) -> np.ndarray:
    """Search exactly the neighbours of the `CHECKED_HEAD` most outlying ``eligible`` rows
    not checked yet (``sims`` and ``checked`` changed in place), until the head is checked
    or `CHECK_PASSES` have run; the rows checked. Nothing where the index is exact."""
    if index.approximate is None:
        checked[:] = True
        return np.empty(0, dtype=np.int64)
    done = []
    for passes in range(CHECK_PASSES):
        head = head_of(sims, eligible, CHECKED_HEAD)
        todo = head[~checked[head]]
        if not len(todo):
            break
        on_progress("checking", passes, CHECK_PASSES)
        sims[todo] = exact_others(data, todo, sims.shape[1])
        checked[todo] = True
        done.append(todo)
    if done:
        on_progress("checking", CHECK_PASSES, CHECK_PASSES)
    return np.concatenate(done) if done else np.empty(0, dtype=np.int64)


def stage_weights(dim: int, last: float = LAST_STAGE_WEIGHT) -> np.ndarray | None:
    """Per-value weights for vectors read at a ResNet's four stages (widths w, 2w, 4w, 8w:
    ``dim`` is 15w), the last stage's values ``last`` times the others; None for another
    width."""
    if dim % 15 or dim <= 0:
        return None
    weights = np.ones(dim, dtype=np.float32)
    weights[dim * 7 // 15 :] = last
    return weights


def view(rows: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """Rows as the clustering sees them (float32): each value times its weight, and made a
    unit vector again; as they are without weights."""
    out = np.asarray(rows, dtype=np.float32)
    if weights is None:
        return out
    out = out * weights
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out


def kmeans(
    vectors: np.ndarray, clusters: int, *, seed: int = 0, weights: np.ndarray | None = None
) -> np.ndarray:
    """The centres (``clusters`` unit rows, float32) of faiss's spherical k-means over the
    rows as `view` makes them with ``weights``, trained on a sample of at most
    `TRAIN_PER_CLUSTER` rows a cluster (read from the rows as they are, memory-mapped or
    not)."""
    import faiss

    total = len(vectors)
    if clusters <= 1 or total <= clusters:
        if clusters <= 1:
            centre = np.zeros((1, vectors.shape[1]), dtype=np.float64)
            for first, last in _chunks(total, ASSIGN_ROWS):
                centre += view(vectors[first:last], weights).sum(axis=0, dtype=np.float64)
            centre /= max(float(np.linalg.norm(centre)), 1e-12)
            return centre.astype(np.float32)
        return view(vectors, weights)  # each row its own cluster
    rng = np.random.default_rng(seed)
    take = min(total, TRAIN_PER_CLUSTER * clusters)
    sample = np.sort(rng.choice(total, take, replace=False)) if take < total else None
    data = view(vectors if sample is None else vectors[sample], weights)
    km = faiss.Kmeans(
        data.shape[1],
        clusters,
        niter=20,
        seed=seed,
        spherical=True,
        min_points_per_centroid=1,
        max_points_per_centroid=TRAIN_PER_CLUSTER,
    )
    km.train(data)
    return np.asarray(km.centroids, dtype=np.float32).reshape(clusters, -1)


def assign(
    centres: np.ndarray,
    vectors: np.ndarray,
    start: int = 0,
    weights: np.ndarray | None = None,
    on_progress: Progress = _quiet,
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's (from ``start`` on, as `view` makes it with ``weights``) nearest centre (0
    to len - 1) and its cosine distance to it, a chunk of rows at a time."""
    import faiss

    index = faiss.IndexFlatIP(centres.shape[1])
    index.add(np.ascontiguousarray(centres, dtype=np.float32))
    assigned, distances = [], []
    for first, last in _chunks(len(vectors), ASSIGN_ROWS, start):
        on_progress("clusters", first - start, len(vectors) - start)
        sims, nearest = index.search(np.ascontiguousarray(view(vectors[first:last], weights)), 1)
        assigned.append(nearest[:, 0].astype(np.int64))
        distances.append(1.0 - sims[:, 0].astype(np.float64))
    if not assigned:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float64)
    return np.concatenate(assigned), np.concatenate(distances)


@dataclass
class Kept:
    """What is kept beside a set's vectors between refreshes: the clusters' centres and the
    rows they were trained over, and each row's neighbours' similarities (``sims``, one row
    per scored row). Written after the catalog holds the scores, so that its row count must
    equal the catalog's ``scored`` for it to be what the catalog's scores came from."""

    centres: np.ndarray
    trained: int
    sims: np.ndarray
    #: Which rows' neighbours were found by exact search (`check_head`).
    checked: np.ndarray
    #: The clustering's weights (`view`), empty for none: centres of other weights are not
    #: these vectors' clusters.
    weights: np.ndarray

    @property
    def assigned(self) -> int:
        return len(self.sims)

    @classmethod
    def read(cls, folder: Path) -> Kept | None:
        try:
            with np.load(folder / KEPT_FILE) as found:
                kept = cls(
                    found["centres"],
                    int(found["trained"]),
                    found["sims"],
                    found["checked"],
                    found["weights"],
                )
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):  # none, or torn
            return None
        return kept if kept.checked.shape == kept.sims.shape[:1] else None

    def write(self, folder: Path) -> None:
        path = folder / KEPT_FILE
        temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp.npz")
        np.savez(
            temp,
            centres=self.centres,
            trained=self.trained,
            sims=self.sims,
            checked=self.checked,
            weights=self.weights,
        )
        os.replace(temp, path)


@dataclass
class Scores:
    """What one refresh computed: the rows whose outlier scores and clusters are new."""

    outlier_rows: np.ndarray
    outliers: np.ndarray
    cluster_rows: np.ndarray
    clusters: np.ndarray
    distances: np.ndarray
    kept: Kept
    rescored_all: bool
    reclustered: bool

    @property
    def cluster_count(self) -> int:
        return len(self.kept.centres)


def refreshed(
    index: VectorIndex,
    data: np.ndarray,
    folder: Path,
    *,
    scored: int,
    neighbours: int,
    eligible: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    on_progress: Progress = _quiet,
) -> Scores:
    """The scores and clusters that change when a set scored over its first ``scored`` rows
    has all of ``data``: the new rows' and those they come near, and the new rows' clusters;
    every row's where what is kept does not match the catalog (``scored``), and every row's
    cluster where the set has outgrown the kept centres. ``eligible``: the rows the outlier
    queue may show (active, no person's label), whose head is checked; None: every row.
    ``weights``: the clustering's (`view`)."""
    total = len(data)
    kept = Kept.read(folder)
    usable = (
        kept is not None
        and 0 < scored <= total
        and kept.assigned == scored
        and kept.sims.shape[1:] == (neighbours,)
        and kept.centres.shape[1:] == data.shape[1:]
    )
    if usable:
        assert kept is not None
        sims, rows, head = learn_of_new(index, data, kept.sims, scored, eligible, on_progress)
        # The head was compared with every new row, so its checked rows stay exact; a
        # checked row outside it may have missed one, and is checked again if it comes in.
        checked = np.zeros(total, dtype=bool)
        checked[head] = kept.checked[head]
    else:
        _found, sims = nearest_others(index, data, 0, total, neighbours, on_progress)
        rows = np.arange(total, dtype=np.int64)
        checked = np.zeros(total, dtype=bool)
    rows = np.union1d(rows, check_head(index, data, sims, checked, eligible, on_progress))
    held = np.empty(0, dtype=np.float32) if weights is None else weights.astype(np.float32)
    fresh = (
        not usable
        or kept is None
        or total > RECLUSTER_GROWTH * max(kept.trained, 1)
        or not np.array_equal(kept.weights, held)
    )
    first = 0 if fresh else scored
    on_progress("clusters", 0, total - first)
    if fresh or kept is None:
        centres, trained = kmeans(data, cluster_count(total), weights=weights), total
    else:
        centres, trained = kept.centres, kept.trained
    clusters, distances = assign(centres, data, first, weights, on_progress)
    on_progress("clusters", total - first, total - first)
    return Scores(
        rows,
        scores_of(sims[rows]),
        np.arange(first, total, dtype=np.int64),
        clusters,
        distances,
        Kept(centres, trained, sims, checked, held),
        not usable,
        fresh,
    )
