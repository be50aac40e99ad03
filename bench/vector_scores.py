"""What keeping the outlier scores and clusters up to date costs as a set of vectors grows,
and what the shortcuts give up.

Makes N random but clustered unit vectors of the `model` embedder's width (960: a ResNet-18
or 34 read at its four stages), as bench/vector_index.py does, and measures in one run:

* **Scores.** The full refresh (every row's outlier score, k-means, every row's cluster) of
  N rows; then M rows added and the refresh `curator embed` now makes (the new rows and the
  rows they come near scored again, the new rows joining the kept centres) against a full
  refresh of the N + M rows: the time of each, the rows scored, and how far the kept scores
  are from the full refresh's (the largest difference, and the share of the full refresh's
  most outlying 1 % that the kept scores also put there).
* **Clusters** (``--kmeans-size``): curator's k-means (trained on at most
  `TRAIN_PER_CLUSTER` rows a cluster, rows assigned a chunk at a time) against faiss's
  k-means as it comes (at most 256 rows a cluster, every row held as float32): the time,
  the rows trained on, the float32 bytes held, and how well each fits (the mean cosine
  distance of every row to its centre).

The figures in docs/embeddings.md came from:

    python bench/vector_scores.py --size 100000 --added 1000 --kmeans-size 1000000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from vector_index import clustered

from curator.learn import vectorscores
from curator.learn.vectorindex import VectorIndex

NEIGHBOURS = 10


def timed(work):
    start = time.perf_counter()
    out = work()
    return out, time.perf_counter() - start


def exact_scores(data: np.ndarray) -> np.ndarray:
    """Every row's outlier score by exact search: the reference."""
    from curator.learn.vectorindex import exact_search

    rows = np.asarray(data, dtype=np.float32)
    out = np.zeros(len(rows))
    for first in range(0, len(rows), 2048):
        found, sims = exact_search(rows, rows[first : first + 2048], NEIGHBOURS + 1)
        own = np.arange(first, first + len(found))[:, None]
        out[first : first + len(found)] = vectorscores.scores_of(
            np.where(found != own, sims, np.nan)[:, :NEIGHBOURS]
        )
    return out


def scores(size: int, added: int, dim: int) -> None:
    data = clustered(size + added, dim, np.random.default_rng(0))
    before = data[:size]
    with tempfile.TemporaryDirectory() as kept_dir, tempfile.TemporaryDirectory() as full_dir:
        kept, full = Path(kept_dir), Path(full_dir)
        index = VectorIndex.build(before)
        first, first_s = timed(
            lambda: vectorscores.refreshed(index, before, kept, scored=0, neighbours=NEIGHBOURS)
        )
        first.kept.write(kept)
        stored = np.zeros(size + added)
        stored[first.outlier_rows] = first.outliers
        print(f"full refresh of {size:,} rows: {first_s:.1f} s ({first.cluster_count} clusters)")

        index = VectorIndex.build(data)  # `curator embed` extends the kept index instead
        later, later_s = timed(
            lambda: vectorscores.refreshed(index, data, kept, scored=size, neighbours=NEIGHBOURS)
        )
        stored[later.outlier_rows] = later.outliers
        truth, truth_s = timed(
            lambda: vectorscores.refreshed(index, data, full, scored=0, neighbours=NEIGHBOURS)
        )
        full_scores = np.zeros(size + added)
        full_scores[truth.outlier_rows] = truth.outliers
        exact, exact_s = timed(lambda: exact_scores(data))
        print(
            f"{added:,} rows added: kept refresh {later_s:.1f} s, {len(later.outlier_rows):,} "
            f"scores moved; full refresh {truth_s:.1f} s, {size + added:,} rows: "
            f"{truth_s / later_s:.1f}x (exact scores of every row: {exact_s:.0f} s)"
        )
        top = max(1, (size + added) // 100)
        best = set(np.argsort(-exact)[:top].tolist())
        for name, got in (("kept refresh", stored), ("full refresh", full_scores)):
            shared = len(best & set(np.argsort(-got)[:top].tolist())) / top
            print(
                f"  {name} against exact search: largest difference "
                f"{np.abs(got - exact).max():.4f}, mean {np.abs(got - exact).mean():.5f} "
                f"(scores' spread {exact.std():.4f}); most outlying 1 % shared {shared:.3f}"
            )
        new = slice(size, size + added)
        _c, kept_distance = vectorscores.assign(later.kept.centres, data[new])
        print(
            f"  mean distance to the centre: the added rows' to the kept centres "
            f"{kept_distance.mean():.4f} (the older rows' to theirs "
            f"{first.distances.mean():.4f}); to clusters made anew with them "
            f"{truth.distances[new].mean():.4f}"
        )


def kmeans_compared(size: int, dim: int) -> None:
    import faiss

    data = clustered(size, dim, np.random.default_rng(1))
    count = vectorscores.cluster_count(size)
    centres, ours_s = timed(lambda: vectorscores.kmeans(data, count))
    _a, ours_fit = vectorscores.assign(centres, data)
    trained = min(size, vectorscores.TRAIN_PER_CLUSTER * count)
    print(
        f"k-means of {size:,} rows into {count} clusters: curator's {ours_s:.1f} s, trained on "
        f"{trained:,} rows ({trained * dim * 4 / 2**20:,.0f} MiB float32), mean distance to "
        f"centre {ours_fit.mean():.4f}"
    )

    def plain() -> np.ndarray:
        whole = np.asarray(data, dtype=np.float32)
        km = faiss.Kmeans(dim, count, niter=20, seed=0, spherical=True, min_points_per_centroid=1)
        km.train(whole)
        return np.asarray(km.centroids).reshape(count, -1)

    theirs, theirs_s = timed(plain)
    _b, theirs_fit = vectorscores.assign(theirs, data)
    held = min(size, 256 * count)
    print(
        f"  faiss's as it comes: {theirs_s:.1f} s ({theirs_s / ours_s:.1f}x curator's), trained "
        f"on {held:,} rows, every row held ({size * dim * 4 / 2**20:,.0f} MiB float32), mean "
        f"distance to centre {theirs_fit.mean():.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--added", type=int, default=1_000)
    parser.add_argument("--dim", type=int, default=960)
    parser.add_argument("--kmeans-size", type=int, default=0, help="0: leave k-means out")
    args = parser.parse_args()
    if args.size:
        scores(args.size, args.added, args.dim)
    if args.kmeans_size:
        kmeans_compared(args.kmeans_size, args.dim)


if __name__ == "__main__":
    main()
