"""Window hashes: the pHashes of sub-regions of a picture, by which a copy cut from it (or the
picture with a banner added) finds it.

A crop's whole-frame pHash lies within a few bits of the pHash of the window of its photo
that it keeps (`WINDOWS`: 66 regions keeping 75 to 90 % of each side at a grid of places, and
four banner frames). The windows are hashed on a 64 x 64 grey square of the stored
thumbnail, all 70 DCTs in a few matrix products (`window_hashes`), and only when crop
matching first needs them (`curator.ingest.crops.catalog_windows`): an import does not pay
for them, and a catalog too large for crop matching by default never does. They are kept in
``image_windows`` (db/windows.py), so that each picture is hashed once.
curator/ingest/crops.py matches them; bench/crops.py measured the choices (docs/check.md).
"""

from __future__ import annotations

import functools
import io

import numpy as np
from PIL import Image

from curator.ingest.properties import reduced

#: Stored beside each row of ``image_windows``: windows of another version are made again.
WINDOWS_VERSION = "windows-v1"


def _grid(scale: float, steps: int) -> list[tuple[float, float, float, float]]:
    spots = [i / (steps - 1) for i in range(steps)] if steps > 1 else [0.5]
    return [((1 - scale) * fx, (1 - scale) * fy, scale, scale) for fy in spots for fx in spots]


#: The windows each image hashes, as (left, top, width, height) shares of its frame: at 90,
#: 85, 80 and 75 % of each side on grids of 3 x 3 to 5 x 5 places, and the frame less an
#: eighth at the top, bottom, left or right (where a banner goes). Chosen by bench/crops.py:
#: a copy that keeps 75 to 90 % of each side, anywhere in the frame, lies within a few pixels
#: of one of them.
WINDOWS: tuple[tuple[float, float, float, float], ...] = (
    *_grid(0.9, 3),
    *_grid(0.85, 4),
    *_grid(0.8, 4),
    *_grid(0.75, 5),
    (0.0, 0.0, 1.0, 0.875),
    (0.0, 0.125, 1.0, 0.875),
    (0.0, 0.0, 0.875, 1.0),
    (0.125, 0.0, 0.875, 1.0),
)

#: Grey levels (0 to 255) a window's pixels on the `WINDOW_SIZE` square must vary by, as a
#: standard deviation, to be hashed.
MIN_WINDOW_STD = 12.0
#: How a stored window is packed: its index in `WINDOWS`, then its hash.
WINDOW_DTYPE = np.dtype([("index", "u1"), ("hash", ">u8")])


def box_edges(
    size: int, boxes: np.ndarray | tuple[tuple[float, float, float, float], ...]
) -> tuple[np.ndarray, np.ndarray]:
    """For boxes (left, top, width, height as shares) of a square of ``size`` pixels: the 33
    cell edges of each along y and along x (integer pixel positions), as two (K, 33) arrays."""
    arr = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    steps = np.linspace(0.0, 1.0, 33)
    xs = (arr[:, 0:1] + arr[:, 2:3] * steps) * size
    ys = (arr[:, 1:2] + arr[:, 3:4] * steps) * size
    clip = lambda v: np.clip(np.rint(v), 0, size).astype(np.intp)  # noqa: E731
    return clip(ys), clip(xs)


def integral_image(square: np.ndarray) -> np.ndarray:
    """The summed-area table of a grey square, a row and a column of zeros first: exact in
    32-bit integers for a square of 8-bit pixels (up to 2,900 on a side), else float64."""
    size = square.shape[0]
    exact = square.dtype == np.uint8 and size * size * 255 < 2**31
    integral = np.zeros((size + 1, size + 1), dtype=np.int32 if exact else np.float64)
    integral[1:, 1:] = square.cumsum(0, dtype=integral.dtype).cumsum(1, dtype=integral.dtype)
    return integral


