"""The near-duplicate index, checked against brute force on random and planted hashes."""

from __future__ import annotations

import numpy as np
import pytest

from curator.ingest.hashindex import NearIndex, near_pairs, near_pairs_cross, popcount


def planted(n: int, pairs: int, radius: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    h = rng.integers(0, 2**64, n, dtype=np.uint64)
    src = rng.choice(n, pairs, replace=False)
    dst = rng.choice(np.setdiff1d(np.arange(n), src), pairs, replace=False)
    for s, d in zip(src, dst, strict=True):
        bits = rng.choice(64, int(rng.integers(1, radius + 1)), replace=False)
        h[d] = h[s] ^ np.uint64(sum(1 << int(b) for b in bits))
    return h, src, dst


def brute(h: np.ndarray, radius: int) -> set[tuple[int, int]]:
    d = popcount(h[:, None] ^ h[None, :])
    i, j = np.nonzero(np.triu(d <= radius, 1))
    return set(zip(i.tolist(), j.tolist(), strict=True))


@pytest.mark.parametrize(("n", "radius"), [(300, 8), (6000, 8), (6000, 10), (6000, 4)])
def test_near_pairs_finds_exactly_the_pairs_within_the_radius(n, radius):
    h, _src, _dst = planted(n, n // 20, radius)
    got = {tuple(p) for p in near_pairs(h, radius).tolist()}
    assert got == brute(h, radius)


def test_identical_hashes_are_chained_not_squared():
    h = np.array([7] * 500 + [0xFFFF_FFFF_FFFF_0000], dtype=np.uint64)
    edges = near_pairs(h, 8)
    assert len(edges) == 499  # enough to connect 500 copies, not 124,750 pairs
    assert {int(x) for x in edges.ravel()} == set(range(500))


def test_cross_pairs_match_brute_force():
    h, _src, _dst = planted(5000, 100, 8, seed=1)
    rng = np.random.default_rng(2)
    q = h[rng.choice(h.size, 300, replace=False)] ^ np.uint64(0b1011)
    q = np.concatenate([q, rng.integers(0, 2**64, 300, dtype=np.uint64)])
    d = popcount(q[:, None] ^ h[None, :])
    expected = set(zip(*np.nonzero(d <= 8), strict=True))
    got = {tuple(p) for p in near_pairs_cross(q, h, 8).tolist()}
    assert got == {(int(a), int(b)) for a, b in expected}


def test_near_index_lookup_and_incremental_adds():
    h, src, dst = planted(20_000, 200, 8, seed=3)
    index = NearIndex(np.arange(10_000), h[:10_000], radius=8)
    for i in range(10_000, 20_000):
        index.add(i, int(h[i]))
    assert len(index) == 20_000
    for s, d in zip(src[:100].tolist(), dst[:100].tolist(), strict=True):
        found = dict(index.query(int(h[s])))
        assert s in found and d in found and found[s] == 0
        assert found[d] == int(popcount(h[s] ^ h[d]))
        brute_ids = set(np.flatnonzero(popcount(h ^ h[s]) <= 8).tolist())
        assert set(found) == brute_ids


def test_near_index_accepts_signed_database_values():
    index = NearIndex([1, 2], [-1, 5], radius=4)
    assert index.query(2**64 - 1) == [(1, 0)]
