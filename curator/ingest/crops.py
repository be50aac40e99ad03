"""Crop-robust near copies: a copy cut from a picture, or a picture with a banner added.

A pHash describes the whole frame, so a copy that keeps 80 % of each side of a photo lies
20 to 30 bits from it: no threshold joins the two without joining distinct photos. Each image
therefore also stores the pHashes of its *windows* (`curator.ingest.properties.window_cells`:
66 sub-regions keeping 75 to 90 % of each side, at a grid of places). A crop's whole-frame
hash then lies within a few bits of one of its photo's windows; a photo with a banner added
holds the photo, so the photo's hash lies near one of the banner copy's windows.

Finding those pairs is one bipartite join (`curator.ingest.hashindex.near_pairs_cross`):
every whole-frame hash and its mirror against every stored window, within
`WINDOW_THRESHOLD` bits. bench/crops.py measured the choices (docs/check.md): keypoint
matching was not needed for the recall reached, and the join keeps ``curator dedup`` at a
million images within the ratio stated there.
"""

from __future__ import annotations

import numpy as np

from curator.ingest.hashindex import as_u64, near_pairs_cross
from curator.ingest.properties import unpack_windows

#: Bits (of 64) within which a whole-frame hash and a window make a near copy. Measured by
#: bench/crops.py: at 6, no pair of distinct whole photos is joined beyond those pHash alone
#: joins.
WINDOW_THRESHOLD = 6


def window_arrays(
    ids: np.ndarray, windows: list[tuple[int, bytes]]
) -> tuple[np.ndarray, np.ndarray]:
    """The stored window hashes as one array, and the row (index into ``ids``) of each."""
    position = {int(image_id): row for row, image_id in enumerate(ids.tolist())}
    hashes, owners = [], []
    for image_id, blob in windows:
        row = position.get(image_id)
        if row is None:
            continue
        found = unpack_windows(blob)
        hashes.append(found)
        owners.append(np.full(found.size, row, dtype=np.int64))
    if not hashes:
        return np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.int64)
    return np.concatenate(hashes), np.concatenate(owners)


def crop_edges(
    ids: np.ndarray,
    plain: np.ndarray,
    mirror: np.ndarray,
    windows: list[tuple[int, bytes]],
    *,
    radius: int = WINDOW_THRESHOLD,
    workers: int | None = None,
) -> np.ndarray:
    """Pairs of rows (a, b), a != b, where row a's hash (or its mirror) lies within
    ``radius`` bits of one of row b's windows: a is cut from b (or b holds a)."""
    n = len(ids)
    hashes, owners = window_arrays(ids, windows)
    if n == 0 or hashes.size == 0:
        return np.empty((0, 2), dtype=np.int64)
    queries = np.concatenate([as_u64(plain), as_u64(mirror)])
    found = near_pairs_cross(queries, hashes, radius, workers=workers)
    if found.size == 0:
        return np.empty((0, 2), dtype=np.int64)
    a, b = found[:, 0] % n, owners[found[:, 1]]
    keep = a != b
    return np.unique(np.stack([a[keep], b[keep]], axis=1), axis=0)
