"""Crop matching as the catalog grows: does it stay fast, and do copies still find their photo
among thousands of pictures of one style?

    python bench/crop_scale.py [--sizes 2000,5000,10000] [--most 1,2,4,8] [--baseline 2000]

The planted pictures: every photo of bench/_photos.py and the copies bench/crops.py makes of
it (10, 15, 20 and 25 % crops, a 20 % crop halved, a banner added). Around them, N drawn
couples of the demo's generator (`curator.demo.synthetic.draw_couple`, 288 x 216, made once
and kept under .bench/): one palette and one style, the hardest crowd for window hashes, whose
candidates grow with the catalog. Each picture goes through curator's own pipeline
(`curator.ingest.imaging.analyze`) and is verified on its own thumbnail, as ``curator dedup``
does.

For each N, crop matching (`curator.ingest.crops.candidates`, then `verified`) with each
bound of containers per picture (``--most``; the default is `MOST_CONTAINERS`): the
candidates, the share of copies in their photo's group (whole-frame pHash joins and crop
joins, as ``curator dedup`` groups), the wrong joins among the planted pictures and those
with a couple of the crowd, the exact window scan's time and the pixel check's. Beside it,
in the same run, the join the scan replaced (`curator.ingest.hashindex.near_pairs_cross`,
every candidate kept) on the ``--baseline`` size: the ratio of the two scans' times.
"""

from __future__ import annotations

import argparse
import io
import pickle
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _photos import photos
from crops import copies

import curator.ingest.crops as crops
import curator.ingest.imaging as imaging
from curator.ingest.hashindex import as_u64, near_pairs_cross
from curator.ingest.windows import windows_of

BENCH = Path(__file__).resolve().parent.parent / ".bench"
#: One analysed picture: (pHash, mirror pHash, window records, thumbnail JPEG).
Pic = tuple[int, int, bytes, bytes]


def analysed(img: Image.Image) -> Pic:
    out = io.BytesIO()
    img.convert("RGB").save(out, "JPEG", quality=88)
    a = imaging.analyze(out.getvalue())
    return a.phash, a.phash_mirror, windows_of(a.thumbnail), a.thumbnail


def _couple(seed: int) -> Pic:
    from curator.demo.synthetic import draw_couple

    return analysed(draw_couple(random.Random(seed), seed % 2 == 0, (288, 216)))


def crowd(count: int) -> list[Pic]:
    """``count`` drawn couples, analysed once and kept under .bench/."""
    path = BENCH / f"crop-crowd-{count}.pkl"
    if path.is_file():
        return list(pickle.loads(path.read_bytes()))
    print(f"drawing and analysing {count} couples (once)...", flush=True)
    with ProcessPoolExecutor() as pool:
        pics = list(pool.map(_couple, range(count), chunksize=64))
    BENCH.mkdir(exist_ok=True)
    path.write_bytes(pickle.dumps(pics))
    return pics


def planted() -> tuple[list[Pic], list[int]]:
    """The photos and their copies, and each picture's origin (the photo's number)."""
    rng = random.Random(0)
    pics, origin = [], []
    for i, (_name, img) in enumerate(photos()):
        for one in (img, *copies(img, rng).values()):
            pics.append(analysed(one))
            origin.append(i)
    return pics, origin


def squares_of(pics: list[Pic]) -> crops.Squares:
    return lambda ids: {i: crops.grey_square(pics[i][3]) for i in ids}