def box_cells(
    square: np.ndarray, boxes: np.ndarray | tuple, integral: np.ndarray | None = None
) -> np.ndarray:
    """Each box of a grey square averaged down to 32 x 32 cells, in one batch over its
    integral image (`integral_image`, made here unless given): (K, 32, 32) float32. The
    corners are differenced in the table's own type (exact for 8-bit pixels), and the
    averages kept in float32: half the memory traffic of float64, which bounds this."""
    size = square.shape[0]
    integral = integral_image(square) if integral is None else integral
    ys, xs = box_edges(size, boxes)
    flat = ys[:, :, None] * (size + 1) + xs[:, None, :]
    corners = np.take(integral, flat)  # (K, 33, 33)
    sums = corners[:, 1:, 1:] - corners[:, :-1, 1:]
    sums -= corners[:, 1:, :-1]
    sums += corners[:, :-1, :-1]
    # One over each cell's area, as a product of its height's and its width's: a cell of
    # no height or width sums to 0 and stays 0.
    tall = (1.0 / np.maximum(np.diff(ys, axis=1), 1)).astype(np.float32)
    wide = (1.0 / np.maximum(np.diff(xs, axis=1), 1)).astype(np.float32)
    cells = sums.astype(np.float32)
    cells *= tall[:, :, None]
    cells *= wide[:, None, :]
    return cells


def _intervals() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct (start, length) shares the windows take along one side (the grids are
    the same along x and y), and each window's index among them along y and along x."""
    spans = sorted({(b[0], b[2]) for b in WINDOWS} | {(b[1], b[3]) for b in WINDOWS})
    where = {span: i for i, span in enumerate(spans)}
    ys = np.array([where[(b[1], b[3])] for b in WINDOWS])
    xs = np.array([where[(b[0], b[2])] for b in WINDOWS])
    return np.array(spans), ys, xs


def _cell_weights(size: int, start: float, length: float) -> np.ndarray:
    """How much each of ``size`` pixels weighs in each of the 32 cells of a span (shares of
    the side): the overlap of pixel and cell over the cell's width, so that each row of the
    result averages one cell, fractional edges included. (32, size)."""
    edges = (start + length * np.linspace(0.0, 1.0, 33)) * size
    lo, hi = edges[:-1, None], edges[1:, None]
    pixels = np.arange(size)[None, :]
    overlap = np.clip(np.minimum(hi, pixels + 1) - np.maximum(lo, pixels), 0.0, None)
    return overlap / (hi - lo)


def _span_groups() -> list[list[int]]:
    """The spans of `_intervals` in groups no window crosses (a grid's places, the banner
    frames): each window's spans along y and along x lie in one group, so that its block is
    a product of that group's rows alone."""
    spans, ys, xs = _intervals()
    parent = list(range(len(spans)))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for y, x in zip(ys.tolist(), xs.tolist(), strict=True):
        parent[root(y)] = root(x)
    groups: dict[int, list[int]] = {}
    for i in range(len(spans)):
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())


@functools.cache
def window_transform(size: int) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """What turns a grey square of ``size`` pixels into every window's 8 x 8 pHash block at
    once: for each group of spans (`_span_groups`), the pHash's 8 DCT rows times the
    averaging of its 32 cells (`_cell_weights`) for each span, stacked (n * 8, size), and the
    flat offsets of each window's block in the groups' ``rows @ square @ rows.T``, raveled
    and joined in turn. The same for every image of a size, so computed once."""
    from curator.ingest.imaging import dct_rows

    spans, ys, xs = _intervals()
    average = np.stack([_cell_weights(size, start, length) for start, length in spans])
    stacked = (dct_rows() @ average).astype(np.float32)  # (S, 8, size)
    rows, group_of, place, base, start = [], {}, {}, [], 0
    for g, members in enumerate(_span_groups()):
        rows.append(stacked[members].reshape(len(members) * 8, size))
        for i, span in enumerate(members):
            group_of[span], place[span] = g, i
        base.append((start, len(members) * 8))
        start += (len(members) * 8) ** 2
    k = np.arange(8)
    offsets = np.empty((len(WINDOWS), 8, 8), dtype=np.intp)
    for w, (y, x) in enumerate(zip(ys.tolist(), xs.tolist(), strict=True)):
        first, width = base[group_of[y]]
        offsets[w] = first + (place[y] * 8 + k[:, None]) * width + place[x] * 8 + k[None, :]
    return tuple(rows), offsets.reshape(len(WINDOWS), 64)


