"""Crop-robust near copies: a copy cut from a picture, or a picture with a banner added.

A pHash describes the whole frame, so a copy that keeps 80 % of each side of a photo lies
20 to 30 bits from it: no threshold joins the two without joining distinct photos. Each image
therefore also has the pHashes of its *windows* (`curator.ingest.windows.WINDOWS`: 66
sub-regions keeping 75 to 90 % of each side at a grid of places, and four banner frames),
made from its thumbnail when crop matching first needs them (`catalog_windows`) and kept.
A crop's whole-frame hash then lies within a few bits of one of its photo's windows;
a photo with a banner added holds the photo, so the photo's hash lies near one of the banner
copy's windows.

Candidates come from one exact scan (`window_search`, faiss's binary flat index): every
whole-frame hash and its mirror against every stored window, within `WINDOW_THRESHOLD`
bits, each picture keeping its `MOST_CONTAINERS` nearest. A window hash alone is loose
(windows of two photos of one texture, or of one palette, meet), so each candidate is
verified on the pixels of the two thumbnails: the correlation of the copy with the
best-fitting region near the window that matched. bench/crops.py measured the choices,
bench/crop_scale.py the bound and the cost as the catalog grows (docs/check.md).
"""

from __future__ import annotations

import io
import os
import sqlite3
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy.orm import Session

from curator.ingest.hashindex import as_u64
from curator.ingest.imaging import HASH_VERSION
from curator.ingest.thumbs import ThumbStore
from curator.ingest.windows import (
    WINDOWS,
    WINDOWS_VERSION,
    box_cells,
    integral_image,
    unpack_window_records,
    windows_of,
)
from db.catalog import Catalog
from db.errors import CatalogError
from db.images import images_by_id
from db.windows import (
    add_windows,
    count_hashed,
    count_missing_windows,
    missing_windows,
    window_rows,
)

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
    """A stored thumbnail (JPEG) as the grey square of `FIT_SIZE` pixels a pair is verified
    on: 8-bit (64 KB), whose summed-area table is exact in 32-bit integers."""
    with Image.open(io.BytesIO(thumbnail)) as img:
        grey = img.convert("L").resize((FIT_SIZE, FIT_SIZE), Image.Resampling.BILINEAR)
    return np.asarray(grey, dtype=np.uint8)


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
    # The sums in float64: the spread of a nearly flat region is a small difference of two
    # large numbers, which float32 would lose.
    count = regions.shape[1]
    sums = regions.sum(axis=1, dtype=np.float64)
    squares = np.einsum("ij,ij->i", regions, regions, dtype=np.float64)
    spread = np.sqrt(np.maximum(squares - sums * sums / count, 0.0))
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
    target = (target - target.mean()).astype(np.float32)  # as the regions (`box_cells`)
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


#: The most containers a picture is verified against: its nearest by window distance. A
#: crop lies within a few bits of a window of its photo, and joining it to one member of
#: the photo's group joins the group; without a bound, a catalog of similar pictures (one
#: palette, one style) gives each picture candidates in proportion to the catalog's size.
#: Measured by bench/crop_scale.py (docs/check.md).
MOST_CONTAINERS = 4
#: Queries per range search, at first and at most; fewer where they bring many pairs.
_QUERY_CHUNK = 4096
_FIRST_CHUNK = 256
#: The pairs one range search should return, about: what bounds the scan's memory (a pair
#: costs some 150 bytes on its way through `candidates`), however alike the pictures.
_CHUNK_PAIRS = 1_000_000
#: Pictures up to which `curator dedup` and `curator check` match crops unless told not to.
#: The scan compares every hash with every window, so its time grows with the square of the
#: catalog's size, and the pixel check with the candidates. Measured by bench/crop_scale.py
#: on 2 cores, among drawn couples (one style: every picture has its 4 candidates): at
#: 10,595 pictures 4.9 s of scan and 106 s of pixel check, so some 4 minutes at
#: 20,000, but half a day at a million. Over it, crop matching runs when asked (``--crops``),
#: and says so when it is left out.
CROPS_AUTO_LIMIT = 20_000
#: What long crop matching reports: (stage, done, total), the stage ``windows``, ``scan``
#: or ``check``.
CropProgress = Callable[[str, int, int], None]


def crops_left_out() -> str:
    """What is said where crop matching was left out for the catalog's size."""
    return (
        f"cropped copies are matched by default up to {CROPS_AUTO_LIMIT:,} pictures, and "
        "the groups already made are kept; curator dedup --crops matches them in a larger "
        "catalog (hours at a million)"
    )