def run(pics: list[Pic], origin: list[int], most: list[int]) -> dict[str, object]:
    """The scan's and the pixel check's times, and for each bound the candidates, the share
    of copies joined to their photo and the wrong joins. A smaller bound's candidates are a
    prefix of each picture's: each candidate is verified once, with the smallest bound
    that holds it."""
    n = len(pics)
    ids = np.arange(n)
    plain, mirror = as_u64([p[0] for p in pics]), as_u64([p[1] for p in pics])
    whole = _whole_frame_edges(plain, mirror)
    groups = _components(n, whole)  # as curator dedup passes them: its whole-frame groups
    start = time.perf_counter()
    found = crops.candidates(
        ids, plain, mirror, [(i, p[2]) for i, p in enumerate(pics)], most=max(most), groups=groups
    )
    scan = time.perf_counter() - start
    rank = np.arange(len(found)) - np.searchsorted(found[:, 0], found[:, 0], side="left")
    # Verified a bound at a time, each adding the candidates past the one before: the pixel
    # check's time for each bound is the sum up to it.
    fits = np.zeros(len(found), dtype=bool)
    spent, checks, before = 0.0, {}, 0
    for k in most:
        more = (rank >= before) & (rank < k)
        start = time.perf_counter()
        fits[more] = crops.verified(ids, found[more], squares_of(pics))
        spent += time.perf_counter() - start
        checks[k], before = spent, k
    # A planted picture's origin; a couple's own number after them (no two share one).
    where = np.array(origin + [len(origin) + i for i in range(n - len(origin))])
    photo = np.array([i == 0 or origin[i] != origin[i - 1] for i in range(len(origin))])
    copies_total = int((~photo).sum())
    out: dict[str, object] = {"scan_s": scan}
    for k in most:
        joined = found[fits & (rank < k), :2]
        same = where[joined[:, 0]] == where[joined[:, 1]]
        crowd_side = (joined >= len(origin)).any(axis=1)
        # A copy found: in its photo's group, as curator dedup groups (whole-frame pHash
        # within the threshold, or a crop match).
        edges = np.concatenate([whole, joined])
        group = _components(n, edges)
        found_copies = sum(
            group[i] == group[i - j]
            for i in range(len(origin))
            for j in [_photo_before(photo, i)]
            if not photo[i]
        )
        out[str(k)] = {
            "candidates": int((rank < k).sum()),
            "recall": found_copies / copies_total,
            "wrong": int((~same & ~crowd_side).sum()),
            "wrong_crowd": int((~same & crowd_side).sum()),
            "check_s": checks[k],
        }
    return out


def _photo_before(photo: np.ndarray, i: int) -> int:
    """How many places before picture ``i`` its photo is."""
    j = i
    while not photo[j]:
        j -= 1
    return i - j


def _whole_frame_edges(plain: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    from curator.defaults import DEFAULT_THRESHOLD
    from curator.ingest.hashindex import near_pairs

    n = plain.size
    edges = near_pairs(np.concatenate([plain, mirror]), DEFAULT_THRESHOLD)
    a, b = edges[:, 0] % n, edges[:, 1] % n
    keep = (a != b) & ((edges[:, 0] < n) | (edges[:, 1] < n))
    return np.stack([a[keep], b[keep]], axis=1)


def _components(n: int, edges: np.ndarray) -> np.ndarray:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="2000,5000,10000")
    parser.add_argument("--most", default="1,2,4,8")
    parser.add_argument("--baseline", type=int, default=2000)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    most = sorted(int(k) for k in args.most.split(","))
    mine, origin = planted()
    many = crowd(max([*sizes, args.baseline]))
    print(f"{len(mine)} planted pictures ({len(set(origin))} photos and their copies)")
    base = mine + many[: args.baseline]
    q = as_u64([p[0] for p in base] + [p[1] for p in base])
    w = crops.window_arrays(np.arange(len(base)), [(i, p[2]) for i, p in enumerate(base)])[0]
    start = time.perf_counter()
    old = near_pairs_cross(q, w, crops.WINDOW_THRESHOLD)
    old_s = time.perf_counter() - start
    start = time.perf_counter()
    new = sum(r.size for r, _w, _d in crops.window_search(q, w, crops.WINDOW_THRESHOLD))
    new_s = time.perf_counter() - start
    print(
        f"window scan at {len(base):,} pictures: {new_s:.2f} s ({new:,} pairs) against "
        f"{old_s:.2f} s for the join it replaced ({len(old):,} pairs): {old_s / new_s:.0f}x"
    )
    print(
        f"\n{'pictures':>9} {'most':>5} {'candidates':>11} {'recall':>7} {'wrong':>6}"
        f" {'crowd':>6} {'scan s':>7} {'check s':>8}"
    )
    for size in sizes:
        result = run(mine + many[:size], origin, most)
        for k in most:
            r = result[str(k)]
            assert isinstance(r, dict)
            print(
                f"{len(mine) + size:>9,} {k:>5} {r['candidates']:>11,} {r['recall']:>7.2f}"
                f" {r['wrong']:>6} {r['wrong_crowd']:>6} {result['scan_s']:>7.1f}"
                f" {r['check_s']:>8.1f}",
                flush=True,
            )
    print(f"\ndefault: MOST_CONTAINERS = {crops.MOST_CONTAINERS}")


if __name__ == "__main__":
    main()