#: The grey square the windows are hashed on: the thumbnail's grey copy box-reduced by the
#: whole factor that brings its longer side nearest above `SQUARE_FROM`, then box-resized.
#: Its pixels (4.5 of a 288-pixel thumbnail's) are about as fine as a window's cells (6 to 8).
WINDOW_SIZE = 64
SQUARE_FROM = 128


@functools.cache
def _window_boxes(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each distinct span of `WINDOWS` along a side, which pixels of a square of ``size``
    it covers (S, size), each window's offset in ``spans @ square @ spans.T``, and each
    window's area in pixels."""
    spans, ys, xs = _intervals()
    boxes = np.zeros((len(spans), 4))
    boxes[:, 0], boxes[:, 2] = spans[:, 0], spans[:, 1]
    _, edges = box_edges(size, boxes)
    cover = np.zeros((len(spans), size))
    for i, (lo, hi) in enumerate(zip(edges[:, 0], edges[:, -1], strict=True)):
        cover[i, lo:hi] = 1.0
    widths = cover.sum(axis=1)
    return cover, ys * len(spans) + xs, widths[ys] * widths[xs]


def _window_std(grey: np.ndarray) -> np.ndarray:
    """Each window's grey standard deviation, from its sums of values and of squares: (K,)."""
    cover, offsets, area = _window_boxes(grey.shape[0])
    mean = np.take(cover @ grey @ cover.T, offsets) / area
    squares = np.take(cover @ (grey * grey) @ cover.T, offsets) / area
    return np.sqrt(np.maximum(squares - mean * mean, 0.0))


#: The largest matrix product (rows x inner x columns) OpenBLAS runs on one thread.
_ONE_THREAD = 1 << 18


def _chunked(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` as a batch of products of a few rows of ``a`` each, every one small enough
    for OpenBLAS to keep on one thread: a bigger one wakes a thread per core in every import
    worker, and they wait on each other (ten times slower on two busy cores)."""
    rows, inner = a.shape
    if rows * inner * b.shape[1] <= _ONE_THREAD:
        return a @ b
    most = max(1, _ONE_THREAD // (inner * b.shape[1]))
    step = max(d for d in range(1, min(rows, most) + 1) if rows % d == 0)
    return (a.reshape(rows // step, step, inner) @ b).reshape(rows, b.shape[1])


def window_hashes(square: Image.Image) -> bytes:
    """pHashes of each window (`WINDOWS`) of a grey square of `WINDOW_SIZE` pixels: the
    pHash's DCT of each window's 32 x 32 cells, for all windows in two matrix products per
    group of spans (`window_transform`), and the median of each block. A nearly flat window
    (sky, a blank page, black space) hashes to noise that matches other flat windows: it is
    left out."""
    rows, offsets = window_transform(square.width)
    grey = np.asarray(square, dtype=np.float32)
    blocks = [_chunked(r, _chunked(grey, r.T)).ravel() for r in rows]
    flat = np.take(np.concatenate(blocks), offsets)  # (K, 64)
    middle = np.sort(flat, axis=1)[:, 31:33].mean(axis=1, keepdims=True)  # the median
    bits = np.packbits(flat > middle, axis=1)
    textured = np.flatnonzero(_window_std(grey.astype(np.float64)) >= MIN_WINDOW_STD)
    out = np.empty(textured.size, dtype=WINDOW_DTYPE)
    out["index"] = textured
    out["hash"] = bits[textured].view(">u8").ravel()
    return out.tobytes()


def unpack_window_records(blob: bytes | None) -> np.ndarray:
    """Stored windows as records of (index into `WINDOWS`, hash)."""
    return np.frombuffer(blob or b"", dtype=WINDOW_DTYPE)


def window_square(grey: Image.Image) -> Image.Image:
    """The `WINDOW_SIZE` square of a grey thumbnail that `window_hashes` reads."""
    return reduced(grey, SQUARE_FROM).resize((WINDOW_SIZE, WINDOW_SIZE), Image.Resampling.BOX)


def windows_of(thumbnail: bytes) -> bytes:
    """The window records (`WINDOW_DTYPE`) of a stored thumbnail (JPEG), decoded straight
    to its luminance."""
    with Image.open(io.BytesIO(thumbnail)) as img:
        img.draft("L", img.size)
        grey = img.convert("L")
    return window_hashes(window_square(grey))