def usable_cpus() -> int:
    """The cores this process may run on (its affinity, where the system tells it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


def crops_wanted(asked: bool | None, pictures: int) -> bool:
    """Whether crop matching runs on a catalog of this many pictures: as ``asked``, or when
    not told (None), up to `CROPS_AUTO_LIMIT`."""
    return asked if asked is not None else pictures <= CROPS_AUTO_LIMIT


def _codes(hashes: np.ndarray) -> np.ndarray:
    """64-bit hashes as faiss's binary codes: 8 bytes each, most significant first."""
    return np.ascontiguousarray(as_u64(hashes).astype(">u8").view(np.uint8).reshape(-1, 8))


def window_search(
    queries: np.ndarray,
    hashes: np.ndarray,
    radius: int,
    on_progress: CropProgress | None = None,
) -> Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(query, hash, distance) of every pair within ``radius`` bits, a chunk of queries at
    a time: an exact scan of the hashes by faiss's binary flat index (its popcounts run
    several times faster than NumPy's and on every core)."""
    import faiss

    index = faiss.IndexBinaryFlat(64)
    index.add(_codes(hashes))
    start, step = 0, _FIRST_CHUNK
    while start < queries.size:
        chunk = _codes(queries[start : start + step])
        lims, dist, found = index.range_search(chunk, radius + 1)  # strictly under
        counts = np.diff(lims).astype(np.int64)
        rows = np.repeat(np.arange(chunk.shape[0], dtype=np.int64), counts) + start
        yield rows, found.astype(np.int64), dist.astype(np.int64)
        start += chunk.shape[0]
        if on_progress is not None:
            on_progress("scan", start, queries.size)
        # The next chunk sized for about `_CHUNK_PAIRS` pairs at this chunk's rate.
        rate = max(found.size, 1) / chunk.shape[0]
        step = int(np.clip(_CHUNK_PAIRS / rate, 16, min(2 * step, _QUERY_CHUNK)))


