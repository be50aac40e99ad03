"""What a picture looks like, in a few numbers: computed from the thumbnail the door decodes.

No second decode: `curator.ingest.imaging.analyze` hands its thumbnail (256 to 320 pixels on
the longer side, RGB) and the thumbnail's grey conversion (shared with the pHash) here, and
the numbers land in ``image_properties`` beside the hashes.

* ``sharpness``: variance of the Laplacian of the grey thumbnail as it is (no resize: the
  fine detail a blur removes is only there at full size), over the grey variance (so that a
  dim photo is not called blurry for its dimness alone);
* ``brightness`` p5, p50, p95: percentiles of luminance, 0 to 1; ``contrast``: its
  standard deviation;
* ``entropy``: Shannon entropy of the 256-level grey histogram, in bits (0 to 8): a blank
  or nearly flat picture carries little;
* ``colourfulness``: Hasler and Süsstrunk's metric (2003) on the opponent channels, 0 for
  a grey picture, about 20 to 100 for colour photos;
* ``aspect``: the longer side over the shorter (of the original's pixel size);
* ``graphic``: the share of pixels in the 8 commonest of the 256 grey levels: the flat
  colours of text, banners, screenshots and charts score near 1, photos far lower.

What they cost counts: every import pays it (bench/import_throughput.py, docs/check.md). Only
the sharpness reads the grey thumbnail at full size, at one row in `SHARPNESS_STEP`; the grey
statistics come from the histogram of that grey copy box-reduced by a whole factor to
`SMALL_SIZE` and more (C code: no sort, no copy into NumPy), the colour ones from
`COLOUR_SIDE` pixels a side picked on a grid. The pHashes of the windows by which crop
matching finds a cropped copy's photo are not made here but when crop matching first needs
them (curator/ingest/windows.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

#: Stored beside each row: numbers of another version are computed again by a backfill.
PROPERTIES_VERSION = "props-v4"


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

    def as_row(self) -> dict[str, float | str]:
        # vars, not dataclasses.asdict: that deep-copies each number, 75 us a row in the
        # process that writes an import's rows (bench/import_throughput.py).
        return {**vars(self), "version": PROPERTIES_VERSION}


#: The grey statistics are measured on the grey thumbnail box-reduced by the whole factor
#: that brings its longer side nearest above this (256 to 320 pixels come down to 64 to 80).
SMALL_SIZE = 64
#: The sharpness samples the Laplacian at one row in this many (of the thumbnail as it is).
SHARPNESS_STEP = 8
#: The colour statistics are measured on this many pixels on the longer side, picked on a
#: grid (a nearest-neighbour resize: no averaging, which would take the noise out of a
#: grey picture's colour and the detail out of a photo's).
COLOUR_SIDE = 64
_LEVELS = np.arange(256, dtype=np.float64)
#: Count, sum and sum of squares of 0-255 values, as one product with their histogram.
_MOMENTS = np.stack([np.ones(256), _LEVELS, _LEVELS * _LEVELS])
_QUANTILES = (0.05, 0.5, 0.95)
#: The opponent channels of R, G, B: red less green, and yellow (red and green) less blue.
_OPPONENT = np.array([[1.0, -1.0, 0.0], [0.5, 0.5, -1.0]], dtype=np.float32)


def _grey_statistics(small_grey: Image.Image) -> tuple[list[float], float, float, float]:
    """Percentiles 5, 50 and 95 of the grey levels (as ``np.percentile``'s linear ones, in
    0 to 1), their variance (on 0-255), their entropy in bits, and the share of pixels in
    the 8 commonest levels: all from the histogram, in few steps (each costs)."""
    hist = np.array(small_grey.histogram(), dtype=np.float64)
    count, total, squares = (_MOMENTS @ hist).tolist()
    mean = total / count
    variance = max(squares / count - mean * mean, 0.0)
    at = [q * (count - 1) for q in _QUANTILES]
    low = [math.floor(a) for a in at]
    ends = np.searchsorted(np.cumsum(hist), [*low, *(v + 1 for v in low)], side="right")
    lo, hi = ends[:3].tolist(), ends[3:].tolist()
    percentiles = [
        (x + (a - b) * (min(y, 255) - x)) / 255.0
        for x, y, a, b in zip(lo, hi, at, low, strict=True)
    ]
    # -sum(p log p) over the levels, as log n less the mean over pixels of log(count of
    # their level): no division per level, and an empty level (count 0) adds nothing.
    entropy = math.log2(count) - float(hist @ np.log2(np.maximum(hist, 1.0))) / count
    commonest = float(np.sort(hist)[-8:].sum()) / count
    return percentiles, variance, max(entropy, 0.0), commonest


def _sharpness(grey: np.ndarray, variance: float) -> float:
    """Variance of the Laplacian over the grey variance (the same on 0-255 as on 0-1). The
    Laplacian is taken at every `SHARPNESS_STEP`-th row, each from its full neighbourhood
    (the three rows each sample needs are all that is read): its variance over thousands
    of pixels is that of all of them, at a fraction of the work."""
    # A strip's thumbnail can be a few rows high: then fewer rows to a step (3 at least).
    step = min(SHARPNESS_STEP, max(3, grey.shape[0] // 4))
    rows = grey.shape[0] // step * step
    g = grey[:rows].reshape(-1, step, grey.shape[1])[:, :3].astype(np.int16)
    lap = g[:, 0, 1:-1] + g[:, 2, 1:-1]
    lap += g[:, 1, :-2]
    lap += g[:, 1, 2:]
    lap -= g[:, 1, 1:-1] * np.int16(4)
    v = lap.astype(np.float32).ravel()
    mean = float(v.sum()) / v.size
    lap_var = max(float(v @ v) / v.size - mean * mean, 0.0)
    return lap_var / max(variance, 1e-4 * 255.0**2)


def _colourfulness(rgb: Image.Image) -> float:
    """Hasler and Süsstrunk's colourfulness, on `COLOUR_SIDE` pixels a side."""
    w, h = rgb.size
    if max(w, h) > COLOUR_SIDE:
        scale = COLOUR_SIDE / max(w, h)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        rgb = rgb.resize(size, Image.Resampling.NEAREST)
    pixels = np.asarray(rgb).reshape(-1, 3)
    n = pixels.shape[0]
    opponent = _OPPONENT @ pixels.T.astype(np.float32)  # (2, n): along rows, not columns
    mean = opponent.sum(axis=1) / n
    spread = np.sqrt(np.maximum(np.einsum("ij,ij->i", opponent, opponent) / n - mean**2, 0))
    return math.hypot(*spread.tolist()) + 0.3 * math.hypot(*mean.tolist())


