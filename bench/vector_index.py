"""Which index answers "the 50 nearest pictures" fastest at a million vectors, and where does
exact search stop being the fastest?

Makes N random but clustered unit vectors of the embedders' dimension (512: the trunk of a
ResNet-34 and CLIP ViT-B/32; pictures of one subject crowd together, as a crawl's do), and
measures, in one run, for each candidate:

* the build time and the memory it holds (resident set growth while building, and the
  index's own bytes);
* the time of one top-50 query (median of single queries, as the review page asks them);
* recall@50 against exact search of the same vectors.

Candidates: NumPy exact search (the baseline, float16 vectors in chunks multiplied in float32),
faiss's exact flat index, faiss HNSW, faiss IVF and usearch HNSW. The figures in
docs/embeddings.md came from:

    python bench/vector_index.py --size 1000000
    python bench/vector_index.py --size 20000 --size 100000   # where exact search stops
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

K = 50


def clustered(n: int, dim: int, rng: np.random.Generator, centres: int = 2000) -> np.ndarray:
    """Unit vectors around ``centres`` random centres, as float16 (what curator stores)."""
    centre = rng.standard_normal((centres, dim), dtype=np.float32)
    centre /= np.linalg.norm(centre, axis=1, keepdims=True)
    out = np.empty((n, dim), dtype=np.float16)
    for start in range(0, n, 50_000):
        stop = min(n, start + 50_000)
        which = rng.integers(0, centres, stop - start)
        spread = rng.uniform(0.3, 0.9, (stop - start, 1)).astype(np.float32)
        chunk = centre[which] + spread * rng.standard_normal((stop - start, dim), np.float32) / 20
        chunk /= np.linalg.norm(chunk, axis=1, keepdims=True)
        out[start:stop] = chunk
    return out


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def exact(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    from curator.learn.vectorindex import exact_search

    held = np.asarray(vectors, dtype=np.float32)  # as curator's exact search holds them
    return np.stack([exact_search(held, q[None, :], k)[0][0] for q in queries])


def timed_queries(search: Callable[[np.ndarray], np.ndarray], queries: np.ndarray) -> tuple:
    found, times = [], []
    for q in queries:
        start = time.perf_counter()
        found.append(search(q[None, :].astype(np.float32)))
        times.append(time.perf_counter() - start)
    return np.stack([np.asarray(f).reshape(-1)[:K] for f in found]), float(np.median(times))


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)]))


def candidates(vectors: np.ndarray, which: set[str]) -> dict[str, Callable[[], Callable]]:
    """name -> build() -> search(query) -> ids."""
    dim = vectors.shape[1]

    def faiss_flat() -> Callable:
        import faiss

        index = faiss.IndexFlatIP(dim)
        index.add(vectors.astype(np.float32))
        return lambda q: index.search(q, K)[1]

    def faiss_hnsw() -> Callable:
        import faiss

        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 64
        for start in range(0, len(vectors), 100_000):
            index.add(vectors[start : start + 100_000].astype(np.float32))
        index.hnsw.efSearch = 128
        faiss.omp_set_num_threads(1)
        return lambda q: index.search(q, K)[1]

    def faiss_ivf() -> Callable:
        import faiss

        lists = max(16, int(4 * np.sqrt(len(vectors))))  # 4·√N lists, 48 probed
        quantiser = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFScalarQuantizer(
            quantiser, dim, lists, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT
        )
        sample = vectors[
            np.random.default_rng(1).choice(
                len(vectors), min(len(vectors), 40 * lists), replace=False
            )
        ]
        index.train(sample.astype(np.float32))
        for start in range(0, len(vectors), 100_000):
            index.add(vectors[start : start + 100_000].astype(np.float32))
        index.nprobe = 48
        faiss.omp_set_num_threads(1)  # single queries, as curator's index asks them
        return lambda q: index.search(q, K)[1]

    def usearch_hnsw() -> Callable:
        from usearch.index import Index

        index = Index(ndim=dim, metric="ip", dtype="f16", connectivity=16, expansion_add=128)
        index.add(np.arange(len(vectors)), vectors, threads=2)
        index.expansion_search = 128
        return lambda q: index.search(q[0], K).keys

    def shipped() -> Callable:
        from curator.learn.vectorindex import VectorIndex

        index = VectorIndex.build(vectors)
        return lambda q: index.search(q, K)[0][0]

    every = {
        "faiss flat (exact)": faiss_flat,
        "faiss HNSW32": faiss_hnsw,
        "faiss IVF-fp16": faiss_ivf,
        "usearch HNSW16 f16": usearch_hnsw,
        "curator's index": shipped,
    }
    return {n: b for n, b in every.items() if not which or any(n.startswith(w) for w in which)}


def run(size: int, dim: int, queries: int, which: set[str]) -> None:
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    vectors = clustered(size, dim, rng)
    asked = vectors[rng.choice(size, queries, replace=False)].astype(np.float32)
    asked += rng.standard_normal(asked.shape, np.float32) / 100
    asked /= np.linalg.norm(asked, axis=1, keepdims=True)
    print(
        f"\n{size:,} vectors of {dim} (float16, {vectors.nbytes / 2**20:.0f} MiB), "
        f"made in {time.perf_counter() - start:.1f} s; {queries} queries, top {K}"
    )
    start = time.perf_counter()
    truth = exact(vectors, asked, K)
    numpy_ms = (time.perf_counter() - start) / queries * 1000
    heads = ("index", "build s", "memory MiB", "query ms", "recall@50", "x numpy")
    print(f"{heads[0]:<22}" + "".join(f"{h:>11}" for h in heads[1:]))
    mib = vectors.nbytes / 2**20
    print(f"{'numpy exact':<22}{0:>11.1f}{mib:>11.0f}{numpy_ms:>11.2f}{1:>11.3f}{1:>11.1f}")
    for name, build in candidates(vectors, which).items():
        import faiss

        faiss.omp_set_num_threads(os.cpu_count() or 1)  # every core to build
        gc.collect()
        before = rss_mb()
        start = time.perf_counter()
        search = build()
        built = time.perf_counter() - start
        grown = rss_mb() - before
        found, median = timed_queries(search, asked)
        ms = median * 1000
        print(
            f"{name:<22}{built:>11.1f}{grown:>11.0f}{ms:>11.2f}{recall(found, truth):>11.3f}"
            f"{numpy_ms / ms:>11.1f}",
            flush=True,
        )
        del search
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak resident memory of the run: {peak:.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, action="append", help="vectors (repeatable)")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        help="a candidate's name or its start: faiss, 'faiss IVF', usearch, curator",
    )
    args = parser.parse_args()
    for size in args.size or [1_000_000]:
        run(size, args.dim, args.queries, set(args.only))


if __name__ == "__main__":
    main()
