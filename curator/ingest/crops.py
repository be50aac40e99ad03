"""Crop-robust near copies: a copy cut from a picture, or a picture with a banner added.

A pHash describes the whole frame, so a copy that keeps 80 % of each side of a photo lies
20 to 30 bits from it: no threshold joins the two without joining distinct photos. Each image
therefore also stores the pHashes of its *windows* (`curator.ingest.properties.WINDOWS`:
66 sub-regions keeping 75 to 90 % of each side at a grid of places, and four banner
frames). A crop's whole-frame hash then lies within a few bits of one of its photo's windows;
a photo with a banner added holds the photo, so the photo's hash lies near one of the banner
copy's windows.

Candidates come from one bipartite join (`curator.ingest.hashindex.near_pairs_cross`):
every whole-frame hash and its mirror against every stored window, within
`WINDOW_THRESHOLD` bits. A window hash alone is loose (windows of two photos of one
texture, or of one palette, meet), so each candidate is verified on the pixels of the two
thumbnails: the correlation of the copy with the best-fitting region near the window that
matched. bench/crops.py measured the choices (docs/check.md).
"""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy.orm import Session

from curator.ingest.hashindex import as_u64, near_pairs_cross
from curator.ingest.properties import (
    WINDOWS,
    box_cells,
    integral_image,
    unpack_window_records,
)
from curator.ingest.thumbs import ThumbStore
from db.images import images_by_id

#: Bits (of 64) within which a whole-frame hash and a window make a candidate pair, each
#: then verified on the pixels (`fit`). Measured by bench/crops.py (docs/check.md): at 10,
#: a tenth of the 20 % crops is missed.
WINDOW_THRESHOLD = 14
#: Correlation of the 32 x 32 grey cells of a candidate and of the best-fitting region of
#: the picture it would be cut from, above which it is a copy. Measured by bench/crops.py:
#: true copies fit at 0.99 and more; at 0.97 no pair of distinct photos is joined that pHash
#: alone does not join.
MIN_CORRELATION = 0.97

#: The best correlation a pair must have reached after the first and the second step of
#: `fit`'s search to be searched further. In `bench/crops.py`, every pair verified had
#: reached at least 0.57 and 0.87 by then, while half the pairs it turned down were under
#: 0.26: most candidates that are not copies stop after the first step, about half the work.
STAGE_FLOORS = (0.5, 0.8)
#: The side of the grey square a candidate pair is verified on (`fit`).
FIT_SIZE = 256
#: Grey squares (the thumbnail at `FIT_SIZE` x `FIT_SIZE`) by image id.
Squares = Callable[[list[int]], dict[int, np.ndarray]]


def grey_square(thumbnail: bytes) -> np.ndarray:
    """A stored thumbnail (JPEG) as the grey square of `FIT_SIZE` pixels a pair is verified on."""
    with Image.open(io.BytesIO(thumbnail)) as img:
        grey = img.convert("L").resize((FIT_SIZE, FIT_SIZE), Image.Resampling.BILINEAR)
    return np.asarray(grey, dtype=np.float64)


def _correlations(
    container: np.ndarray, integral: np.ndarray, target: np.ndarray, boxes: np.ndarray
) -> np.ndarray:
    arr = boxes.copy()
    arr[:, 2:] = np.clip(arr[:, 2:], 0.05, 1.0)
    arr[:, 0] = np.clip(arr[:, 0], 0.0, 1.0 - arr[:, 2])
    arr[:, 1] = np.clip(arr[:, 1], 0.0, 1.0 - arr[:, 3])
    regions = box_cells(container, arr, integral).reshape(len(arr), -1)
    # ``target`` has zero mean, so a region's own mean drops out of its product with it,
    # and its spread follows from its sums: no centred copy of the regions is made.
    count = regions.shape[1]
    sums = regions.sum(axis=1)
    spread = np.sqrt(np.maximum(np.einsum("ij,ij->i", regions, regions) - sums * sums / count, 0.0))
    norms = spread * max(float(np.linalg.norm(target)), 1e-9)
    return (regions @ target) / np.maximum(norms, 1e-9)


def _around(box: np.ndarray, shift: float, grow: float, steps: int) -> np.ndarray:
    offsets = np.linspace(-1.0, 1.0, steps)
    dx, dy, g = np.meshgrid(offsets * shift, offsets * shift, np.linspace(-1, 1, 5) * grow)
    scale = 1 + g.ravel()
    return np.stack(
        [
            box[0] + dx.ravel() - box[2] * (scale - 1) / 2,
            box[1] + dy.ravel() - box[3] * (scale - 1) / 2,
            box[2] * scale,
            box[3] * scale,
        ],
        axis=1,
    )


def _whole_cells(square: np.ndarray) -> np.ndarray:
    """A grey square averaged down to 32 x 32 cells, as `box_cells` does for the whole frame
    (a plain block mean where the side is a multiple of 32, as `FIT_SIZE` is)."""
    size = square.shape[0]
    if size % 32:
        return box_cells(square, ((0.0, 0.0, 1.0, 1.0),))[0]
    step = size // 32
    return square.reshape(32, step, 32, step).mean(axis=(1, 3))