def _at_least(img: Image.Image, side: int) -> Image.Image:
    """The picture, stretched where a side is under ``side`` pixels (the thumbnail of a long
    strip can be a pixel high)."""
    if min(img.size) >= side:
        return img
    return img.resize((max(side, img.width), max(side, img.height)), Image.Resampling.BILINEAR)


def reduced(grey: Image.Image, side: int) -> Image.Image:
    """The grey thumbnail box-reduced by the whole factor that brings its longer side
    nearest above ``side``."""
    factor = max(1, max(grey.width, grey.height) // side)
    return grey.reduce(factor) if factor > 1 else grey


def measure(
    thumb: Image.Image, *, width: int, height: int, grey: Image.Image | None = None
) -> Properties:
    """The numbers of one picture, from its RGB thumbnail (and its grey conversion, where
    the caller has one) and its original pixel size."""
    rgb = thumb if thumb.mode == "RGB" else thumb.convert("RGB")
    grey = grey if grey is not None else rgb.convert("L")
    (p5, p50, p95), variance, entropy, graphic = _grey_statistics(reduced(grey, SMALL_SIZE))
    return Properties(
        sharpness=_sharpness(np.asarray(_at_least(grey, 3)), variance),
        brightness_p5=p5,
        brightness_p50=p50,
        brightness_p95=p95,
        contrast=math.sqrt(variance) / 255.0,
        entropy=entropy,
        colourfulness=_colourfulness(rgb),
        aspect=max(width, height) / max(1, min(width, height)),
        short_side=min(width, height),
        graphic=graphic,
    )
