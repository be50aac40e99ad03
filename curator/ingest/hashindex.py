"""Near-duplicate search over 64-bit perceptual hashes, vectorised with NumPy.

Two questions are asked of a set of hashes, and each has its own structure:

* **Which stored hashes lie within r bits of this one?** (every image that arrives)
  `NearIndex` splits the 64 bits into b blocks. Two hashes within r bits differ in at most
  ``r // b`` bits of some block (pigeonhole), so probing each block's sorted table with every
  value within that many bits of the query's block finds all candidates; only those few are
  compared in full. About 700 probes for r = 8 among a million hashes: well under a millisecond.

* **Which pairs of hashes lie within r bits of each other?** (``curator dedup``)
  `pairs_within` follows Manku, Jain and Das Sarma (WWW 2007): cut the hash into m blocks; two
  hashes within r bits agree exactly on at least m - r blocks, so for each choice of m - r
  blocks (one "table"), sort by those blocks and compare only neighbours with equal keys. Keys
  are sorted with NumPy's 16-bit radix sort (one or two passes), the tables run on every core,
  and identical hashes are collapsed first so that a thousand copies of one picture cost nothing.

A BK-tree, the usual answer, is no better than a linear scan at these radii.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from itertools import combinations

import numpy as np

U64 = np.uint64
_BRUTE_FORCE_MAX = 4096
#: Below this many stored hashes, one vectorised scan beats probing the tables.
_SCAN_MAX = 32_768


def as_u64(values: Iterable[int] | np.ndarray) -> np.ndarray:
    """Hashes as a uint64 array; signed 64-bit values (as a database stores them) wrap."""
    if isinstance(values, np.ndarray):
        if values.dtype == np.uint64:
            return values
        if values.dtype == np.int64:
            return values.view(U64)
        if np.issubdtype(values.dtype, np.integer):
            return values.astype(np.int64).view(U64)
        raise TypeError(f"hashes must be integers, not {values.dtype}")
    # Never np.asarray on Python ints: a list mixing values above 2**63 with small ones
    # becomes float64 and loses bits.
    return np.fromiter((int(v) & 0xFFFFFFFFFFFFFFFF for v in values), dtype=U64)


def popcount(x: np.ndarray) -> np.ndarray:
    return np.bitwise_count(x)


def _blocks(n_blocks: int) -> list[tuple[int, int]]:
    """Cut 64 bits into contiguous blocks: a list of (shift, width), low bits first."""
    base, extra = divmod(64, n_blocks)
    out, shift = [], 0
    for i in range(n_blocks):
        width = base + (1 if i < extra else 0)
        out.append((shift, width))
        shift += width
    return out


def _block_values(hashes: np.ndarray, shift: int, width: int) -> np.ndarray:
    return ((hashes >> U64(shift)) & U64((1 << width) - 1)).astype(np.uint32)


@functools.cache
def _flip_masks(width: int, max_flips: int) -> np.ndarray:
    """Every mask of at most ``max_flips`` set bits within ``width`` bits."""
    masks = [0]
    for k in range(1, max_flips + 1):
        for bits in combinations(range(width), k):
            masks.append(sum(1 << b for b in bits))
    return np.array(masks, dtype=np.uint32)


def _ranges(starts: np.ndarray, stops: np.ndarray) -> np.ndarray:
    """Concatenate ``arange(start, stop)`` for many ranges, vectorised."""
    lengths = stops - starts
    keep = lengths > 0
    starts, lengths = starts[keep], lengths[keep]
    if starts.size == 0:
        return np.empty(0, dtype=np.int64)
    total = int(lengths.sum())
    offsets = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
    return np.arange(total, dtype=np.int64) + offsets


class NearIndex:
    """Hashes with ids, answering "which are within r bits of this hash?" quickly.

    New hashes go into a small unsorted buffer that is scanned directly and folded into the
    sorted tables once it grows past a fraction of the whole.
    """

    def __init__(
        self,
        ids: Iterable[int] | np.ndarray = (),
        hashes: Iterable[int] | np.ndarray = (),
        *,
        radius: int = 8,
    ) -> None:
        self.radius = radius
        self._ids = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, np.int64)
        self._hashes = as_u64(hashes)
        if self._ids.shape != self._hashes.shape:
            raise ValueError("ids and hashes differ in length")
        # Arrivals since the tables were built: arrays that grow by doubling.
        self._pending_ids = np.empty(64, dtype=np.int64)
        self._pending_hashes = np.empty(64, dtype=U64)
        self._n_pending = 0
        self._build()

    def __len__(self) -> int:
        return self._ids.size + self._n_pending

    def arrays(self) -> dict[str, np.ndarray]:
        """What `from_arrays` needs to make this index again without sorting (pending
        arrivals folded in first): for keeping it in a file."""
        if self._n_pending:
            self._fold()
        out = {"ids": self._ids, "hashes": self._hashes}
        for k, (_shift, _width, keys, order) in enumerate(self._tables):
            out[f"keys{k}"], out[f"order{k}"] = keys, order.astype(np.int32)
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], *, radius: int) -> NearIndex:
        """The index `arrays` came from (arrays of another radius or size are refused)."""
        index = cls.__new__(cls)
        index.radius = radius
        index._ids, index._hashes = arrays["ids"], as_u64(arrays["hashes"])
        if index._ids.shape != index._hashes.shape:
            raise ValueError("ids and hashes differ in length")
        index._pending_ids = np.empty(64, dtype=np.int64)
        index._pending_hashes = np.empty(64, dtype=U64)
        index._n_pending = 0
        index._n_blocks, index._flips = cls._choose_blocks(max(index._ids.size, 1), radius)
        index._tables = []
        for k, (shift, width) in enumerate(_blocks(index._n_blocks) if index._n_blocks else ()):
            keys, order = arrays.get(f"keys{k}"), arrays.get(f"order{k}")
            if keys is None or order is None or keys.shape != index._ids.shape:
                raise ValueError(f"table {k} is missing or of another size")
            index._tables.append((shift, width, keys, order))
        return index

    @property
    def pending(self) -> int:
        """Hashes added since the tables were last sorted."""
        return self._n_pending

    def _fold(self) -> None:
        self._ids = np.concatenate([self._ids, self._pending_ids[: self._n_pending]])
        self._hashes = np.concatenate([self._hashes, self._pending_hashes[: self._n_pending]])
        self._n_pending = 0
        self._build()

    def _build(self) -> None:
        n = max(self._ids.size, 1)
        self._n_blocks, self._flips = self._choose_blocks(n, self.radius)
        self._tables = []
        for shift, width in _blocks(self._n_blocks) if self._n_blocks else ():
            keys = _block_values(self._hashes, shift, width)
            order = np.argsort(keys, kind="stable")
            self._tables.append((shift, width, keys[order], order))

    @staticmethod
    def _choose_blocks(n: int, radius: int) -> tuple[int, int]:
        """The block count with the fewest expected probes plus candidate comparisons;
        (0, 0) when no split helps (very large radii): every query is then a scan."""
        best: tuple[float, int, int] | None = None
        for b in range(1, 9):
            flips = radius // b
            width = 64 // b
            if flips > 4 or width > 32:
                continue
            probes = b * sum(math.comb(width, k) for k in range(flips + 1))
            cost = probes * (math.log2(n + 1) + n / 2.0**width)
            if best is None or cost < best[0]:
                best = (cost, b, flips)
        if best is None or best[0] > n:
            return 0, 0
        return best[1], best[2]

    def add(self, image_id: int, phash: int) -> None:
        n = self._n_pending
        if n == self._pending_ids.size:
            self._pending_ids = np.resize(self._pending_ids, 2 * n)
            self._pending_hashes = np.resize(self._pending_hashes, 2 * n)
        self._pending_ids[n] = image_id
        self._pending_hashes[n] = int(phash) & 0xFFFFFFFFFFFFFFFF
        self._n_pending = n + 1
        if self._n_pending > max(1024, self._ids.size // 16):
            self._fold()

    def query(self, phash: int, radius: int | None = None) -> list[tuple[int, int]]:
        """(id, distance) of every stored hash within ``radius`` bits, nearest first."""
        radius = self.radius if radius is None else radius
        q = U64(int(phash) & 0xFFFFFFFFFFFFFFFF)
        found: dict[int, int] = {}
        if self._ids.size:
            if radius > self.radius or self._ids.size <= _SCAN_MAX or not self._tables:
                rows = np.arange(self._ids.size)
            else:
                rows = np.unique(np.concatenate([self._probe(int(q), t) for t in self._tables]))
            dist = popcount(self._hashes[rows] ^ q)
            for row, d in zip(rows[dist <= radius], dist[dist <= radius], strict=True):
                found[int(self._ids[row])] = int(d)
        if self._n_pending:
            dist = popcount(self._pending_hashes[: self._n_pending] ^ q)
            for i in np.flatnonzero(dist <= radius):
                found[int(self._pending_ids[i])] = int(dist[i])
        return sorted(found.items(), key=lambda item: (item[1], item[0]))

    def _probe(self, q: int, table: tuple[int, int, np.ndarray, np.ndarray]) -> np.ndarray:
        shift, width, keys, order = table
        value = (q >> shift) & ((1 << width) - 1)
        probes = np.uint32(value) ^ _flip_masks(width, self._flips)
        lo = np.searchsorted(keys, probes, side="left")
        hi = np.searchsorted(keys, probes, side="right")
        return order[_ranges(lo, hi)]


# ----------------------------------------------------------------------------------------
# All pairs within a radius


def _choose_tables(n: int, radius: int) -> int | None:
    """Block count m for the table join, or None when a direct scan is cheaper."""
    brute = n * n / 2 * 1.0
    best: tuple[float, int] | None = None
    for m in range(radius + 1, radius + 9):
        key_bits = 64 * (m - radius) / m
        if key_bits > 32 or key_bits < 8:
            continue
        tables = math.comb(m, radius)
        per_table = n * 25.0 + n * n / 2 / 2.0**key_bits * 4.0
        cost = tables * per_table
        if best is None or cost < best[0]:
            best = (cost, m)
    if best is None or best[0] > brute:
        return None
    return best[1]


def _sorted_by(keys: np.ndarray, key_bits: int) -> np.ndarray:
    """Stable order of ``keys`` (uint32) by least-significant-digit radix passes of 16 bits."""
    order = np.argsort((keys & 0xFFFF).astype(np.uint16), kind="stable")
    if key_bits > 16:
        high = (keys[order] >> 16).astype(np.uint16)
        order = order[np.argsort(high, kind="stable")]
    return order


def _table_pairs(
    hashes: np.ndarray,
    blocks: list[tuple[int, int]],
    chosen: tuple[int, ...],
    radius: int,
    n_left: int,
) -> np.ndarray:
    """Pairs (as i * n + j codes, i < j) within ``radius`` that agree on the chosen blocks.

    A close pair agrees on several choices of blocks; it is reported only by the table of the
    first choice (in the order `combinations` yields them), so each pair is found once.
    With ``n_left`` < n, only pairs with one member on each side of ``n_left`` count.
    """
    earlier = [blocks[j] for j in range(max(chosen)) if j not in chosen]
    n = hashes.size
    keys = np.zeros(n, dtype=np.uint32)
    key_bits = 0
    for b in chosen:
        shift, width = blocks[b]
        keys = (keys << np.uint32(width)) | _block_values(hashes, shift, width)
        key_bits += width
    order = _sorted_by(keys, key_bits)
    keys, hs = keys[order], hashes[order]
    found: list[np.ndarray] = []
    active = np.flatnonzero(keys[1:] == keys[:-1])
    offset = 1
    while active.size:
        other = active + offset
        diff = hs[active] ^ hs[other]
        near = popcount(diff) <= radius
        close, diff = active[near], diff[near]
        for shift, width in earlier:
            later = _block_values(diff, shift, width) != 0
            close, diff = close[later], diff[later]
        if close.size:
            one, two = order[close], order[close + offset]
            if n_left < n:
                mixed = (one < n_left) != (two < n_left)
                one, two = one[mixed], two[mixed]
            lo, hi = np.minimum(one, two), np.maximum(one, two)
            found.append(lo.astype(np.int64) * n + hi)
        active = active[active + offset + 1 < n]
        active = active[keys[active] == keys[active + offset + 1]]
        offset += 1
    return np.concatenate(found) if found else np.empty(0, dtype=np.int64)


#: Most pairs across the two sides of a cross join compared one by one (about a second).
_BRUTE_CROSS_MAX = 300_000_000


def _brute_pairs(hashes: np.ndarray, radius: int, n_left: int) -> np.ndarray:
    """Codes i * n + j (i < j) of pairs within ``radius``, by comparing all pairs."""
    n = hashes.size
    found = []
    step = max(1, 4_000_000 // max(n, 1))
    for start in range(0, n, step):
        block = hashes[start : start + step, None] ^ hashes[None, :]
        i, j = np.nonzero(popcount(block) <= radius)
        i = i + start
        keep = i < j
        if n_left < n:
            keep &= (i < n_left) != (j < n_left)
        found.append(i[keep].astype(np.int64) * n + j[keep])
    return np.concatenate(found) if found else np.empty(0, dtype=np.int64)


def _brute_cross(hashes: np.ndarray, radius: int, n_left: int) -> np.ndarray:
    """Codes i * n + j (i < n_left <= j) of pairs within ``radius`` across the two sides, by
    comparing every pair across them (none within a side)."""
    n = hashes.size
    left, right = hashes[:n_left], hashes[n_left:]
    found = []
    step = max(1, 4_000_000 // max(n_left, 1))
    for start in range(0, right.size, step):
        block = right[start : start + step, None] ^ left[None, :]
        j, i = np.nonzero(popcount(block) <= radius)
        found.append(i.astype(np.int64) * n + (j + start + n_left))
    return np.concatenate(found) if found else np.empty(0, dtype=np.int64)


def _value_pairs(values: np.ndarray, radius: int, n_left: int, workers: int) -> np.ndarray:
    """Pairs of distinct values within ``radius``, as codes i * n + j (i < j)."""
    n = values.size
    if n_left < n and n_left * (n - n_left) <= _BRUTE_CROSS_MAX:
        # A small side against a large one (an image's windows against a few thousand
        # frames): comparing across costs less than the tables, which at a wide radius
        # split 64 bits into blocks so short that most of their rows collide.
        return np.unique(_brute_cross(values, radius, n_left))
    m = _choose_tables(n, radius) if n > _BRUTE_FORCE_MAX else None
    if m is None:
        return np.unique(_brute_pairs(values, radius, n_left))
    blocks = _blocks(m)
    tables = list(combinations(range(m), m - radius))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        parts = list(pool.map(lambda c: _table_pairs(values, blocks, c, radius, n_left), tables))
    return np.unique(np.concatenate(parts))


def _groups(hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct values, the value of each item (inverse), and items sorted by value."""
    uniq, inverse = np.unique(hashes, return_inverse=True)
    return uniq, inverse.ravel(), np.argsort(inverse.ravel(), kind="stable")