def fit(
    container: np.ndarray, part: np.ndarray, window: int, integral: np.ndarray | None = None
) -> float:
    """How well ``part`` matches a region of ``container`` near `WINDOWS` [window]: the best
    correlation of their 32 x 32 cells, searched coarse to fine over shifts and scalings of
    the window (a texture decorrelates within a pixel of misfit, so the search must land).
    ``integral``: the container's `integral_image`, where the caller keeps it for several
    candidates of one container."""
    integral = integral_image(container) if integral is None else integral
    target = _whole_cells(part).reshape(-1)
    target = target - target.mean()
    best_box, best = np.array(WINDOWS[window], dtype=np.float64), -1.0
    shift, grow = 0.06, 0.08
    for stage, steps in enumerate((9, 5, 5, 5)):
        boxes = _around(best_box, shift, grow, steps)
        corr = _correlations(container, integral, target, boxes)
        k = int(corr.argmax())
        if corr[k] > best:
            best, best_box = float(corr[k]), boxes[k]
        if stage < len(STAGE_FLOORS) and best < STAGE_FLOORS[stage]:
            return best  # too far from a match for the finer steps to reach one
        shift, grow = shift / 3, grow / 3
    return best


def window_arrays(
    ids: np.ndarray, windows: list[tuple[int, bytes]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The stored window hashes as one array, the row (index into ``ids``) of each, and its
    index in `WINDOWS`."""
    position = {int(image_id): row for row, image_id in enumerate(ids.tolist())}
    hashes, owners, which = [], [], []
    for image_id, blob in windows:
        row = position.get(image_id)
        if row is None:
            continue
        found = unpack_window_records(blob)
        hashes.append(found["hash"].astype(np.uint64))
        which.append(found["index"].astype(np.int64))
        owners.append(np.full(found.size, row, dtype=np.int64))
    if not hashes:
        empty = np.empty(0, dtype=np.int64)
        return np.empty(0, dtype=np.uint64), empty, empty
    return np.concatenate(hashes), np.concatenate(owners), np.concatenate(which)


def candidates(
    ids: np.ndarray,
    plain: np.ndarray,
    mirror: np.ndarray,
    windows: list[tuple[int, bytes]],
    *,
    radius: int = WINDOW_THRESHOLD,
    workers: int | None = None,
) -> np.ndarray:
    """(part row, container row, window index, mirrored) of every pair where the part's
    hash (or its mirror) lies within ``radius`` bits of one of the container's windows."""
    n = len(ids)
    hashes, owners, which = window_arrays(ids, windows)
    if n == 0 or hashes.size == 0:
        return np.empty((0, 4), dtype=np.int64)
    queries = np.concatenate([as_u64(plain), as_u64(mirror)])
    found = near_pairs_cross(queries, hashes, radius, workers=workers)
    if found.size == 0:
        return np.empty((0, 4), dtype=np.int64)
    part, container = found[:, 0] % n, owners[found[:, 1]]
    out = np.stack([part, container, which[found[:, 1]], found[:, 0] // n], axis=1)
    out = out[part != container]
    # One candidate per pair (the first window that matched), for one verification.
    _, first = np.unique(out[:, :2], axis=0, return_index=True)
    return out[np.sort(first)]


def crop_edges(
    ids: np.ndarray,
    plain: np.ndarray,
    mirror: np.ndarray,
    windows: list[tuple[int, bytes]],
    squares: Squares,
    *,
    radius: int = WINDOW_THRESHOLD,
    workers: int | None = None,
) -> np.ndarray:
    """Pairs of rows (part, container): a copy cut from a picture (or the picture inside a
    copy with a banner), found by window hashes and verified on the thumbnails' pixels."""
    found = candidates(ids, plain, mirror, windows, radius=radius, workers=workers)
    if found.size == 0:
        return np.empty((0, 2), dtype=np.int64)
    rows = sorted(set(found[:, 0].tolist()) | set(found[:, 1].tolist()))
    pixels = squares([int(ids[r]) for r in rows])
    keep = []
    # By container, so that each container's integral image is made once.
    integral, of = None, None
    for part, container, window, mirrored in found[np.argsort(found[:, 1], kind="stable")].tolist():
        a, b = pixels.get(int(ids[part])), pixels.get(int(ids[container]))
        if a is None or b is None:
            continue  # no thumbnail to verify on: not joined
        if of != container:
            integral, of = integral_image(b), container
        if fit(b, a[:, ::-1] if mirrored else a, window, integral) >= MIN_CORRELATION:
            keep.append((part, container))
    return np.array(keep, dtype=np.int64).reshape(-1, 2)


def thumbnail_squares(session: Session, home: Path) -> Squares:
    """Grey squares of images by id, from the catalog's thumbnails (made again from the
    original where one is missing); an image with neither is left out."""
    store = ThumbStore(home)

    def squares(image_ids: list[int]) -> dict[int, np.ndarray]:
        out = {}
        for image_id, image in images_by_id(session, image_ids=image_ids).items():
            try:
                out[image_id] = grey_square(store.get_or_make(image.sha256, home / image.path))
            except (OSError, ValueError, sqlite3.Error):  # unreadable: not verified, not joined
                continue
        return out

    return squares