def candidates(
    ids: np.ndarray,
    plain: np.ndarray,
    mirror: np.ndarray,
    windows: list[tuple[int, bytes]],
    *,
    radius: int = WINDOW_THRESHOLD,
    most: int = MOST_CONTAINERS,
    groups: np.ndarray | None = None,
    on_progress: CropProgress | None = None,
) -> np.ndarray:
    """(part row, container row, window index, mirrored, distance) of the pairs where the
    part's hash (or its mirror) lies within ``radius`` bits of one of the container's
    windows: for each part its ``most`` nearest containers, nearest first, by the window
    nearest to it. With ``groups`` (a label per row: the whole-frame groups), containers
    of the part's own group are left out and each other group counts once (by its nearest
    member), so that a picture's own copies do not take the places of its photo."""
    n = len(ids)
    hashes, owners, which = window_arrays(ids, windows)
    if n == 0 or hashes.size == 0:
        return np.empty((0, 5), dtype=np.int64)
    label = np.arange(n, dtype=np.int64) if groups is None else np.asarray(groups, np.int64)
    queries = np.concatenate([as_u64(plain), as_u64(mirror)])
    kept = []
    for query, window, dist in window_search(queries, hashes, radius, on_progress):
        part, container = query % n, owners[window]
        found = np.stack(
            [part, container, which[window], query // n, dist, label[container]], axis=1
        )
        kept.append(_nearest(found[label[part] != label[container]], most))
    if not kept:
        return np.empty((0, 5), dtype=np.int64)
    # A part's plain and mirrored hashes fall in different chunks: bound it again.
    return _nearest(np.concatenate(kept), most)[:, :5]


def _nearest(found: np.ndarray, most: int) -> np.ndarray:
    """Of rows (part, container, window, mirrored, distance, container's group): one per
    part and group (its nearest window), and each part's ``most`` nearest groups."""
    if found.size == 0:
        return found.reshape(0, 6)
    found = found[np.lexsort((found[:, 1], found[:, 4], found[:, 0]))]
    _, first = np.unique(found[:, [0, 5]], axis=0, return_index=True)
    found = found[np.sort(first)]  # by part, then distance: each group's nearest window
    starts = np.searchsorted(found[:, 0], found[:, 0], side="left")
    return found[np.arange(len(found)) - starts < most]


#: Candidates verified per batch: the grey squares of a batch's pictures (64 KB each, 256
#: at most) are all that is held, whatever the catalog's size.
_VERIFY_BATCH = 128


def crop_edges(
    ids: np.ndarray,
    plain: np.ndarray,
    mirror: np.ndarray,
    windows: list[tuple[int, bytes]],
    squares: Squares,
    *,
    radius: int = WINDOW_THRESHOLD,
    most: int = MOST_CONTAINERS,
    groups: np.ndarray | None = None,
    on_progress: CropProgress | None = None,
    workers: int | None = None,
) -> np.ndarray:
    """Pairs of rows (part, container): a copy cut from a picture (or the picture inside a
    copy with a banner), found by window hashes and verified on the thumbnails' pixels
    (``groups``: the rows' whole-frame groups, see `candidates`; ``workers``: the threads
    of the pixel check, see `verified`)."""
    found = candidates(
        ids,
        plain,
        mirror,
        windows,
        radius=radius,
        most=most,
        groups=groups,
        on_progress=on_progress,
    )
    return found[verified(ids, found, squares, on_progress, workers)][:, :2]


def verified(
    ids: np.ndarray,
    found: np.ndarray,
    squares: Squares,
    on_progress: CropProgress | None = None,
    workers: int | None = None,
) -> np.ndarray:
    """Which candidates (rows of `candidates`) fit on the pixels: a mask. A candidate
    without a thumbnail on either side is not. The squares are read in this thread (a
    database session is not shared), the fits run in ``workers`` threads (NumPy lets go of
    the interpreter for its array work), a container's candidates in one of them."""
    # By container, so that each container's integral image is made once.
    order = np.argsort(found[:, 1], kind="stable")
    fits = np.zeros(len(found), dtype=bool)
    held: dict[int, np.ndarray] = {}

    def one_container(rows: list[int]) -> None:
        b = held.get(int(ids[found[rows[0], 1]]))
        if b is None:
            return
        integral = integral_image(b)
        for row in rows:
            part, _container, window, mirrored = found[row, :4].tolist()
            a = held.get(int(ids[part]))
            if a is not None:
                square = a[:, ::-1] if mirrored else a
                fits[row] = fit(b, square, window, integral) >= MIN_CORRELATION

    with ThreadPoolExecutor(max_workers=workers or usable_cpus()) as pool:
        for start in range(0, len(order), _VERIFY_BATCH):
            rows = order[start : start + _VERIFY_BATCH]
            wanted = {int(ids[r]) for r in found[rows, :2].ravel().tolist()}
            missing = sorted(wanted - held.keys())
            held = {i: held[i] for i in wanted & held.keys()} | (
                squares(missing) if missing else {}
            )
            groups: dict[int, list[int]] = {}
            for row in rows.tolist():
                groups.setdefault(int(found[row, 1]), []).append(row)
            list(pool.map(one_container, groups.values()))
            if on_progress is not None:
                on_progress("check", min(start + _VERIFY_BATCH, len(order)), len(order))
    return fits


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


#: Pictures whose windows are made per transaction (`catalog_windows`).
_WINDOWS_BATCH = 500


def catalog_windows(
    catalog: Catalog,
    home: Path,
    *,
    on_progress: CropProgress | None = None,
    workers: int | None = None,
) -> list[tuple[int, bytes]]:
    """(image id, window records) of every hashed image: read where they were made before,
    made now from the thumbnails (`curator.ingest.windows.windows_of`, in ``workers``
    threads) where not. What is made is stored a batch per transaction, so an interrupted
    run keeps it; where the catalog takes no write (one this process may only read, a lock
    held too long, a full disk) nothing more is kept, and what was made serves this run
    alone. An image with neither thumbnail nor original has none (and is tried again by
    the next run)."""
    versions = {"version": WINDOWS_VERSION, "hash_version": HASH_VERSION}
    with catalog.reading() as session:
        total = count_missing_windows(session, **versions)
    store, made, done, after = ThumbStore(home), [], 0, 0
    writable = not catalog.read_only

    def one(todo: tuple[int, str, str]) -> tuple[int, bytes] | None:
        image_id, sha256, path = todo
        try:
            return image_id, windows_of(store.get_or_make(sha256, home / path))
        except (OSError, ValueError, sqlite3.Error):  # unreadable: not matched
            return None

    with closing(store), ThreadPoolExecutor(max_workers=workers or usable_cpus()) as pool:
        while done < total:
            with catalog.reading() as session:
                todo = missing_windows(session, **versions, after=after, limit=_WINDOWS_BATCH)
            if not todo:
                break
            rows = [row for row in pool.map(one, todo) if row is not None]
            if writable and rows:
                try:
                    with catalog.writing() as session:
                        add_windows(session, rows, version=WINDOWS_VERSION)
                except CatalogError:  # read only, busy, full: not kept
                    writable = False
            if not writable:
                made.extend(rows)
            after, done = todo[-1][0], done + len(todo)
            if on_progress is not None:
                on_progress("windows", min(done, total), total)
    with catalog.reading() as session:
        stored = window_rows(session, version=WINDOWS_VERSION)
    return sorted(stored + made)


def wanted_windows(
    catalog: Catalog,
    home: Path | None,
    crops: bool | None,
    on_progress: CropProgress | None = None,
) -> list[tuple[int, bytes]] | None:
    """The windows crop matching reads (`catalog_windows`), where crops are matched in this
    catalog (``crops`` as `crops_wanted` reads it, and a ``home`` to read thumbnails in);
    otherwise None."""
    with catalog.reading() as session:
        pictures = count_hashed(session, hash_version=HASH_VERSION)
    if home is None or not crops_wanted(crops, pictures):
        return None
    return catalog_windows(catalog, home, on_progress=on_progress)