def _chain_identical(inverse: np.ndarray, by_value: np.ndarray) -> np.ndarray:
    """Edges joining each item to the next with the same hash (enough to connect them)."""
    same = inverse[by_value][1:] == inverse[by_value][:-1]
    return np.stack([by_value[:-1][same], by_value[1:][same]], axis=1).astype(np.int64)


def near_pairs(
    hashes: Iterable[int] | np.ndarray, radius: int, *, workers: int | None = None
) -> np.ndarray:
    """Edges (i, j), i < j, between items whose hashes lie within ``radius`` bits.

    Every pair of items with *different* hashes within the radius is returned; items with
    *identical* hashes are chained one to the next rather than paired all with all, which
    connects them just the same. No pair within the radius is ever missed.
    """
    arr = as_u64(hashes)
    workers = workers or os.cpu_count() or 1
    uniq, inverse, by_value = _groups(arr)
    first = by_value[np.searchsorted(inverse[by_value], np.arange(uniq.size))]
    codes = _value_pairs(uniq, radius, uniq.size, workers)
    a, b = np.divmod(codes, uniq.size)
    edges = np.concatenate(
        [np.stack([first[a], first[b]], axis=1), _chain_identical(inverse, by_value)]
    )
    return np.sort(edges, axis=1) if edges.size else edges.reshape(0, 2)


