"""Near-duplicate search at a million hashes: the self-join and a single lookup.

    python bench/near_duplicates.py [--n 1000000] [--radius 8] [--workers N]

Makes N random 64-bit hashes plus 1 % planted near copies (1 to `radius` bits flipped), then:

* all pairs within `radius` bits (`curator.ingest.hashindex.near_pairs`): time, the process's peak
  memory, and a check that every planted pair was found; beside it, a bare NumPy brute-force
  scan timed on a slice of the rows in the same run and scaled to all pairs;
* the same with mirror hashes (2N hashes, as `curator dedup` runs);
* one new hash against the N (`NearIndex.query`), against a bare vectorised scan;
* with ``--windows K``: the crop scan ``curator dedup`` adds (`curator.ingest.crops`): the
  2N whole-frame and mirror hashes against N x K random window hashes within the window
  radius (`window_search`, every pair compared), timed beside the mirror self-join of the
  same run (the ratio is what crops add to the join; the pixel check of each picture's
  nearest candidates comes on top). Its time grows with N squared: bench/crop_scale.py
  measures the whole of crop matching on pictures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from curator.ingest.hashindex import NearIndex, near_pairs, popcount


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def planted(total: int, radius: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``total`` hashes: random ones, and 1 % near copies of them (their ids: src -> dst)."""
    rng = np.random.default_rng(seed)
    copies = total // 100
    n = total - copies
    base = rng.integers(0, 2**64, n, dtype=np.uint64)
    src = rng.choice(n, copies, replace=False)
    flips = np.zeros(copies, dtype=np.uint64)
    for i, k in enumerate(rng.integers(1, radius + 1, copies)):
        for bit in rng.choice(64, int(k), replace=False):
            flips[i] |= np.uint64(1) << np.uint64(int(bit))
    hashes = np.concatenate([base, base[src] ^ flips])
    return hashes, src, np.arange(n, n + copies)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--radius", type=int, default=8)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--windows", type=int, default=0, help="window hashes per image")
    args = parser.parse_args()
    hashes, src, dst = planted(args.n, args.radius)
    n = hashes.size
    before = peak_rss_mb()

    t = time.perf_counter()
    pairs = near_pairs(hashes, args.radius, workers=args.workers)
    join_s = time.perf_counter() - t
    peak = peak_rss_mb()
    found = set(map(tuple, np.sort(pairs, axis=1).tolist()))
    missed = sum((int(a), int(b)) not in found for a, b in zip(src, dst, strict=True))

    rows = 2000  # brute force: every pair of these rows with all n, scaled to n * (n - 1) / 2
    t = time.perf_counter()
    for start in range(0, rows, 250):
        block = hashes[start : start + 250, None] ^ hashes[None, :]
        np.count_nonzero(popcount(block) <= args.radius)
    brute_s = (time.perf_counter() - t) * (n * (n - 1) / 2) / (rows * n)

    mirrors = hashes[::-1].copy()  # a stand-in second hash per image: same distribution
    t = time.perf_counter()
    near_pairs(np.concatenate([hashes, mirrors]), args.radius, workers=args.workers)
    mirror_join_s = time.perf_counter() - t

    index = NearIndex(np.arange(n), hashes, radius=args.radius)
    rng = np.random.default_rng(1)
    queries = hashes[rng.choice(n, 2000)] ^ np.uint64(0b101)
    lookups, scans = [], []
    for q in queries[:1000]:
        t = time.perf_counter()
        index.query(int(q))
        lookups.append(time.perf_counter() - t)
    for q in queries[1000:1100]:
        t = time.perf_counter()
        np.flatnonzero(popcount(hashes ^ q) <= args.radius)
        scans.append(time.perf_counter() - t)
    result = {
        "hashes": n,
        "radius": args.radius,
        "workers": args.workers,
        "planted_pairs": int(src.size),
        "missed_planted": missed,
        "pairs_found": len(pairs),
        "self_join_s": round(join_s, 2),
        "self_join_peak_rss_mb": round(peak, 1),
        "rss_before_join_mb": round(before, 1),
        "brute_force_s_scaled": round(brute_s, 1),
        "join_speedup": round(brute_s / join_s, 1),
        "self_join_with_mirrors_s": round(mirror_join_s, 2),
        "lookup_ms_median": round(statistics.median(lookups) * 1000, 3),
        "scan_ms_median": round(statistics.median(scans) * 1000, 3),
    }
    result["lookup_speedup"] = round(result["scan_ms_median"] / result["lookup_ms_median"], 1)
    if args.windows:
        from curator.ingest.crops import WINDOW_THRESHOLD, window_search

        windows = np.random.default_rng(2).integers(0, 2**64, n * args.windows, dtype=np.uint64)
        t = time.perf_counter()
        queries = np.concatenate([hashes, mirrors])
        hits = sum(r.size for r, _w, _d in window_search(queries, windows, WINDOW_THRESHOLD))
        result["crop_join_s"] = round(time.perf_counter() - t, 2)
        result["crop_candidates"] = hits
        result["crop_join_peak_rss_mb"] = round(peak_rss_mb(), 1)
        result["crop_join_ratio"] = round(result["crop_join_s"] / mirror_join_s, 1)
    if args.json:
        print(json.dumps(result))
        return
    print(f"{n:,} hashes ({src.size:,} planted near copies), radius {args.radius}")
    print(f"  {args.workers} threads")
    print(
        f"  all pairs within {args.radius} bits: {join_s:.2f} s, peak memory {peak:.0f} MB "
        f"(process; {before:.0f} MB before the join), {len(pairs):,} pairs, "
        f"planted pairs missed: {missed}"
    )
    print(
        f"  bare NumPy brute force, scaled from {rows} rows: {brute_s:,.0f} s "
        f"-> {result['join_speedup']:.0f}x faster"
    )
    print(f"  with mirror hashes ({2 * n:,} hashes): {mirror_join_s:.2f} s")
    print(
        f"  one lookup among {n:,}: {result['lookup_ms_median']:.3f} ms median; "
        f"bare vectorised scan {result['scan_ms_median']:.2f} ms -> {result['lookup_speedup']:.0f}x"
    )
    if args.windows:
        print(
            f"  crop join, {2 * n:,} hashes against {n * args.windows:,} windows: "
            f"{result['crop_join_s']:.2f} s ({result['crop_join_ratio']:.1f}x the mirror "
            f"self-join), {result['crop_candidates']:,} candidates, peak memory "
            f"{result['crop_join_peak_rss_mb']:.0f} MB"
        )


if __name__ == "__main__":
    main()
