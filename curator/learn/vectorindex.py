"""Nearest pictures by their vectors: exact search below `EXACT_BELOW` rows, faiss's inverted
file index of float16 vectors above it, kept on disk and extended as images arrive.

Every vector is a unit vector, so the inner product is the cosine similarity. Measured by
bench/vector_index.py (docs/embeddings.md): exact search of a few tens of thousands of rows
answers in a few milliseconds and needs nothing built; at a million rows it takes about a
second a query, where the inverted file answers a top-50 in under a millisecond with a
recall@50 of 0.99 against exact search, builds in minutes and holds the vectors in float16.
HNSW (faiss's, usearch's) answered as fast and as well but took several times longer to
build; the inverted file also takes new rows without being rebuilt (its lists stay those
trained on the rows it was built from, until the set has grown `RETRAIN_GROWTH` times).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import faiss

#: Below this many rows, exact search: faster than building anything.
EXACT_BELOW = 50_000
#: The set grown this many times past the rows the index's lists were trained on: built anew.
RETRAIN_GROWTH = 4
#: Lists searched per query, of about the square root of the rows' count.
PROBES = 24
#: Rows multiplied at once in exact search: float32 chunks of a few tens of MB.
CHUNK = 65_536


def exact_search(
    vectors: np.ndarray, queries: np.ndarray, k: int, *, chunk: int = CHUNK
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows of ``vectors`` (unit rows, any float type, memory-mapped or not) most
    similar to each query by inner product: (rows (Q, k), similarities (Q, k)), best first;
    ``chunk`` rows of ``vectors`` multiplied at once (Q x ``chunk`` float32 held)."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    k = min(k, len(vectors))
    best_rows = np.empty((len(queries), 0), dtype=np.int64)
    best_sims = np.empty((len(queries), 0), dtype=np.float32)
    for start in range(0, len(vectors), chunk):
        rows = np.asarray(vectors[start : start + chunk], dtype=np.float32)
        sims = queries @ rows.T  # (Q, D) @ (D, C) -> (Q, C)
        take = min(k, sims.shape[1])
        top = np.argpartition(-sims, take - 1, axis=1)[:, :take]
        best_rows = np.concatenate([best_rows, top + start], axis=1)
        best_sims = np.concatenate([best_sims, np.take_along_axis(sims, top, axis=1)], axis=1)
        if best_rows.shape[1] > k:
            keep = np.argpartition(-best_sims, k - 1, axis=1)[:, :k]
            best_rows = np.take_along_axis(best_rows, keep, axis=1)
            best_sims = np.take_along_axis(best_sims, keep, axis=1)
    order = np.argsort(-best_sims, axis=1, kind="stable")
    return np.take_along_axis(best_rows, order, axis=1), np.take_along_axis(
        best_sims, order, axis=1
    )


class VectorIndex:
    """Search over a set's rows: exact, or faiss's inverted file once the set is large."""

    def __init__(self, vectors: np.ndarray, approximate: faiss.Index | None = None) -> None:
        self.vectors = vectors
        self.approximate = approximate
        # Small enough to hold: float32 once, instead of converted at every query.
        self.exact = None if approximate is not None else np.asarray(vectors, dtype=np.float32)

    @classmethod
    def build(cls, vectors: np.ndarray) -> VectorIndex:
        """An index of these rows, in memory (`open` keeps one on disk)."""
        if len(vectors) < EXACT_BELOW:
            return cls(vectors)
        return cls(vectors, _trained(vectors))

    @classmethod
    def open(cls, folder: Path, vectors: np.ndarray) -> VectorIndex:
        """The index of a set's rows kept in ``folder``: read, extended by the rows added
        since it was written (and written again), or built when there is none yet."""
        if len(vectors) < EXACT_BELOW:
            return cls(vectors)
        import faiss

        path = folder / "index.faiss"
        index: faiss.Index | None = faiss.read_index(str(path)) if path.exists() else None
        if index is not None and (index.ntotal > len(vectors) or index.d != vectors.shape[1]):
            index = None  # of rows since cut off, or of other vectors: not to be trusted
        trained_on = int(index.ntotal) if index is not None else 0
        if index is None or len(vectors) > RETRAIN_GROWTH * max(trained_on, 1):
            index = _trained(vectors)
        elif index.ntotal < len(vectors):
            _add(index, vectors, int(index.ntotal))
        else:
            return cls(vectors, index)
        temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        faiss.write_index(index, str(temp))
        os.replace(temp, path)
        return cls(vectors, index)

    def search_rows(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows (Q, k), similarities (Q, k)) of each query's ``k`` nearest rows, best first;
        a row of -1 where fewer were found."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if self.approximate is None:
            assert self.exact is not None
            return exact_search(self.exact, queries, k)
        import faiss

        # One query scans a few thousand rows: threads would cost more than they save, and
        # on a busy machine OpenMP's spinning threads cost far more.
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1 if len(queries) < 16 else threads)
        try:
            sims, rows = self.approximate.search(queries, k)
        finally:
            faiss.omp_set_num_threads(threads)
        return rows, sims

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.search_rows(queries, k)


def _trained(vectors: np.ndarray) -> faiss.Index:
    """faiss's inverted file of float16 vectors, its lists trained on a sample of the rows."""
    import faiss

    dim = vectors.shape[1]
    lists = max(16, int(np.sqrt(len(vectors))))
    index = faiss.IndexIVFScalarQuantizer(
        faiss.IndexFlatIP(dim),
        dim,
        lists,
        faiss.ScalarQuantizer.QT_fp16,
        faiss.METRIC_INNER_PRODUCT,
    )
    rng = np.random.default_rng(0)
    sample = np.sort(rng.choice(len(vectors), min(len(vectors), 40 * lists), replace=False))
    index.train(np.asarray(vectors[sample], dtype=np.float32))
    index.nprobe = PROBES
    _add(index, vectors, 0)
    return index


def _add(index: faiss.Index, vectors: np.ndarray, start: int) -> None:
    for first in range(start, len(vectors), 100_000):
        index.add(np.asarray(vectors[first : first + 100_000], dtype=np.float32))
