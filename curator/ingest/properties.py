"""What a picture looks like, in a few numbers: computed from the thumbnail the door decodes.

No second decode: `curator.ingest.imaging.analyze` hands its thumbnail (256 to 320 pixels on
the longer side, RGB) here, and the numbers land in ``image_properties`` beside the hashes.

* ``sharpness``: variance of the Laplacian of the grey picture resized to 256 x 256 (so
  that a thumbnail of 256 and one of 320 pixels compare), over the grey variance (so that a
  dim photo is not called blurry for its dimness alone);
* ``brightness`` p5, p50, p95: percentiles of luminance, 0 to 1; ``contrast``: its
  standard deviation;
* ``entropy``: Shannon entropy of the 256-level grey histogram, in bits (0 to 8): a blank
  or nearly flat picture carries little;
* ``colourfulness``: Hasler and Süsstrunk's metric (2003) on the opponent channels, 0 for
  a grey picture, about 20 to 100 for colour photos;
* ``aspect``: the longer side over the shorter (of the original's pixel size);
* ``graphic``: the share of pixels in the 8 commonest colours at 4 bits a channel: flat
  colours of text, banners, screenshots and charts score near 1, photos far lower;
* ``windows``: pHashes of sub-regions, so that a cropped copy's whole-frame hash finds the
  picture it was cut from (see `window_boxes` and docs/check.md).
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

#: Stored beside each row: numbers of another version are computed again by a backfill.
PROPERTIES_VERSION = "props-v1"
#: The grey square the sharpness is measured on.
SHARP_SIZE = 256


@dataclass(frozen=True)
class Properties:
    """One picture's numbers, as ``image_properties`` stores them (see the module)."""

    sharpness: float
    brightness_p5: float
    brightness_p50: float
    brightness_p95: float
    contrast: float
    entropy: float
    colourfulness: float
    aspect: float
    short_side: int
    graphic: float
    windows: bytes  # 8 bytes per window hash, big-endian unsigned

    def as_row(self) -> dict[str, float | bytes | str]:
        return {**asdict(self), "version": PROPERTIES_VERSION}


def _laplacian_variance(grey: np.ndarray) -> float:
    lap = grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:] - 4 * grey[1:-1, 1:-1]
    return float(lap.var())


def _colourfulness(rgb: np.ndarray) -> float:
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    rg = r - g
    yb = 0.5 * (r + g) - b
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def _graphic(rgb8: np.ndarray) -> float:
    q = (rgb8 >> 4).astype(np.int32)
    codes = (q[..., 0] << 8) | (q[..., 1] << 4) | q[..., 2]
    counts = np.bincount(codes.ravel(), minlength=4096)
    return float(np.sort(counts)[-8:].sum() / codes.size)


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

#: Grey levels (0 to 255) a window's cells must vary by, as a standard deviation, to be hashed.
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


def box_cells(square: np.ndarray, boxes: np.ndarray | tuple) -> np.ndarray:
    """Each box of a grey square averaged down to 32 x 32 cells, in one batch over an
    integral image: (K, 32, 32)."""
    size = square.shape[0]
    integral = np.zeros((size + 1, size + 1), dtype=np.float64)
    integral[1:, 1:] = square.cumsum(0).cumsum(1)
    if boxes is WINDOWS:
        flat, area = window_index(size)
    else:
        ys, xs = box_edges(size, boxes)
        flat, area = _flat_index(ys, xs, size)
    corners = np.take(integral, flat)  # (K, 33, 33): one gather from precomputed offsets
    sums = corners[:, 1:, 1:] - corners[:, :-1, 1:] - corners[:, 1:, :-1] + corners[:, :-1, :-1]
    return sums / area


def _flat_index(ys: np.ndarray, xs: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    flat = ys[:, :, None] * (size + 1) + xs[:, None, :]
    area = np.diff(ys, axis=1)[:, :, None] * np.diff(xs, axis=1)[:, None, :]
    return flat, np.maximum(area, 1).astype(np.float64)


@functools.cache
def window_index(size: int) -> tuple[np.ndarray, np.ndarray]:
    """The integral image's offsets of every window's cell corners, and each cell's area:
    the same for every image of a size, so computed once."""
    return _flat_index(*box_edges(size, WINDOWS), size)


def window_hashes(square: np.ndarray) -> bytes:
    """pHashes of each window of a grey square (`WINDOWS`): the pHash's DCT and median on
    each window's 32 x 32 cells, in one batch. A nearly flat window (sky, a blank page, black
    space) hashes to noise that matches other flat windows: it is left out."""
    from curator.ingest.imaging import dct_rows

    cells = box_cells(square, WINDOWS)  # (K, 32, 32)
    rows = dct_rows()
    flat = (rows @ cells @ rows.T).reshape(len(cells), 64)  # (K, 8, 8) -> (K, 64)
    bits = np.packbits(flat > np.median(flat, axis=1, keepdims=True), axis=1)
    textured = np.flatnonzero(cells.reshape(len(cells), -1).std(axis=1) >= MIN_WINDOW_STD)
    out = np.empty(textured.size, dtype=WINDOW_DTYPE)
    out["index"] = textured
    out["hash"] = bits[textured].view(">u8").ravel()
    return out.tobytes()


def unpack_windows(blob: bytes | None) -> np.ndarray:
    """Stored window hashes as uint64."""
    return unpack_window_records(blob)["hash"].astype(np.uint64)


def unpack_window_records(blob: bytes | None) -> np.ndarray:
    """Stored windows as records of (index into `WINDOWS`, hash)."""
    return np.frombuffer(blob or b"", dtype=WINDOW_DTYPE)


#: The longer side of the copy of the thumbnail the statistics are computed on.
STATS_SIZE = 128


def measure(thumb: Image.Image, *, width: int, height: int) -> Properties:
    """The numbers of one picture, from its RGB thumbnail and its original pixel size."""
    scale = min(1.0, STATS_SIZE / max(thumb.width, thumb.height))
    small = thumb.convert("RGB").resize(
        (max(1, round(thumb.width * scale)), max(1, round(thumb.height * scale))),
        Image.Resampling.BILINEAR,
        reducing_gap=2.0,
    )
    rgb8 = np.asarray(small, dtype=np.uint8)
    grey8 = np.asarray(small.convert("L"), dtype=np.uint8)
    grey = grey8.astype(np.float32) / 255.0
    square = np.asarray(
        thumb.convert("L").resize((SHARP_SIZE, SHARP_SIZE), Image.Resampling.BILINEAR),
        dtype=np.float32,
    )
    square /= 255.0
    p5, p50, p95 = (float(v) for v in np.percentile(grey, (5, 50, 95)))
    hist = np.bincount(grey8.ravel(), minlength=256)
    prob = hist[hist > 0] / grey8.size
    return Properties(
        sharpness=_laplacian_variance(square) / max(float(square.var()), 1e-4),
        brightness_p5=p5,
        brightness_p50=p50,
        brightness_p95=p95,
        contrast=float(grey.std()),
        entropy=float(-(prob * np.log2(prob)).sum()),
        colourfulness=_colourfulness(rgb8.astype(np.float32)),
        aspect=max(width, height) / max(1, min(width, height)),
        short_side=min(width, height),
        graphic=_graphic(rgb8),
        windows=window_hashes(square.astype(np.float64) * 255.0),
    )