def near_pairs_cross(
    queries: Iterable[int] | np.ndarray,
    hashes: Iterable[int] | np.ndarray,
    radius: int,
    *,
    workers: int | None = None,
) -> np.ndarray:
    """Edges (q, i) such that ``queries[q]`` lies within ``radius`` bits of ``hashes[i]``.

    Every query item is returned with one item of each matching hash value (the first).
    """
    q_arr, h_arr = as_u64(queries), as_u64(hashes)
    workers = workers or os.cpu_count() or 1
    uq, inv_q, by_q = _groups(q_arr)
    uh, inv_h, by_h = _groups(h_arr)
    first_h = by_h[np.searchsorted(inv_h[by_h], np.arange(uh.size))]
    values = np.concatenate([uh, uq])
    codes = _value_pairs(values, radius, uh.size, workers)
    lo, hi = np.divmod(codes, values.size)  # lo indexes uh, hi - uh.size indexes uq
    vq = hi - uh.size
    sorted_q = inv_q[by_q]
    starts = np.searchsorted(sorted_q, vq, side="left")
    stops = np.searchsorted(sorted_q, vq, side="right")
    items = by_q[_ranges(starts, stops)]
    base = np.repeat(first_h[lo], stops - starts)
    return np.stack([items, base], axis=1).astype(np.int64)
